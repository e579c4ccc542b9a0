//! The one thread that owns a run's [`Stats`]. Everything else talks to it
//! through a [`Recorder`] handle.

use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::buckets::{bucket_counts, EntryBuckets};
use super::registry::{
    HistoryRow, RequestSample, SparseStats, Stats, StatsSnapshot, DEFAULT_MAX_NAMES,
};
use super::unix_now_s;

enum Message {
    Sample(RequestSample),
    Samples(Vec<RequestSample>),
    Error {
        message: String,
        traceback: String,
        node: String,
    },
    Snapshot {
        reply: mpsc::Sender<StatsSnapshot>,
        with_history: bool,
    },
    Tick {
        user_count: u64,
        full_history: bool,
    },
    MergeSparse(Vec<SparseStats>),
    Take(mpsc::Sender<Stats>),
    Reset {
        clear_history: bool,
    },
    HistorySince {
        from: usize,
        reply: mpsc::Sender<Vec<HistoryRow>>,
    },
    MaxNames(usize),
    Buckets {
        bounds_us: Vec<u64>,
        reply: mpsc::Sender<Vec<EntryBuckets>>,
    },
    Shutdown,
}

/// How long [`Recorder::record_batch`] may hold samples back, and how many.
const HOLD_MAX: (Duration, usize) = (Duration::from_millis(50), 4096);

/// How many workers' reports [`Recorder::merge_sparse`] holds back at most.
const HOLD_MAX_REPORTS: usize = 512;

/// Samples held back by [`Recorder::record_batch`], workers' reports held
/// back by [`Recorder::merge_sparse`], and since when.
#[derive(Default)]
struct Held {
    samples: Vec<RequestSample>,
    reports: Vec<SparseStats>,
    since: Option<Instant>,
}

/// A cheap, clonable handle that sends samples to the aggregator thread.
///
/// Sends never block: the channel is unbounded, and messages from one handle
/// (and its clones) are applied in the order they were sent, so a snapshot
/// asked for after a sample always includes it.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
    /// Shared by the clones: every message sends what is held first.
    held: Arc<Mutex<Held>>,
}

/// The aggregator thread has stopped: nothing more is recorded.
#[derive(Debug)]
struct Stopped;

impl Recorder {
    /// Sends `message` after the samples held back, keeping their order;
    /// `Err` when the aggregator has stopped.
    fn send(&self, message: Message) -> Result<(), Stopped> {
        self.flush();
        self.tx.send(message).map_err(|_| Stopped)
    }

