//! The process allocator's one setting sluice makes: large blocks go back
//! to the system when freed.
//!
//! glibc's malloc serves a block over its mmap threshold with its own
//! mapping, unmapped on free; but the threshold is dynamic and rises to the
//! size of each such block freed (up to 32 MiB), after which blocks of that
//! size come from the per-thread arenas and stay there when freed. Large
//! messages (a broker's reply, the copy a stage gets, the sink's command)
//! are allocated and freed on many threads, so the arenas kept all of it:
//! a burst of 4 MB messages through a 32 MiB budget left a release build
//! at +286 MiB of RSS (+292 after the burst), +131 MiB (+40 after) with
//! the threshold fixed at 1 MiB (the memory bench, 2026-12-07). Fixing it
//! also turns off the dynamic rise; blocks under 1 MiB are unaffected.

/// Blocks of this many bytes or more are mapped on their own.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Fix the mmap threshold; call first thing in `main`, before threads start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn return_large_blocks() {
    // SAFETY: mallopt only changes a malloc tunable; called before any
    // other thread exists, so nothing allocates concurrently.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if set != 1 {
        // Not fatal: memory is still bounded, only less of it returns.
        eprintln!("sluice: could not set malloc's mmap threshold");
    }
}

/// Other allocators need no setting.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}
