//! The WASI a plugin sees: nothing. No preopened directories, no sockets, no
//! name lookup, no environment, no arguments, no stdin. Its stdout and stderr
//! become log lines tagged with the stage name, under the stage's log rate
//! limit ([`sluice_core::log_limit`]).

use sluice_core::log_limit::LogLimiter;

use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// A WASI context with every capability denied.
pub fn deny_all(log: &Arc<LogLimiter>) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(LogPipe {
            log: log.clone(),
            stream: "stdout",
        })
        .stderr(LogPipe {
            log: log.clone(),
            stream: "stderr",
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

/// Where a guest's stdout or stderr goes: the host log.
struct LogPipe {
    log: Arc<LogLimiter>,
    stream: &'static str,
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger::new(self))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineLogger::new(self))
    }
}

/// Buffers guest output and logs it one line at a time.
struct LineLogger {
    log: Arc<LogLimiter>,
    stream: &'static str,
    line: Vec<u8>,
}

impl LineLogger {
    fn new(pipe: &LogPipe) -> Self {
        LineLogger {
            log: pipe.log.clone(),
            stream: pipe.stream,
            line: Vec::new(),
        }
    }

    /// A guest that never writes a newline still gets logged in pieces of
    /// the longest line the stage allows.
    fn push(&mut self, bytes: &[u8]) {
        let max_line = self.log.line_bytes();
        for &b in bytes {
            if b == b'\n' || self.line.len() >= max_line {
                self.emit();
                if b == b'\n' {
                    continue;
                }
            }
            self.line.push(b);
        }
    }

    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        if self.log.admit() {
            let text = String::from_utf8_lossy(&self.line);
            tracing::info!(target: "sluice::plugin", stage = self.log.stage(), stream = self.stream, "{text}");
        }
        self.line.clear();
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().emit();
        Poll::Ready(Ok(()))
    }
}
