//! An HTTP proxy in front of the S3 server that misbehaves on purpose, the way real S3 and
//! S3-compatible gateways do:
//!
//! - [`Behaviour::DropConditionalWrites`]: forwards without `If-None-Match` (a server that
//!   ignores conditional writes, as some older MinIO, Ceph or vendor gateways do);
//! - [`Behaviour::Answer`]: answers every request with one status (an outage);
//! - [`Behaviour::FailPuts`]: answers PUTs of some objects with one status;
//! - [`Behaviour::Faults`]: a seeded [`FaultPlan`] picks requests (by method and object kind)
//!   and injects one [`Fault`] each: `503 SlowDown`, `500`, a connection reset before or after
//!   forwarding, a stall longer than the client's timeout, a truncated GET body, or "store,
//!   then answer 500 / drop the connection" (the ambiguous write). Which request gets which
//!   fault follows from the seed and the request's position, so a failing schedule is replayed
//!   from its seed (exactly, when the client sends its requests one after another).
//!
//! The proxy counts the requests it saw and the faults it injected, per kind, so a test can
//! report them and tell how many attempts a client made.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, CONTENT_LENGTH};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the proxy does with each request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Forward without `If-None-Match`.
    DropConditionalWrites,
    /// Answer with this status and an S3 error body, forwarding nothing.
    Answer(u16),
    /// Answer PUTs whose path contains the text with this status; forward the rest.
    FailPuts(u16, &'static str),
    /// Inject faults into the requests a seeded plan picks; forward the rest.
    Faults(FaultPlan),
}

/// One way a request goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `503 SlowDown`, nothing forwarded (S3's throttling answer).
    SlowDown,
    /// `500 InternalError`, nothing forwarded.
    InternalError,
    /// The connection closes before the request is forwarded.
    ResetBeforeForward,
    /// No answer for [`FaultPlan::stall`] (longer than the client's timeout), then the
    /// connection closes; nothing forwarded.
    Stall,
    /// A GET is forwarded, but the body stops halfway and the connection closes.
    TruncatedBody,
    /// Forwarded and stored, then answered `500 InternalError`.
    StoredThen500,
    /// Forwarded and stored, then the connection closes without an answer.
    StoredThenReset,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 7] = [
        Fault::SlowDown,
        Fault::InternalError,
        Fault::ResetBeforeForward,
        Fault::Stall,
        Fault::TruncatedBody,
        Fault::StoredThen500,
        Fault::StoredThenReset,
    ];
}

/// What kind of object a request is about, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Object {
    /// A Parquet data file.
    Data,
    /// A `_delta_log/NNN.json` commit entry.
    LogEntry,
    /// A checkpoint or `_last_checkpoint`.
    Checkpoint,
    /// Anything else: listings, buckets, lease and journal objects.
    Other,
}

impl Object {
    fn of(path: &str) -> Object {
        if path.contains("checkpoint") {
            Object::Checkpoint
        } else if path.contains("/_delta_log/") && path.ends_with(".json") {
            Object::LogEntry
        } else if path.ends_with(".parquet") {
            Object::Data
        } else {
            Object::Other
        }
    }
}

/// What a request does, from its method and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Get,
    Head,
    List,
    Put,
    Delete,
    /// Other POSTs (multipart uploads, multi-object delete).
    Post,
}

impl Operation {
    fn of(method: &Method, query: &str) -> Operation {
        match *method {
            Method::GET if query.contains("list-type") || query.contains("prefix=") => {
                Operation::List
            }
            Method::GET => Operation::Get,
            Method::HEAD => Operation::Head,
            Method::PUT => Operation::Put,
            Method::DELETE => Operation::Delete,
            Method::POST if query.contains("delete") => Operation::Delete,
            _ => Operation::Post,
        }
    }
}

/// Which requests get faults, and which faults.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// The schedule's seed: the same seed and request order give the same faults.
    pub seed: u64,
    /// Faulted requests per thousand (of those `operations` and `objects` admit).
    pub per_mille: u32,
    /// The faults to choose from (each applicable one equally likely).
    pub kinds: Vec<Fault>,
    /// Only these operations get faults; empty: all.
    pub operations: Vec<Operation>,
    /// Only requests for these objects get faults; empty: all.
    pub objects: Vec<Object>,
    /// How long a [`Fault::Stall`] holds the request; make it longer than the client's
    /// request timeout.
    pub stall: Duration,
}

impl FaultPlan {
    /// Every fault kind on every request, `per_mille` of them, stalls of 3 s.
    pub fn new(seed: u64, per_mille: u32) -> FaultPlan {
        FaultPlan {
            seed,
            per_mille,
            kinds: Fault::ALL.to_vec(),
            operations: Vec::new(),
            objects: Vec::new(),
            stall: Duration::from_secs(3),
        }
    }

