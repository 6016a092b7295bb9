//! TLS and authentication against real servers on 127.0.0.1, with
//! certificates the test makes (openssl): Redis over TLS (`rediss://`) with
//! an ACL user, and RabbitMQ over TLS (`amqps://`) with a user and vhost of
//! its own; Kafka with a SCRAM-SHA-512 login on a private tansu (which has
//! no TLS: see docs/connectors/kafka.md) and librdkafka's TLS against an
//! `openssl s_server`; passwords come from an environment variable.

use sluice_tests::daemon::{eventually, free_port, Daemon};
use sluice_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The password of the test's ACL user, and the variable that holds it.
const PASSWORD: &str = "s3cret-for-tls-tests";
const PASSWORD_ENV: &str = "SLUICE_TLS_TEST_PASSWORD";

/// A CA, a server certificate it signed (for 127.0.0.1), and a second CA
/// that signed nothing the server has.
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn certs(dir: &Path) -> Certs {
    let dir = dir.join("certs");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = |name: &str| {
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    };
    ca("ca");
    ca("other-ca");
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "san.ext",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// A redis-server of this test: TLS only, the default user off, user
/// `sluice` with [`PASSWORD`]. Killed (by its own PID) when dropped.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    fn start(certs: &Certs) -> TlsRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--user", "default", "off"])
            .args([
                "--user",
                "sluice",
                "on",
                &format!(">{PASSWORD}"),
                "~*",
                "&*",
                "+@all",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        let server = TlsRedis { port, child };
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "the TLS redis-server on {port} did not start"
        );
        server
    }

    /// A Redis table's connection keys, trusting `ca`.
    fn keys(&self, ca: &Path) -> String {
        format!(
            r#"url = "rediss://sluice@127.0.0.1:{}", password_env = "{PASSWORD_ENV}", tls = {{ ca_file = {:?} }}"#,
            self.port,
            ca.display().to_string()
        )
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluice_with_password(args: &[&str], password: &str) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .env(PASSWORD_ENV, password)
        .output()
        .expect("sluice runs")
}

/// Run `load` with `password` in [`PASSWORD_ENV`]: exit 2, and neither
/// that password nor the real one in what it says (returned, lower-case).
fn refused(load: &Path, password: &str) -> String {
    let run = sluice_with_password(&["run", load.to_str().unwrap()], password);
    let stderr = String::from_utf8_lossy(&run.stderr).to_lowercase();
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    for secret in [password, PASSWORD] {
        assert!(
            !stderr.contains(&secret.to_lowercase()),
            "shows no password: {stderr}"
        );
    }
    stderr
}

/// A config of one pipeline: `orders.jsonl` (20 orders) → the sink
/// `sink` (an inline table), at `dir/NAME.toml`.
fn load_to(dir: &Path, name: &str, sink: &str) -> PathBuf {
    let input: String = (0..20).map(|i| format!("{{\"amount\":{i}}}\n")).collect();
    std::fs::write(dir.join("orders.jsonl"), input).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[pipelines.load]
source = {{ type = "file", path = "orders.jsonl" }}
sinks.orders = {sink}
dlq = {{ type = "file", path = "{name}-dlq.jsonl" }}
"#
        ),
    )
    .unwrap();
    path
}

/// Load into the Redis stream `orders` reached with `keys`.
fn load_config(dir: &Path, keys: &str) -> PathBuf {
    let sink = format!(
        r#"{{ type = "redis-stream", stream = "orders", connect_timeout = "3s", {keys} }}"#
    );
    load_to(dir, "load", &sink)
}

