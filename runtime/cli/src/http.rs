//! The optional HTTP listener (`sluice run --http ADDR`): `/metrics` in the
//! Prometheus text format, `/healthz` (the process is up) and `/readyz`
//! (started, and every source and sink is connected: 503 with one line per
//! source or sink that lost its broker, and why, until it is back). A small HTTP/1.1 responder on tokio: GET
//! only, one request per connection.

use crate::exit::CliError;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bind `addr` and serve in the background.
///
/// # Errors
/// The address cannot be bound (in use, not local): invalid input, exit 1.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, CliError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        CliError::Invalid(format!(
            "--http {addr}: cannot listen: {e} (pick a free address, e.g. 127.0.0.1:9090)"
        ))
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %local, "HTTP listener: /metrics /healthz /readyz");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, metrics.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(local)
}

async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
    });
    if read.await.is_err() {
        return;
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => match metrics.readiness() {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready\n{}\n", why.join("\n")),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
