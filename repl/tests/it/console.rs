//! The web console of `tidemark serve`: over a warehouse synced from the simulators with one
//! quarantined job and one failing account, a real browser (headless Chromium driven by
//! Selenium, `tests/console/browser.py`) logs in, finds the overview grid equal to `tidemark
//! status --format json` and the day chart equal to `tidemark history --format json`, and saves
//! a screenshot of every page under `target/test-artifacts/console/`; a reader granted one mart
//! sees no other table. Without a login every page and asset sends to the login form; forged
//! and expired cookies are refused; logins from another site are refused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use connectors::config::Platform;
use connectors::sim::{Drift, Faults, SimConfig};

use crate::support::{free_port, meta_and_google_ads_sources};

const META_TOKEN: &str = "EAAGconsoleMetaToken";
const GOOGLE_TOKEN: &str = "ya29.consoleGoogleToken";
const DEVELOPER_TOKEN: &str = "devConsoleToken";
const ADMIN: (&str, &str) = ("ops", "console-admin-pw");
const READER: (&str, &str) = ("analyst", "console-reader-pw");
const TODAY: &str = "2026-11-21";
const DAY: &str = "2026-11-15";

fn tidemark(project: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env_remove("RUST_LOG")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env("TIDEMARK_PROJECT", project)
        .env("TIDEMARK_TODAY", TODAY)
        .env("SIM_META_TOKEN", META_TOKEN)
        .env("SIM_GOOGLE_TOKEN", GOOGLE_TOKEN)
        .env("SIM_DEV_TOKEN", DEVELOPER_TOKEN);
    cmd
}

