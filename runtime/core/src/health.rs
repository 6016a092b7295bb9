//! Is a source or sink connected to its broker now? Each connector keeps a
//! [`Health`] and marks it down when its connection fails (its reconnect
//! loop begins) and up when it is back; the daemon collects them per
//! pipeline for `/readyz`, which says which one is down and why.
//!
//! ```
//! # use sluice_core::Health;
//! let health = Health::new("redis-stream:orders");
//! let seen = health.clone(); // kept by whoever reports readiness
//! health.down("connection refused");
//! assert_eq!(seen.down_reason().as_deref(), Some("connection refused"));
//! health.up();
//! assert!(seen.is_up());
//! ```

use std::sync::{Arc, Mutex, PoisonError};

/// A connector's connection state; cheap to clone, clones share it. Up
/// when made: connectors connect in their constructor.
#[derive(Debug, Clone)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    name: String,
    /// Why it is down; `None` while up.
    down: Mutex<Option<String>>,
}

impl Health {
    /// `name` is the connector's [`describe`](crate::Source::describe).
    pub fn new(name: impl Into<String>) -> Self {
        Health(Arc::new(Inner {
            name: name.into(),
            down: Mutex::new(None),
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The connection is lost: `reason` is what failed (no credentials: it
    /// is shown on `/readyz`).
    pub fn down(&self, reason: impl std::fmt::Display) {
        *self.lock() = Some(reason.to_string());
    }

    /// Connected (again).
    pub fn up(&self) {
        *self.lock() = None;
    }

    pub fn is_up(&self) -> bool {
        self.lock().is_none()
    }

    /// Why it is down, if it is.
    pub fn down_reason(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0.down.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
