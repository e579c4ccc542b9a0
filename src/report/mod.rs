//! Results for people and machines: Locust-compatible CSV files and
//! pass/fail checks, all computed from one [`StatsSnapshot`](crate::stats::StatsSnapshot).

pub mod checks;
pub mod csv;
pub mod html;
