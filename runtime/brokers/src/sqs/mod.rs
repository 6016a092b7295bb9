//! The `sqs` connector (`aws-sdk-sqs`, credentials and region from the
//! standard AWS chain, endpoint overridable for local emulators).
//!
//! - Source: long polling, up to 10 messages per receive; the visibility
//!   timeout of every message still in the pipeline is extended on a timer;
//!   a message is deleted (`DeleteMessageBatch`) only after the sinks
//!   confirmed it; one given back unfinished is made visible again at once.
//!   FIFO queues: order is kept per message group.
//! - Sink: `SendMessageBatch` of up to 10, failed entries retried alone;
//!   FIFO group and deduplication ids from config or headers.
//!
//! TLS: the SDK's own HTTPS client (rustls), trusting the system's roots
//! and, with `tls = { ca_file }`, a CA of the operator's (a private
//! endpoint or an emulator over HTTPS). Credentials come only from the
//! standard chain (environment, profile files, SSO, container or instance
//! role): a config file never holds them.
//!
//! Message mapping: message attributes ↔ headers (String and Binary types),
//! within SQS's ten attributes and its name rules ([`attributes`]: a dead
//! letter's reason travels as one JSON attribute `sluice-error`, headers
//! that do not fit as one `sluice-headers`); the key travels in the
//! attribute `sluice-key`; FIFO ids in the headers
//! `sqs-message-group-id` / `sqs-message-deduplication-id`. SQS bodies are
//! text: a payload that is not UTF-8 is sent base64-encoded with the
//! attribute `sluice-encoding = base64` and decoded again by the source.

pub mod attributes;
mod read_back;
mod sink;
mod source;

pub(crate) use read_back::open_dlq;

use crate::tls::TlsFiles;
use crate::{ConnectError, Invalid};
use serde::Deserialize;
use sluice_core::{HumanDuration, Sink, Source};
use std::sync::Arc;
use std::time::Duration;

/// The attribute that carries the message key.
pub const KEY_ATTRIBUTE: &str = "sluice-key";
/// Set to `base64` when the body is a base64-encoded binary payload.
pub const ENCODING_ATTRIBUTE: &str = "sluice-encoding";
/// Headers that carry FIFO ids in and out.
pub const GROUP_HEADER: &str = "sqs-message-group-id";
pub const DEDUP_HEADER: &str = "sqs-message-deduplication-id";

/// Where the queue is: shared by source and sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The queue URL, or its name (looked up with GetQueueUrl).
    pub queue: String,
    /// The AWS region; default from the environment/profile.
    pub region: Option<String>,
    /// Override the service endpoint (a local emulator such as
    /// `http://127.0.0.1:9324`).
    pub endpoint_url: Option<String>,
    /// Create the queue if it does not exist (a FIFO queue when the name
    /// ends in `.fifo`), with default attributes. Default off: queues are
    /// usually the operator's (IaC, redrive policies).
    #[serde(default)]
    pub create_queue: bool,
    /// A CA to trust besides the system's roots (`ca_file`); SQS has no
    /// client certificates.
    pub tls: Option<TlsFiles>,
}

/// `source = { type = "sqs", queue = "orders", ... }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSourceConfig {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Long-polling wait per receive (`WaitTimeSeconds`, at most 20s).
    #[serde(default = "default_wait")]
    pub wait: HumanDuration,
    /// Messages per receive, 1 to 10.
    #[serde(default = "default_batch")]
    pub batch: i32,
    /// Visibility timeout given at receive and renewed while a message is in
    /// the pipeline.
    #[serde(default = "default_visibility")]
    pub visibility_timeout: HumanDuration,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

/// `sinks.NAME = { type = "sqs", queue = "out", ... }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSinkConfig {
    /// Default queue name: the sink's name.
    pub queue: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// FIFO: the group id when the message has no `sqs-message-group-id`
    /// header (default: its key, else `sluice`).
    pub message_group_id: Option<String>,
    /// Create the queue if it does not exist (see the source's key).
    #[serde(default)]
    pub create_queue: bool,
    /// As for the source.
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

fn default_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(20))
}
fn default_batch() -> i32 {
    10
}
fn default_visibility() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl SqsSourceConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !(1..=10).contains(&self.batch) {
            return Err(Invalid::new(
                format!(
                    "`batch` is {}, SQS receives 1 to 10 messages at a time",
                    self.batch
                ),
                "set `batch` between 1 and 10",
            ));
        }
        if self.wait.0 > Duration::from_secs(20) {
            return Err(Invalid::new(
                "`wait` exceeds SQS's 20 s long-polling limit",
                "set `wait` to at most \"20s\"",
            ));
        }
        if self.visibility_timeout.0 < Duration::from_secs(2) {
            return Err(Invalid::new(
                "`visibility_timeout` below 2 s leaves no time to renew it",
                "set `visibility_timeout` to at least \"2s\"",
            ));
        }
        Ok(())
    }

    pub(crate) async fn open(&self) -> Result<Box<dyn Source>, ConnectError> {
        Ok(Box::new(source::SqsSource::connect(self).await?))
    }
}

impl SqsSinkConfig {
    pub(crate) async fn open(&self, name: &str) -> Result<Arc<dyn Sink>, ConnectError> {
        Ok(Arc::new(
            sink::SqsSink::connect(self, self.endpoint(name)).await?,
        ))
    }

    /// The queue this sink sends to, `name` when the table names none.
    fn endpoint(&self, name: &str) -> Endpoint {
        Endpoint {
            queue: self.queue.clone().unwrap_or_else(|| name.to_string()),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            create_queue: self.create_queue,
            tls: self.tls.clone(),
        }
    }

