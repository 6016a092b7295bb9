//! A log rate limit: lines over `lines_per_second` are not written but
//! counted, and the count is written as one summary line once its second is
//! over (by the next line, or after the next call, whichever comes first).
//! Lines longer than the limit's `line_bytes` are cut.
//!
//! Two kinds use it: the plugin log of one stage (`host.log`, stdout and
//! stderr of every instance of the stage share `log_lines_per_second`), and
//! the `failed` events of one pipeline (the engine's log of each failed
//! message, [`crate::engine`]).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

/// Whose lines a [`LogLimiter`] limits (named in its summary line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A stage's plugin log; the limit is its `log_lines_per_second`.
    Plugin,
    /// A pipeline's `failed` events.
    FailedEvents,
}

pub struct LogLimiter {
    /// The stage or pipeline.
    stage: std::sync::Arc<str>,
    lines: Lines,
    lines_per_window: u32,
    line_bytes: usize,
    window: Mutex<Window>,
    /// Suppressed lines not yet summarised (a cheap check after each call).
    pending: AtomicU64,
    /// Suppressed lines not yet taken for the stage's counters.
    untaken: AtomicU64,
}

struct Window {
    started: Instant,
    lines: u32,
}

impl LogLimiter {
    /// The limit of one stage's plugin log.
    pub fn new(stage: std::sync::Arc<str>, lines_per_second: u32, line_bytes: usize) -> Self {
        Self::of(Lines::Plugin, stage, lines_per_second, line_bytes)
    }

    /// A limit of `lines` for `name` (a stage or a pipeline).
    pub fn of(
        lines: Lines,
        name: std::sync::Arc<str>,
        lines_per_second: u32,
        line_bytes: usize,
    ) -> Self {
        LogLimiter {
            stage: name,
            lines,
            lines_per_window: lines_per_second,
            line_bytes: line_bytes.max(16),
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
            }),
            pending: AtomicU64::new(0),
            untaken: AtomicU64::new(0),
        }
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The longest line written, in bytes (for stdout's line buffer).
    pub fn line_bytes(&self) -> usize {
        self.line_bytes
    }

    /// May one more line be written now? Counts it either way.
    pub fn admit(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut window);
        if window.lines < self.lines_per_window {
            window.lines += 1;
            true
        } else {
            self.pending.fetch_add(1, Relaxed);
            self.untaken.fetch_add(1, Relaxed);
            false
        }
    }

    /// `text`, cut to [`LogLimiter::line_bytes`] at a character boundary.
    pub fn cut<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.len() <= self.line_bytes {
            return Cow::Borrowed(text);
        }
        let mut end = self.line_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!(
            "{}… ({} bytes cut)",
            &text[..end],
            text.len() - end
        ))
    }

    /// Write the summary of a finished window, if lines were suppressed.
    /// Cheap when nothing was: called after every call.
    pub fn settle(&self) {
        if self.pending.load(Relaxed) == 0 {
            return;
        }
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut window);
    }

    /// Lines suppressed since the last call (for `sluice_plugin_log_suppressed_total`).
    pub fn take_suppressed(&self) -> u64 {
        if self.untaken.load(Relaxed) == 0 {
            return 0;
        }
        self.untaken.swap(0, Relaxed)
    }

    /// Start a new window if the current one is over, summarising it.
    fn roll(&self, window: &mut Window) {
        let elapsed = window.started.elapsed();
        if elapsed < WINDOW {
            return;
        }
        let suppressed = self.pending.swap(0, Relaxed);
        if suppressed > 0 && self.lines == Lines::FailedEvents {
            tracing::warn!(
                pipeline = &*self.stage,
                suppressed,
                limit = self.lines_per_window,
                "{suppressed} `failed` events not logged in the last {:.1}s (limit {}/s); the metrics and the status page count every one",
                elapsed.as_secs_f64(),
                self.lines_per_window,
            );
        } else if suppressed > 0 {
            tracing::warn!(
                target: "sluice::plugin",
                stage = &*self.stage,
                suppressed,
                limit = self.lines_per_window,
                "plugin log rate limit: {suppressed} lines suppressed in the last {:.1}s (limit {}/s, `log_lines_per_second`)",
                elapsed.as_secs_f64(),
                self.lines_per_window,
            );
        }
        window.started = Instant::now();
        window.lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_rate_are_counted_not_written() {
        let limiter = LogLimiter::new("s".into(), 3, 64);
        let admitted = (0..10).filter(|_| limiter.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(limiter.take_suppressed(), 7);
        assert_eq!(limiter.take_suppressed(), 0, "taken once");
    }

    #[test]
    fn a_new_second_admits_lines_again() {
        let limiter = LogLimiter::new("s".into(), 1, 64);
        assert!(limiter.admit());
        assert!(!limiter.admit());
        limiter.window.lock().unwrap().started -= WINDOW;
        assert!(limiter.admit());
        assert_eq!(limiter.pending.load(Relaxed), 0, "summarised on roll-over");
    }

    #[test]
    fn long_lines_are_cut_at_a_char_boundary() {
        let limiter = LogLimiter::new("s".into(), 1, 16);
        let text = "ééééééééééééééééé"; // 2 bytes each
        let cut = limiter.cut(text);
        assert!(cut.starts_with("éééééééé…"), "{cut}");
        assert!(cut.ends_with("(18 bytes cut)"), "{cut}");
        assert_eq!(limiter.cut("short"), "short");
    }
}
