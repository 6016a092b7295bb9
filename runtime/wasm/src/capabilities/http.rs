//! Capability `http`: outbound requests through `wasi:http/outgoing-handler`
//! (wasmtime-wasi-http serves the interfaces; the request is sent here).
//!
//! Every request is checked before anything leaves the host:
//! - its `host:port` must be on the stage's allow-list
//!   (`capabilities.http.allow`), else `HTTP-request-denied`;
//! - the name is resolved here, and an address that is loopback, private,
//!   link-local or otherwise internal ([`is_internal`]) is refused
//!   (`destination-IP-prohibited`) unless that address itself is listed,
//!   so a listed name cannot lead into the local network; the connection
//!   goes to the address that was checked (no second lookup to rebind);
//! - the whole exchange, from connecting to the last byte of the body,
//!   must end within the grant's `timeout` and the plugin call's own
//!   deadline, whichever comes first (`connection-timeout`, then
//!   `HTTP-response-timeout`); a body over `max_response` bytes ends with
//!   `HTTP-response-body-size`.
//!
//! Each refusal is an ordinary `wasi:http` error code the plugin gets back
//! (and a line in the stage's log saying why): never a trap of the host.
//! HTTP/1.1 only; `https` with the system's root certificates.

use crate::state::PluginState;
use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use sluice_core::grant::is_internal;
use sluice_core::log_limit::LogLimiter;
use sluice_core::HttpGrant;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Sleep};
use wasmtime::component::Linker;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)
}

/// A stage's outbound HTTP, in each of its instances' stores.
pub(crate) struct HttpAccess {
    ctx: WasiHttpCtx,
    policy: Policy,
}

impl HttpAccess {
    pub fn new(grant: Option<Arc<HttpGrant>>, log: Arc<LogLimiter>) -> Self {
        HttpAccess {
            ctx: WasiHttpCtx::new(),
            policy: Policy {
                grant,
                log,
                call_deadline: Instant::now(),
            },
        }
    }

    /// Whether the stage grants outbound HTTP.
    pub fn granted(&self) -> bool {
        self.policy.grant.is_some()
    }

    /// Requests made from now on end by `deadline` (the call's).
    pub fn start_call(&mut self, deadline: Instant) {
        self.policy.call_deadline = deadline;
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.policy,
        }
    }
}

/// The grant, applied to each request.
struct Policy {
    /// `None` only where the capability is not linked (unreachable).
    grant: Option<Arc<HttpGrant>>,
    log: Arc<LogLimiter>,
    call_deadline: Instant,
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for Policy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let grant = self.grant.clone();
        let log = self.log.clone();
        let deadline = self.call_deadline;
        Box::new(async move {
            let Some(grant) = grant else {
                return Err(Error::HttpRequestDenied);
            };
            let target = request.uri().to_string();
            let sent = send(&grant, request, deadline).await;
            if let Err(e) = &sent {
                if log.admit() {
                    tracing::warn!(target: "sluice::plugin", stage = log.stage(), url = %target, "outbound HTTP request failed: {e}");
                }
            }
            sent
        })
    }
}

/// Where a request goes: host (without brackets), port, whether TLS.
fn target(request: &http::Request<WasiBody>) -> Result<(String, u16, bool), Error> {
    let uri = request.uri();
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => return Err(Error::HttpProtocolError),
    };
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((host.to_ascii_lowercase(), port, tls))
}

/// The first address of `host:port` the grant lets a request reach.
async fn resolve(
    grant: &HttpGrant,
    host: &str,
    port: u16,
    deadline: tokio::time::Instant,
) -> Result<SocketAddr, Error> {
    let addresses: Vec<SocketAddr> = match host.parse() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(|e| Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    addresses
        .into_iter()
        .find(|a| !is_internal(a.ip()) || grant.lists_address(a.ip(), port))
        .ok_or(Error::DestinationIpProhibited)
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Client TLS with the system's roots, loaded once.
static TLS: LazyLock<Result<Arc<rustls::ClientConfig>, String>> = LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
});

async fn tls(host: &str, tcp: tokio::net::TcpStream) -> Result<Box<dyn Stream>, Error> {
    let config = TLS
        .as_ref()
        .map_err(|e| Error::InternalError(Some(format!("TLS: {e}"))))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(Error::Tls)?;
    Ok(Box::new(stream))
}

/// Send `request` as the grant allows, by `call_deadline` at the latest.
async fn send(
    grant: &HttpGrant,
    mut request: http::Request<WasiBody>,
    call_deadline: Instant,
) -> Sent {
    let deadline =
        tokio::time::Instant::from_std((Instant::now() + grant.timeout).min(call_deadline));
    let (host, port, tls_on) = target(&request)?;
    if grant.allowed(&host, port).is_none() {
        return Err(Error::HttpRequestDenied);
    }
    let address = resolve(grant, &host, port, deadline).await?;
    let tcp = timeout_at(deadline, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let stream: Box<dyn Stream> = if tls_on {
        timeout_at(deadline, tls(&host, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)??
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = timeout_at(
        deadline,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // On the wire the request line holds the path only.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

    // The response head, while the connection is driven alongside.
    let mut connection = Some(Box::pin(connection));
    let head = {
        let mut response = std::pin::pin!(sender.send_request(request));
        let driven = std::future::poll_fn(|cx| {
            if let Poll::Ready(answer) = response.as_mut().poll(cx) {
                return Poll::Ready(answer.map_err(Error::from));
            }
            if let Some(conn) = connection.as_mut() {
                if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
                    connection = None;
                    if let Err(e) = ended {
                        return Poll::Ready(Err(Error::from(e)));
                    }
                    return response.as_mut().poll(cx).map_err(Error::from);
                }
            }
            Poll::Pending
        });
        timeout_at(deadline, driven)
            .await
            .map_err(|_| Error::HttpResponseTimeout)??
    };
    let (parts, incoming) = head.into_parts();
    let body = Bounded {
        inner: incoming,
        left: grant.max_response,
        max: grant.max_response,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
    };
    let rest = async move {
        let Some(connection) = connection else {
            return Ok(());
        };
        match timeout_at(deadline, connection).await {
            Ok(ended) => ended.map_err(Error::from),
            Err(_) => Err(Error::HttpResponseTimeout),
        }
    };
    Ok((
        http::Response::from_parts(parts, body.boxed_unsync()),
        Box::new(rest),
    ))
}

/// A response body cut at `max` bytes and at the deadline.
struct Bounded {
    inner: hyper::body::Incoming,
    left: u64,
    max: u64,
    deadline: Pin<Box<Sleep>>,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    self.left = 0;
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.max)))));
                }
                self.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
