//! The door every gRPC call passes before its message is decoded.
//!
//! It runs on the connection's task the moment a call's headers arrive, so
//! it sees the request before it waits for a worker. For fstore's own
//! services and Feast's `ServingService` (through [`DoorLayer`]) and for the
//! HTTP API (whose handlers call [`Door::enter`]) it:
//! - stamps the arrival time and the client's deadline (`grpc-timeout`),
//!   which the handlers use to refuse work that waited too long;
//! - authenticates the caller when API keys are configured
//!   (UNAUTHENTICATED, nothing served);
//! - refuses a lookup at once with RESOURCE_EXHAUSTED when
//!   `server.max_in_flight` lookups are already accepted and unanswered,
//!   so queued requests, and the memory they hold, stay bounded;
//! - refuses a lookup at once while the lookups already waiting would keep
//!   a newcomer waiting longer than `server.max_queue_ms` for its turn (from
//!   their number, how long a lookup takes to serve lately, and how many run
//!   at once), so that the queue drains instead of every request in it
//!   ageing past the limit (which would serve none), and the excess is told
//!   at once, where a client can still retry elsewhere.
//!
//! Health checks and reflection pass untouched: a load balancer must be able
//! to ask whether the server is alive whatever the load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::Error;

use super::auth::{Caller, Keys};

/// When a call arrived, and by when its client wants the answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arrival {
    pub(crate) at: Instant,
    pub(crate) deadline: Option<Instant>,
}

impl Arrival {
    pub(crate) fn now() -> Arrival {
        Arrival { at: Instant::now(), deadline: None }
    }

    /// The arrival stamped on `request`, or now for a call that came another
    /// way (tests calling a handler directly).
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Arrival {
        request.extensions().get::<Arrival>().copied().unwrap_or_else(Arrival::now)
    }
}

/// Shared by every connection.
pub struct Door {
    keys: Keys,
    max_in_flight: usize,
    /// `server.max_queue_ms` in microseconds (0: off).
    max_queue_micros: u64,
    /// Lookups the server runs at once (one per core).
    at_once: usize,
    /// Lookups admitted and not yet answered: waiting for their turn, or
    /// being served.
    in_flight: AtomicUsize,
    /// Lookups being served (their turn came and they were not refused).
    running: AtomicUsize,
    /// How long serving a lookup took lately, from its turn to its answer:
    /// an exponentially weighted mean in microseconds (0: none served yet),
    /// and the mean deviation from it (as TCP keeps for round trips).
    service_micros: AtomicU64,
    service_dev_micros: AtomicU64,
    refused_in_flight: AtomicU64,
    refused_queue: AtomicU64,
    refused_unauthenticated: AtomicU64,
}

/// Weight of the newest service time in the running mean: 1/8, so a change
/// of workload shows within a few dozen lookups; and in the mean deviation,
/// 1/4 (TCP's weights for round-trip times, RFC 6298).
const SERVICE_MEAN_SHIFT: u32 = 3;
const SERVICE_DEV_SHIFT: u32 = 2;

impl Door {
    pub fn new(keys: Keys, max_in_flight: usize, max_queue: Duration, at_once: usize) -> Arc<Door> {
        Arc::new(Door {
            keys,
            max_in_flight,
            max_queue_micros: max_queue.as_micros() as u64,
            at_once: at_once.max(1),
            in_flight: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            service_micros: AtomicU64::new(0),
            service_dev_micros: AtomicU64::new(0),
            refused_in_flight: AtomicU64::new(0),
            refused_queue: AtomicU64::new(0),
            refused_unauthenticated: AtomicU64::new(0),
        })
    }

