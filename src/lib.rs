//! aiotest's core: the HTTP engine, the statistics, user dispatch, the
//! command line and the demo target, plus (with the `python` feature) the
//! PyO3 bridge that exposes them as `aiotest._core`.

pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod export;
pub mod report;
pub mod stats;
pub mod target;
pub mod web;

#[cfg(feature = "python")]
mod bridge;

// NOTE: glibc's malloc took 10 % of the load core in the throughput scenario
// of bench/run.py (perf, 2026-11-23): a request's task (~2 KB) is larger
// than glibc's per-thread cache serves, so every spawn went through the
// shared bins and `malloc_consolidate`. mimalloc serves it from thread-local
// pages: alternating runs, the same hour, 37.7k/40.7k/35.8k -> 44.2k/41.7k/
// 38.8k requests/s (+9 %). It also returns the memory of a burst of
// requests, where glibc kept it: 10,000 users peaked at 93-128 MB against
// 148-158 MB. Python's own objects still use Python's allocator.
// NOTE: mimalloc is built without its transparent-huge-page advice
// (`no_thp`): with it, each of its arenas was backed by 2 MiB pages on
// first touch, and `bench/run.py memory` measured 8 MiB resident for a
// handful of live allocations. Without it (2026-11-23): one user 38.4 ->
// 31.3 MB, 10,000 idle users 84 -> 66 MB, 10,000 users at constant(1)
// peaking 99-115 -> 76-83 MB; requests/s unchanged (55.1k/54.9k/55.1k
// against 55.2k/55.4k/55.1k in alternating runs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _core(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    bridge::register(m)
}