/// Run `load` (exit 0), then a daemon relaying `source` (an inline table)
/// to a file until the 20 orders are out: each once, and no password in
/// its log.
fn round_trip(dir: &Path, load: &Path, source: &str) {
    let run = sluice_with_password(&["run", load.to_str().unwrap()], PASSWORD);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let relay = dir.join("relay.toml");
    std::fs::write(
        &relay,
        format!(
            r#"
[pipelines.relay]
source = {source}
sinks.out = {{ type = "file", path = "out.jsonl" }}
dlq = {{ type = "file", path = "relay-dlq.jsonl" }}
"#
        ),
    )
    .unwrap();
    std::env::set_var(PASSWORD_ENV, PASSWORD);
    let daemon = Daemon::start(&relay, &dir.join("relay.log"));
    let out = dir.join("out.jsonl");
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(60), || lines() >= 20),
        "{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert_eq!(lines(), 20, "every order once");
    assert!(!log.contains(PASSWORD), "the log shows no password");
}

#[test]
fn a_pipeline_round_trips_through_redis_over_tls_with_an_acl_user() {
    // File → rediss:// stream (sink), and the stream → file (source, a
    // consumer group): both log in as `sluice` with the password from
    // `password_env` and trust the test's CA from `tls.ca_file`.
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let redis = TlsRedis::start(&certs);
    let keys = redis.keys(&certs.ca);
    let load = load_config(dir.path(), &keys);
    round_trip(
        dir.path(),
        &load,
        &format!(r#"{{ type = "redis-stream", stream = "orders", group = "g", {keys} }}"#),
    );
}

#[test]
fn a_wrong_password_is_exit_2_and_the_message_does_not_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let redis = TlsRedis::start(&certs);
    let load = load_config(dir.path(), &redis.keys(&certs.ca));
    let stderr = refused(&load, "not-the-password-42");
    assert!(
        stderr.contains("authentication failed") && stderr.contains("password_env"),
        "names the authentication failure: {stderr}"
    );
    assert!(stderr.contains("127.0.0.1"), "names the server: {stderr}");
}

#[test]
fn an_untrusted_server_certificate_is_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let redis = TlsRedis::start(&certs);
    let load = load_config(dir.path(), &redis.keys(&certs.other_ca));
    let stderr = refused(&load, PASSWORD);
    eprintln!("untrusted certificate: {stderr}");
    assert!(
        stderr.contains("certificate"),
        "names the certificate problem: {stderr}"
    );
}

#[test]
fn a_missing_certificate_file_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let load = load_config(
        dir.path(),
        r#"url = "rediss://127.0.0.1:1", tls = { ca_file = "certs/nowhere.pem" }"#,
    );
    let check = sluice_with_password(&["check", load.to_str().unwrap()], PASSWORD);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pipelines.load.sinks.orders") && stderr.contains("tls.ca_file"),
        "names the key: {stderr}"
    );
    assert!(stderr.contains("nowhere.pem"), "names the file: {stderr}");
}

/// A private RabbitMQ node with a TLS listener, user `sluice` (password
/// [`PASSWORD`]) allowed on vhost `orders` only, and the `amqps://` keys of
/// a RabbitMQ table trusting `ca`.
struct TlsRabbit {
    node: sluice_tests::rabbitmq_node::RabbitNode,
    tls_port: u16,
}

impl TlsRabbit {
    fn start(certs: &Certs) -> TlsRabbit {
        let tls_port = free_port();
        let node = sluice_tests::rabbitmq_node::RabbitNode::start_with_tls(
            tls_port,
            &certs.ca,
            &certs.cert,
            &certs.key,
        );
        node.ctl(&["add_user", "sluice", PASSWORD]);
        node.ctl(&["add_vhost", "orders"]);
        node.ctl(&[
            "set_permissions",
            "-p",
            "orders",
            "sluice",
            ".*",
            ".*",
            ".*",
        ]);
        TlsRabbit { node, tls_port }
    }

    fn keys(&self, ca: &Path) -> String {
        format!(
            r#"url = "amqps://sluice@127.0.0.1:{}/orders", password_env = "{PASSWORD_ENV}", tls = {{ ca_file = {:?} }}"#,
            self.tls_port,
            ca.display().to_string()
        )
    }
}

