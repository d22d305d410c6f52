//! The `fstore` command line.
//!
//! `serve` runs the server; `check` checks definitions locally; `ingest` and
//! `get` are clients of a running server (the server owns the database).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use fstore::config::Config;
use fstore::proto::{self, value::Kind};

#[derive(Parser, Debug)]
#[command(name = "fstore", version, about = "A low-latency online feature store server")]
pub struct Cli {
    /// Config file (default: ./fstore.toml when it exists). Environment
    /// variables FSTORE_<SECTION>__<KEY> override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub client: fstore::client::ClientOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: load definitions, open the store, serve gRPC.
    Serve,
    /// Check definition files and print every error with file:line:col.
    Check {
        /// Definitions directory (default: server.definitions_dir).
        dir: Option<PathBuf>,
    },
    /// Load Parquet files into every view of a parquet source, through a running server.
    Ingest {
        /// The parquet source to load.
        #[arg(long)]
        source: String,
        /// Make the files the views' whole content (atomically); default is upsert.
        #[arg(long)]
        replace: bool,
        /// Files, globs or directories (default: the source's own path).
        paths: Vec<String>,
        /// Server address (default: from server.listen).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Compute a service's derived features offline, as the server does:
    /// read a Parquet file of request fields and feature values (columns
    /// named as in the definitions, features as `view.feature`) and write it
    /// back with one column per derived feature.
    Eval {
        /// The feature service whose derived features to compute.
        #[arg(long)]
        service: String,
        /// Parquet file of request fields and feature values.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the result (Parquet).
        #[arg(long)]
        out: PathBuf,
        /// Definitions directory (default: server.definitions_dir).
        #[arg(long)]
        defs: Option<PathBuf>,
    },
    /// Write a Feast feature repository (feature_store.yaml and the
    /// definitions) generated from fstore's definitions, for Feast's SDK
    /// with the remote online store pointed at fstore's HTTP API; then run
    /// `feast apply` in it. See docs/feast.md.
    FeastRegistry {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// fstore's HTTP API as the SDK reaches it (default: server.http_listen).
        #[arg(long)]
        url: Option<String>,
        /// The Feast project name.
        #[arg(long, default_value = "fstore")]
        project: String,
        /// Definitions directory (default: server.definitions_dir).
        #[arg(long)]
        defs: Option<PathBuf>,
    },
    /// Look up features for entity keys and print them as a table.
    Get {
        /// Feature service to read.
        #[arg(long, conflicts_with = "features", required_unless_present = "features")]
        service: Option<String>,
        /// Feature references instead of a service: view.feature or view.*, comma separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Entity keys, e.g. --key user_id=42,43 (repeat for composite keys).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// A request field of the service, one value for every row, e.g.
        /// --request device=ios --request query_emb=[0.1,0.2] (repeat).
        #[arg(long = "request")]
        request: Vec<String>,
        /// Print the raw response as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Server address (default: from server.listen).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Replace a running server's feature definitions with a directory's
    /// `.fdl` files, without a restart. Files that fail `check` are refused
    /// and the server keeps its definitions. With no directory, the server
    /// re-reads its own definitions directory (as on SIGHUP).
    Apply {
        /// Directory of `.fdl` files to send.
        dir: Option<PathBuf>,
        /// Check and show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Server address (default: from server.listen).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Make an API key: prints the key (give it to the client) and the
    /// config entry holding its SHA-256 (give that to the server).
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Measure lookup latency under a fixed request rate (open loop).
    Bench(crate::bench::BenchArgs),
    /// Measure bulk Parquet loading: generate a file set, load it, report rows/s.
    BenchIngest(crate::bench::ingest::BenchIngestArgs),
    /// Send example click events to Kafka; with --measure, report how fast
    /// the server applies them and how fresh they are when servable.
    Produce(crate::bench::stream::ProduceArgs),
}

#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// A new random key and its config entry.
    New {
        /// Who will hold the key (shown in logs and errors).
        #[arg(long)]
        name: String,
        /// Feature services it may read, comma separated; `*` for all.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Sources it may push events to, comma separated; `*` for all.
        #[arg(long, value_delimiter = ',')]
        push: Vec<String>,
        /// Allow ingest, apply and status (and pushing to any source).
        #[arg(long)]
        admin: bool,
    },
    /// The SHA-256 of a key read from standard input, as the config stores it.
    Hash,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let client = cli.client;
    match cli.command {
        Command::Serve => serve(config),
        Command::Check { dir } => check(dir.unwrap_or(config.server.definitions_dir)),
        Command::Ingest { source, replace, paths, addr } => {
            runtime()?.block_on(ingest(&client, client_addr(addr, &config), source, replace, paths))
        }
        Command::Get { service, features, keys, request, json, addr } => {
            let lookup = Lookup { service, features, keys, request, json };
            runtime()?.block_on(get(&client, client_addr(addr, &config), lookup))
        }
        Command::Eval { service, input, out, defs } => {
            eval(&defs.unwrap_or(config.server.definitions_dir), &service, &input, &out)
        }
        Command::FeastRegistry { out, url, project, defs } => {
            let url = match url {
                Some(url) => url,
                None => match config.http_listen()? {
                    Some(addr) => format!("http://{addr}"),
                    None => anyhow::bail!(
                        "server.http_listen is off: set it (Feast's SDK reads over HTTP) or pass --url"
                    ),
                },
            };
            feast_registry(&defs.unwrap_or(config.server.definitions_dir), &out, &url, &project)
        }
        Command::Apply { dir, dry_run, addr } => {
            runtime()?.block_on(apply(&client, client_addr(addr, &config), dir, dry_run))
        }
        Command::Key { action } => key(action),
        Command::BenchIngest(args) => crate::bench::ingest::run(args),
        Command::Produce(args) => {
            let addr = client_addr(args.addr.clone(), &config);
            crate::bench::stream::run(args, &config, addr, &client)
        }
        Command::Bench(args) => {
            let addr = client_addr(args.addr.clone(), &config);
            crate::bench::run(args, addr, &client)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let listen = config.server.listen;
    let engine = fstore::engine::Engine::open(config)?;
    runtime()?.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        fstore::serve::run(fstore::runtime::Runtime::start(engine), listener, shutdown_signal()).await
    })?;
    tracing::info!("Stopped.");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("Shutting down: finishing requests in flight.");
}

fn check(dir: PathBuf) -> anyhow::Result<ExitCode> {
    let files = fstore_dsl::load_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    if files.is_empty() {
        bail!("no .fdl files in {}", dir.display());
    }
    match fstore_dsl::check(&files) {
        Ok(plan) => {
            let features: usize = plan.views.iter().map(|v| v.feature_names().len()).sum();
            println!(
                "ok: {} file(s), {} entities, {} sources, {} views ({features} features), {} services",
                files.len(),
                plan.entities.len(),
                plan.sources.len(),
                plan.views.len(),
                plan.services.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            eprint!("{}", fstore_dsl::render(&diags, &files));
            eprintln!("{} error(s) in {}", diags.len(), dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `--addr`, or else the configured listen address (loopback for an
/// unspecified one).
fn client_addr(addr: Option<String>, config: &Config) -> String {
    addr.unwrap_or_else(|| {
        let mut listen = config.server.listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        listen.to_string()
    })
}

async fn apply(
    client: &fstore::client::ClientOptions,
    addr: String,
    dir: Option<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let files = match &dir {
        Some(dir) => {
            let files = fstore_dsl::load_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if files.is_empty() {
                bail!("no .fdl files in {}", dir.display());
            }
            files
                .into_iter()
                .map(|f| proto::DefinitionFile {
                    name: std::path::Path::new(&f.name)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or(f.name),
                    text: f.text,
                })
                .collect()
        }
        None => Vec::new(),
    };
    let mut admin = client.admin(client.connect(&addr).await?)?;
    let report = match admin.apply_definitions(proto::ApplyDefinitionsRequest { files, dry_run }).await {
        Ok(r) => r.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            eprintln!("refused; the server keeps its current definitions.\n{}", status.message());
            return Ok(ExitCode::FAILURE);
        }
        Err(status) => bail!("{}: {}", describe_code(status.code()), status.message()),
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["view", "change", "data"]);
    for v in &report.views {
        table.add_row([v.view.as_str(), v.change.as_str(), v.data.as_str()]);
    }
    println!("{table}");
    if !report.services.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(["service", "change", "detail"]);
        for s in &report.services {
            table.add_row([s.service.as_str(), s.change.as_str(), s.detail.as_str()]);
        }
        println!("{table}");
    }
    for note in &report.notes {
        println!("{note}");
    }
    println!("{}", if report.applied { "applied" } else { "not applied" });
    Ok(ExitCode::SUCCESS)
}

fn key(action: KeyAction) -> anyhow::Result<ExitCode> {
    match action {
        KeyAction::New { name, services, push, admin } => {
            if services.is_empty() && push.is_empty() && !admin {
                bail!(
                    "the key would grant nothing: give --services NAME,..., --push SOURCE,... and/or --admin"
                );
            }
            let key = fstore::serve::auth::new_key()?;
            let services: Vec<String> = services.iter().map(|s| format!("{s:?}")).collect();
            let push: Vec<String> = push.iter().map(|s| format!("{s:?}")).collect();
            eprintln!("The key (give it to the client; it is not stored anywhere):");
            println!("{key}");
            eprintln!("\nThe server's config entry (fstore.toml):");
            eprintln!(
                "[[auth.keys]]\nname = {name:?}\nsha256 = \"{}\"\nservices = [{}]\npush = [{}]\nadmin = {admin}",
                fstore::serve::auth::digest_hex(&key),
                services.join(", "),
                push.join(", ")
            );
        }
        KeyAction::Hash => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key).context("reading the key from standard input")?;
            println!("{}", fstore::serve::auth::digest_hex(key.trim()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ingest(
    client: &fstore::client::ClientOptions,
    addr: String,
    source: String,
    replace: bool,
    paths: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let channel = client.connect(&addr).await?;
    // The server reads the files: send absolute paths so that a relative path
    // means what it means here, in the caller's directory.
    let paths = paths
        .into_iter()
        .map(|p| match std::path::absolute(&p) {
            Ok(abs) => abs.display().to_string(),
            Err(_) => p,
        })
        .collect();
    let mode = if replace {
        proto::ingest_parquet_request::Mode::Replace
    } else {
        proto::ingest_parquet_request::Mode::Upsert
    };
    let request = proto::IngestParquetRequest { source: source.clone(), paths, mode: mode as i32 };
    let mut admin = client.admin(channel.clone())?;
    let call = tokio::spawn(async move { admin.ingest_parquet(request).await });

    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("loading {source}"));
    let mut status = client.admin(channel)?;
    while !call.is_finished() {
        if let Ok(reply) = status.get_status(proto::GetStatusRequest {}).await {
            if let Some((read, total)) = progress_of(&reply.into_inner().json, &source) {
                bar.set_length(total);
                bar.set_position(read);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
    let report = match call.await? {
        Ok(r) => r.into_inner(),
        Err(status) => bail!("{}: {}", describe_code(status.code()), status.message()),
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["source", "rows read", "rows written", "rows rejected", "seconds"]);
    table.add_row([
        source,
        report.rows_read.to_string(),
        report.rows_written.to_string(),
        report.rows_rejected.to_string(),
        format!("{:.3}", report.duration_micros as f64 / 1e6),
    ]);
    println!("{table}");
    if report.rows_too_late > 0 {
        println!(
            "{} events were older than every window of an aggregating view: kept only in lifetime aggregates",
            report.rows_too_late
        );
    }
    for e in &report.sample_errors {
        println!("rejected: {e}");
    }
    if report.rows_rejected as usize > report.sample_errors.len() {
        println!("... and {} more rejected rows", report.rows_rejected as usize - report.sample_errors.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_of(status_json: &str, source: &str) -> Option<(u64, u64)> {
    let doc: serde_json::Value = serde_json::from_str(status_json).ok()?;
    let s = doc["sources"].as_array()?.iter().find(|s| s["name"] == source)?;
    let p = &s["ingest_in_progress"];
    Some((p["rows_read"].as_u64()?, p["rows_total"].as_u64()?))
}

fn describe_code(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::FailedPrecondition => "not possible",
        tonic::Code::Unavailable => "server unavailable",
        _ => "server error",
    }
}

fn eval(
    defs: &std::path::Path,
    service: &str,
    input: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let registry = match fstore::registry::Registry::load(defs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = fstore::offline::eval_parquet(registry.plan(), service, input, out)?;
    for (column, count, first) in &report.misfits {
        eprintln!(
            "{count} value(s) of column `{column}` did not fit its type and were read as null ({first})"
        );
    }
    println!(
        "{} rows: computed {} into {}",
        report.rows,
        report.derived.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn feast_registry(
    defs: &std::path::Path,
    out: &std::path::Path,
    url: &str,
    project: &str,
) -> anyhow::Result<ExitCode> {
    let registry = match fstore::registry::Registry::load(defs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let repo = fstore::feast_repo::generate(registry.plan(), project, url)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in
        [("feature_store.yaml", &repo.feature_store_yaml), ("fstore_features.py", &repo.definitions_py)]
    {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    for note in &repo.notes {
        eprintln!("note: {note}");
    }
    println!("Wrote a Feast repository to {}; next: cd {} && feast apply", out.display(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// What `fstore get` asks for.
struct Lookup {
    service: Option<String>,
    features: Vec<String>,
    keys: Vec<String>,
    request: Vec<String>,
    json: bool,
}

async fn get(
    client: &fstore::client::ClientOptions,
    addr: String,
    lookup: Lookup,
) -> anyhow::Result<ExitCode> {
    let Lookup { service, features, keys, request, json } = lookup;
    let mut serving = client.serving(client.connect(&addr).await?)?;
    // Key and request field types come from the service's description; with
    // bare feature references, a value that parses as an integer is sent as
    // int64.
    let mut key_types: HashMap<String, String> = HashMap::new();
    let mut request_types: HashMap<String, String> = HashMap::new();
    if let Some(name) = &service {
        let list = serving.list_feature_services(proto::ListFeatureServicesRequest {}).await?.into_inner();
        if let Some(info) = list.services.iter().find(|s| &s.name == name) {
            key_types = info.key_types.iter().map(|k| (k.name.clone(), k.r#type.clone())).collect();
            request_types = info.request_fields.iter().map(|k| (k.name.clone(), k.r#type.clone())).collect();
        }
    }
    let mut request_data = HashMap::new();
    for spec in &request {
        let name = spec.split_once('=').map_or(spec.as_str(), |(n, _)| n);
        let Some(ty) = request_types.get(name) else {
            let mut known: Vec<&str> = request_types.keys().map(String::as_str).collect();
            known.sort_unstable();
            bail!(
                "--request {spec}: the service has no request field `{name}`; its request fields: {}",
                known.join(", ")
            );
        };
        request_data.insert(
            name.to_string(),
            proto::Values { values: vec![crate::typed_arg::request_value(spec, ty)?] },
        );
    }
    let mut entities = HashMap::new();
    let mut key_order = Vec::new();
    for spec in &keys {
        let Some((name, values)) = spec.split_once('=') else {
            bail!("--key {spec}: expected NAME=VALUE[,VALUE...], e.g. --key user_id=42,43");
        };
        let as_string = key_types.get(name).is_some_and(|t| t == "string");
        let values = values
            .split(',')
            .map(|v| proto::Value {
                kind: Some(match v.parse::<i64>() {
                    Ok(i) if !as_string => Kind::Int64Value(i),
                    _ => Kind::StringValue(v.to_string()),
                }),
            })
            .collect();
        key_order.push(name.to_string());
        entities.insert(name.to_string(), proto::Values { values });
    }
    let selector = match service {
        Some(s) => proto::get_online_features_request::Selector::FeatureService(s),
        None => proto::get_online_features_request::Selector::Features(proto::FeatureRefs { refs: features }),
    };
    let request = proto::GetOnlineFeaturesRequest {
        selector: Some(selector),
        entities: entities.clone(),
        request_data,
        ..Default::default()
    };
    let response = match serving.get_online_features(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => bail!("{}: {}", describe_code(status.code()), status.message()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&response_json(&response))?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header: Vec<String> = key_order.clone();
    header.extend(["feature".into(), "value".into(), "status".into(), "event time".into()]);
    table.set_header(header);
    let rows = entities.values().next().map_or(0, |v| v.values.len());
    for row in 0..rows {
        for column in &response.features {
            let mut cells: Vec<String> =
                key_order.iter().map(|k| format_value(&entities[k].values[row])).collect();
            cells.push(column.name.clone());
            cells.push(format_value(&column.values[row]));
            cells.push(
                proto::FieldStatus::try_from(column.statuses[row])
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_else(|_| column.statuses[row].to_string()),
            );
            cells.push(format_time(column.event_timestamps_micros[row]));
            table.add_row(cells);
        }
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

fn format_value(v: &proto::Value) -> String {
    fn list<T: std::fmt::Debug>(values: &[T]) -> String {
        if values.len() <= 6 {
            format!("{values:?}")
        } else {
            format!("{:?} … ({} values)", &values[..4], values.len())
        }
    }
    match &v.kind {
        None => "null".into(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::Int64Value(i)) => i.to_string(),
        Some(Kind::Float32Value(x)) => x.to_string(),
        Some(Kind::Float64Value(x)) => x.to_string(),
        Some(Kind::StringValue(s)) => s.clone(),
        Some(Kind::BytesValue(b)) => {
            format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        Some(Kind::TimestampMicros(t)) => format_time(*t),
        Some(Kind::Float32List(l)) => list(&l.values),
        Some(Kind::Float64List(l)) => list(&l.values),
        Some(Kind::Int64List(l)) => list(&l.values),
        Some(Kind::StringList(l)) => list(&l.values),
    }
}

fn format_time(micros: i64) -> String {
    if micros == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

fn response_json(r: &proto::GetOnlineFeaturesResponse) -> serde_json::Value {
    let value = |v: &proto::Value| -> serde_json::Value {
        match &v.kind {
            None => serde_json::Value::Null,
            Some(Kind::BoolValue(b)) => (*b).into(),
            Some(Kind::Int64Value(i)) => (*i).into(),
            Some(Kind::Float32Value(x)) => (*x as f64).into(),
            Some(Kind::Float64Value(x)) => (*x).into(),
            Some(Kind::StringValue(s)) => s.clone().into(),
            Some(Kind::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect::<String>().into(),
            Some(Kind::TimestampMicros(t)) => (*t).into(),
            Some(Kind::Float32List(l)) => l.values.iter().map(|x| *x as f64).collect::<Vec<_>>().into(),
            Some(Kind::Float64List(l)) => l.values.clone().into(),
            Some(Kind::Int64List(l)) => l.values.clone().into(),
            Some(Kind::StringList(l)) => l.values.clone().into(),
        }
    };
    serde_json::Value::Array(
        r.features
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "values": c.values.iter().map(value).collect::<Vec<_>>(),
                    "statuses": c.statuses.iter().map(|s| proto::FieldStatus::try_from(*s).map(|s| s.as_str_name()).unwrap_or("INVALID")).collect::<Vec<_>>(),
                    "event_timestamps_micros": c.event_timestamps_micros,
                })
            })
            .collect(),
    )
}