    /// A lookup's turn came and it is served now; the guard marks its end.
    pub fn serving(&self) -> InService<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        InService { door: self, since: Instant::now() }
    }

    /// How long a lookup arriving now could wait for its turn, in
    /// microseconds, from the queue as it is: none while a place is free;
    /// else the lookups waiting ahead of it and itself, each taking a
    /// service time, shared by the `at_once` places. A service time is
    /// counted as the recent mean plus twice the mean deviation, so that a
    /// lookup admitted rarely waits past the limit when service times vary
    /// (as aggregate lookups do, with the keys' activity), and the door
    /// refuses the newcomers the queue would make late rather than admitting
    /// them to be refused at their turn, a queue wait later. For a lone
    /// newcomer behind two busy places of steady service that is half a
    /// service time: more than the mean wait for the first to free (a third).
    fn expected_wait_micros(&self) -> u64 {
        let running = self.running.load(Ordering::Relaxed);
        let waiting = self.in_flight.load(Ordering::Relaxed).saturating_sub(running);
        if running + waiting < self.at_once {
            return 0;
        }
        let service =
            self.service_micros.load(Ordering::Relaxed) + 2 * self.service_dev_micros.load(Ordering::Relaxed);
        (waiting as u64 + 1) * service / self.at_once as u64
    }

    /// Whether a lookup arriving now would wait longer than the queueing
    /// limit: the expected wait, if so.
    fn queue_too_long(&self) -> Option<u64> {
        if self.max_queue_micros == 0 {
            return None;
        }
        let wait = self.expected_wait_micros();
        (wait > self.max_queue_micros).then_some(wait)
    }

    /// Lookups refused at the door because the queue was too long.
    pub fn refused_queue(&self) -> u64 {
        self.refused_queue.load(Ordering::Relaxed)
    }

    /// Lookups accepted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Lookups refused at the door because too many were in flight.
    pub fn refused_in_flight(&self) -> u64 {
        self.refused_in_flight.load(Ordering::Relaxed)
    }

    pub fn refused_unauthenticated(&self) -> u64 {
        self.refused_unauthenticated.load(Ordering::Relaxed)
    }

    pub fn auth_enabled(&self) -> bool {
        self.keys.enabled()
    }

    fn admit(self: &Arc<Door>) -> Option<Ticket> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if before >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.refused_in_flight.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Ticket(self.clone()))
    }
}

/// One admitted lookup; dropping it (answered, failed or cancelled) frees
/// its place.
struct Ticket(Arc<Door>);

/// A lookup being served; dropping it (answered or failed) feeds its time
/// into the door's service-time mean.
pub struct InService<'a> {
    door: &'a Door,
    since: Instant,
}

