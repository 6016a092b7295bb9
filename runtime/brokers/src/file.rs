//! The `file` connector: a source that reads a file line by line and ends at
//! its end, and a sink that writes one line per message.
//!
//! Neither has acknowledgements to make: a file source is read once from the
//! start; the sink confirms a message once its line is flushed to the OS.

use crate::lines::{self, LineFormat, LineWriter};
use crate::ConnectError;
use serde::Deserialize;
use sluice_core::stats::ReadProgress;
use sluice_core::Outbox;
use sluice_core::Shutdown;
use sluice_core::{Confirm, Message, Sink, SinkError, Source, SourceError};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// `source = { type = "file", path = "orders.jsonl" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read, relative to the config file.
    pub path: PathBuf,
    /// `json` (default) or `lines`.
    #[serde(default)]
    pub format: LineFormat,
    /// For `json`: the top-level field whose value becomes the message key.
    pub key_field: Option<String>,
}

impl FileSourceConfig {
    pub(crate) async fn open(&self, base: &Path) -> Result<Box<dyn Source>, ConnectError> {
        let path = base.join(&self.path);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ConnectError::Invalid(format!("source file {}: {e}", path.display())))?;
        let total = file.metadata().await.map_or(0, |m| m.len());
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Box::new(FileSource {
            name,
            path,
            file,
            format: self.format,
            key_field: self.key_field.clone(),
            progress: Arc::new(ReadProgress::new(total)),
        }))
    }
}

struct FileSource {
    name: String,
    path: PathBuf,
    file: tokio::fs::File,
    format: LineFormat,
    key_field: Option<String>,
    progress: Arc<ReadProgress>,
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    progress: Arc<ReadProgress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.progress.read.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

#[async_trait::async_trait]
impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn progress(&self) -> Option<Arc<ReadProgress>> {
        Some(self.progress.clone())
    }

    async fn run(self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let counting = Counting {
            inner: self.file,
            progress: self.progress.clone(),
        };
        let reader = tokio::io::BufReader::with_capacity(64 * 1024, counting);
        lines::read_lines(
            &self.name,
            reader,
            self.format,
            self.key_field.as_deref(),
            out,
            shutdown,
        )
        .await
    }
}

/// `sinks.NAME = { type = "file", path = "out/eu.jsonl" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to write, relative to the config file. Parent directories
    /// are created.
    pub path: PathBuf,
    /// `json` (default: one envelope with key, headers and payload per line)
    /// or `lines` (the payload only).
    #[serde(default)]
    pub format: LineFormat,
    /// Append to an existing file instead of truncating it at start.
    #[serde(default)]
    pub append: bool,
}

impl FileSinkConfig {
    /// The file this sink writes, opened to take its lines back.
    pub(crate) fn dlq(&self, base: &Path) -> FileDlq {
        FileDlq {
            path: base.join(&self.path),
            format: self.format,
            lines: Vec::new(),
        }
    }

    pub(crate) async fn open(&self, base: &Path) -> Result<Arc<dyn Sink>, ConnectError> {
        let path = base.join(&self.path);
        let unusable =
            |e: std::io::Error| ConnectError::Invalid(format!("sink file {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unusable)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&path)
            .map_err(unusable)?;
        let name = format!("file:{}", path.display());
        let writer = LineWriter::spawn(
            name.clone(),
            Box::new(std::io::BufWriter::with_capacity(64 * 1024, file)),
        )
        .map_err(unusable)?;
        Ok(Arc::new(LineSink {
            name,
            writer,
            format: self.format,
        }))
    }
}

/// A sink writing encoded lines through a [`LineWriter`] (file and stdout).
pub(crate) struct LineSink {
    pub(crate) name: String,
    pub(crate) writer: LineWriter,
    pub(crate) format: LineFormat,
}

#[async_trait::async_trait]
impl Sink for LineSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        self.writer.write(lines::encode(msg, self.format)).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.writer.flush().await
    }
}

/// A file DLQ taken back: each line as the message it was written from
/// (`json`) or as its payload (`lines`), with its line number. A file that
/// does not exist holds nothing. Removing rewrites the file in place
/// without those lines (same inode, so a writer appending to it goes on
/// appending; lines it appended after the take are kept, but one written
/// while the file is rewritten can be lost: stop the pipeline that writes
/// the DLQ before a replay).
pub(crate) struct FileDlq {
    path: PathBuf,
    format: LineFormat,
    /// The line index of each message taken.
    lines: Vec<usize>,
}

impl FileDlq {
    fn failed(&self, e: std::io::Error) -> ConnectError {
        ConnectError::Invalid(format!("file {}: {e}", self.path.display()))
    }

    async fn contents(&self) -> Result<Vec<u8>, ConnectError> {
        match tokio::fs::read(&self.path).await {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.failed(e)),
        }
    }
}

#[async_trait::async_trait]
impl crate::dlq::DeadLetterQueue for FileDlq {
    async fn take(&mut self, limit: usize) -> Result<Vec<(String, Message)>, ConnectError> {
        let text = self.contents().await?;
        let mut read = Vec::new();
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if read.len() >= limit {
                break;
            }
            let line = line.trim_ascii_end();
            if line.trim_ascii().is_empty() {
                continue;
            }
            let message = match self.format {
                LineFormat::Json => crate::lines::decode(line),
                LineFormat::Lines => None,
            }
            .unwrap_or_else(|| Message::new(line.to_vec()));
            self.lines.push(i);
            read.push((format!("line={}", i + 1), message));
        }
        Ok(read)
    }

    async fn finish(self: Box<Self>, remove: &[usize]) -> Result<(), ConnectError> {
        let gone: std::collections::HashSet<usize> = remove
            .iter()
            .filter_map(|i| self.lines.get(*i).copied())
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let text = self.contents().await?;
        let kept: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(i, _)| !gone.contains(i))
            .map(|(_, line)| line)
            .collect();
        let rewritten = kept.join(&b'\n');
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.path)
            .await
            .map_err(|e| self.failed(e))?;
        file.write_all(&rewritten)
            .await
            .map_err(|e| self.failed(e))?;
        file.sync_all().await.map_err(|e| self.failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_round_trips_through_source_and_sink() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "one\ntwo\n").unwrap();
        let source = FileSourceConfig {
            path: "in.txt".into(),
            format: LineFormat::Lines,
            key_field: None,
        };
        let sink = FileSinkConfig {
            path: "out/o.txt".into(),
            format: LineFormat::Lines,
            append: false,
        };
        let source = source.open(dir.path()).await.unwrap();
        let sink = sink.open(dir.path()).await.unwrap();
        let (tx, mut rx) = Outbox::channel(4, Default::default());
        source.run(tx, Shutdown::default()).await.unwrap();
        while let Some(d) = rx.recv().await {
            sink.publish(&d.message).await.unwrap().await.unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/o.txt")).unwrap(),
            "one\ntwo\n"
        );
    }

    #[tokio::test]
    async fn a_missing_source_file_is_invalid_input() {
        let config = FileSourceConfig {
            path: "nope.jsonl".into(),
            format: LineFormat::Json,
            key_field: None,
        };
        let err = config.open(Path::new("/tmp")).await.err().unwrap();
        assert!(
            matches!(err, ConnectError::Invalid(ref m) if m.contains("nope.jsonl")),
            "{err}"
        );
    }
}
