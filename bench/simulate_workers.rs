//! Many simulated workers against one real master, for the master-capacity
//! scenario of `bench/run.py`: each simulated worker
//! speaks the real protocol (docs/protocol.md) over its own ZeroMQ DEALER,
//! answers `spawn` and `stop`, heartbeats, and sends a stats report every
//! second with `--endpoints` entries, each holding `--requests-per-s`
//! response times in a real HDR histogram.
//!
//! Prints `sent UNIX_S TOTAL_REQUESTS` lines twice a second, so the driver
//! can tell how far behind the master's merged statistics are.
//!
//! ```text
//! cargo run --release --example simulate_workers -- --port 5557 --workers 1000 --duration-s 40
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use _core::cluster::protocol::{Load, Message, AIOTEST_VERSION, PROTOCOL_VERSION};
use _core::cluster::secure::{ClusterKey, WorkerChannel, WorkerInbound};
use _core::cluster::transport::{DealerTransport, PeerId, Received, Transport};
use _core::cluster::wire_stats::WireStats;
use _core::stats::{unix_now_s, RequestSample, Stats};

struct Args {
    host: String,
    port: u16,
    workers: u32,
    endpoints: u32,
    requests_per_s: u32,
    duration_s: f64,
}

fn parse_args() -> Args {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 5557,
        workers: 1000,
        endpoints: 20,
        requests_per_s: 10,
        duration_s: 40.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        let bad = || -> ! {
            eprintln!("error: {} {value:?}: expected a number", pair[0]);
            std::process::exit(2)
        };
        match pair[0].as_str() {
            "--host" => a.host = value.into(),
            "--port" => a.port = value.parse().unwrap_or_else(|_| bad()),
            "--workers" => a.workers = value.parse().unwrap_or_else(|_| bad()),
            "--endpoints" => a.endpoints = value.parse().unwrap_or_else(|_| bad()),
            "--requests-per-s" => a.requests_per_s = value.parse().unwrap_or_else(|_| bad()),
            "--duration-s" => a.duration_s = value.parse().unwrap_or_else(|_| bad()),
            other => {
                eprintln!(
                    "error: unknown option {other}: use --host --port --workers --endpoints \
                     --requests-per-s --duration-s"
                );
                std::process::exit(2)
            }
        }
    }
    a
}

/// One second's report as every simulated worker sends it: `endpoints`
/// entries of `requests_per_s` samples spread over 0.2–20 ms.
fn report(endpoints: u32, requests_per_s: u32) -> WireStats {
    let now = unix_now_s();
    let mut stats = Stats::new(now - 1.0);
    for e in 0..endpoints {
        for k in 0..requests_per_s {
            stats.record(&RequestSample {
                method: "GET".into(),
                name: format!("/endpoint/{e}"),
                response_time_us: 200 + u64::from((k * 7919 + e * 104_729) % 19_800),
                content_bytes: 512,
                error: None,
                at_s: now - 1.0 + f64::from(k) / f64::from(requests_per_s.max(1)),
                intended_lag_us: None,
                // Real workers report them too: the master merges both.
                ttfb_us: Some(150 + u64::from((k * 7919 + e * 104_729) % 19_000)),
            });
        }
    }
    WireStats::from_stats(&stats)
}

struct Shared {
    args: Args,
    key: Option<ClusterKey>,
    sent: AtomicU64,
    /// This second's report, rebuilt once a second for everyone.
    current: Mutex<Arc<WireStats>>,
}

async fn worker(shared: Arc<Shared>, i: u32, deadline: tokio::time::Instant) {
    let a = &shared.args;
    let mut t = loop {
        match DealerTransport::connect(&a.host, a.port, Duration::from_secs(5)).await {
            Ok(t) => break t,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                eprintln!("worker {i}: {e}");
                return;
            }
        }
    };
    let to = PeerId(Vec::new());
    let ready = Message::Ready {
        aiotest_version: AIOTEST_VERSION.into(),
        protocol_version: PROTOCOL_VERSION,
        worker_id: format!("sim-{i}"),
    };
    let mut channel = WorkerChannel::new(shared.key.clone(), format!("sim-{i}"));
    if t.send(&to, channel.join(&ready)).await.is_err() {
        return;
    }
    // Spread the reports over the second, as real workers' clocks are.
    let offset = Duration::from_micros(u64::from(i) * 1_000_000 / u64::from(a.workers.max(1)));
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, Duration::from_secs(1));
    let mut run: Option<(u64, u64)> = None;
    let per_report = u64::from(a.endpoints) * u64::from(a.requests_per_s);
    loop {
        let mut outgoing = Vec::new();
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(frame) = channel.seal(&Message::Quit) {
                    let _ = t.send(&to, frame).await;
                }
                return;
            }
            got = t.recv() => {
                let Ok(Received::Frame(_, frame)) = got else { continue };
                let message = match channel.open(&frame) {
                    WorkerInbound::Message(m) => Ok(m),
                    WorkerInbound::Authenticated { proof } => {
                        let join = channel.join(&ready);
                        if t.send(&to, proof).await.is_err() || t.send(&to, join).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    _ => Err(()),
                };
                match message {
                    Ok(Message::Spawn { run_id, user_classes, .. }) => {
                        let users: u64 = user_classes.iter().map(|c| c.users).sum();
                        run = Some((run_id, users));
                        outgoing.push(Message::SpawningComplete { run_id, user_count: users });
                    }
                    Ok(Message::Stop { run_id }) => {
                        run = None;
                        outgoing.push(Message::Stopped { run_id });
                    }
                    Ok(Message::Quit | Message::Refused { .. }) => return,
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let (state, users) = match run { Some((_, u)) => ("running", u), None => ("ready", 0) };
                outgoing.push(Message::Heartbeat {
                    state: state.into(),
                    user_count: users,
                    load: Load { cpu_percent: 1.0, memory_bytes: 50_000_000 },
                });
                if let Some((run_id, users)) = run {
                    let stats = (**shared.current.lock().unwrap_or_else(|p| p.into_inner())).clone();
                    outgoing.push(Message::Stats { run_id, stats, user_count: users, task_runs: per_report });
                    shared.sent.fetch_add(per_report, Ordering::Relaxed);
                }
            }
        }
        for m in outgoing {
            let Some(frame) = channel.seal(&m) else {
                continue;
            };
            if t.send(&to, frame).await.is_err() {
                return;
            }
        }
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let secret = std::env::var("AIOTEST_SECRET").ok();
    let shared = Arc::new(Shared {
        current: Mutex::new(Arc::new(report(args.endpoints, args.requests_per_s))),
        key: secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(ClusterKey::derive),
        sent: AtomicU64::new(0),
        args,
    });
    rt.block_on(async {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(shared.args.duration_s);
        let tasks: Vec<_> = (0..shared.args.workers)
            .map(|i| tokio::spawn(worker(shared.clone(), i, deadline)))
            .collect();
        let progress = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(500));
                let mut last_rebuild = unix_now_s();
                loop {
                    every.tick().await;
                    let now = unix_now_s();
                    if now - last_rebuild >= 1.0 {
                        let fresh = report(shared.args.endpoints, shared.args.requests_per_s);
                        *shared.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
                        last_rebuild = now;
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "sent {now:.3} {}", shared.sent.load(Ordering::Relaxed));
                    let _ = out.flush();
                }
            })
        };
        for t in tasks {
            let _ = t.await;
        }
        progress.abort();
        println!(
            "done {:.3} {}",
            unix_now_s(),
            shared.sent.load(Ordering::Relaxed)
        );
    });
}
