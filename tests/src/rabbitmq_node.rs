//! A private RabbitMQ node for tests that stop and restart the broker: the
//! machine's shared server on 5672 must never be restarted by a test.
//!
//! The node runs Debian's `rabbitmq-server` (the package the test command
//! installs) directly as the current user, from a directory of its own
//! (config, cookie, Mnesia, logs) on free loopback ports. Stopping it keeps
//! that directory, so durable queues and persistent messages survive a
//! restart as on a real broker. The node is stopped by its PID when the
//! value is dropped.

use crate::daemon::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A RabbitMQ node of one test.
pub struct RabbitNode {
    dir: tempfile::TempDir,
    name: String,
    port: u16,
    dist_port: u16,
    pid: Option<u32>,
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

impl RabbitNode {
    /// Start a fresh node and wait until it accepts AMQP connections.
    pub fn start() -> RabbitNode {
        RabbitNode::start_with("")
    }

    /// A fresh node that also listens for AMQP over TLS on `tls_port`,
    /// with the server certificate `cert`/`key` (PEM) signed by `ca`,
    /// requiring a client certificate `ca` signed (mutual TLS).
    pub fn start_with_tls(tls_port: u16, ca: &Path, cert: &Path, key: &Path) -> RabbitNode {
        let conf = format!(
            "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\n",
            ca.display(),
            cert.display(),
            key.display()
        );
        let node = RabbitNode::start_with(&conf);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !listening(tls_port) {
            assert!(
                Instant::now() < deadline,
                "private RabbitMQ node did not listen for TLS on {tls_port}; logs in {}",
                node.path("log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        node
    }

    /// `rabbitmqctl ARGS` against this node; panics if it fails.
    pub fn ctl(&self, args: &[&str]) {
        let out = self
            .command(CTL)
            .args(["-q", "-n", &self.name])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_with(extra_conf: &str) -> RabbitNode {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: apt-get install rabbitmq-server (tests/run.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("sluice-rabbit-")
            .tempdir()
            .expect("node dir");
        let port = free_port();
        let name = format!("sluice-test-{}-{port}@localhost", std::process::id());
        let conf =
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n{extra_conf}");
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.path().join("env.conf"), "").unwrap();
        let mut node = RabbitNode {
            dir,
            name,
            port,
            dist_port: free_port(),
            pid: None,
        };
        node.boot();
        node
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("HOME", self.dir.path())
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq"))
            .env("RABBITMQ_CONF_ENV_FILE", self.path("env.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.path("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env("RABBITMQ_PID_FILE", self.path("pid"));
        cmd
    }

    /// Start the node (again, on the same data) and wait for its port.
    pub fn boot(&mut self) {
        let _ = std::fs::remove_file(self.path("pid"));
        let status = self
            .command(SERVER)
            .arg("-detached")
            .status()
            .expect("rabbitmq-server runs");
        assert!(
            status.success(),
            "rabbitmq-server -detached failed: {status:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        while !listening(self.port) {
            assert!(
                Instant::now() < deadline,
                "private RabbitMQ node did not listen on {} within 90 s; logs in {}",
                self.port,
                self.path("log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let pid = std::fs::read_to_string(self.path("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        self.pid = Some(pid.expect("the node wrote its pid file"));
    }

    /// Stop the node (SIGTERM: Erlang shuts down cleanly) and wait until it is gone.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }

    /// The node's connections whose client-given name contains `marker`,
    /// as `rabbitmqctl list_connections` sees them.
    pub fn connections_named(&self, marker: &str) -> usize {
        let out = self
            .command(CTL)
            .args([
                "-q",
                "-n",
                &self.name,
                "list_connections",
                "--no-table-headers",
                "client_properties",
            ])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(marker))
                .count()
        })
        .unwrap_or(0)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.stop();
    }
}