    /// Sends the samples and reports held back, if any.
    fn flush(&self) {
        let (samples, reports) = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.since = None;
            (
                std::mem::take(&mut held.samples),
                std::mem::take(&mut held.reports),
            )
        };
        // A closed channel means the run is over; late samples have no reader.
        if !samples.is_empty() {
            let _ = self.tx.send(Message::Samples(samples));
        }
        if !reports.is_empty() {
            let _ = self.tx.send(Message::MergeSparse(reports));
        }
    }

    /// Records one finished request.
    pub fn record(&self, sample: RequestSample) {
        let _ = self.send(Message::Sample(sample));
    }

    /// Records many finished requests: what the driven engine sends once
    /// per loop turn. They are held back and sent together, at most 50 ms
    /// or 4,096 samples later (or before any other message, a snapshot
    /// included): each message wakes the aggregator thread, which shares
    /// the load generator's core.
    // NOTE: with a message per loop turn, 10,000 users (bench/run.py
    // memory) woke the aggregator thousands of times a second: it took 6 %
    // of the load core (perf, 2026-11-23), mostly in the channel's lock and
    // futex calls rather than in recording.
    pub fn record_batch(&self, samples: Vec<RequestSample>) {
        if samples.is_empty() {
            return;
        }
        self.hold(|held| {
            if held.samples.is_empty() {
                held.samples = samples;
            } else {
                held.samples.extend(samples);
            }
            held.samples.len() >= HOLD_MAX.1
        });
    }

    /// Adds to what is held back with `add`, which says whether that is now
    /// full; sends it all when it is, or when the oldest held is
    /// [`HOLD_MAX`]'s time old.
    fn hold(&self, add: impl FnOnce(&mut Held) -> bool) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let since = *held.since.get_or_insert_with(Instant::now);
        if add(&mut held) || since.elapsed() >= HOLD_MAX.0 {
            drop(held);
            self.flush();
        }
    }

    /// Records one exception raised in user code.
    pub fn record_error(&self, message: String, traceback: String, node: String) {
        let _ = self.send(Message::Error {
            message,
            traceback,
            node,
        });
    }

    /// The statistics as of every message sent before this call. Blocks until
    /// the aggregator answers; `None` once it has shut down.
    pub fn snapshot(&self) -> Option<StatsSnapshot> {
        self.ask_snapshot(false)
    }

    /// [`Recorder::snapshot`] with every history row attached: the input of
    /// the final reports, so that all of them show the same figures.
    pub fn snapshot_with_history(&self) -> Option<StatsSnapshot> {
        self.ask_snapshot(true)
    }

    fn ask_snapshot(&self, with_history: bool) -> Option<StatsSnapshot> {
        let (reply, rx) = mpsc::channel();
        self.send(Message::Snapshot {
            reply,
            with_history,
        })
        .ok()?;
        rx.recv().ok()
    }

    /// Adds a worker's decoded report (the master's side; see
    /// `cluster::wire_stats`). Held back and sent with others, as
    /// [`Recorder::record_batch`] holds samples; any other message (a
    /// snapshot included) sends them first.
    // NOTE: a message per report woke the aggregator thread 5,000 times a
    // second at 5,000 workers (bench/run.py master-5k), and the master
    // shares one core with it.
    pub fn merge_sparse(&self, stats: SparseStats) {
        self.hold(|held| {
            held.reports.push(stats);
            held.reports.len() >= HOLD_MAX_REPORTS
        });
    }

    /// Everything recorded since the last `take`, leaving the statistics
    /// empty (a worker's report interval). `None` once shut down.
    pub fn take(&self) -> Option<Stats> {
        let (tx, rx) = mpsc::channel();
        self.send(Message::Take(tx)).ok()?;
        rx.recv().ok()
    }

    /// Closes the current stats window and appends its history row. Call it
    /// every stats interval with the user count of that moment.
    pub fn tick(&self, user_count: u64, full_history: bool) {
        let _ = self.send(Message::Tick {
            user_count,
            full_history,
        });
    }

    /// Clears every statistic and restarts the clock (Locust's reset stats).
    /// The history rows already taken stay.
    pub fn reset(&self) {
        let _ = self.send(Message::Reset {
            clear_history: false,
        });
    }

    /// [`Recorder::reset`] that also drops the history: a new run in the
    /// same process (the web UI's start after a stop).
    pub fn restart(&self) {
        let _ = self.send(Message::Reset {
            clear_history: true,
        });
    }

    /// Keeps at most `max_names` distinct (method, name) rows from now on,
    /// in this and every later run; see [`DEFAULT_MAX_NAMES`].
    pub fn set_max_names(&self, max_names: usize) {
        let _ = self.send(Message::MaxNames(max_names));
    }

    /// Each row's counters and cumulative response-time counts at
    /// `bounds_us` (ascending µs), the Aggregated row last; see
    /// [`bucket_counts`]. `None` once shut down.
    pub fn bucket_counts(&self, bounds_us: Vec<u64>) -> Option<Vec<EntryBuckets>> {
        let (reply, rx) = mpsc::channel();
        self.send(Message::Buckets { bounds_us, reply }).ok()?;
        rx.recv().ok()
    }

    /// History rows from index `from` on (all of them for 0), oldest first;
    /// fewer than expected after a [`Recorder::restart`]. `None` once shut
    /// down.
    pub fn history_since(&self, from: usize) -> Option<Vec<HistoryRow>> {
        let (reply, rx) = mpsc::channel();
        self.send(Message::HistorySince { from, reply }).ok()?;
        rx.recv().ok()
    }
}

/// Owns the aggregator thread; stops it when dropped.
pub struct Aggregator {
    recorder: Recorder,
    thread: Option<thread::JoinHandle<()>>,
}

