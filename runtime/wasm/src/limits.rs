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

/// Check what a call returned for one input against the stage's output caps
/// (`max_outputs`, `max_output_bytes`, `max_call_output_bytes`). Over a cap
/// is a deterministic fault (class `output-limit`): the input is
/// dead-lettered with the reason.
pub(crate) fn check_output(
    limits: &sluice_core::Limits,
    output: &sluice_core::StageOutput,
) -> Result<(), sluice_core::Fault> {
    use sluice_core::{Fault, FaultKind, StageOutput};
    let fault = |detail: String| Fault {
        kind: FaultKind::OutputLimit,
        detail,
    };
    match output {
        StageOutput::Keep(_) | StageOutput::Claimed(_) | StageOutput::Duplicate => Ok(()),
        StageOutput::Routes(names) if names.len() > limits.max_outputs => Err(fault(format!(
            "returned {} routes for one message; the stage's max_outputs is {}",
            names.len(),
            limits.max_outputs
        ))),
        StageOutput::Routes(_) => Ok(()),
        StageOutput::Messages(msgs) => {
            if msgs.len() > limits.max_outputs {
                return Err(fault(format!(
                    "returned {} messages for one message; the stage's max_outputs is {}",
                    msgs.len(),
                    limits.max_outputs
                )));
            }
            let mut total: u64 = 0;
            for (i, msg) in msgs.iter().enumerate() {
                let bytes = msg.size() as u64;
                if bytes > limits.max_output_bytes {
                    return Err(fault(format!(
                        "output {} is {bytes} bytes; the stage's max_output_bytes is {}",
                        i + 1,
                        limits.max_output_bytes
                    )));
                }
                total += bytes;
            }
            if total > limits.max_call_output_bytes {
                return Err(fault(format!(
                    "the outputs for one message are {total} bytes; the stage's max_call_output_bytes is {}",
                    limits.max_call_output_bytes
                )));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{FaultKind, Limits, Message, StageOutput};

    #[test]
    fn outputs_over_a_cap_are_an_output_limit_fault() {
        let limits = Limits {
            max_outputs: 3,
            max_output_bytes: 10,
            max_call_output_bytes: 25,
            ..Limits::default()
        };
        let msgs =
            |n: usize, len: usize| StageOutput::Messages(vec![Message::new(vec![b'x'; len]); n]);
        assert!(check_output(&limits, &msgs(3, 8)).is_ok());
        for (out, says) in [
            (msgs(4, 1), "4 messages"),
            (msgs(1, 11), "11 bytes"),
            (msgs(3, 9), "27 bytes"),
        ] {
            let fault = check_output(&limits, &out).unwrap_err();
            assert_eq!(fault.kind, FaultKind::OutputLimit);
            assert!(fault.detail.contains(says), "{}", fault.detail);
        }
        assert!(check_output(&limits, &StageOutput::Keep(true)).is_ok());
    }
}
