//! The interactive shell in a real pseudo-terminal (rexpect): completing a table name, a
//! statement over two lines, `\timing`, Ctrl-C cancelling a slow query while the shell stays
//! usable (and stops burning CPU), Ctrl-D leaving, and history kept across restarts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

fn shell(dir: &Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.args(["sql", "-w"])
        .arg(dir.join("wh"))
        .env("TIDEMARK_HISTORY", dir.join("history"))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("TIDEMARK_WAREHOUSE");
    let options = Options::new()
        .timeout_ms(Some(30_000))
        .strip_ansi_escape_codes(true);
    let mut session = spawn_with_options(cmd, options).expect("spawn tidemark sql in a pty");
    session.exp_string("tidemark> ").expect("first prompt");
    session
}

/// Type `keys` (raw: `\r` is Enter, `\t` is Tab).
fn type_keys(session: &mut PtySession, keys: &str) {
    session.send(keys).unwrap();
    session.flush().unwrap();
}

/// The pid of the shell running on the warehouse in `dir` (rexpect keeps its pid private).
fn shell_pid(dir: &Path) -> i32 {
    let needle = dir.join("wh").to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let line = String::from_utf8_lossy(&c).replace('\0', " ");
                line.contains("tidemark") && line.contains(&needle)
            })
        })
        .expect("the shell's process")
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn the_shell_completes_continues_times_cancels_and_remembers() {
    let dir = testdata::fixture::temp_warehouse();
    let mut s = shell(dir.path());

    // Tab completes the table name; Enter before ';' continues the statement on a new line.
    type_keys(&mut s, "SELECT count(*) AS meta_rows FROM ad_perf\t");
    s.exp_string("ad_performance")
        .expect("Tab completed the table name");
    type_keys(&mut s, " WHERE source = 'meta'\r");
    type_keys(&mut s, "AND clicks > 0;\r");
    s.exp_string("meta_rows").unwrap();
    s.exp_regex(r"\|\s+6\s+\|")
        .expect("the two-line statement ran once, whole");
    s.exp_string("(1 row)").unwrap();
    s.exp_string("tidemark> ").unwrap();

    // \timing prints each statement's time.
    type_keys(&mut s, "\\timing\r");
    s.exp_string("Timing is on.").unwrap();
    s.exp_string("tidemark> ").unwrap();
    type_keys(&mut s, "SELECT 1 AS one;\r");
    s.exp_regex(r"Time: [0-9.]+ (ms|s)").expect("timing line");
    s.exp_string("tidemark> ").unwrap();

    // A query that would run for hours is cancelled by Ctrl-C; the shell stays.
    type_keys(&mut s, "SELECT count(*) FROM range(1, 1000000000000);\r");
    std::thread::sleep(Duration::from_millis(1500));
    s.send_control('c').unwrap();
    s.exp_string("cancelled (Ctrl-C)")
        .expect("the query was cancelled");
    s.exp_string("tidemark> ").unwrap();
    let pid = shell_pid(dir.path());
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let burnt = cpu_seconds(pid) - before;
    assert!(
        burnt < 0.5,
        "the cancelled query kept running: {burnt:.2} CPU seconds in 2 s"
    );
    type_keys(&mut s, "SELECT 40 + 2 AS answer;\r");
    s.exp_regex(r"\|\s+42\s+\|")
        .expect("the shell still answers");
    s.exp_string("tidemark> ").unwrap();

    // An error points at the unknown table and suggests the right one.
    type_keys(&mut s, "SELECT * FROM ad_perfomance;\r");
    s.exp_string("did you mean 'ad_performance'?").unwrap();
    s.exp_string("^^^^^^^^^^^^^")
        .expect("carets under the name");
    s.exp_string("tidemark> ").unwrap();

    // Ctrl-D leaves.
    s.send_control('d').unwrap();
    s.exp_eof().expect("the shell exits on Ctrl-D");
    let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
    assert!(history.contains("SELECT 40 + 2 AS answer;"), "{history}");

    // A new shell recalls the last statement with the Up arrow.
    let mut s = shell(dir.path());
    type_keys(&mut s, "\x1b[A");
    s.exp_string("SELECT * FROM ad_perfomance;")
        .expect("Up recalls the last statement of the previous session");
    type_keys(&mut s, "\x1b[A");
    s.exp_string("SELECT 40 + 2 AS answer;").unwrap();
    type_keys(&mut s, "\r");
    s.exp_regex(r"\|\s+42\s+\|").unwrap();
    s.exp_string("tidemark> ").unwrap();
    type_keys(&mut s, "\\q\r");
    s.exp_eof().expect("\\q exits");
}
