//! A real Kafka-protocol broker for the streaming tests, and a producer.
//!
//! Each test starts its own broker process on a free loopback port (the
//! binary comes from `FSTORE_TEST_BROKER_BIN`, or `scripts/kafka-broker.sh`
//! fetches it) and kills it when done. With `FSTORE_TEST_KAFKA=host:port` the
//! tests use that broker instead, each with topics of its own.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;

use crate::util::{free_port, rt};

/// A message's payload and headers.
pub type Letter = (Vec<u8>, Vec<(String, String)>);

pub struct Broker {
    pub addr: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn broker_bin() -> String {
    if let Ok(bin) = std::env::var("FSTORE_TEST_BROKER_BIN") {
        return bin;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-broker.sh");
    let out = Command::new("bash").arg(script).output().expect("running scripts/kafka-broker.sh");
    assert!(out.status.success(), "scripts/kafka-broker.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("broker.log");
        if let Ok(addr) = std::env::var("FSTORE_TEST_KAFKA") {
            return Broker { addr, child: None, log, _dir: dir };
        }
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(broker_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://fstore/"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the broker");
        let broker = Broker { addr: format!("127.0.0.1:{port}"), child: Some(child), log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&broker.addr).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen; log:\n{}", broker.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        c
    }

    /// A topic with a name no other test uses.
    pub fn create_topic(&self, prefix: &str, partitions: i32) -> String {
        let name = format!("{prefix}-{}-{}", std::process::id(), free_port());
        self.create_topic_named(&name, partitions);
        name
    }

    pub fn create_topic_named(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let result = rt().block_on(admin.create_topics([&topic], &opts)).expect("create_topics");
        for r in result {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    pub fn producer(&self) -> Producer_ {
        let p: ThreadedProducer<DefaultProducerContext> =
            self.config().set("linger.ms", "5").set("acks", "all").create().unwrap();
        Producer_(p)
    }

    /// Every message of `topic` (all partitions) with its headers, reading
    /// until `count` have arrived or 20 s pass.
    pub fn read_all(&self, topic: &str, partitions: i32, count: usize) -> Vec<Letter> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "fstore-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.len() < count && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    }
}

#[allow(non_camel_case_types)]
pub struct Producer_(ThreadedProducer<DefaultProducerContext>);

impl Producer_ {
    pub fn send(&self, topic: &str, partition: i32, key: &str, payload: &[u8]) {
        let mut record = BaseRecord::to(topic).partition(partition).key(key).payload(payload);
        loop {
            match self.0.send(record) {
                Ok(()) => return,
                Err((e, r)) => {
                    // Queue full: let deliveries drain.
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "{e}"
                    );
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    pub fn flush(&self) {
        self.0.flush(Duration::from_secs(30)).expect("flushing the producer");
        assert_eq!(self.0.in_flight_count(), 0);
    }
}

/// Environment for a server consuming from `broker`.
pub fn server_env(broker: &Broker, group: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FSTORE_KAFKA__BROKERS", broker.addr.clone()),
        ("FSTORE_KAFKA__GROUP_ID", group.to_string()),
        // Quick rebalances when a member goes away.
        ("FSTORE_KAFKA__SESSION_TIMEOUT_MS", "6000".to_string()),
        ("RUST_LOG", "info,librdkafka=warn,rdkafka=warn".to_string()),
    ]
}