impl Drop for InService<'_> {
    fn drop(&mut self) {
        let took = self.since.elapsed().as_micros() as i64;
        let door = self.door;
        door.running.fetch_sub(1, Ordering::Relaxed);
        // A racy read-modify-write: two lookups finishing at once may lose
        // one sample, which a running mean does not miss.
        let mean = door.service_micros.load(Ordering::Relaxed) as i64;
        let dev = door.service_dev_micros.load(Ordering::Relaxed) as i64;
        let (mean, dev) = if mean == 0 {
            (took, took / 2)
        } else {
            (
                mean + ((took - mean) >> SERVICE_MEAN_SHIFT),
                dev + (((took - mean).abs() - dev) >> SERVICE_DEV_SHIFT),
            )
        };
        door.service_micros.store(mean.max(1) as u64, Ordering::Relaxed);
        door.service_dev_micros.store(dev.max(0) as u64, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub(crate) struct DoorLayer(pub Arc<Door>);

impl<S> tower::Layer<S> for DoorLayer {
    type Service = DoorService<S>;
    fn layer(&self, inner: S) -> DoorService<S> {
        DoorService { door: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub(crate) struct DoorService<S> {
    door: Arc<Door>,
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Services the door guards: fstore's own and Feast's serving API.
const OWN_SERVICES: [&str; 2] = ["/fstore.v1.", "/feast.serving.ServingService/"];
/// The lookup calls among them.
const LOOKUPS: [&str; 2] =
    ["/fstore.v1.FeatureServing/GetOnlineFeatures", "/feast.serving.ServingService/GetOnlineFeatures"];

impl<S, B> tower::Service<http::Request<B>> for DoorService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone answers this call; the one that was polled ready stays.
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        let Some(call) = Call::of_path(request.uri().path()) else {
            return Box::pin(inner.call(request));
        };
        let at = Instant::now();
        let deadline = request.headers().get("grpc-timeout").and_then(parse_grpc_timeout).map(|d| at + d);
        let entry = match self.door.enter(request.headers(), call, Arrival { at, deadline }) {
            Ok(entry) => entry,
            Err(error) => return refuse(error),
        };
        if let Some(caller) = &entry.caller {
            request.extensions_mut().insert(caller.clone());
        }
        request.extensions_mut().insert(entry.arrival);
        let response = inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(entry);
            response
        })
    }
}

/// What kind of call passes the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// A feature lookup: authenticated, counted and shed under overload.
    Lookup,
    /// Anything else of fstore's APIs: authenticated only.
    Other,
}

impl Call {
    /// The kind of a gRPC call by its path; `None` for the services that
    /// pass untouched (health, reflection).
    fn of_path(path: &str) -> Option<Call> {
        if LOOKUPS.contains(&path) {
            Some(Call::Lookup)
        } else if OWN_SERVICES.iter().any(|prefix| path.starts_with(prefix)) {
            Some(Call::Other)
        } else {
            None
        }
    }
}

/// A call the door let in: who is calling (None: authentication is off),
/// when it arrived, and, for a lookup, its place among those in flight,
/// freed when the entry is dropped.
pub(crate) struct Entry {
    pub(crate) caller: Option<Arc<Caller>>,
    pub(crate) arrival: Arrival,
    _ticket: Option<Ticket>,
}

impl Door {
    /// Let a call in, or say why not: its authorization header is checked
    /// when keys are configured, and a lookup is refused at once while the
    /// server is overloaded. Every protocol's calls pass here (gRPC through
    /// [`DoorLayer`], HTTP from its handlers), so the limits hold for all.
    pub(crate) fn enter(
        self: &Arc<Door>,
        headers: &http::HeaderMap,
        call: Call,
        arrival: Arrival,
    ) -> Result<Entry, Error> {
        let caller = if self.keys.enabled() {
            match self.keys.authenticate(headers.get(http::header::AUTHORIZATION)) {
                Ok(caller) => Some(caller),
                Err(why) => {
                    self.refused_unauthenticated.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::unauthenticated(why));
                }
            }
        } else {
            None
        };
        let ticket = match call {
            Call::Other => None,
            Call::Lookup => {
                // While a new lookup would wait longer than the limit, refuse
                // it at once: cheaper than decoding it only to refuse it at
                // its turn, and it lets the queue drain, so admitted lookups
                // are served in time.
                if let Some(waited) = self.queue_too_long() {
                    self.refused_queue.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::resource_exhausted(format!(
                        "server overloaded: a lookup would wait about {:.1} ms for its turn behind those queued, more than {} ms (server.max_queue_ms); retry with backoff",
                        waited as f64 / 1e3,
                        self.max_queue_micros / 1000
                    )));
                }
                match self.admit() {
                    Some(ticket) => Some(ticket),
                    None => {
                        return Err(Error::resource_exhausted(format!(
                        "server overloaded: {} lookups in flight (server.max_in_flight); retry with backoff",
                        self.max_in_flight
                    )))
                    }
                }
            }
        };
        Ok(Entry { caller, arrival, _ticket: ticket })
    }
}