/// Load into the queue `orders` over `amqps://`.
fn amqp_load_config(dir: &Path, keys: &str) -> PathBuf {
    let sink =
        format!(r#"{{ type = "rabbitmq", declare_queue = true, connect_timeout = "5s", {keys} }}"#);
    load_to(dir, "amqp-load", &sink)
}

#[test]
fn rabbitmq_over_tls_with_a_user_and_vhost_round_trips_and_refuses_bad_logins() {
    // One node for the three cases (a node takes seconds to boot): a round
    // trip file → amqps:// queue → file as user `sluice` on vhost `orders`;
    // a wrong password is exit 2 without the password; a CA that did not
    // sign the server's certificate is exit 2 naming the problem.
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let rabbit = TlsRabbit::start(&certs);
    let keys = rabbit.keys(&certs.ca);
    let load = amqp_load_config(dir.path(), &keys);
    round_trip(
        dir.path(),
        &load,
        &format!(r#"{{ type = "rabbitmq", queue = "orders", {keys} }}"#),
    );

    let stderr = refused(&load, "not-the-password-42");
    eprintln!("rabbitmq, wrong password: {stderr}");
    assert!(
        stderr.contains("access_refused"),
        "names the refusal: {stderr}"
    );
    assert!(stderr.contains("127.0.0.1"), "names the server: {stderr}");

    let untrusted = amqp_load_config(dir.path(), &rabbit.keys(&certs.other_ca));
    let stderr = refused(&untrusted, PASSWORD);
    eprintln!("rabbitmq, untrusted certificate: {stderr}");
    assert!(
        stderr.contains("certificate"),
        "names the certificate problem: {stderr}"
    );
    drop(rabbit.node);
}

#[test]
fn kafka_with_a_scram_login_round_trips_and_refuses_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = sluice_tests::kafka_client::Tansu::start(dir.path(), free_port());
    let brokers = tansu.brokers();
    sluice_tests::kafka_client::create_topic(&brokers, "orders", 1);
    tansu.require_login("sluice", PASSWORD);
    let login = format!(
        r#"brokers = "{brokers}", connect_timeout = "5s", sasl = {{ mechanism = "SCRAM-SHA-512", username = "sluice", password_env = "{PASSWORD_ENV}" }}"#
    );
    let load = load_to(
        dir.path(),
        "kload",
        &format!(r#"{{ type = "kafka", topic = "orders", {login} }}"#),
    );
    round_trip(
        dir.path(),
        &load,
        &format!(r#"{{ type = "kafka", group = "g", topics = ["orders"], {login} }}"#),
    );
    let stderr = refused(&load, "not-the-password-42");
    eprintln!("kafka, wrong password: {stderr}");
    assert!(
        stderr.contains("authentication"),
        "names the refusal: {stderr}"
    );
    assert!(stderr.contains("127.0.0.1"), "names the broker: {stderr}");
}

#[test]
fn kafka_over_tls_with_an_untrusted_certificate_is_exit_2_naming_the_problem() {
    // tansu has no TLS; an openssl TLS server is as far as librdkafka's
    // handshake gets, which is what this checks: `tls` really turns TLS
    // on, and a CA that did not sign the server's certificate is refused.
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let port = free_port();
    let server = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&certs.cert)
        .arg("-key")
        .arg(&certs.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    let _server = sluice_tests::daemon::Owned::new(server);
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let load = load_to(
        dir.path(),
        "ktls",
        &format!(
            r#"{{ type = "kafka", topic = "orders", brokers = "127.0.0.1:{port}", connect_timeout = "5s", tls = {{ ca_file = "{}" }} }}"#,
            certs.other_ca.display()
        ),
    );
    let stderr = refused(&load, PASSWORD);
    eprintln!("kafka, untrusted certificate: {stderr}");
    assert!(
        stderr.contains("certificate"),
        "names the certificate problem: {stderr}"
    );
}
