//! An HTTP proxy in front of the S3 server that drops `If-None-Match` from every request: an
//! S3-compatible server that ignores conditional writes, as some older MinIO, Ceph or vendor
//! gateways do. Tests prove tidemark refuses to commit through one.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use axum::Router;

/// Start the proxy on a free loopback port in front of `upstream` (e.g. moto's endpoint) and
/// return its endpoint. It runs until the test's runtime stops.
pub async fn without_conditional_writes(upstream: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    let app = Router::new()
        .fallback(forward)
        .with_state(upstream.trim_end_matches('/').to_string());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Headers the proxy sets itself rather than copying.
const HOP_BY_HOP: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

async fn forward(State(upstream): State<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = reqwest::Client::new().request(parts.method, format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != HeaderName::from_static("if-none-match")
        {
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
