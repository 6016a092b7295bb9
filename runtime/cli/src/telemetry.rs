//! OpenTelemetry traces over OTLP/HTTP (protobuf), off by default. On when
//! `sluice run --otlp-endpoint URL` is given or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set (and `OTEL_SDK_DISABLED` is not `true`, `OTEL_TRACES_EXPORTER` not
//! `none`). Sampling: `--trace-sample RATIO` (parent-based), else the
//! standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`; batching: the
//! standard `OTEL_BSP_*`. What the spans are: [`sluice_core::trace`].
//!
//! The SDK's batch processor exports from its own thread; the requests go
//! out with hyper on the daemon's tokio runtime ([`RuntimeClient`]).

use crate::exit::CliError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::time::Duration;

/// The longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how much to trace (flags).
#[derive(Debug, Clone, Default)]
pub struct TraceOptions {
    /// The OTLP endpoint's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (`/v1/traces` is appended), e.g. `http://127.0.0.1:4318`.
    pub endpoint: Option<String>,
    /// The share of new traces recorded, 0–1.
    pub sample: Option<f64>,
}

/// The installed tracer provider; [`Tracing::shutdown`] exports what is
/// left.
pub struct Tracing(SdkTracerProvider);

impl Tracing {
    /// Export the spans still queued, waiting at most a few seconds.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// Install the OTLP exporter and turn tracing on, if asked for.
///
/// # Errors
/// A bad endpoint or sample ratio: invalid input, exit 1.
pub fn init(
    options: &TraceOptions,
    runtime: tokio::runtime::Handle,
) -> Result<Option<Tracing>, CliError> {
    let by_env =
        env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if options.endpoint.is_none()
        && (!by_env
            || env_is("OTEL_SDK_DISABLED", "true")
            || env_is("OTEL_TRACES_EXPORTER", "none"))
    {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(RuntimeClient(runtime))
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(base) = &options.endpoint {
        let url = format!("{}/v1/traces", base.trim_end_matches('/'));
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::Invalid(format!(
                "--otlp-endpoint {base}: use the collector's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318"
            )));
        }
        builder = builder.with_endpoint(url);
    }
    let exporter = builder
        .build()
        .map_err(|e| CliError::Invalid(format!("the OTLP trace exporter: {e}")))?;
    let mut provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("sluice")
                .build(),
        );
    if let Some(ratio) = options.sample {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(CliError::Invalid(format!(
                "--trace-sample {ratio}: use a share of traces in 0..1, e.g. 0.1"
            )));
        }
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let provider = provider.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    sluice_core::trace::enable();
    tracing::info!(
        endpoint = options
            .endpoint
            .as_deref()
            .unwrap_or("from OTEL_EXPORTER_OTLP_*"),
        "OpenTelemetry traces on (OTLP/HTTP)"
    );
    Ok(Some(Tracing(provider)))
}

/// An OTLP HTTP client whose requests run on the daemon's runtime (the
/// SDK's export thread has none): plain HTTP/1.1 with hyper, one
/// connection per export (every few seconds).
#[derive(Debug)]
struct RuntimeClient(tokio::runtime::Handle);

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let task = self.0.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, send(request))
                .await
                .map_err(|_| HttpError::from("the OTLP endpoint did not answer in time"))?
        });
        let result = task.await.map_err(|e| HttpError::from(e.to_string()))?;
        // The exporter retries a failed export a few times, then drops
        // the batch without a word (the SDK's own logs are off): say so,
        // once per attempt.
        match &result {
            Err(e) => {
                tracing::warn!(error = %e, "OTLP export failed (retried a few times, then the batch of spans is dropped)")
            }
            Ok(r) if !r.status().is_success() => {
                tracing::warn!(status = %r.status(), "the OTLP endpoint refused an export (retried a few times, then the batch of spans is dropped)")
            }
            Ok(_) => {}
        }
        result
    }
}

async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("http") {
        return Err(
            "only http:// OTLP endpoints are supported (put a collector on the machine for TLS)"
                .into(),
        );
    }
    let host = uri.host().ok_or("the OTLP endpoint has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    // Origin form on the wire: the path, the host in `Host`.
    parts.uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    if !parts.headers.contains_key(hyper::header::HOST) {
        let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
        parts
            .headers
            .insert(hyper::header::HOST, authority.parse()?);
    }
    let response = sender
        .send_request(hyper::Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
