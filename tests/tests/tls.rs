//! TLS and authentication against real servers on 127.0.0.1, with
//! certificates the test makes (openssl): Redis over TLS (`rediss://`) with
//! an ACL user, and RabbitMQ over TLS (`amqps://`) with a user and vhost of
//! its own; Kafka with a SCRAM-SHA-512 login on a private tansu (which has
//! no TLS: see docs/connectors/kafka.md) and librdkafka's TLS against an
//! `openssl s_server`; SQS over HTTPS against a private moto that checks
//! request signatures, with credentials from an AWS profile file.
//! Passwords come from an environment variable, never the config.

use sluice_tests::daemon::{eventually, free_port, Daemon};
use sluice_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The password of the test's ACL user, and the variable that holds it.
const PASSWORD: &str = "s3cret-for-tls-tests";
const PASSWORD_ENV: &str = "SLUICE_TLS_TEST_PASSWORD";

/// A CA, a server certificate it signed (for 127.0.0.1), a client
/// certificate it signed (for mutual TLS), and a second CA that signed
/// nothing the server has.
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
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
        let (key, pem, subject) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        openssl(
            &dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", &key,
                "-out", &pem, "-subj", &subject,
            ],
        );
    };
    ca("ca");
    ca("other-ca");
    // NAME.pem/NAME.key for `subject`, signed by `ca` with `extensions`.
    let signed = |name: &str, subject: &str, extensions: &str| {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            &dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subject,
            ],
        );
        std::fs::write(dir.join(&ext), extensions).unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ],
        );
    };
    signed(
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    signed("client", "/CN=sluice", "extendedKeyUsage=clientAuth\n");
    Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
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
    sluice_with_env(args, &[(PASSWORD_ENV, password)])
}

fn sluice_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("sluice runs")
}

/// Run `load` with `password` in [`PASSWORD_ENV`]: exit 2, and neither
/// that password nor the real one in what it says (returned, lower-case).
fn refused(load: &Path, password: &str) -> String {
    refused_with(load, &[(PASSWORD_ENV, password)], &[password, PASSWORD])
}

/// Run `load` with `env`: exit 2, and none of `secrets` in anything it
/// wrote. Returns its `error:` line, lower-case: what it says must be there,
/// not only in a client library's log.
fn refused_with(load: &Path, env: &[(&str, &str)], secrets: &[&str]) -> String {
    let run = sluice_with_env(&["run", load.to_str().unwrap()], env);
    let stderr = String::from_utf8_lossy(&run.stderr).to_lowercase();
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    for secret in secrets {
        assert!(
            !stderr.contains(&secret.to_lowercase()),
            "shows no secret: {stderr}"
        );
    }
    stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("\n")
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

/// A private RabbitMQ node with a TLS listener that requires a client
/// certificate, user `sluice` (password [`PASSWORD`]) allowed on vhost
/// `orders` only, and the `amqps://` keys of a RabbitMQ table.
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

    /// The keys trusting `ca`, with the client certificate of `certs` when
    /// `client` is set.
    fn keys(&self, ca: &Path, client: Option<&Certs>) -> String {
        let identity = client
            .map(|c| {
                format!(
                    ", cert_file = {:?}, key_file = {:?}",
                    c.client_cert.display().to_string(),
                    c.client_key.display().to_string()
                )
            })
            .unwrap_or_default();
        format!(
            r#"url = "amqps://sluice@127.0.0.1:{}/orders", password_env = "{PASSWORD_ENV}", tls = {{ ca_file = {:?}{identity} }}"#,
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
fn rabbitmq_over_mutual_tls_with_a_user_and_vhost_round_trips_and_refuses_bad_logins() {
    // One node for the four cases (a node takes seconds to boot): a round
    // trip file → amqps:// queue → file as user `sluice` on vhost `orders`
    // with a client certificate; a wrong password is exit 2 without the
    // password; no client certificate, or a CA that did not sign the
    // server's certificate, is exit 2 naming the certificate problem.
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let rabbit = TlsRabbit::start(&certs);
    let keys = rabbit.keys(&certs.ca, Some(&certs));
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

    let anonymous = amqp_load_config(dir.path(), &rabbit.keys(&certs.ca, None));
    let stderr = refused(&anonymous, PASSWORD);
    eprintln!("rabbitmq, no client certificate: {stderr}");
    assert!(
        stderr.contains("certificate"),
        "names the missing certificate: {stderr}"
    );

    let untrusted = amqp_load_config(dir.path(), &rabbit.keys(&certs.other_ca, Some(&certs)));
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

/// An AWS shared credentials file with two profiles: `sluice` (the IAM
/// user's key) and `wrong` (its id with another secret), and a config file
/// giving both a region; both in `dir/aws`, named by the returned
/// environment (the standard chain: no key in the environment or config).
fn aws_profiles(dir: &Path, id: &str, secret: &str, wrong: &str) -> Vec<(String, String)> {
    let aws = dir.join("aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[sluice]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n\
             [wrong]\naws_access_key_id = {id}\naws_secret_access_key = {wrong}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile sluice]\nregion = us-east-1\n\n[profile wrong]\nregion = us-east-1\n",
    )
    .unwrap();
    let path = |name: &str| aws.join(name).display().to_string();
    vec![
        ("AWS_SHARED_CREDENTIALS_FILE".into(), path("credentials")),
        ("AWS_CONFIG_FILE".into(), path("config")),
    ]
}

#[test]
fn sqs_over_https_with_credentials_from_a_profile_round_trips_and_refuses_bad_ones() {
    // The SDK's own HTTPS client trusting the test's CA (`tls.ca_file`),
    // credentials and region from the profile files of the standard chain;
    // moto checks every request's signature against its IAM user.
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let moto = sluice_tests::sqs_client::TlsMoto::start(dir.path(), &certs.cert, &certs.key);
    let (id, secret) = moto.user(&certs.ca);
    let wrong = "wrongSecretWrongSecretWrongSecret0123456";
    for (var, value) in aws_profiles(dir.path(), &id, &secret, wrong) {
        std::env::set_var(var, value);
    }
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_PROFILE", "sluice");
    let keys = |ca: &Path| {
        format!(
            r#"queue = "orders", endpoint_url = "{}", connect_timeout = "5s", tls = {{ ca_file = {:?} }}"#,
            moto.endpoint(),
            ca.display().to_string()
        )
    };
    let load = load_to(
        dir.path(),
        "sqs-load",
        &format!(
            r#"{{ type = "sqs", create_queue = true, {} }}"#,
            keys(&certs.ca)
        ),
    );
    round_trip(
        dir.path(),
        &load,
        &format!(r#"{{ type = "sqs", wait = "1s", {} }}"#, keys(&certs.ca)),
    );

    let stderr = refused_with(&load, &[("AWS_PROFILE", "wrong")], &[wrong, &secret]);
    eprintln!("sqs, wrong secret: {stderr}");
    assert!(
        stderr.contains("signature") && stderr.contains("credentials"),
        "names the refusal and where to look: {stderr}"
    );
    assert!(stderr.contains("127.0.0.1"), "names the endpoint: {stderr}");

    let untrusted = load_to(
        dir.path(),
        "sqs-untrusted",
        &format!(r#"{{ type = "sqs", {} }}"#, keys(&certs.other_ca)),
    );
    let stderr = refused_with(&untrusted, &[], &[&secret]);
    eprintln!("sqs, untrusted certificate: {stderr}");
    assert!(
        stderr.contains("certificate"),
        "names the certificate problem: {stderr}"
    );
}
