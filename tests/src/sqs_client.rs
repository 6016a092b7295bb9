//! Test-side SQS access with plain `aws-sdk-sqs` against the emulator the
//! test command starts (moto): queues, sending inputs, reading outputs.

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The SQS endpoint (moto on 19324 unless `SLUICE_TEST_SQS` says otherwise).
pub fn sqs_endpoint() -> String {
    std::env::var("SLUICE_TEST_SQS").unwrap_or_else(|_| "http://127.0.0.1:19324".into())
}

/// Dummy credentials for the emulator, in this process's environment (the
/// daemons it starts inherit them).
pub fn emulator_credentials() {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
}

/// One SQS test at a time: moto serves requests one by one (Python, one
/// process) and its cost per request grows with the depth of the queue, so
/// tests running side by side mostly slow each other down, past their
/// time limits. Each SQS test holds this for its whole run.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static MOTO: std::sync::Mutex<()> = std::sync::Mutex::new(());
    MOTO.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub async fn client() -> aws_sdk_sqs::Client {
    emulator_credentials();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(sqs_endpoint())
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// Create a queue (FIFO when the name ends in `.fifo`); returns its URL.
pub async fn create(client: &aws_sdk_sqs::Client, name: &str) -> String {
    create_with(client, name, &[]).await
}

/// [`create`] with queue attributes.
pub async fn create_with(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, &str)],
) -> String {
    let mut req = client.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        req = req.attributes(QueueAttributeName::FifoQueue, "true");
    }
    for (k, v) in attributes {
        req = req.attributes(k.clone(), *v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create {name} at {} (run tests/run.sh): {e:?}",
                sqs_endpoint()
            )
        })
        .queue_url()
        .unwrap()
        .to_string()
}

/// One message as a test sees it.
#[derive(Debug, Clone)]
pub struct Got {
    pub body: String,
    /// The attributes as headers: `sluice-error` and `sluice-headers`
    /// unpacked, as the sluice source reads them.
    pub attributes: Vec<(String, String)>,
    /// How many message attributes the message had in SQS.
    pub wire_attributes: usize,
    pub group: Option<String>,
}

impl Got {
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// Send `(body, attributes, group)` in batches of 10.
pub async fn send(
    client: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[(String, Vec<(String, String)>, Option<String>)],
) {
    for (c, chunk) in messages.chunks(10).enumerate() {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, (body, attrs, group))| {
                let mut e = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body);
                for (k, v) in attrs {
                    e = e.message_attributes(
                        k,
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(v)
                            .build()
                            .unwrap(),
                    );
                }
                if let Some(g) = group {
                    e = e
                        .message_group_id(g)
                        .message_deduplication_id(format!("{c}-{i}-{body}"));
                }
                e.build().unwrap()
            })
            .collect();
        let out = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send batch");
        assert!(
            out.failed().is_empty(),
            "test send failed: {:?}",
            out.failed()
        );
    }
}

/// Approximate visible + in-flight messages.
pub async fn count(client: &aws_sdk_sqs::Client, url: &str) -> usize {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    out.attributes()
        .map(|a| a.values().filter_map(|v| v.parse::<usize>().ok()).sum())
        .unwrap_or(0)
}

/// Receive and delete everything in `url` (until an empty receive).
pub async fn drain(client: &aws_sdk_sqs::Client, url: &str) -> Vec<Got> {
    let mut got = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return got;
        }
        for m in messages {
            let wire = m.message_attributes().map_or(0, |a| a.len());
            let attributes = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .flat_map(|(k, v)| {
                            let value = v.string_value().unwrap_or_default().as_bytes().to_vec();
                            sluice_brokers::sqs::attributes::unpack(k, value)
                        })
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned();
            got.push(Got {
                body: m.body().unwrap_or_default().to_string(),
                attributes,
                wire_attributes: wire,
                group,
            });
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// A moto server of one test's own on 127.0.0.1 (SQS and IAM), serving
/// HTTPS with the test's certificate and, after its first three actions
/// (which [`TlsMoto::user`] spends), answering only requests signed by an
/// IAM user it knows, as AWS does. Killed (by its own PID) when dropped.
pub struct TlsMoto {
    _server: crate::daemon::Owned,
    port: u16,
}

impl TlsMoto {
    /// The moto installed by `tests/brokers.sh` (`SLUICE_MOTO` overrides).
    fn bin() -> PathBuf {
        crate::tool("SLUICE_MOTO", "moto/bin/moto_server")
    }

    pub fn start(dir: &Path, cert: &Path, key: &Path) -> TlsMoto {
        let port = crate::daemon::free_port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = Command::new(Self::bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .arg("-c")
            .arg(cert)
            .arg("-k")
            .arg(key)
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moto_server starts");
        let server = crate::daemon::Owned::new(child);
        assert!(
            crate::daemon::eventually(Duration::from_secs(60), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "moto did not start on 127.0.0.1:{port}"
        );
        TlsMoto {
            _server: server,
            port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// An IAM user allowed every SQS action, made with boto3 from moto's
    /// virtualenv over HTTPS trusting `ca`: its access key id and secret.
    pub fn user(&self, ca: &Path) -> (String, String) {
        let python = Self::bin().with_file_name("python");
        let script = r#"
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], verify=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="sluice")
iam.put_user_policy(UserName="sluice", PolicyName="sqs", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="sluice")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let out = Command::new(python)
            .args(["-c", script, &self.endpoint()])
            .arg(ca)
            .output()
            .expect("moto's python runs");
        assert!(
            out.status.success(),
            "IAM user: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (id, secret) = text.trim().split_once(' ').expect("id and secret");
        (id.to_string(), secret.to_string())
    }
}
