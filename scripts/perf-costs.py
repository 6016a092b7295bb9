#!/usr/bin/env python3
"""Top costs per message from a `perf record -F HZ` profile of a goals bench
run (`SLUICE_BENCH_ONLY=...`): CPU nanoseconds per message by category, the
bench's own setup thread (the process's main thread) left out.

    perf record -F 2000 -o perf.data target/release/deps/goals-HASH
    scripts/perf-costs.py perf.data HZ MESSAGES_PROCESSED

Prints a markdown table, the costliest first.
"""
import collections
import subprocess
import sys

CATEGORIES = [
    ("copying bytes (memcpy/memmove)", ("memmove", "memcpy")),
    ("allocation (malloc/free)", ("malloc", "free", "_int_", "unlink_chunk", "realloc", "cfree", "consolidate", "__rust_alloc", "__rust_dealloc", "alloc::raw_vec")),
    ("thread wake-ups and sleeps (kernel: futex, scheduler)", ("[k]",)),
    ("tokio: channels, tasks, timers", ("tokio::",)),
    ("sluice: chain (worker)", ("sluice_core::chain",)),
    ("sluice: delivery and settle", ("sluice_core::engine::deliver", "sluice_core::ack", "FnAcker")),
    ("sluice: source, budget, dispatch", ("sluice_core::memory::MemorySource", "sluice_core::budget", "sluice_core::engine::dispatch", "Coordinates", "sluice_core::engine::")),
    ("memory sink", ("MemorySink",)),
    ("wasm: wasmtime and the plugin", ("wasmtime", "cranelift", "wasm[", "sluice_wasm")),
]


def category(sym):
    for name, keys in CATEGORIES:
        if any(k in sym for k in keys):
            return name
    return "other (futures, std, iterators)"


def main():
    data, hz, messages = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    out = subprocess.run(
        ["perf", "script", "-i", data, "-G", "-F", "comm,ip,sym,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = collections.Counter()
    symbols = collections.Counter()
    main_comm = None
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        comm = line.split()[0]
        if main_comm is None and comm.startswith("goals"):
            main_comm = comm
        if comm.startswith("goals") or comm.startswith("perf"):
            continue  # the bench's own setup and checks
        sym = line
        if "kernel" in line or "[unknown]" in line and "kallsyms" in line:
            sym = "[k] " + line
        cat = category(sym)
        counts[cat] += 1
        symbols[(cat, " ".join(line.split()[2:3]))] += 1
    total = sum(counts.values())
    ns = lambda c: c / hz * 1e9 / messages
    print(f"| cost | ns per message | share |\n|---|---:|---:|")
    for cat, c in counts.most_common():
        print(f"| {cat} | {ns(c):.0f} | {100 * c / total:.0f}% |")
    print(f"| **all (CPU of every pipeline thread)** | **{ns(total):.0f}** | 100% |")


if __name__ == "__main__":
    main()
