//! Configuration: one struct tree, layered.
//!
//! Precedence, lowest to highest:
//! 1. the defaults embedded in the binary (`src/default.toml`);
//! 2. the config file: `--config PATH`, or `fstore.toml` in the working
//!    directory when it exists;
//! 3. environment variables `FSTORE_<SECTION>__<KEY>`, e.g.
//!    `FSTORE_SERVER__LISTEN=0.0.0.0:6566`. A value is read as TOML when it
//!    parses as such (numbers, booleans) and as a string otherwise.
//!
//! Unknown keys are an error at every layer, so a typo never goes unnoticed.
//! Variables named `FSTORE_TEST_*` belong to the test suite, and
//! `FSTORE_API_KEY` to the CLI's client commands; both are ignored here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub(crate) ingest: IngestConfig,
    pub kafka: KafkaConfig,
    /// Per feature service overrides, by service name.
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, ServiceConfig>,
    #[serde(default)]
    pub(crate) auth: AuthConfig,
    #[serde(default)]
    pub(crate) tls: TlsConfig,
}

impl Config {
    /// `server.http_listen` as an address; `None` when it is empty (off).
    pub fn http_listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        let text = self.server.http_listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).with_context(|| {
            format!(
                "server.http_listen = {text:?} is not an address such as 127.0.0.1:6567 (or empty, for off)"
            )
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the gRPC server listens on; also where the CLI's client
    /// commands connect by default.
    pub listen: SocketAddr,
    /// Address of the HTTP endpoint serving Prometheus metrics at `/metrics`.
    pub metrics_listen: SocketAddr,
    /// Address of the HTTP endpoint serving Feast's feature server API
    /// (`/get-online-features`, `/push`, ...; docs/feast.md); empty: off.
    /// The same API keys as the gRPC port; bodies up to `max_request_bytes`.
    pub http_listen: String,
    /// Directory of `*.fdl` definition files. Relative paths in sources are
    /// relative to it.
    pub definitions_dir: PathBuf,
    /// RocksDB lives here; the server owns it exclusively.
    pub data_dir: PathBuf,
    /// At start, load every parquet source whose views hold no data yet from
    /// the source's own `path` (a fresh store, or a view whose definition
    /// changed).
    pub(crate) load_sources_on_start: bool,
    /// Largest number of entity rows one GetOnlineFeatures request may ask for.
    pub(crate) max_rows_per_request: usize,
    /// Largest gRPC message the server decodes, in bytes; a larger one is
    /// refused before it is read into a request.
    pub max_request_bytes: usize,
    /// Lookups accepted and not yet answered, counted from the moment a
    /// request arrives. One more is refused at once with RESOURCE_EXHAUSTED:
    /// this bounds the memory that queued requests hold (at most
    /// `max_in_flight` x `max_request_bytes`).
    pub(crate) max_in_flight: usize,
    /// A lookup that waited longer than this between arrival and its turn is
    /// refused with RESOURCE_EXHAUSTED instead of served late: under
    /// overload, queueing would only make every answer late. Milliseconds;
    /// 0 turns it off. Per service in `[services.NAME]`.
    pub max_queue_ms: u64,
    /// On SIGTERM, how long requests in flight may take to finish before the
    /// server stops anyway, in milliseconds.
    pub shutdown_grace_ms: u64,
}

/// Overrides for one feature service.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub max_queue_ms: Option<u64>,
    pub max_rows_per_request: Option<usize>,
    /// Lookups of this service being served or waiting for a lookup slot,
    /// counted from the moment the request is decoded; one more is refused
    /// with RESOURCE_EXHAUSTED, so one busy service cannot take every slot.
    pub max_in_flight: Option<usize>,
}

/// API keys; none configured means no authentication.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub(crate) keys: Vec<ApiKeyConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key: named in logs, never the key itself.
    pub(crate) name: String,
    /// Hex SHA-256 of the key (`fstore key hash` prints it). The key itself
    /// is never stored.
    pub(crate) sha256: String,
    /// Feature services the key may read; `"*"` is every service.
    #[serde(default)]
    pub(crate) services: Vec<String>,
    /// Sources the key may push events to (`FeaturePush.PushEvents`); `"*"`
    /// is every source. An admin key may push to every source.
    #[serde(default)]
    pub(crate) push: Vec<String>,
    /// Whether the key may ingest, apply definitions and read the status.
    #[serde(default)]
    pub(crate) admin: bool,
}

