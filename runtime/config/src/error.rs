//! Config errors: where (file, line, column, key) and how to fix it.

use std::path::PathBuf;

/// A config problem. Shown to users as
/// `FILE:LINE:COL: KEY: MESSAGE` followed by a `help:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}{}", self.location(), self.key.as_ref().map(|k| format!(": {k}")).unwrap_or_default(), self.help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<(usize, usize)>,
    /// The dotted key the error is about, e.g. `pipelines.orders.stages[1].kind`.
    pub key: Option<String>,
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl ConfigError {
    pub(crate) fn new(file: &std::path::Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn at(mut self, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        self.line = span.map(|s| line_col(text, s.start));
        self
    }

    pub(crate) fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn location(&self) -> String {
        match self.line {
            Some((line, col)) => format!("{}:{line}:{col}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_col_is_one_based() {
        assert_eq!(super::line_col("ab\ncd", 0), (1, 1));
        assert_eq!(super::line_col("ab\ncd", 4), (2, 2));
    }
}