/// `tidemark serve` with the console, stopped when dropped.
struct Server {
    child: Child,
    console: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(project: &Path) -> Server {
    let mut child = tidemark(project)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut server = Server {
        child,
        console: String::new(),
    };
    let mut lines = BufReader::new(stdout).lines();
    while server.console.is_empty() {
        let line = lines
            .next()
            .expect("serve prints the console's address")
            .unwrap();
        if let Some(url) = line.strip_prefix("web console: ") {
            server.console = url.trim_end_matches('/').to_string();
        }
    }
    std::thread::spawn(move || for _ in lines {});
    server
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// The project: both simulated platforms, two users, the sample marts and the console.
fn write_project(dir: &Path, base: &str, console_port: u16, session_ttl: &str) {
    let hash = |p: &str| sql::flight::auth::hash_password(p).unwrap();
    std::fs::write(
        dir.join("tidemark.toml"),
        format!(
            r#"warehouse = "wh"

{sources}
[console]
addr = "127.0.0.1:{console_port}"
session_ttl = "{session_ttl}"

[users.{admin}]
password_hash = "{admin_hash}"
role = "admin"
grants = ["*"]

[users.{reader}]
password_hash = "{reader_hash}"
grants = ["channel_daily"]
"#,
            admin = ADMIN.0,
            admin_hash = hash(ADMIN.1),
            reader = READER.0,
            reader_hash = hash(READER.1),
            sources = meta_and_google_ads_sources(
                base,
                "window_days = 10\npoll_interval = \"5ms\"\nbackoff = \"10ms\"",
                "window_days = 10\nbackoff = \"10ms\"",
            ),
        ),
    )
    .unwrap();
    let testdata = testdata::fixture::dir();
    copy_dir(&testdata.join("marts"), &dir.join("marts"));
    copy_dir(&testdata.join("seeds"), &dir.join("seeds"));
}

fn artifacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts/console")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Log in as `user` from the console's own origin; the session cookie.
async fn log_in(console: &str, user: (&str, &str)) -> String {
    let response = no_redirects()
        .post(format!("{console}/login"))
        .header("origin", console)
        .form(&[("user", user.0), ("password", user.1), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

async fn get(console: &str, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = no_redirects().get(format!("{console}{path}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_cli_shows_to_whom_it_may() {
    let sim = connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        meta_token: META_TOKEN.into(),
        google_token: GOOGLE_TOKEN.into(),
        google_developer_token: DEVELOPER_TOKEN.into(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let world = &sim.world;
    let project = tempfile::tempdir().unwrap();
    let port = free_port();
    write_project(project.path(), &sim.base_url(), port, "8h");

    // Two syncs a day apart (so days have a history), then a run with a quarantined payload
    // and an account that fails.
    for today in ["2026-11-20", TODAY] {
        world.set_now(today.parse().unwrap());
        if today == TODAY {
            world.set_drift(
                Platform::Meta,
                Drift {
                    malformed_account: Some("1000000002".into()),
                    ..Drift::default()
                },
            );
            world.set_faults(
                Platform::GoogleAds,
                Faults {
                    fail_account: Some("1234567002".into()),
                    ..Faults::default()
                },
            );
        }
        let out = crate::sync::run({
            let mut cmd = tidemark(project.path());
            cmd.args(["sync", "--today", today]);
            cmd
        })
        .await;
        let expected = if today == TODAY { Some(1) } else { Some(0) };
        assert_eq!(out.status.code(), expected, "{}", crate::sync::text(&out));
    }
    let out = crate::sync::run({
        let mut cmd = tidemark(project.path());
        cmd.args(["mart", "refresh"]);
        cmd
    })
    .await;
    assert!(out.status.success(), "{}", crate::sync::text(&out));

    // What the CLI says.
    let cli = |args: &[&str]| {
        let out = tidemark(project.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let status_file = project.path().join("status.json");
    std::fs::write(
        &status_file,
        cli(&["status", "--today", TODAY, "--format", "json"]),
    )
    .unwrap();
    let history_file = project.path().join("history.json");
    std::fs::write(&history_file, cli(&["history", DAY, "--format", "json"])).unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    let states: Vec<&str> = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["cells"].as_object().unwrap().iter())
        .filter(|(_, n)| n.as_u64() > Some(0))
        .map(|(s, _)| s.as_str())
        .collect();
    assert!(
        states.contains(&"quarantined") && states.contains(&"fresh"),
        "{status}"
    );

    let server = serve(project.path());
    let console = server.console.clone();

    // 1. Nothing without a login: pages, the stylesheet, unknown paths.
    for path in [
        "/",
        "/day",
        "/maturity",
        "/marts",
        "/runs",
        "/console.css",
        "/nothing",
    ] {
        let response = get(&console, path, None).await;
        assert_eq!(response.status(), 303, "{path}");
        assert!(
            location(&response).starts_with("/login?next="),
            "{path}: {}",
            location(&response)
        );
    }
    // A forged cookie is refused.
    let forged = "tidemark_console=b3BzCjk5OTk5OTk5OTk.Zm9yZ2VkLXNpZ25hdHVyZQ";
    let response = get(&console, "/", Some(forged)).await;
    assert_eq!(response.status(), 303);
    assert!(
        location(&response).contains("why=invalid"),
        "{}",
        location(&response)
    );
    // Logins from another site, or with no origin at all, are refused; a wrong password too.
    for origin in [Some("http://evil.example"), None] {
        let mut request = no_redirects()
            .post(format!("{console}/login"))
            .form(&[("user", ADMIN.0), ("password", ADMIN.1)]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        assert_eq!(request.send().await.unwrap().status(), 403, "{origin:?}");
    }
    let wrong = no_redirects()
        .post(format!("{console}/login"))
        .header("origin", &console)
        .form(&[("user", ADMIN.0), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let cookie = log_in(&console, ADMIN).await;
    let page = get(&console, "/", Some(&cookie)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("quarantined") && html.contains("tidemark sync --resume"),
        "{html}"
    );

    // 2. A real browser.
    let artifacts = artifacts();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.py"))
        .args([&console, ADMIN.0, ADMIN.1, READER.0, READER.1])
        .arg(&status_file)
        .arg(&history_file)
        .arg(DAY)
        .arg(&artifacts)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "browser.py failed (needs Debian's chromium and chromium-driver and `pip install selenium`):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{found}");
    assert_eq!(found["grid_accounts"], 4);
    assert!(found["day_points"].as_u64() >= Some(2), "{found}");
    assert_eq!(found["screenshots"].as_array().unwrap().len(), 5);
    for shot in found["screenshots"].as_array().unwrap() {
        assert!(Path::new(shot.as_str().unwrap()).exists(), "{shot}");
    }
    assert!(
        found["problems"].to_string().contains("quarantined"),
        "{found}"
    );
    assert!(found["problems"].to_string().contains("failed"), "{found}");
    assert_eq!(found["reader_marts"], serde_json::json!(["channel_daily"]));
    assert_eq!(found["marts"].as_array().unwrap().len(), 4, "{found}");
    drop(server);

    // 3. An expired session is refused (a console whose logins last four seconds: long
    // enough for the first request on a loaded machine, whose clock the expiry counts in
    // whole seconds; one second failed in CI when the first request came a second late).
    let short = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(short.path()).unwrap();
    write_project(short.path(), &sim.base_url(), free_port(), "4s");
    std::os::unix::fs::symlink(project.path().join("wh"), short.path().join("wh")).unwrap();
    let short_server = serve(short.path());
    let cookie = log_in(&short_server.console, ADMIN).await;
    assert_eq!(
        get(&short_server.console, "/runs", Some(&cookie))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let response = get(&short_server.console, "/runs", Some(&cookie)).await;
    assert_eq!(response.status(), 303);
    assert!(
        location(&response).contains("why=expired"),
        "{}",
        location(&response)
    );
}
