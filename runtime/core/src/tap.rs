//! Taps: a live copy of the messages entering or leaving one stage, or
//! handed to a sink, for `sluice tap`.
//!
//! A tap never slows the pipeline. Each tap has a bounded queue; a copy that
//! does not fit (the reader is slow or gone) is dropped and counted, never
//! waited for. With no tap attached the message path pays one atomic load
//! per stage call and per hand-over.
//!
//! ```
//! # use sluice_core::tap::{Point, Side, Taps};
//! # use sluice_core::Message;
//! let taps = std::sync::Arc::new(Taps::default());
//! let (tap, mut copies) = taps.attach(Point::stage("mark", Side::Outputs), 1.0, 64, 100);
//! assert!(taps.active());
//! taps.offer("mark", Side::Outputs, [&Message::new(b"hi".to_vec())]);
//! assert_eq!(copies.try_recv().unwrap().payload, b"hi");
//! drop(tap);
//! assert!(!taps.active());
//! ```

use crate::message::Message;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Which messages of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Handed to the stage (once per attempt).
    Inputs,
    /// Passed on by the stage: kept by a filter, returned by a transform,
    /// routed by a route (once per route).
    Outputs,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inputs => "inputs",
            Side::Outputs => "outputs",
        }
    }
}

/// Where a tap looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    Stage {
        name: String,
        side: Side,
    },
    /// What is handed to this sink, or to every sink (`None`).
    Sink(Option<String>),
}

impl Point {
    pub fn stage(name: &str, side: Side) -> Point {
        Point::Stage {
            name: name.to_string(),
            side,
        }
    }
}

/// One copy of a message, as a tap sees it.
#[derive(Debug, Clone)]
pub struct Copy {
    pub time: SystemTime,
    /// The stage or sink.
    pub at: String,
    pub side: Side,
    pub key: Option<Vec<u8>>,
    /// Cut at the tap's `max_payload` bytes.
    pub payload: Vec<u8>,
    /// The whole payload's length.
    pub payload_bytes: usize,
    pub headers: Vec<(String, Vec<u8>)>,
    pub attempt: u32,
}

/// One attached tap.
pub struct Tap {
    point: Point,
    /// Every `1 / sample`-th message is copied (1.0: every one).
    sample: f64,
    max_payload: usize,
    seen: AtomicU64,
    dropped: AtomicU64,
    tx: mpsc::Sender<Copy>,
}

impl Tap {
    /// Copies that did not fit the tap's queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    fn wants(&self, at: &str, side: Side, sink: bool) -> bool {
        match &self.point {
            Point::Stage { name, side: s } => !sink && name == at && *s == side,
            Point::Sink(name) => sink && name.as_deref().is_none_or(|n| n == at),
        }
    }

    fn offer(&self, at: &str, side: Side, msg: &Message) {
        // Sampling by count: copy when n × sample crosses an integer.
        let n = self.seen.fetch_add(1, Relaxed);
        if self.sample < 1.0
            && ((n + 1) as f64 * self.sample).floor() <= (n as f64 * self.sample).floor()
        {
            return;
        }
        let cut = msg.payload.len().min(self.max_payload);
        let copy = Copy {
            time: SystemTime::now(),
            at: at.to_string(),
            side,
            key: msg.key.clone(),
            payload: msg.payload[..cut].to_vec(),
            payload_bytes: msg.payload.len(),
            headers: msg.headers.clone(),
            attempt: msg.attempt,
        };
        if self.tx.try_send(copy).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The taps of one pipeline; shared by its workers and delivery tasks.
#[derive(Default)]
pub struct Taps {
    count: AtomicUsize,
    list: Mutex<Vec<Arc<Tap>>>,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Taps({})", self.count.load(Relaxed))
    }
}

/// An attached tap; detached when dropped.
pub struct Attached {
    taps: Arc<Taps>,
    tap: Arc<Tap>,
}

