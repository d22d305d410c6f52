//! Test helpers: a real `fstore serve` child process on a free loopback
//! port, with its own definitions and data directories; a gRPC client; and
//! Parquet writing. When a test fails, the server's log is printed.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use fstore::proto::{
    self, feature_admin_client::FeatureAdminClient, feature_serving_client::FeatureServingClient, value::Kind,
};
use parquet::arrow::ArrowWriter;
use tonic::transport::Channel;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fstore")
}

/// A running `fstore serve`. Killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub metrics_port: u16,
    /// Feast's HTTP API (`server.http_listen`).
    pub http_port: u16,
    pub defs: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
    /// With TLS on: the CA (PEM) to trust, and a client identity if needed.
    pub tls: Option<ClientTls>,
    _dir: Arc<tempfile::TempDir>,
}

#[derive(Clone)]
pub struct ClientTls {
    pub ca_pem: String,
    pub identity: Option<(String, String)>,
}

pub struct ServerBuilder {
    dir: Arc<tempfile::TempDir>,
    defs: PathBuf,
    env: Vec<(String, String)>,
    tls: Option<ClientTls>,
}

impl ServerBuilder {
    /// A fresh root with a `defs/` folder holding `files` (name, text).
    pub fn new(files: &[(&str, &str)]) -> ServerBuilder {
        let dir = tempfile::tempdir().expect("a temp dir");
        let defs = dir.path().join("defs");
        std::fs::create_dir_all(&defs).unwrap();
        for (name, text) in files {
            std::fs::write(defs.join(name), text).unwrap();
        }
        ServerBuilder { dir: Arc::new(dir), defs, env: test_env(), tls: None }
    }

    /// Use an existing definitions directory (e.g. the repository's feature_defs).
    pub fn with_defs_dir(defs: &Path) -> ServerBuilder {
        let dir = tempfile::tempdir().expect("a temp dir");
        ServerBuilder { dir: Arc::new(dir), defs: defs.to_path_buf(), env: test_env(), tls: None }
    }

    /// The server speaks TLS; the test's clients trust `tls.ca_pem`.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn start(self) -> Server {
        let mut server = Server {
            child: None,
            port: 0,
            metrics_port: 0,
            http_port: 0,
            defs: self.defs,
            data: self.dir.path().join("data"),
            log: self.dir.path().join("server.log"),
            env: self.env,
            tls: self.tls,
            _dir: self.dir,
        };
        server.restart();
        server
    }
}

/// Settings every test server starts with; a test's own `env` overrides them.
fn test_env() -> Vec<(String, String)> {
    // Shedding is tested on its own (tests/it/overload.rs). Elsewhere a test
    // machine busy with parallel tests must not turn slow lookups into
    // RESOURCE_EXHAUSTED.
    //
    // The row cache is off by default (BENCHMARKS.md says why). Test servers
    // run with it on, so that every test that reads after a write (upserts,
    // streams, crashes, applies) also proves it never serves a stale row.
    vec![
        ("FSTORE_SERVER__MAX_QUEUE_MS".into(), "5000".into()),
        ("FSTORE_STORE__ROW_CACHE_MB".into(), "16".into()),
    ]
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// (Re)start the process on a new free port with the same directories.
    pub fn restart(&mut self) {
        self.kill();
        self.port = free_port();
        self.metrics_port = free_port();
        self.http_port = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .current_dir(self.data.parent().unwrap())
            .env("FSTORE_SERVER__LISTEN", format!("127.0.0.1:{}", self.port))
            .env("FSTORE_SERVER__METRICS_LISTEN", format!("127.0.0.1:{}", self.metrics_port))
            .env("FSTORE_SERVER__HTTP_LISTEN", format!("127.0.0.1:{}", self.http_port))
            .env("FSTORE_SERVER__DEFINITIONS_DIR", &self.defs)
            .env("FSTORE_SERVER__DATA_DIR", &self.data)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("starting fstore serve"));
        self.wait_ready();
    }

    pub fn addr(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// A channel to the server, over TLS when the server speaks it.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let mut endpoint = Channel::from_shared(self.addr()).unwrap();
        if let Some(tls) = &self.tls {
            let mut config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(config)?;
        }
        endpoint.connect().await
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Wait for the health service to report SERVING (initial loads done).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let rt = rt();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("fstore serve exited with {status} before it was ready; log:\n{}", self.log_text());
            }
            let ready = rt.block_on(async {
                let Ok(channel) = self.channel().await else { return false };
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let reply = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
                matches!(reply, Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            });
            if ready {
                return;
            }
            if Instant::now() > deadline {
                panic!("fstore serve was not ready within 60 s; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as an orchestrator stopping the server would; waits up to
    /// `within` for the process to exit and returns its status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "could not send SIGTERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fstore serve did not exit within {within:?} of SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Run the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--addr").arg(self.addr()).env_remove("FSTORE_SERVER__LISTEN");
        cmd.output().expect("running the fstore CLI")
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    pub async fn serving(&self) -> FeatureServingClient<Channel> {
        FeatureServingClient::new(self.channel().await.unwrap())
    }

    pub async fn admin(&self) -> FeatureAdminClient<Channel> {
        FeatureAdminClient::new(self.channel().await.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- fstore serve log ({}) ----\n{}", self.log.display(), self.log_text());
        }
        self.kill();
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Write one Parquet file with the given columns.
pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Write events (user_id, v, ts) as one Parquet file: int64 `user_id` and
/// `v`, and `ts` a UTC timestamp in microseconds.
pub fn write_user_events(path: &Path, events: &[(i64, i64, i64)]) {
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0)))),
        ("v", Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.1)))),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.2)).with_timezone("UTC"),
            ),
        ),
    ];
    write_parquet(path, columns);
}

/// `message` with `authorization: Bearer <key>`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

pub fn int(v: i64) -> proto::Value {
    proto::Value { kind: Some(Kind::Int64Value(v)) }
}

pub fn string(v: &str) -> proto::Value {
    proto::Value { kind: Some(Kind::StringValue(v.into())) }
}

pub fn request_service(
    service: &str,
    keys: Vec<(&str, Vec<proto::Value>)>,
) -> proto::GetOnlineFeaturesRequest {
    proto::GetOnlineFeaturesRequest {
        selector: Some(proto::get_online_features_request::Selector::FeatureService(service.into())),
        entities: keys.into_iter().map(|(k, v)| (k.to_string(), proto::Values { values: v })).collect(),
        ..Default::default()
    }
}

pub fn request_refs(refs: &[&str], keys: Vec<(&str, Vec<proto::Value>)>) -> proto::GetOnlineFeaturesRequest {
    proto::GetOnlineFeaturesRequest {
        selector: Some(proto::get_online_features_request::Selector::Features(proto::FeatureRefs {
            refs: refs.iter().map(|r| r.to_string()).collect(),
        })),
        entities: keys.into_iter().map(|(k, v)| (k.to_string(), proto::Values { values: v })).collect(),
        ..Default::default()
    }
}

/// Column `name` of a response.
pub fn column<'a>(r: &'a proto::GetOnlineFeaturesResponse, name: &str) -> &'a proto::FeatureColumn {
    r.features.iter().find(|c| c.name == name).unwrap_or_else(|| {
        panic!("no column {name} in response: {:?}", r.features.iter().map(|c| &c.name).collect::<Vec<_>>())
    })
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` on a new connection; the
/// status and body of the answer. A write the server cut short (it refused
/// a body before reading all of it) still reads the answer.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to the HTTP port");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, body.to_string())
}
