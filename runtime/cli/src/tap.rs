//! `sluice tap ADDR --pipeline P [--stage S] [--inputs|--outputs] [--limit N]
//! [--sample RATE]`: attach to a running daemon's `/api/v1/tap` (hyper's
//! HTTP/1 client) and print each copy as one JSON line on stdout; what the
//! tap says about itself (attached, copies dropped) goes to stderr.

use crate::exit::CliError;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::io::Write;
use std::path::Path;

/// What to tap.
pub struct TapRequest {
    pub addr: String,
    pub pipeline: String,
    pub stage: Option<String>,
    pub inputs: bool,
    pub limit: Option<u64>,
    pub sample: f64,
    pub payload_bytes: usize,
    pub token: Option<String>,
}

/// The tap token: the first line of `file`, else `SLUICE_TAP_TOKEN`.
///
/// # Errors
/// The file cannot be read or is empty: invalid input, exit 1.
pub fn token(file: Option<&Path>) -> Result<Option<String>, CliError> {
    let Some(file) = file else {
        return Ok(std::env::var("SLUICE_TAP_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_string()));
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Invalid(format!("token file {}: {e}", file.display())))?;
    match text.lines().next().map(str::trim) {
        Some(t) if !t.is_empty() => Ok(Some(t.to_string())),
        _ => Err(CliError::Invalid(format!(
            "token file {}: empty (put the token on its first line)",
            file.display()
        ))),
    }
}

/// `%`-encode a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl TapRequest {
    fn path(&self) -> String {
        let mut q = vec![
            format!("pipeline={}", encode(&self.pipeline)),
            format!("side={}", if self.inputs { "inputs" } else { "outputs" }),
            format!("sample={}", self.sample),
            format!("payload_bytes={}", self.payload_bytes),
        ];
        if let Some(stage) = &self.stage {
            q.push(format!("stage={}", encode(stage)));
        }
        if let Some(limit) = self.limit {
            q.push(format!("limit={limit}"));
        }
        format!("/api/v1/tap?{}", q.join("&"))
    }
}

/// Run the tap until its limit, the daemon ends it, or Ctrl-C.
///
/// # Errors
/// The daemon cannot be reached (exit 2) or refuses the tap (exit 1, with
/// its reason: tap off, no such pipeline or stage, wrong token).
pub fn tap(request: &TapRequest) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(stream(request))
}

async fn stream(request: &TapRequest) -> Result<(), CliError> {
    let addr = &request.addr;
    let unreachable = |e: &dyn std::fmt::Display| {
        CliError::Connection(format!(
            "cannot reach the daemon at {addr}: {e} (is it running with --http {addr} --tap?)"
        ))
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::get(request.path())
        .header(hyper::header::HOST, addr.as_str())
        .header(hyper::header::ACCEPT, "application/x-ndjson");
    if let Some(token) = &request.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = builder
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| CliError::Invalid(format!("tap request: {e}")))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(CliError::Invalid(format!("{addr}: {status}: {text}")));
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreachable(&e))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            show(&line, &mut stdout)?;
        }
    }
    Ok(())
}

/// Print one line of the stream: a copy to stdout, the tap's own news to
/// stderr.
fn show(line: &[u8], stdout: &mut impl Write) -> Result<(), CliError> {
    let value: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
    if let Some(dropped) = value.get("dropped").and_then(serde_json::Value::as_u64) {
        eprintln!("tap: {dropped} copies dropped so far (this reader was slower than the pipeline; the pipeline never waits for a tap)");
        return Ok(());
    }
    if value.get("tap").is_some() {
        eprintln!(
            "tap: attached to pipeline `{}`, {} {}",
            value["pipeline"].as_str().unwrap_or(""),
            value["at"].as_str().unwrap_or(""),
            value["side"].as_str().unwrap_or("")
        );
        return Ok(());
    }
    stdout
        .write_all(line)
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Invalid(format!("stdout: {e}")))
}
