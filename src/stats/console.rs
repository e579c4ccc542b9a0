//! Console tables, laid out like Locust's `print_stats`, `print_percentile_stats`,
//! `print_error_report` and its exceptions table. Times are shown in ms.

use std::fmt::Write;

use super::entry::{format_quantile, EntrySnapshot, PERCENTILES};
use super::registry::StatsSnapshot;

const NAME_WIDTH: usize = 50;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Short names fit the column; long ones keep their tail, which tells URLs apart.
fn fit(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width {
        name.to_owned()
    } else {
        let tail: String = chars[chars.len() - (width - 3)..].iter().collect();
        format!("...{tail}")
    }
}

/// Formats a response time in ms: whole numbers from 10 ms up, two decimals
/// below, so that sub-millisecond loopback figures stay readable.
fn ms_text(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The request statistics table. `current` selects the last-10-s rates (the
/// live table) instead of whole-run rates (the final table).
pub fn stats_table(snap: &StatsSnapshot, current: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<w$} {:>9} {:>15} | {:>7} {:>7} {:>7} {:>7} | {:>8} {:>11}",
        "Type",
        "Name",
        "# reqs",
        "# fails",
        "Avg",
        "Min",
        "Max",
        "Med",
        "req/s",
        "failures/s",
        w = NAME_WIDTH + 1
    );
    let sep = format!("{}\n", "-".repeat(out.trim_end().len()));
    out.push_str(&sep);
    let row = |out: &mut String, e: &EntrySnapshot| {
        let (rps, fps) = if current {
            (e.current_rps, e.current_fail_per_s)
        } else {
            (e.rps, e.fail_per_s)
        };
        let fails = format!("{}({:.2}%)", e.num_failures, e.fail_ratio * 100.0);
        let _ = writeln!(
            out,
            "{:<8} {:<w$} {:>9} {:>15} | {:>7} {:>7} {:>7} {:>7} | {:>8.2} {:>11.2}",
            e.method,
            fit(&e.name, NAME_WIDTH),
            e.num_requests,
            fails,
            ms_text(e.avg_response_time_us / 1000.0),
            ms_text(ms(e.min_response_time_us)),
            ms_text(ms(e.max_response_time_us)),
            ms_text(ms(e.median_response_time_us)),
            rps,
            fps,
            w = NAME_WIDTH + 1
        );
    };
    for e in &snap.entries {
        row(&mut out, e);
    }
    out.push_str(&sep);
    row(&mut out, &snap.total);
    out
}

/// The response-time percentile table (ms), one row per entry plus Aggregated.
/// The figures are exact to 3 significant digits (HDR histograms).
pub fn percentile_table(snap: &StatsSnapshot) -> String {
    percentiles_of(snap, "Response time percentiles (ms)", |e| {
        Some(&e.percentiles_us)
    })
}

/// The same table over the response times corrected for coordinated
/// omission (open workload model); empty when nothing was corrected.
pub fn corrected_percentile_table(snap: &StatsSnapshot) -> String {
    if snap.total.corrected_percentiles_us.is_none() {
        return String::new();
    }
    percentiles_of(
        snap,
        "Response time percentiles, corrected for coordinated omission (ms)",
        |e| e.corrected_percentiles_us.as_ref(),
    )
}

fn percentiles_of(
    snap: &StatsSnapshot,
    title: &str,
    values: impl Fn(&EntrySnapshot) -> Option<&Vec<(String, u64)>>,
) -> String {
    let mut out = format!("{title}\n");
    let mut header = format!("{:<8} {:<w$}", "Type", "Name", w = NAME_WIDTH + 1);
    for &q in &PERCENTILES {
        let _ = write!(header, " {:>7}", format_quantile(q));
    }
    let _ = writeln!(header, " {:>8}", "# reqs");
    out.push_str(&header);
    let sep = format!("{}\n", "-".repeat(header.trim_end().len()));
    out.push_str(&sep);
    let row = |out: &mut String, e: &EntrySnapshot| {
        let _ = write!(
            out,
            "{:<8} {:<w$}",
            e.method,
            fit(&e.name, NAME_WIDTH),
            w = NAME_WIDTH + 1
        );
        for (_, v) in values(e).into_iter().flatten() {
            let _ = write!(out, " {:>7}", ms_text(ms(*v)));
        }
        let _ = writeln!(out, " {:>8}", e.num_requests);
    };
    for e in snap.entries.iter().filter(|e| values(e).is_some()) {
        row(&mut out, e);
    }
    out.push_str(&sep);
    row(&mut out, &snap.total);
    out
}

/// The failures table (Locust's "Error report") and the user-errors table.
/// Empty when there were neither.
pub fn failures_and_errors(snap: &StatsSnapshot) -> String {
    let mut out = String::new();
    if !snap.failures.is_empty() {
        out.push_str("Failures\n");
        let _ = writeln!(out, "{:>13}  Error", "# occurrences");
        let _ = writeln!(out, "{}", "-".repeat(100));
        for f in &snap.failures {
            let _ = writeln!(
                out,
                "{:>13}  {} {}: {}",
                f.occurrences, f.method, f.name, f.error
            );
        }
        out.push('\n');
    }
    if !snap.errors.is_empty() {
        out.push_str("Errors in user code\n");
        let _ = writeln!(out, "{:>13}  Error", "# occurrences");
        let _ = writeln!(out, "{}", "-".repeat(100));
        for e in &snap.errors {
            let _ = writeln!(out, "{:>13}  {}", e.count, e.message);
            for line in e.traceback.lines() {
                let _ = writeln!(out, "{:>13}  {}", "", line);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::registry::{RequestSample, Stats};
    use super::*;

    #[test]
    fn tables_show_entries_and_aggregated_row() {
        let mut s = Stats::new(0.0);
        for i in 0..10 {
            s.record(&RequestSample {
                method: "GET".into(),
                name: "/items".into(),
                response_time_us: 2_000 + i,
                content_bytes: 10,
                error: if i == 0 { Some("boom".into()) } else { None },
                at_s: 1.0,
                intended_lag_us: None,
                ttfb_us: None,
            });
        }
        let snap = s.snapshot(2.0);
        let t = stats_table(&snap, false);
        assert!(t.contains("/items"));
        assert!(t.contains("Aggregated"));
        assert!(t.contains("1(10.00%)"));
        let p = percentile_table(&snap);
        assert!(p.contains("99.99%"));
        let f = failures_and_errors(&snap);
        assert!(f.contains("1  GET /items: boom"));
    }

    #[test]
    fn long_names_keep_their_tail() {
        let long = format!("/{}", "x".repeat(80));
        assert_eq!(fit(&long, 10).len(), 10);
        assert!(fit(&long, 10).starts_with("..."));
    }
}
