//! `fstore produce`: send example click events to Kafka, and with
//! `--measure`, the streaming benchmark.
//!
//! Events match the example catalogue's `clicks` source (`uid`, `ts`,
//! `price`, `event`, `item_id`), with event time = send time. The topic is
//! created if it does not exist.
//!
//! With `--measure`, the command also polls the server's GetStatus and
//! reports how fast the server applied the events (from the first applied
//! to the last) and the server's freshness histograms (event time and broker
//! time to servable). Start a fresh server for each measured run: its
//! histograms cover everything since it started.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::sampler::Rng;

#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Kafka brokers (default: kafka.brokers from the config).
    #[arg(long)]
    pub brokers: Option<String>,
    #[arg(long, default_value = "clicks")]
    pub topic: String,
    /// Partitions of the topic, if it has to be created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Events to send; 0 = until stopped.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Events per second; 0 = as fast as the producer goes.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Distinct users (uid 0..users).
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Also measure the server: applied events/s and freshness, via GetStatus.
    #[arg(long)]
    pub measure: bool,
    /// The stream source whose progress to watch with --measure.
    #[arg(long, default_value = "clicks")]
    pub source: String,
    /// Server address for --measure (default: from server.listen).
    #[arg(long)]
    pub addr: Option<String>,
}

pub fn run(
    args: ProduceArgs,
    config: &fstore::config::Config,
    addr: String,
    options: &fstore::client::ClientOptions,
) -> anyhow::Result<ExitCode> {
    let brokers = args.brokers.clone().unwrap_or_else(|| config.kafka.brokers.clone());
    anyhow::ensure!(!brokers.trim().is_empty(), "no brokers: pass --brokers or set kafka.brokers");
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers.trim());
    for (k, v) in &config.kafka.properties {
        client.set(k, v);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(create_topic(&client, &args.topic, args.partitions))?;

    let watcher = args.measure.then(|| {
        let (source, addr) = (args.source.clone(), addr.clone());
        let count = args.count;
        let options = options.clone();
        runtime.spawn(async move { watch(&options, addr, source, count).await })
    });
    let producer: ThreadedProducer<DefaultProducerContext> = client
        .clone()
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the Kafka producer")?;
    let started = Instant::now();
    let mut rng = Rng::new(42);
    let mut payload = String::with_capacity(128);
    let mut sent = 0u64;
    let events = ["view", "view", "view", "click", "purchase"];
    while args.count == 0 || sent < args.count {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / args.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let uid = rng.below(args.users.max(1));
        payload.clear();
        use std::fmt::Write;
        let _ = write!(
            payload,
            r#"{{"uid":{uid},"ts":{},"price":{:.2},"event":"{}","item_id":"item-{}"}}"#,
            fstore::now_micros() / 1000,
            rng.below(10_000) as f64 / 100.0,
            events[rng.below(events.len() as u64) as usize],
            rng.below(5000)
        );
        let key = uid.to_string();
        let mut record = BaseRecord::to(&args.topic).key(key.as_str()).payload(payload.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    // The local queue is full: let deliveries drain.
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(60)).context("delivering the last events")?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sent {sent} events to `{}` in {seconds:.2} s ({:.0} events/s)",
        args.topic,
        sent as f64 / seconds
    );
    if let Some(watcher) = watcher {
        let report = runtime.block_on(watcher)??;
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn create_topic(client: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client.create().context("creating a Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &opts).await.context("creating the topic")? {
        match result {
            Ok(_) => println!("created topic `{topic}` with {partitions} partitions"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("creating topic `{t}`: {e}"),
        }
    }
    Ok(())
}

/// Poll GetStatus until the server has applied `count` events; report the
/// apply rate and the server's freshness figures.
async fn watch(
    client: &fstore::client::ClientOptions,
    addr: String,
    source: String,
    count: u64,
) -> anyhow::Result<String> {
    let mut admin = client.admin(client.connect(&addr).await?)?;
    let mut first: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let json = admin.get_status(fstore::proto::GetStatusRequest {}).await?.into_inner().json;
        let doc: serde_json::Value = serde_json::from_str(&json)?;
        let stream = doc["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == source.as_str()))
            .map(|s| s["stream"].clone())
            .with_context(|| format!("the server has no stream source `{source}`"))?;
        let applied = stream["events"].as_u64().unwrap_or(0);
        if applied > 0 && first.is_none() {
            first = Some((Instant::now(), applied));
        }
        if count > 0 && applied >= count {
            let (t0, n0) = first.expect("set above");
            let seconds = t0.elapsed().as_secs_f64().max(1e-3);
            let fresh = &stream["freshness_ms"];
            return Ok(format!(
                "server applied {} events in {seconds:.2} s after the first: {:.0} events/s\n\
                 freshness, event time to servable: p50 {} ms, p99 {} ms, max {} ms\n\
                 freshness, broker time to servable: p50 {} ms, p99 {} ms, max {} ms",
                applied - n0,
                (applied - n0) as f64 / seconds,
                fresh["event_time"]["p50"],
                fresh["event_time"]["p99"],
                fresh["event_time"]["max"],
                fresh["broker_time"]["p50"],
                fresh["broker_time"]["p99"],
                fresh["broker_time"]["max"],
            ));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server applied only {applied} of {count} events in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
