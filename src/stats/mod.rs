//! Response-time statistics: HDR histograms per (method, name), failures and
//! user errors, fed through a channel to one aggregator thread.
//!
//! Samples flow as messages ([`Recorder`]); nothing on the request path takes
//! a lock shared with readers. Readers ask the aggregator for a
//! [`StatsSnapshot`].

mod aggregator;
mod buckets;
pub mod console;
mod entry;
mod registry;

pub use aggregator::{Aggregator, Recorder};
pub use buckets::{bucket_counts, BucketBounds, EntryBuckets, DEFAULT_BUCKETS_S};
pub use entry::{
    format_quantile, new_histogram, EntrySnapshot, HistoryEntry, SparseEntry, StatsEntry, Window,
    PERCENTILES,
};
pub use registry::{
    ErrorEntry, FailureEntry, HistoryRow, RequestSample, SparseStats, Stats, StatsSnapshot,
    AGGREGATED_NAME, DEFAULT_MAX_NAMES, OTHER_NAMES,
};

/// The current unix time in seconds.
pub fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
