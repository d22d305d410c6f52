//! The door every gRPC call passes before its message is decoded.
//!
//! It runs on the connection's task the moment a call's headers arrive, so
//! it sees the request before it waits for a worker. For fstore's own
//! services it:
//! - stamps the arrival time and the client's deadline (`grpc-timeout`),
//!   which the handlers use to refuse work that waited too long;
//! - authenticates the caller when API keys are configured
//!   (UNAUTHENTICATED, nothing served);
//! - refuses a lookup at once with RESOURCE_EXHAUSTED when
//!   `server.max_in_flight` lookups are already accepted and unanswered,
//!   so queued requests, and the memory they hold, stay bounded;
//! - refuses a lookup at once while the latest lookups waited longer than
//!   `server.max_queue_ms` for their turn, so that the queue drains instead
//!   of every request in it ageing past the limit (which would serve none).
//!
//! Health checks and reflection pass untouched: a load balancer must be able
//! to ask whether the server is alive whatever the load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;

use super::auth::Keys;

/// When a call arrived, and by when its client wants the answer.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub at: Instant,
    pub deadline: Option<Instant>,
}

impl Arrival {
    pub fn now() -> Arrival {
        Arrival { at: Instant::now(), deadline: None }
    }

    /// The arrival stamped on `request`, or now for a call that came another
    /// way (tests calling a handler directly).
    pub fn of<T>(request: &tonic::Request<T>) -> Arrival {
        request.extensions().get::<Arrival>().copied().unwrap_or_else(Arrival::now)
    }
}

/// Shared by every connection.
pub struct Door {
    keys: Keys,
    max_in_flight: usize,
    /// `server.max_queue_ms` in microseconds (0: off).
    max_queue_micros: u64,
    /// Lookups the server runs at once (one per core): with fewer in
    /// flight, nothing queues, whatever the latest wait was.
    at_once: usize,
    in_flight: AtomicUsize,
    /// The wait of the latest lookup to get its turn, and when it got it
    /// (microseconds since `epoch`): the queue's length as the door sees it.
    last_wait_micros: AtomicU64,
    last_turn_micros: AtomicU64,
    epoch: Instant,
    refused_in_flight: AtomicU64,
    refused_queue: AtomicU64,
    refused_unauthenticated: AtomicU64,
}

impl Door {
    pub fn new(keys: Keys, max_in_flight: usize, max_queue: Duration, at_once: usize) -> Arc<Door> {
        Arc::new(Door {
            keys,
            max_in_flight,
            max_queue_micros: max_queue.as_micros() as u64,
            at_once,
            in_flight: AtomicUsize::new(0),
            last_wait_micros: AtomicU64::new(0),
            last_turn_micros: AtomicU64::new(0),
            epoch: Instant::now(),
            refused_in_flight: AtomicU64::new(0),
            refused_queue: AtomicU64::new(0),
            refused_unauthenticated: AtomicU64::new(0),
        })
    }

    /// A lookup got its turn after waiting `waited`.
    pub fn turn_taken(&self, waited: Duration) {
        self.last_wait_micros.store(waited.as_micros() as u64, Ordering::Relaxed);
        self.last_turn_micros.store(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Whether lookups are waiting longer than the queueing limit: there is
    /// a queue (more lookups in flight than run at once), the latest one to
    /// get its turn waited too long, and that was recently (a queue that has
    /// drained lets no turn be taken, so the verdict expires).
    fn queue_too_long(&self) -> Option<u64> {
        if self.max_queue_micros == 0 || self.in_flight.load(Ordering::Relaxed) < self.at_once {
            return None;
        }
        let waited = self.last_wait_micros.load(Ordering::Relaxed);
        let since = (self.epoch.elapsed().as_micros() as u64)
            .saturating_sub(self.last_turn_micros.load(Ordering::Relaxed));
        (waited > self.max_queue_micros && since < self.max_queue_micros).then_some(waited)
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

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct DoorLayer(pub Arc<Door>);

impl<S> tower::Layer<S> for DoorLayer {
    type Service = DoorService<S>;
    fn layer(&self, inner: S) -> DoorService<S> {
        DoorService { door: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub struct DoorService<S> {
    door: Arc<Door>,
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

const OWN_SERVICES: &str = "/fstore.v1.";
const LOOKUP: &str = "/fstore.v1.FeatureServing/GetOnlineFeatures";

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
        let path = request.uri().path();
        if !path.starts_with(OWN_SERVICES) {
            return Box::pin(inner.call(request));
        }
        let lookup = path == LOOKUP;
        let at = Instant::now();
        let deadline = request.headers().get("grpc-timeout").and_then(parse_grpc_timeout).map(|d| at + d);
        let door = &self.door;
        if door.keys.enabled() {
            match door.keys.authenticate(request.headers().get(http::header::AUTHORIZATION)) {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                }
                Err(why) => {
                    door.refused_unauthenticated.fetch_add(1, Ordering::Relaxed);
                    return refuse(Status::unauthenticated(why));
                }
            }
        }
        if lookup {
            // While lookups wait longer than the limit, refuse new ones at
            // once: cheaper than decoding them only to refuse them later, and
            // it lets the queue drain, so admitted lookups are served in time.
            if let Some(waited) = door.queue_too_long() {
                door.refused_queue.fetch_add(1, Ordering::Relaxed);
                return refuse(Status::resource_exhausted(format!(
                    "server overloaded: lookups are waiting {:.1} ms for their turn, more than {} ms (server.max_queue_ms); retry with backoff",
                    waited as f64 / 1e3,
                    door.max_queue_micros / 1000
                )));
            }
        }
        let ticket = if lookup {
            match door.admit() {
                Some(ticket) => Some(ticket),
                None => {
                    return refuse(Status::resource_exhausted(format!(
                        "server overloaded: {} lookups in flight (server.max_in_flight); retry with backoff",
                        door.max_in_flight
                    )))
                }
            }
        } else {
            None
        };
        request.extensions_mut().insert(Arrival { at, deadline });
        let response = inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(ticket);
            response
        })
    }
}

fn refuse<E: Send + 'static>(status: Status) -> BoxFuture<http::Response<tonic::body::Body>, E> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
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

    #[test]
    fn a_long_queue_closes_the_door_until_turns_are_quick_or_stop() {
        let door = Door::new(Keys::default(), 100, Duration::from_millis(20), 2);
        door.turn_taken(Duration::from_millis(30));
        let first = door.admit().unwrap();
        assert_eq!(
            door.queue_too_long(),
            None,
            "one in flight of two at once: no queue, whatever the last wait"
        );
        let _second = door.admit().unwrap();
        assert_eq!(door.queue_too_long(), Some(30_000));
        drop(first);
        assert_eq!(door.queue_too_long(), None, "the queue drained below what runs at once");
        let _third = door.admit().unwrap();
        door.turn_taken(Duration::from_millis(1));
        assert_eq!(door.queue_too_long(), None);
        door.turn_taken(Duration::from_millis(5));
        assert_eq!(door.queue_too_long(), None);
        door.turn_taken(Duration::from_millis(30));
        assert_eq!(door.queue_too_long(), Some(30_000));
        door.turn_taken(Duration::from_millis(1));
        assert_eq!(door.queue_too_long(), None);
        door.turn_taken(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(door.queue_too_long(), None, "no turn for longer than the limit: the queue has drained");
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