fn refuse<E: Send + 'static>(error: Error) -> BoxFuture<http::Response<tonic::body::Body>, E> {
    Box::pin(std::future::ready(Ok(tonic::Status::from(error).into_http())))
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        let p = |s: &str| parse_grpc_timeout(&http::HeaderValue::from_str(s).unwrap());
        assert_eq!(p("100m"), Some(Duration::from_millis(100)));
        assert_eq!(p("2S"), Some(Duration::from_secs(2)));
        assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(p("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(p("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(p("m"), None);
        assert_eq!(p("123456789S"), None, "more than 8 digits");
        assert_eq!(p("10x"), None);
        assert_eq!(p("-1S"), None);
    }

    /// Serve `n` lookups taking about `each` so the door learns the service time.
    fn learn(door: &Door, each: Duration) {
        for _ in 0..64 {
            let serving = door.serving();
            std::thread::sleep(each);
            drop(serving);
        }
    }

    #[test]
    fn the_door_closes_when_the_queue_ahead_would_keep_a_newcomer_past_the_limit() {
        // Two lookups at once, each taking about 10 ms (a little more, as
        // sleeps overshoot); a 10 ms limit.
        let door = Door::new(Keys::default(), 100, Duration::from_millis(10), 2);
        assert_eq!(door.queue_too_long(), None, "nothing measured, nothing queued");
        learn(&door, Duration::from_millis(10));
        let mean = door.service_micros.load(Ordering::Relaxed);
        assert!((10_000..14_000).contains(&mean), "service mean {mean} µs");
        // Steady service times: the deviation is small, the service time
        // the door counts is about the mean.
        let s = mean + 2 * door.service_dev_micros.load(Ordering::Relaxed);
        assert!(s < mean + 2_000, "counted service time {s} µs, mean {mean} µs");

        // Both places busy, none waiting: a newcomer waits for the first to
        // free, counted as half a service time: under 10 ms.
        let (a, b) = (door.admit().unwrap(), door.admit().unwrap());
        let (_ra, _rb) = (door.serving(), door.serving());
        let w = door.expected_wait_micros();
        assert_eq!(w, s / 2);
        assert_eq!(door.queue_too_long(), None);
        // One waiting: a whole service time, past the limit.
        let c = door.admit().unwrap();
        let refused = door.queue_too_long().expect("the door closes");
        assert_eq!(refused, s);
        // Ten waiting: five and a half service times.
        let more: Vec<_> = (0..9).map(|_| door.admit().unwrap()).collect();
        assert_eq!(door.expected_wait_micros(), 11 * s / 2);
        // The queue drains (waiters refused at their turn or cancelled).
        drop(more);
        drop(c);
        assert_eq!(door.queue_too_long(), None, "the queue drained");
        drop((a, b));
    }

    #[test]
    fn varying_service_times_close_the_door_sooner() {
        // The same mean, 10 ms; a 15 ms limit; both places busy and one
        // lookup waiting, so a newcomer would wait for two services to end.
        let queue = |door: &Arc<Door>| {
            let tickets: Vec<_> = (0..3).map(|_| door.admit().unwrap()).collect();
            let running = (door.serving(), door.serving());
            let verdict = door.queue_too_long();
            drop(running);
            drop(tickets);
            verdict
        };
        let steady = Door::new(Keys::default(), 100, Duration::from_millis(15), 2);
        learn(&steady, Duration::from_millis(10));
        assert_eq!(queue(&steady), None, "steady: about one service time, 10 ms");
        let varying = Door::new(Keys::default(), 100, Duration::from_millis(15), 2);
        for _ in 0..32 {
            for each in [2, 18] {
                let serving = varying.serving();
                std::thread::sleep(Duration::from_millis(each));
                drop(serving);
            }
        }
        let wait = queue(&varying).expect("the door closes when service times vary");
        assert!(wait > 20_000, "{wait} µs: the mean plus twice the deviation, about 26 ms");
    }

    #[test]
    fn a_free_place_means_no_wait_and_a_zero_limit_never_closes_the_door() {
        let door = Door::new(Keys::default(), 100, Duration::from_millis(1), 2);
        learn(&door, Duration::from_millis(5));
        let _a = door.admit().unwrap();
        let _ra = door.serving();
        assert_eq!(door.expected_wait_micros(), 0, "one of two places is free");
        let off = Door::new(Keys::default(), 100, Duration::ZERO, 1);
        learn(&off, Duration::from_millis(2));
        let _tickets: Vec<_> = (0..50).map(|_| off.admit().unwrap()).collect();
        assert_eq!(off.queue_too_long(), None);
    }

    #[test]
    fn the_door_admits_up_to_the_limit_and_frees_places() {
        let door = Door::new(Keys::default(), 2, Duration::ZERO, 2);
        let a = door.admit().unwrap();
        let _b = door.admit().unwrap();
        assert!(door.admit().is_none());
        assert_eq!(door.refused_in_flight(), 1);
        drop(a);
        assert_eq!(door.in_flight(), 1);
        assert!(door.admit().is_some());
    }
}