    /// Only these fault kinds.
    pub fn kinds(mut self, kinds: &[Fault]) -> FaultPlan {
        self.kinds = kinds.to_vec();
        self
    }

    /// Only requests of these operations.
    pub fn operations(mut self, operations: &[Operation]) -> FaultPlan {
        self.operations = operations.to_vec();
        self
    }

    /// Only requests for these objects.
    pub fn objects(mut self, objects: &[Object]) -> FaultPlan {
        self.objects = objects.to_vec();
        self
    }

    /// The fault for the `n`th request, if the plan picks it.
    fn pick(&self, n: u64, per_mille: u32, operation: Operation, object: Object) -> Option<Fault> {
        if (!self.operations.is_empty() && !self.operations.contains(&operation))
            || (!self.objects.is_empty() && !self.objects.contains(&object))
        {
            return None;
        }
        let draw = splitmix64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if (draw % 1000) as u32 >= per_mille {
            return None;
        }
        let applicable: Vec<Fault> = self
            .kinds
            .iter()
            .copied()
            .filter(|f| *f != Fault::TruncatedBody || operation == Operation::Get)
            .collect();
        if applicable.is_empty() {
            return None;
        }
        Some(applicable[((draw / 1000) % applicable.len() as u64) as usize])
    }
}

/// A well-mixed 64-bit hash (splitmix64's finaliser), for seeded choices without an RNG.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One injected fault, for a test's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub fault: Fault,
    pub operation: Operation,
    pub object: Object,
    pub path: String,
}

/// A running proxy; it stops with the test's runtime.
pub struct S3Proxy {
    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl S3Proxy {
    /// Start on a free loopback port in front of `upstream` (e.g. moto's endpoint).
    pub async fn start(upstream: &str, behaviour: Behaviour) -> S3Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let per_mille = match &behaviour {
            Behaviour::Faults(plan) => plan.per_mille,
            _ => 0,
        };
        let shared = Arc::new(Shared {
            url: upstream.trim_end_matches('/').to_string(),
            behaviour,
            per_mille: AtomicU32::new(per_mille),
            requests: AtomicUsize::new(0),
            injected: Mutex::new(Vec::new()),
            client: reqwest::Client::new(),
        });
        let serving = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { shared.handle(request).await }
                    });
                    // A fault ends the connection with an error on purpose; nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        S3Proxy {
            endpoint: format!("http://{addr}"),
            shared,
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Change the share of faulted requests of a [`Behaviour::Faults`] proxy (0: none).
    pub fn set_per_mille(&self, per_mille: u32) {
        self.shared.per_mille.store(per_mille, Ordering::SeqCst);
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.shared.injected.lock().expect("fault log lock").clone()
    }

    /// Faults injected so far, per kind.
    pub fn injected_by_kind(&self) -> BTreeMap<Fault, usize> {
        let mut counts = BTreeMap::new();
        for injected in self.injected() {
            *counts.entry(injected.fault).or_default() += 1;
        }
        counts
    }
}

struct Shared {
    url: String,
    behaviour: Behaviour,
    per_mille: AtomicU32,
    requests: AtomicUsize,
    injected: Mutex<Vec<Injected>>,
    client: reqwest::Client,
}

/// The connection was dropped on purpose.
#[derive(Debug)]
struct Dropped(Fault);

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection dropped by the test proxy ({:?})", self.0)
    }
}

impl std::error::Error for Dropped {}

type Body = BoxBody<Bytes, std::io::Error>;

/// Headers the proxy sets itself rather than copying.
const HOP_BY_HOP: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, Dropped> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) as u64;
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let operation = Operation::of(request.method(), &query);
        let object = Object::of(&path);
        let fault = match &self.behaviour {
            Behaviour::Answer(code) => return Ok(error_answer(*code)),
            Behaviour::FailPuts(code, part)
                if operation == Operation::Put && path.contains(part) =>
            {
                return Ok(error_answer(*code));
            }
            Behaviour::Faults(plan) => {
                plan.pick(n, self.per_mille.load(Ordering::SeqCst), operation, object)
            }
            _ => None,
        };
        if let Some(fault) = fault {
            self.injected
                .lock()
                .expect("fault log lock")
                .push(Injected {
                    fault,
                    operation,
                    object,
                    path: path.clone(),
                });
        }
        match fault {
            Some(Fault::SlowDown) => return Ok(error_answer(503)),
            Some(Fault::InternalError) => return Ok(error_answer(500)),
            Some(Fault::ResetBeforeForward) => return Err(Dropped(Fault::ResetBeforeForward)),
            Some(Fault::Stall) => {
                if let Behaviour::Faults(plan) = &self.behaviour {
                    tokio::time::sleep(plan.stall).await;
                }
                return Err(Dropped(Fault::Stall));
            }
            _ => {}
        }
        let answer = self.forward(request).await;
        match fault {
            Some(Fault::StoredThen500) => Ok(error_answer(500)),
            Some(Fault::StoredThenReset) => Err(Dropped(Fault::StoredThenReset)),
            Some(Fault::TruncatedBody) => Ok(truncated(answer)),
            _ => Ok(answer.map(|body| Full::new(body).map_err(never).boxed())),
        }
    }

    /// Forward to the upstream server; its whole answer.
    async fn forward(&self, request: Request<Incoming>) -> Response<Bytes> {
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return bare(StatusCode::BAD_REQUEST);
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let mut outgoing = self.client.request(method, format!("{}{path}", self.url));
        let drop_conditions = matches!(self.behaviour, Behaviour::DropConditionalWrites);
        for (name, value) in &parts.headers {
            let conditional = name == HeaderName::from_static("if-none-match");
            if !HOP_BY_HOP.contains(&name.as_str()) && (!conditional || !drop_conditions) {
                outgoing = outgoing.header(name.as_str(), value.as_bytes());
            }
        }
        let Ok(answer) = outgoing.body(body).send().await else {
            return bare(StatusCode::BAD_GATEWAY);
        };
        let mut response = Response::builder().status(answer.status().as_u16());
        for (name, value) in answer.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                response = response.header(name.as_str(), value.as_bytes());
            }
        }
        let bytes = answer.bytes().await.unwrap_or_default();
        response
            .body(bytes)
            .unwrap_or_else(|_| bare(StatusCode::BAD_GATEWAY))
    }
}

