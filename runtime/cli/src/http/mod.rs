//! The optional HTTP listener (`sluice run --http ADDR`), on axum:
//!
//! | path | what |
//! |---|---|
//! | `/` | the status page: each pipeline as a flow with its rates, dead letters, reloads |
//! | `/api/v1/pipelines` | the same as JSON ([`api`]) |
//! | `/api/v1/tap` | live copies of one stage's messages, JSON lines ([`tap`]; only with `--tap`) |
//! | `/metrics` | Prometheus, OpenMetrics or classic text by `Accept` ([`metrics`]) |
//! | `/healthz` | the process is up |
//! | `/readyz` | started, and every source and sink is connected: 503 with one line per source or sink that lost its broker, and why, until it is back |
//!
//! Nothing but the tap shows message contents, and nothing credentials.

pub mod api;
pub mod metrics;
pub mod tap;

use crate::exit::CliError;
use crate::status::Status;
use api::Rates;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
pub use tap::TapAccess;
use tokio::net::TcpListener;

#[derive(Clone)]
struct Shared {
    status: Arc<Status>,
    registry: Arc<Registry>,
    rates: Arc<Rates>,
    tap: TapAccess,
}

/// Bind `addr` and serve in the background.
///
/// # Errors
/// The address cannot be bound (in use, not local): invalid input, exit 1.
pub async fn serve(
    addr: SocketAddr,
    status: Arc<Status>,
    tap: TapAccess,
) -> Result<SocketAddr, CliError> {
    if tap.enabled && tap.token.is_none() && !addr.ip().is_loopback() {
        return Err(CliError::Invalid(format!(
            "--tap on --http {addr}: a tap shows message contents, so off loopback it needs a token: set SLUICE_TAP_TOKEN or --tap-token-file FILE (or listen on 127.0.0.1)"
        )));
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        CliError::Invalid(format!(
            "--http {addr}: cannot listen: {e} (pick a free address, e.g. 127.0.0.1:9090)"
        ))
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let shared = Shared {
        registry: Arc::new(metrics::registry(status.clone())),
        rates: Arc::default(),
        status,
        tap,
    };
    tokio::spawn(shared.rates.clone().sample(shared.status.clone()));
    let tap = shared.tap.enabled;
    let app = Router::new()
        .route("/", get(page))
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/tap", get(tap::tap))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(shared);
    tracing::info!(address = %local, tap, "HTTP listener: / (status page), /api/v1/pipelines, /api/v1/tap, /metrics, /healthz, /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP listener stopped");
        }
    });
    Ok(local)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("status.html"))
}

async fn pipelines(State(s): State<Shared>) -> Json<api::Overview> {
    Json(api::overview(&s.status, &s.rates))
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = metrics::render(&s.registry, openmetrics);
    let kind = if openmetrics {
        metrics::OPENMETRICS
    } else {
        metrics::TEXT
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn readyz(State(s): State<Shared>) -> Response {
    match s.status.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", why.join("\n")),
        )
            .into_response(),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "try / (status page), /api/v1/pipelines, /metrics, /healthz or /readyz\n",
    )
}
