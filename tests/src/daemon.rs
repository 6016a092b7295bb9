//! The `sluice` binary as a daemon under test: started on a config file,
//! stopped with SIGTERM, or killed with SIGKILL mid-stream.

use crate::{repo, sluice_bin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `sluice run CONFIG`, its output going to `log`.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `sluice run config`; stdout and stderr go to `log` (appended,
    /// so restarts keep one history).
    pub fn start(config: &Path, log: &Path) -> Daemon {
        Daemon::start_with(config, log, &[])
    }

    /// [`Daemon::start`] with more `sluice run` flags (`--http ADDR`, ...).
    /// The daemon logs at `info`, or at `$SLUICE_TEST_DAEMON_LOG` (a `--log`
    /// filter, e.g. `info,sluice_brokers=debug,lapin=debug`) when set.
    pub fn start_with(config: &Path, log: &Path, flags: &[&str]) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log");
        let child = Command::new(sluice_bin())
            .arg("--log")
            .arg(std::env::var("SLUICE_TEST_DAEMON_LOG").unwrap_or_else(|_| "info".into()))
            .arg("run")
            .args(flags)
            .arg(config)
            .env(
                "SLUICE_CACHE_DIR",
                repo().join("target/test-artifact-cache"),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("sluice starts");
        Daemon {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// [`Daemon::start_with`] `--http http` (and `flags`), returned once its
    /// `/readyz` answers 200 (at most 30 s; the test fails with the log
    /// otherwise).
    pub fn start_ready(config: &Path, log: &Path, http: &str, flags: &[&str]) -> Daemon {
        let mut all = vec!["--http", http];
        all.extend_from_slice(flags);
        let daemon = Daemon::start_with(config, log, &all);
        assert!(
            eventually(Duration::from_secs(30), || http_get(http, "/readyz")
                .is_some_and(|(s, _)| s == 200)),
            "{}",
            daemon.log_text()
        );
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: no drain, no commit, no goodbye.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the exit.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        wait(&mut child, within).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "sluice did not exit within {within:?} after SIGTERM; log:\n{}",
                self.log_text()
            )
        })
    }

    /// Wait for the process to exit by itself (bounded).
    pub fn wait(mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait(&mut child, within).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "sluice did not exit within {within:?}; log:\n{}",
                self.log_text()
            )
        })
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn wait(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A name no other test (or earlier run) uses: `prefix-PID-NANOS`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Poll `check` every 50 ms until it is true or `within` passes.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `plugins/dist/NAME.wasm` as a TOML string literal.
pub fn plugin_literal(name: &str) -> String {
    format!("{:?}", crate::plugin(name).display().to_string())
}

/// `examples/NAME` rewritten to run from `dir`: the input file and plugins
/// by absolute path, and each `(from, to)` replacement applied (to give
/// topics and streams names of their own).
pub fn example_in(dir: &Path, name: &str, replacements: &[(String, String)]) -> PathBuf {
    let examples = repo().join("examples");
    let mut text = std::fs::read_to_string(examples.join(name))
        .unwrap_or_else(|e| panic!("examples/{name}: {e}"))
        .replace(
            "\"orders.jsonl\"",
            &format!("{:?}", examples.join("orders.jsonl")),
        )
        .replace(
            "\"../plugins/dist/",
            &format!("\"{}/", repo().join("plugins/dist").display()),
        );
    for (from, to) in replacements {
        assert!(
            text.contains(from.as_str()),
            "examples/{name} has no `{from}`"
        );
        text = text.replace(from.as_str(), to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The numbers of the summary line `pipeline NAME: received R, delivered D,
/// dropped X, dead-lettered L, acked A` in a daemon log.
pub fn summary(log: &str, pipeline: &str) -> Option<[u64; 5]> {
    let line = log
        .lines()
        .find(|l| l.starts_with(&format!("pipeline {pipeline}: received ")))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    numbers.get(..5)?.try_into().ok()
}

/// The input, output, DLQ and consumer-group names of one test, unique per
/// run: `TEST-PID-N.in`, `.out`, `.dlq`, `.g`.
pub struct Names {
    pub input: String,
    pub output: String,
    pub dlq: String,
    pub group: String,
}

impl Names {
    pub fn new(test: &str) -> Names {
        let base = unique(test);
        Names {
            input: format!("{base}.in"),
            output: format!("{base}.out"),
            dlq: format!("{base}.dlq"),
            group: format!("{base}.g"),
        }
    }
}

/// Write a config with one pipeline, `relay`: `source` → `valid` (the
/// json-filter plugin: a payload that is not JSON is a fatal error, so it is
/// dead-lettered) → sink `out`, with `dlq`. Each argument is an inline TOML
/// table (`{ type = "...", ... }`).
pub fn relay_config(dir: &Path, source: &str, out: &str, dlq: &str) -> PathBuf {
    let text = format!(
        r#"
[pipelines.relay]
concurrency = 2
source = {source}
dlq = {dlq}
sinks.out = {out}

[[pipelines.relay.stages]]
name = "valid"
kind = "filter"
plugin = {plugin}
params = {{ field = "amount", min = 0 }}
"#,
        plugin = plugin_literal("json-filter"),
    );
    let path = dir.join(format!("{}.toml", unique("relay")));
    std::fs::write(&path, text).unwrap();
    path
}

/// A loopback port nothing listens on now (for a private broker).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback address nothing listens on now (for `--http`).
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// `GET path` from a daemon's HTTP listener: status code and body, or
/// `None` while nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of one sample line (`name{labels} value`) of a `/metrics` text.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Write `bytes` to `path` as deploy tools do: a temporary file in the same
/// folder, renamed over the old one.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// TOML for one pipeline `name` that retries through its broker
/// (`retry.republish`, 3 attempts, backoff from `initial`, doubling) around
/// the flaky plugin, which fails each message `fail_attempts` times.
/// `source`, `out` and `dlq` are inline TOML tables.
pub fn republish_pipeline(
    name: &str,
    source: &str,
    out: &str,
    dlq: &str,
    initial: &str,
    fail_attempts: u32,
) -> String {
    format!(
        r#"
[pipelines.{name}]
source = {source}
dlq = {dlq}
sinks.out = {out}
retry = {{ attempts = 3, initial = "{initial}", factor = 2.0, republish = true }}

[[pipelines.{name}.stages]]
name = "flaky"
kind = "filter"
plugin = {plugin}
params = {{ fail_attempts = {fail_attempts} }}
"#,
        plugin = plugin_literal("flaky"),
    )
}

/// A server process a test started: SIGKILLed by its own PID when stopped
/// or dropped, so a failing test leaves nothing running.
#[derive(Default)]
pub struct Owned(Option<Child>);

impl Owned {
    pub fn new(child: Child) -> Owned {
        Owned(Some(child))
    }

    /// SIGKILL and wait; nothing if already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `sluice dlq ARGS…` (e.g. `["show", CONFIG]`): its exit status, stdout
/// and stderr.
pub fn sluice_dlq(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(sluice_bin())
        .arg("dlq")
        .args(args)
        .output()
        .expect("sluice runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The dead letters `sluice dlq show CONFIG` prints, one JSON document
/// each (`at`, `pipeline`, `error`, `message`); panics if it fails.
pub fn dlq_show(config: &Path) -> Vec<serde_json::Value> {
    let (status, stdout, stderr) =
        sluice_dlq(&["show", "--limit", "100000", &config.display().to_string()]);
    assert!(status.success(), "sluice dlq show failed: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("dlq show prints JSON lines"))
        .collect()
}