impl Aggregator {
    /// Starts the aggregator thread with empty statistics.
    ///
    /// # Panics
    /// If the OS refuses to start a thread.
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Message>();
        let thread = thread::Builder::new()
            .name("aiotest-stats".into())
            .spawn(move || {
                let mut max_names = DEFAULT_MAX_NAMES;
                let mut stats = Stats::new(unix_now_s());
                let mut history: Vec<HistoryRow> = Vec::new();
                while let Ok(message) = rx.recv() {
                    match message {
                        Message::Sample(s) => stats.record(&s),
                        Message::Samples(batch) => batch.iter().for_each(|s| stats.record(s)),
                        Message::Error {
                            message,
                            traceback,
                            node,
                        } => stats.record_error(&message, &traceback, &node),
                        Message::Buckets { bounds_us, reply } => {
                            let _ = reply.send(bucket_counts(&stats, &bounds_us));
                        }
                        Message::Snapshot {
                            reply,
                            with_history,
                        } => {
                            let mut snap = stats.snapshot(unix_now_s());
                            if with_history {
                                snap.history = history.clone();
                            }
                            let _ = reply.send(snap);
                        }
                        Message::Tick {
                            user_count,
                            full_history,
                        } => {
                            history.push(stats.tick(unix_now_s(), user_count, full_history));
                        }
                        Message::MergeSparse(reports) => {
                            reports.iter().for_each(|r| stats.merge_sparse(r));
                        }
                        Message::Take(reply) => {
                            let fresh = Stats::new(unix_now_s()).with_max_names(max_names);
                            let taken = std::mem::replace(&mut stats, fresh);
                            let _ = reply.send(taken);
                        }
                        Message::Reset { clear_history } => {
                            stats = Stats::new(unix_now_s()).with_max_names(max_names);
                            if clear_history {
                                history.clear();
                            }
                        }
                        Message::HistorySince { from, reply } => {
                            let _ = reply.send(history.get(from..).unwrap_or_default().to_vec());
                        }
                        Message::MaxNames(n) => {
                            max_names = n;
                            stats =
                                std::mem::replace(&mut stats, Stats::new(0.0)).with_max_names(n);
                        }
                        Message::Shutdown => break,
                    }
                }
            })
            .expect("start the stats aggregator thread");
        Self {
            recorder: Recorder {
                tx,
                held: Arc::default(),
            },
            thread: Some(thread),
        }
    }

    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.recorder.send(Message::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_batches_reach_every_reader_in_order() {
        let agg = Aggregator::start();
        let batch = |n: u64, name: &str| -> Vec<RequestSample> {
            (0..n)
                .map(|i| RequestSample {
                    method: "GET".into(),
                    name: name.into(),
                    response_time_us: i + 1,
                    content_bytes: 1,
                    error: None,
                    at_s: unix_now_s(),
                    intended_lag_us: None,
                    ttfb_us: None,
                })
                .collect()
        };
        let driven = agg.recorder();
        driven.record_batch(batch(3, "/a"));
        driven.record_batch(batch(2, "/a"));
        // Held back (few, and new), yet a snapshot from another handle
        // sees them.
        assert_eq!(agg.recorder.held.lock().unwrap().samples.len(), 5);
        assert_eq!(agg.recorder().snapshot().unwrap().total.num_requests, 5);
        // A reset sent after held samples clears them too.
        driven.record_batch(batch(4, "/b"));
        agg.recorder().reset();
        assert_eq!(agg.recorder().snapshot().unwrap().total.num_requests, 0);
        // A take (a worker's report) gets what was held, once.
        driven.record_batch(batch(7, "/c"));
        let taken = agg.recorder().take().unwrap();
        assert_eq!(taken.snapshot(unix_now_s()).total.num_requests, 7);
        assert_eq!(agg.recorder().snapshot().unwrap().total.num_requests, 0);
        // Enough samples go at once, without a reader asking.
        driven.record_batch(batch(HOLD_MAX.1 as u64, "/d"));
        assert!(agg.recorder.held.lock().unwrap().samples.is_empty());
    }

    #[test]
    fn snapshot_sees_every_sample_sent_before_it() {
        let agg = Aggregator::start();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let r = agg.recorder();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        r.record(RequestSample {
                            method: "GET".into(),
                            name: format!("/{t}"),
                            response_time_us: i + 1,
                            content_bytes: 1,
                            error: None,
                            at_s: unix_now_s(),
                            intended_lag_us: None,
                            ttfb_us: None,
                        });
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let snap = agg.recorder().snapshot().unwrap();
        assert_eq!(snap.total.num_requests, 4000);
        assert_eq!(snap.entries.len(), 4);
        agg.recorder().reset();
        assert_eq!(agg.recorder().snapshot().unwrap().total.num_requests, 0);
    }
}
