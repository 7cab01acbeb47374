//! Backends a test runs against: a temp directory, or a fresh bucket on a moto S3 server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use engine::StorageConfig;

/// How long the S3 server may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Which kind of storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    S3,
}

/// A warehouse location for one test, cleaned up on drop (local) or left in its own bucket (S3).
pub struct Backend {
    pub kind: BackendKind,
    /// The warehouse URL (a directory path or s3://bucket/prefix).
    pub url: String,
    /// The S3 endpoint, for S3 backends.
    pub endpoint: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// A fresh warehouse of `kind`.
    pub fn new(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Local => Self::local(),
            BackendKind::S3 => Self::s3(),
        }
    }

    /// A fresh temporary directory.
    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Backend {
            kind: BackendKind::Local,
            url: dir.path().join("warehouse").display().to_string(),
            endpoint: None,
            _dir: Some(dir),
        }
    }

    /// A fresh bucket on the shared moto server.
    pub fn s3() -> Self {
        let server = moto();
        let bucket = server.create_bucket();
        Backend {
            kind: BackendKind::S3,
            url: format!("s3://{bucket}/warehouse"),
            endpoint: Some(server.endpoint.clone()),
            _dir: None,
        }
    }

    /// Storage options for opening the warehouse in-process.
    pub fn storage_config(&self) -> StorageConfig {
        let mut config = StorageConfig {
            s3_endpoint: self.endpoint.clone(),
            ..Default::default()
        };
        if self.kind == BackendKind::S3 {
            for (k, v) in S3_TEST_CREDENTIALS {
                config.options.insert(k.to_string(), v.to_string());
            }
        }
        config
    }

    /// Environment for a `tidemark` child process to reach this warehouse.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("TIDEMARK_WAREHOUSE".to_string(), self.url.clone())];
        if let Some(endpoint) = &self.endpoint {
            env.push(("TIDEMARK_S3_ENDPOINT".into(), endpoint.clone()));
            env.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
            env.push(("AWS_REGION".into(), "us-east-1".into()));
        }
        env
    }

    /// Open the warehouse in-process.
    pub async fn open(&self) -> engine::Warehouse {
        engine::Warehouse::open(&self.url, &self.storage_config())
            .await
            .expect("open test warehouse")
    }
}

/// moto accepts any credentials; object_store insists on having some.
pub const S3_TEST_CREDENTIALS: [(&str, &str); 3] = [
    ("aws_access_key_id", "testing"),
    ("aws_secret_access_key", "testing"),
    ("aws_region", "us-east-1"),
];

/// A running moto server.
pub struct MotoServer {
    pub endpoint: String,
    port: u16,
    buckets: AtomicUsize,
    _child: Mutex<Child>,
}

impl MotoServer {
    /// A new, empty bucket on this server.
    pub fn create_bucket(&self) -> String {
        let n = self.buckets.fetch_add(1, Ordering::SeqCst);
        let bucket = format!("tidemark-test-{}-{n}", std::process::id());
        let status = http_status(
            self.port,
            &format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port),
        )
        .unwrap_or_else(|e| panic!("creating bucket {bucket} on moto failed: {e}"));
        assert_eq!(
            status, 200,
            "creating bucket {bucket} on moto answered HTTP {status}"
        );
        bucket
    }
}

static MOTO: OnceLock<MotoServer> = OnceLock::new();

/// The shared moto server of this test process, started on first use.
pub fn moto() -> &'static MotoServer {
    MOTO.get_or_init(start_moto)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

fn start_moto() -> MotoServer {
    let binary = std::env::var("TIDEMARK_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = free_port();
    // The watchdog loop stops moto within a second of this test process exiting, however it exits.
    let script = format!(
        "{binary} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & server=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done; kill $server 2>/dev/null",
        parent = std::process::id()
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .spawn()
        .expect("bash is needed to start moto_server");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if http_status(
            port,
            &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
        )
        .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on 127.0.0.1:{port} within {STARTUP_TIMEOUT:?}. \
             Install it with: pip install \"moto[server]\" (or set TIDEMARK_MOTO_SERVER)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    MotoServer {
        endpoint: format!("http://127.0.0.1:{port}"),
        port,
        buckets: AtomicUsize::new(0),
        _child: Mutex::new(child),
    }
}

/// Send a raw HTTP/1.1 request and return the status code.
fn http_status(port: u16, request: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf)?;
    response.push_str(&String::from_utf8_lossy(&buf[..n]));
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
}