impl Attached {
    pub fn dropped(&self) -> u64 {
        self.tap.dropped()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut list = self.taps.lock();
        list.retain(|t| !Arc::ptr_eq(t, &self.tap));
        self.taps.count.store(list.len(), Relaxed);
    }
}

impl Taps {
    /// Is any tap attached? The one check on the message path.
    #[inline]
    pub fn active(&self) -> bool {
        self.count.load(Relaxed) > 0
    }

    /// Attach a tap at `point`: copies of every `1/sample`-th message, the
    /// payload cut at `max_payload` bytes, at most `queue` waiting.
    pub fn attach(
        self: &Arc<Self>,
        point: Point,
        sample: f64,
        max_payload: usize,
        queue: usize,
    ) -> (Attached, mpsc::Receiver<Copy>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let tap = Arc::new(Tap {
            point,
            sample: sample.clamp(0.0, 1.0),
            max_payload,
            seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            tx,
        });
        let mut list = self.lock();
        list.push(tap.clone());
        self.count.store(list.len(), Relaxed);
        drop(list);
        (
            Attached {
                taps: self.clone(),
                tap,
            },
            rx,
        )
    }

    /// Where each attached tap looks, and how many copies it dropped.
    pub fn attached(&self) -> Vec<(Point, u64)> {
        self.lock()
            .iter()
            .map(|t| (t.point.clone(), t.dropped()))
            .collect()
    }

    /// Offer the messages entering or leaving stage `stage` to its taps.
    pub fn offer<'m>(&self, stage: &str, side: Side, msgs: impl IntoIterator<Item = &'m Message>) {
        let taps = self.matching(stage, side, false);
        if taps.is_empty() {
            return;
        }
        for msg in msgs {
            for tap in &taps {
                tap.offer(stage, side, msg);
            }
        }
    }

    /// Offer a message handed to sink `sink` to its taps.
    pub fn offer_sink(&self, sink: &str, msg: &Message) {
        for tap in self.matching(sink, Side::Inputs, true) {
            tap.offer(sink, Side::Inputs, msg);
        }
    }

    fn matching(&self, at: &str, side: Side, sink: bool) -> Vec<Arc<Tap>> {
        self.lock()
            .iter()
            .filter(|t| t.wants(at, side, sink))
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Tap>>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Message {
        Message::new(vec![n; 10])
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_waits() {
        let taps = Arc::new(Taps::default());
        let (tap, mut rx) = taps.attach(Point::Sink(None), 1.0, 4, 2);
        for n in 0..5 {
            taps.offer_sink("out", &msg(n));
        }
        assert_eq!(tap.dropped(), 3);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.payload, vec![0; 4], "cut at max_payload");
        assert_eq!(first.payload_bytes, 10);
        assert_eq!(first.at, "out");
    }

    #[test]
    fn only_its_point_and_side_and_a_sample() {
        let taps = Arc::new(Taps::default());
        let (_tap, mut rx) = taps.attach(Point::stage("b", Side::Outputs), 0.25, 64, 100);
        let msgs: Vec<Message> = (0..8).map(msg).collect();
        taps.offer("a", Side::Outputs, &msgs);
        taps.offer("b", Side::Inputs, &msgs);
        taps.offer_sink("b", &msgs[0]);
        taps.offer("b", Side::Outputs, &msgs);
        let mut got = Vec::new();
        while let Ok(c) = rx.try_recv() {
            got.push(c.payload[0]);
        }
        assert_eq!(got, [3, 7], "one in four, of stage b's outputs only");
    }

    #[test]
    fn detached_when_dropped() {
        let taps = Arc::new(Taps::default());
        let (a, _ra) = taps.attach(Point::Sink(None), 1.0, 1, 1);
        let (b, _rb) = taps.attach(Point::Sink(Some("out".into())), 1.0, 1, 1);
        assert!(taps.active());
        drop(a);
        assert!(taps.active());
        drop(b);
        assert!(!taps.active());
    }
}