fn never(e: Infallible) -> std::io::Error {
    match e {}
}

/// The answer with its full length announced but only half its body sent, then an error that
/// makes the server abort the connection.
fn truncated(answer: Response<Bytes>) -> Response<Body> {
    let (mut parts, bytes) = answer.into_parts();
    parts.headers.insert(CONTENT_LENGTH, bytes.len().into());
    let half = bytes.slice(..bytes.len() / 2);
    let frames = futures::stream::iter([
        Ok(Frame::data(half)),
        Err(std::io::Error::other("body truncated by the test proxy")),
    ]);
    Response::from_parts(parts, StreamBody::new(frames).boxed())
}

/// An S3 error answer with `code` and nothing forwarded.
fn error_answer(code: u16) -> Response<Body> {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>injected by the test proxy</Message></Error>",
        if code == StatusCode::SERVICE_UNAVAILABLE { "SlowDown" } else { "InternalError" }
    );
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::from(body)).map_err(never).boxed())
        .expect("a status and a body are a valid response")
}

fn bare(code: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_picks_the_same_faults_for_the_same_seed_and_about_its_share() {
        let plan = FaultPlan::new(7, 100);
        let picks = |plan: &FaultPlan| -> Vec<Option<Fault>> {
            (0..10_000)
                .map(|n| plan.pick(n, plan.per_mille, Operation::Get, Object::Data))
                .collect()
        };
        assert_eq!(picks(&plan), picks(&plan));
        let faulted = picks(&plan).iter().flatten().count();
        assert!((800..1200).contains(&faulted), "{faulted}");
        assert_ne!(picks(&plan), picks(&FaultPlan::new(8, 100)));
        for kind in Fault::ALL {
            assert!(picks(&plan).contains(&Some(kind)), "{kind:?} never picked");
        }
    }

    #[test]
    fn a_plan_faults_only_what_it_targets() {
        let plan = FaultPlan::new(1, 1000)
            .operations(&[Operation::Put])
            .objects(&[Object::LogEntry]);
        assert!(plan
            .pick(0, 1000, Operation::Put, Object::LogEntry)
            .is_some());
        assert!(plan.pick(0, 1000, Operation::Put, Object::Data).is_none());
        assert!(plan
            .pick(0, 1000, Operation::Get, Object::LogEntry)
            .is_none());
        // A truncated body needs a body to truncate.
        let puts = FaultPlan::new(1, 1000).kinds(&[Fault::TruncatedBody]);
        assert!(puts.pick(0, 1000, Operation::Put, Object::Data).is_none());
    }

    #[test]
    fn objects_and_operations_are_told_from_the_request() {
        assert_eq!(
            Object::of("/b/w/tables/t/_delta_log/00000000000000000003.json"),
            Object::LogEntry
        );
        assert_eq!(
            Object::of("/b/w/tables/t/_delta_log/00000000000000000100.checkpoint.parquet"),
            Object::Checkpoint
        );
        assert_eq!(
            Object::of("/b/w/tables/t/_delta_log/_last_checkpoint"),
            Object::Checkpoint
        );
        assert_eq!(
            Object::of("/b/w/tables/t/source=meta/part-1.parquet"),
            Object::Data
        );
        assert_eq!(
            Operation::of(&Method::GET, "list-type=2&prefix=x"),
            Operation::List
        );
        assert_eq!(Operation::of(&Method::POST, "delete"), Operation::Delete);
    }
}
