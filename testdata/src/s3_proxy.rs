//! An HTTP proxy in front of the S3 server that misbehaves on purpose: it drops
//! `If-None-Match` from every request (an S3-compatible server that ignores conditional
//! writes, as some older MinIO, Ceph or vendor gateways do), or answers every request with
//! one status (`503 SlowDown` bursts, an outage). It counts the requests it saw, so a test can
//! tell how many attempts a client made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use axum::Router;

/// What the proxy does with each request.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Forward without `If-None-Match`.
    DropConditionalWrites,
    /// Answer with this status and an S3 error body, forwarding nothing.
    Answer(u16),
    /// Answer PUTs whose path contains the text with this status; forward the rest.
    FailPuts(u16, &'static str),
}

/// A running proxy; it stops with the test's runtime.
pub struct S3Proxy {
    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
}

impl S3Proxy {
    /// Start on a free loopback port in front of `upstream` (e.g. moto's endpoint).
    pub async fn start(upstream: &str, behaviour: Behaviour) -> S3Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let state = Upstream {
            url: upstream.trim_end_matches('/').to_string(),
            behaviour,
            requests: Arc::clone(&requests),
        };
        let app = Router::new().fallback(forward).with_state(Arc::new(state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        S3Proxy {
            endpoint: format!("http://{addr}"),
            requests,
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Upstream {
    url: String,
    behaviour: Behaviour,
    requests: Arc<AtomicUsize>,
}

/// Headers the proxy sets itself rather than copying.
const HOP_BY_HOP: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    upstream.requests.fetch_add(1, Ordering::SeqCst);
    let injected = match upstream.behaviour {
        Behaviour::Answer(code) => Some(code),
        Behaviour::FailPuts(code, part)
            if request.method() == axum::http::Method::PUT
                && request.uri().path().contains(part) =>
        {
            Some(code)
        }
        _ => None,
    };
    if let Some(code) = injected {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>injected by the test proxy</Message></Error>",
            if code == StatusCode::SERVICE_UNAVAILABLE { "SlowDown" } else { "InternalError" }
        );
        return Response::builder()
            .status(code)
            .body(Body::from(body))
            .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing =
        reqwest::Client::new().request(parts.method, format!("{}{path}", upstream.url));
    let drop_conditions = matches!(upstream.behaviour, Behaviour::DropConditionalWrites);
    for (name, value) in &parts.headers {
        let conditional = name == HeaderName::from_static("if-none-match");
        if !HOP_BY_HOP.contains(&name.as_str()) && (!conditional || !drop_conditions) {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.body(body).send().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response
        .body(Body::from(bytes))
        .unwrap_or_else(|_| status(StatusCode::BAD_GATEWAY))
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .expect("a bare status is a valid response")
}