    /// As [`SqsSourceConfig::resolve_files`].
    pub(crate) fn resolve_files(&mut self, base: &std::path::Path) -> Result<(), Invalid> {
        resolve_files(&mut self.tls, base)
    }
}

impl SqsSourceConfig {
    /// Check the CA file of `tls` (its path made absolute against `base`).
    pub(crate) fn resolve_files(&mut self, base: &std::path::Path) -> Result<(), Invalid> {
        resolve_files(&mut self.endpoint.tls, base)
    }
}

fn resolve_files(tls: &mut Option<TlsFiles>, base: &std::path::Path) -> Result<(), Invalid> {
    let Some(tls) = tls else { return Ok(()) };
    if tls.cert_file.is_some() {
        return Err(Invalid::new(
            "SQS does not take client certificates (`tls.cert_file`)",
            "remove `cert_file` and `key_file`; credentials come from the AWS chain (environment, profile, role)",
        ));
    }
    tls.resolve(base)
}

/// The SDK's HTTPS client trusting `ca_file` besides the system's roots.
fn https_client(
    ca_file: &std::path::Path,
) -> Result<aws_sdk_sqs::config::SharedHttpClient, String> {
    use aws_smithy_http_client::tls;
    let pem = crate::tls::read(ca_file)?;
    let trust = tls::TrustStore::default().with_pem_certificate(pem);
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("`tls.ca_file` {}: {e}", ca_file.display()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// A client and the queue URL, checked against the service within `timeout`.
async fn connect(
    what: &str,
    e: &Endpoint,
    timeout: Duration,
) -> Result<(aws_sdk_sqs::Client, String), ConnectError> {
    let at = e
        .endpoint_url
        .clone()
        .unwrap_or_else(|| "the SQS endpoint of the configured region".into());
    let refused = |err: &str| {
        ConnectError::Unreachable(format!(
            "{what}: cannot reach queue `{}` at {at}: {err}{}",
            e.queue,
            credentials_hint(err)
        ))
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &e.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &e.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(ca) = e.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
        loader = loader.http_client(https_client(ca).map_err(|err| refused(&err))?);
    }
    let client = aws_sdk_sqs::Client::new(&loader.load().await);
    // Each way of finding the queue is one request the service must answer.
    let found = async {
        if e.queue.starts_with("https://") || e.queue.starts_with("http://") {
            let probe = client.get_queue_attributes().queue_url(&e.queue);
            probe
                .send()
                .await
                .map(|_| e.queue.clone())
                .map_err(sdk_error)
        } else if e.create_queue {
            // CreateQueue returns the existing queue's URL when the attributes match.
            let mut create = client.create_queue().queue_name(&e.queue);
            if is_fifo(&e.queue) {
                create =
                    create.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
            }
            let out = create.send().await.map_err(sdk_error)?;
            Ok(out.queue_url().unwrap_or_default().to_string())
        } else {
            let lookup = client.get_queue_url().queue_name(&e.queue);
            let out = lookup.send().await.map_err(sdk_error)?;
            Ok(out.queue_url().unwrap_or_default().to_string())
        }
    };
    match tokio::time::timeout(timeout, found).await {
        Ok(Ok(url)) => Ok((client, url)),
        Ok(Err(err)) => Err(refused(&err)),
        Err(_) => Err(refused("no answer")),
    }
}

/// An SDK error in one line: the service's error code and message; for an
/// answer the SDK cannot read (an emulator's XML error), its HTTP status
/// and the code and message in it; else the chain of causes (a TLS or
/// credentials problem underneath).
pub(super) fn sdk_error<E>(err: aws_sdk_sqs::error::SdkError<E>) -> String
where
    E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata + 'static,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    if let Some(code) = err.code() {
        return format!("{code}: {}", err.message().unwrap_or("(no message)"));
    }
    if let Some(raw) = err.raw_response() {
        let body = raw
            .body()
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let tag = |name: &str| {
            let open = format!("<{name}>");
            let start = body.find(&open)? + open.len();
            let len = body[start..].find(&format!("</{name}>"))?;
            Some(body[start..start + len].to_string())
        };
        let said = match (tag("Code"), tag("Message")) {
            (Some(code), Some(message)) => format!(": {code}: {message}"),
            (Some(code), None) => format!(": {code}"),
            _ => String::new(),
        };
        return format!("HTTP {}{said}", raw.status().as_u16());
    }
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

/// Where to look when the service refused the request's credentials, or
/// the SDK found none.
fn credentials_hint(err: &str) -> &'static str {
    const REFUSALS: [&str; 5] = [
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClient",
        "AccessDenied",
        "credentials",
    ];
    if REFUSALS.iter().any(|r| err.contains(r)) {
        " (check the AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
         and its shared credentials file, or the instance role)"
    } else {
        ""
    }
}

/// Is this a FIFO queue (by its URL or name)?
fn is_fifo(queue_url: &str) -> bool {
    queue_url.ends_with(".fifo")
}

/// Set the visibility timeout of received messages (by receipt handle) to
/// `seconds`, ten per request; the first failure's text, if any.
pub(super) async fn set_visibility(
    client: &aws_sdk_sqs::Client,
    url: &str,
    receipts: &[&str],
    seconds: i32,
) -> Result<(), String> {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
    let mut result = Ok(());
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                Entry::builder()
                    .id(i.to_string())
                    .receipt_handle(*r)
                    .visibility_timeout(seconds)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = client
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            result = result.and(Err(sdk_error(e)));
        }
    }
    result
}
