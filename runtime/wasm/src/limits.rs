//! The memory cap of a stage, enforced as a wasmtime `ResourceLimiter`.
//! (Fuel and the deadline are set per call in [`crate::stage`].)

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
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.cap {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                cap: self.cap,
                desired: desired as u64,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