/// TLS for the gRPC listener, from PEM files; off unless `cert` is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    /// CA that signs client certificates; when set, every client must
    /// present one.
    pub(crate) client_ca: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// RocksDB block cache, shared by all column families, in MiB.
    pub(crate) block_cache_mb: usize,
    /// RocksDB memtable size per column family, in MiB.
    pub(crate) write_buffer_mb: usize,
    /// Cache of decoded rows in front of RocksDB, in MiB; 0 turns it off.
    /// Every write invalidates the rows it touches.
    pub(crate) row_cache_mb: usize,
    /// Compression of stored rows in the bottom level, where loaded
    /// snapshots settle: `none`, `lz4` or `zstd`. A lookup that misses the
    /// block cache decompresses a block, so this trades disk for tail latency.
    pub(crate) compression: Compression,
    /// Read the serving generations into the block cache before reporting
    /// SERVING, up to three quarters of `block_cache_mb`.
    pub warm_cache_on_start: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Rows per record batch read from Parquet: bounds ingest memory.
    pub(crate) batch_rows: usize,
    /// How many rejected-row reasons an ingest report carries.
    pub max_sample_errors: usize,
    /// Memory a REPLACE load sorts rows in before it spills a sorted run to
    /// disk, in MiB. A load that fits is written straight into SST files.
    pub sort_buffer_mb: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`; empty means no Kafka: stream sources stay
    /// idle (logged once at start) and everything else works.
    pub brokers: String,
    /// Consumer group of every stream source. Servers sharing a group share
    /// the partitions of each topic.
    pub group_id: String,
    /// Most messages applied in one atomic store write.
    pub(crate) batch_max: usize,
    /// Longest wait for more messages before a partial batch is written, in
    /// milliseconds: the freshness cost of batching.
    pub linger_ms: u64,
    /// How long the group waits for a member that stopped heartbeating before
    /// its partitions go to the others, in milliseconds (librdkafka's
    /// `session.timeout.ms`; heartbeats are sent every fifth of it). 10 s, not
    /// librdkafka's 45 s: a killed server's partitions move sooner, and a
    /// broker that holds the first join of a group for half the session
    /// timeout (BENCHMARKS.md, "Streams") hands partitions out sooner.
    pub(crate) session_timeout_ms: u64,
    /// Static group membership (Kafka's `group.instance.id`, one per stream
    /// source: `<instance_id>-<source>`). Empty: off. Set it to a name that
    /// is stable across restarts and unique in the group (a StatefulSet pod
    /// name, a host name), and a restarted server gets its partitions back
    /// without a rebalance; on a stop it does not leave the group, so its
    /// partitions wait for it up to `session_timeout_ms`.
    pub(crate) instance_id: String,
    /// Any librdkafka property, passed through to every consumer and producer
    /// (for example `"security.protocol" = "SASL_SSL"`, `"sasl.mechanism"`,
    /// `"ssl.ca.location"`). They override fstore's own settings.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Self::from_layers(None, std::iter::empty()).expect("the embedded defaults are valid")
    }

    /// Defaults, then `file` (or `./fstore.toml` if present), then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("fstore.toml")).filter(|p| p.exists()),
        };
        let text = match &file {
            Some(path) => Some((
                path.clone(),
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?,
            )),
            None => None,
        };
        Self::from_layers(text.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), std::env::vars())
    }

    fn from_layers(
        file: Option<(&Path, &str)>,
        env: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut merged: toml::Table = DEFAULTS.parse().context("parsing embedded defaults")?;
        if let Some((path, text)) = file {
            let table: toml::Table =
                text.parse().with_context(|| format!("parsing config file {}", path.display()))?;
            merge(&mut merged, table);
        }
        let mut overrides = toml::Table::new();
        // Named in errors, so that a bad key can be traced to its layer.
        let mut layers = vec!["the embedded defaults".to_string()];
        if let Some((path, _)) = file {
            layers.push(path.display().to_string());
        }
        let mut variables = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("FSTORE_") else { continue };
            // The test suite's variables, and the CLI's API key (a client
            // setting, not the server's).
            if rest.starts_with("TEST_") || rest == "API_KEY" {
                continue;
            }
            variables.push(name.clone());
            let Some((section, key)) = rest.split_once("__") else {
                bail!("environment variable {name}: expected FSTORE_<SECTION>__<KEY>, e.g. FSTORE_SERVER__LISTEN");
            };
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            overrides
                .entry(section.to_ascii_lowercase())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .context("environment override of a non-table")?
                .insert(key.to_ascii_lowercase(), parsed);
        }
        merge(&mut merged, overrides);
        if !variables.is_empty() {
            layers.push(format!("environment ({})", variables.join(", ")));
        }
        let config: Config = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("invalid configuration (from {}): {}", layers.join(", then "), e.message())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The row limit of a request for `service` (None: by feature
    /// references), and the service whose override sets it, if one does.
    pub fn max_rows_per_request<'a>(&self, service: Option<&'a str>) -> (usize, Option<&'a str>) {
        match service.and_then(|s| Some((s, self.services.get(s)?.max_rows_per_request?))) {
            Some((name, n)) => (n, Some(name)),
            None => (self.server.max_rows_per_request, None),
        }
    }

    /// How long a lookup for `service` may wait for its turn (zero: no limit).
    pub fn max_queue(&self, service: Option<&str>) -> std::time::Duration {
        let ms = service.and_then(|s| self.services.get(s)?.max_queue_ms).unwrap_or(self.server.max_queue_ms);
        std::time::Duration::from_millis(ms)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.ingest.batch_rows == 0 {
            bail!("ingest.batch_rows must be at least 1");
        }
        if self.kafka.batch_max == 0 {
            bail!("kafka.batch_max must be at least 1");
        }
        if self.kafka.session_timeout_ms < 1000 {
            bail!(
                "kafka.session_timeout_ms is {}: at least 1000 (brokers refuse less than their group.min.session.timeout.ms, 6000 by default)",
                self.kafka.session_timeout_ms
            );
        }
        if let Some(bad) =
            self.kafka.instance_id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
        {
            bail!(
                "kafka.instance_id `{}` has `{bad}`: use letters, digits, `.`, `_` and `-`",
                self.kafka.instance_id
            );
        }
        if self.server.max_rows_per_request == 0 {
            bail!("server.max_rows_per_request must be at least 1");
        }
        if self.server.max_in_flight == 0 {
            bail!("server.max_in_flight must be at least 1");
        }
        for (i, key) in self.auth.keys.iter().enumerate() {
            let hex_ok = key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok {
                bail!(
                    "auth.keys[{i}] ({}): sha256 must be 64 hex digits, as `fstore key hash` prints",
                    key.name
                );
            }
            if key.services.is_empty() && !key.admin {
                bail!("auth.keys[{i}] ({}): grants nothing; set services = [...] or admin = true", key.name);
            }
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("tls.cert and tls.key go together: set both or neither")
            }
            (None, None) if self.tls.client_ca.is_some() => bail!("tls.client_ca needs tls.cert and tls.key"),
            _ => {}
        }
        Ok(())
    }
}

/// Overlay `top` onto `base`, recursing into tables so a file may set one key
/// of a section without repeating the others.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let c = Config::defaults();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:6566");
        assert!(c.server.load_sources_on_start);
    }

    #[test]
    fn file_then_env_override_in_order() {
        let file = "[server]\nlisten = \"127.0.0.1:7000\"\ndata_dir = \"/tmp/x\"\n";
        let c = Config::from_layers(
            Some((Path::new("fstore.toml"), file)),
            env(&[("FSTORE_SERVER__LISTEN", "127.0.0.1:7001"), ("FSTORE_INGEST__BATCH_ROWS", "100")]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 7001);
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.ingest.batch_rows, 100);
        assert_eq!(c.store.block_cache_mb, 1024, "untouched keys keep their defaults");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_layers(Some((Path::new("f.toml"), "[server]\nlisten_addr = 1\n")), env(&[]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("listen_addr"), "{err:#}");
        assert!(format!("{err:#}").contains("f.toml"), "the error names the file: {err:#}");
        let err = Config::from_layers(None, env(&[("FSTORE_STORE__BLOCK_CACHE", "1")])).unwrap_err();
        assert!(format!("{err:#}").contains("block_cache"), "{err:#}");
        let err = Config::from_layers(None, env(&[("FSTORE_LISTEN", "x")])).unwrap_err();
        assert!(format!("{err:#}").contains("FSTORE_<SECTION>__<KEY>"), "{err:#}");
    }

    #[test]
    fn kafka_properties_pass_through_from_file_and_environment() {
        let file = "[kafka]\nbrokers = \"b:9092\"\n[kafka.properties]\n\"security.protocol\" = \"SSL\"\n";
        let c = Config::from_layers(Some((Path::new("fstore.toml"), file)), env(&[])).unwrap();
        assert_eq!(c.kafka.brokers, "b:9092");
        assert_eq!(c.kafka.properties["security.protocol"], "SSL");
        let c = Config::from_layers(
            None,
            env(&[("FSTORE_KAFKA__PROPERTIES", "{ \"sasl.mechanism\" = \"PLAIN\" }")]),
        )
        .unwrap();
        assert_eq!(c.kafka.properties["sasl.mechanism"], "PLAIN");
        assert_eq!(Config::defaults().kafka.brokers, "", "no Kafka unless configured");
    }

    #[test]
    fn group_settings_are_checked_and_name_the_key() {
        let defaults = Config::defaults().kafka;
        assert_eq!((defaults.session_timeout_ms, defaults.instance_id.as_str()), (10_000, ""));
        let err = |vars: &[(&str, &str)]| format!("{:#}", Config::from_layers(None, env(vars)).unwrap_err());
        let e = err(&[("FSTORE_KAFKA__SESSION_TIMEOUT_MS", "500")]);
        assert!(e.contains("kafka.session_timeout_ms is 500"), "{e}");
        let e = err(&[("FSTORE_KAFKA__INSTANCE_ID", "node 1")]);
        assert!(e.contains("kafka.instance_id `node 1` has ` `"), "{e}");
        let c = Config::from_layers(None, env(&[("FSTORE_KAFKA__INSTANCE_ID", "fstore-0.prod_a")])).unwrap();
        assert_eq!(c.kafka.instance_id, "fstore-0.prod_a");
    }

    #[test]
    fn test_variables_are_ignored() {
        assert!(Config::from_layers(None, env(&[("FSTORE_TEST_KAFKA", "127.0.0.1:9092")])).is_ok());
    }
}
