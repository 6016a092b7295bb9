//! Per-stage resource limits: fuel per message, a wall-clock deadline per
//! call (epoch interruption), and a memory cap (a `ResourceLimiter`).

use std::time::Duration;

/// Limits for one stage. Defaults are safe, not unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly wasm instructions) one call may burn.
    pub fuel: u64,
    /// Wall-clock time one call may take.
    pub timeout: Duration,
    /// Bytes of linear memory an instance may grow to.
    pub memory: u64,
}

impl Limits {
    pub const DEFAULT_FUEL: u64 = 500_000_000;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_MEMORY: u64 = 128 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: Self::DEFAULT_FUEL, timeout: Self::DEFAULT_TIMEOUT, memory: Self::DEFAULT_MEMORY }
    }
}

/// Raised (as a trap) when a plugin tries to grow memory past its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {cap} bytes exceeded (plugin asked for {desired} bytes)")]
pub struct MemoryCapExceeded {
    pub cap: u64,
    pub desired: u64,
}

/// A `ResourceLimiter` that traps on growth past `cap` bytes.
#[derive(Debug)]
pub struct MemoryCap {
    cap: u64,
}

impl MemoryCap {
    pub fn new(cap: u64) -> Self {
        MemoryCap { cap }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.cap {
            return Err(wasmtime::Error::new(MemoryCapExceeded { cap: self.cap, desired: desired as u64 }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
