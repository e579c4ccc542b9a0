//! The driven engine: requests run on a current-thread tokio runtime that
//! the Python event loop's own thread turns, from its selector.
//!
//! asyncio's loop asks its selector for ready descriptors once per turn.
//! aiotest's selector (`aiotest._bridge.EngineSelector`) first calls
//! [`Driven::turn`]: that starts the requests submitted since the last turn,
//! runs every request task that is ready, and, when Python has nothing to
//! do, blocks in tokio's reactor until a request finishes, a descriptor of
//! the Python loop turns readable, or the loop's timeout passes. Python's
//! own descriptors are watched by registering the selector's epoll
//! descriptor with tokio's reactor.
//!
//! So HTTP and Python share one thread and hand work over in batches: no
//! wake-up crosses threads, no lock is contended, and one call into Rust
//! per loop turn returns every finished request of that turn.
// NOTE: two designs were weighed: (a) a completion queue drained by the
// asyncio loop with one wake-up per batch, and (b) Rust as the scheduler.
// (a) was built first, with tokio on its own threads: 9.5k requests/s on one
// core (2026-11-22, nginx, 50 users), the Python and tokio threads trading
// the core through futex wake-ups, each request sent to the stats thread on
// its own. Driving tokio from the loop's thread keeps asyncio as the
// scheduler, so user code can await anything asyncio can, and removes the
// thread hand-offs: 16.8k requests/s in the same setting, the same hour,
// and ~20k with the leaner Python request path that followed (bench/README.md).
// (b), Rust as the scheduler of every await, was not built: it would make
// aiotest reimplement asyncio's Task for every await in user code. Its
// gain for requests is had without it: a request is awaited as a
// `RequestAwaitable` (src/bridge/awaitable.rs), which the turn that
// finishes the request resolves, waking asyncio's own Task at once.
// NOTE: a blocking turn ends on a timerfd, not on tokio's timer: tokio's
// wheel ticks in whole milliseconds, so turns overshot the Python loop's
// next timer by 1-2 ms and users woke late and together. At 2,000 req/s
// (bench/run.py latency, 50 users) the bunched requests queued behind each
// other: p50/p90/p99 71/219/457 us, against 48/71/99 us when the loop spun
// through the last 5 ms before each timer instead of blocking (2026-11-23).
// A timerfd wakes within microseconds of its deadline, with no spinning.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::request::{Job, ReadJob};
use super::{Completion, EngineError};
use crate::stats::{Recorder, RequestSample};

/// What the request tasks finished during a turn.
#[derive(Default)]
struct Finished {
    completions: Vec<Completion>,
    samples: Vec<RequestSample>,
}

impl Finished {
    fn with_capacity(room: usize) -> Self {
        Self {
            completions: Vec::with_capacity(room),
            samples: Vec::with_capacity(room),
        }
    }
}

/// State the request tasks share with [`Driven::turn`].
struct Shared {
    finished: Mutex<Finished>,
    /// Signalled when a request finishes, to end a blocking turn.
    notify: Notify,
}

/// The watched descriptor: our own duplicate of the Python selector's, so
/// that the reactor's registration never outlives the file it names,
/// whenever Python closes its copy.
struct Watched {
    /// The number Python knows the descriptor by.
    python_fd: RawFd,
    fd: AsyncFd<OwnedFd>,
}

/// Registers a duplicate of `fd` with the current runtime's reactor.
#[allow(unsafe_code)]
fn watch(fd: RawFd) -> std::io::Result<Watched> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(9)); // EBADF
    }
    // SAFETY: the borrow lasts only for the dup(2) below, during which the
    // caller (the Python selector, which owns `fd`) keeps it open.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    // SAFETY: the AsyncFd owns `owned`, so the descriptor stays open and
    // names the same file until the AsyncFd is dropped.
    let fd_async = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok(Watched {
        python_fd: fd,
        fd: fd_async,
    })
}

/// A one-shot timer with nanosecond resolution (Linux `timerfd`, on the
/// monotonic clock), registered with the runtime's reactor.
struct Deadline {
    fd: AsyncFd<OwnedFd>,
}

impl Deadline {
    /// Must be called inside the runtime (the reactor registers the fd).
    #[allow(unsafe_code)]
    fn new() -> io::Result<Self> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open and
        // names the same timer until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Arms the timer to expire `after` from now (at least 1 ns: a zero
    /// value would disarm it). Arming also resets an earlier expiry.
    fn arm(&self, after: Duration) -> io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let after = after.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(after.subsec_nanos()),
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }

    /// Resolves when the armed timer expires. Readiness left over from an
    /// expiry that a later [`Deadline::arm`] reset is found stale (the read
    /// would block), cleared, and waited past.
    async fn expired(&self) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            let mut ticks = [0u8; 8];
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut ticks)?)) {
                Ok(_) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

/// What a turn starts. Not boxed: requests are nearly all of it.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    Request(Job),
    Read(ReadJob),
}

/// The runtime of a driven engine and the requests waiting for it.
pub(crate) struct Driven {
    runtime: tokio::runtime::Runtime,
    queued: Mutex<Vec<Work>>,
    shared: Arc<Shared>,
    /// The Python selector's descriptor, registered with the reactor.
    watched: Mutex<Option<Arc<Watched>>>,
    /// Ends blocking turns on time.
    deadline: Deadline,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Driven {
    pub fn new() -> Result<Self, EngineError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::Start(e.to_string()))?;
        let deadline = {
            let _inside = runtime.enter();
            Deadline::new().map_err(|e| EngineError::Start(format!("timerfd: {e}")))?
        };
        Ok(Self {
            runtime,
            queued: Mutex::new(Vec::new()),
            shared: Arc::new(Shared {
                finished: Mutex::new(Finished::default()),
                notify: Notify::new(),
            }),
            watched: Mutex::new(None),
            deadline,
        })
    }

    /// Queues a request or read for the next turn.
    pub fn submit(&self, work: Work) {
        lock(&self.queued).push(work);
    }

    /// One turn, on the Python loop's thread (without the GIL): starts the
    /// queued requests and runs every task that is ready. Then, unless
    /// `timeout` is zero or requests already finished, waits until a request
    /// finishes, `wake_fd` turns readable, or `timeout` passes (`None`: no
    /// limit). Records the samples of the finished requests in `recorder`
    /// with one message, and returns their completions, oldest first.
    ///
    /// # Errors
    /// [`EngineError::Start`] when `wake_fd` cannot be watched (not a
    /// descriptor epoll accepts).
    pub fn turn(
        &self,
        wake_fd: RawFd,
        timeout: Option<Duration>,
        recorder: &Recorder,
        in_flight: &Arc<AtomicU64>,
    ) -> Result<Vec<Completion>, EngineError> {
        // The next turn's lists start as large as this turn's: grown one
        // push at a time, they were reallocated, and their large items
        // copied, several times a turn (~1,000 instructions a request:
        // callgrind, 50 users over TLS, 2026-12-02).
        let jobs = {
            let mut queued = lock(&self.queued);
            let room = queued.len();
            std::mem::replace(&mut *queued, Vec::with_capacity(room))
        };
        let shared = &self.shared;
        let watched = &self.watched;
        let deadline = &self.deadline;
        self.runtime.block_on(async {
            for work in jobs {
                let shared = shared.clone();
                let job = match work {
                    Work::Request(job) => job,
                    Work::Read(read) => {
                        tokio::spawn(async move {
                            let done = read.run().await;
                            lock(&shared.finished).completions.push(done);
                            shared.notify.notify_one();
                        });
                        continue;
                    }
                };
                let in_flight = in_flight.clone();
                // Boxed: the request's future (~1.5 KB) is then written to
                // the heap once, where the task's would be moved into place
                // at the spawn and overwritten whole when it ends.
                let request = Box::pin(job.run());
                // Spawned from inside the runtime: onto its local queue,
                // with no wake-up of a parked driver.
                tokio::spawn(async move {
                    let (done, sample) = request.await;
                    {
                        let mut f = lock(&shared.finished);
                        f.samples.extend(sample);
                        f.completions.push(done);
                    }
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    shared.notify.notify_one();
                });
            }
            // Two yields: the first lets the new tasks send and the reactor
            // poll without blocking; the second runs what that poll woke.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            if timeout == Some(Duration::ZERO) || !lock(&shared.finished).completions.is_empty() {
                return Ok(());
            }
            let fd = {
                let mut slot = lock(watched);
                match slot.as_ref() {
                    Some(w) if w.python_fd == wake_fd => w.clone(),
                    _ => {
                        *slot = None;
                        let w = watch(wake_fd)
                            .map_err(|e| EngineError::Start(format!("watch fd {wake_fd}: {e}")))?;
                        slot.insert(Arc::new(w)).clone()
                    }
                }
            };
            let wait = async {
                tokio::select! {
                    () = shared.notify.notified() => {}
                    ready = fd.fd.readable() => {
                        // Python's select(0) after this turn reads the
                        // events; a new one re-arms the edge.
                        if let Ok(mut guard) = ready {
                            guard.clear_ready();
                        }
                    }
                }
            };
            match timeout {
                Some(t) => {
                    deadline
                        .arm(t)
                        .map_err(|e| EngineError::Start(format!("timerfd: {e}")))?;
                    tokio::select! {
                        () = wait => {}
                        () = deadline.expired() => {}
                    }
                }
                None => wait.await,
            }
            Ok(())
        })?;
        let finished = {
            let mut finished = lock(&shared.finished);
            let room = finished.completions.len();
            std::mem::replace(&mut *finished, Finished::with_capacity(room))
        };
        recorder.record_batch(finished.samples);
        Ok(finished.completions)
    }

    /// Stops watching `fd`: call it before the Python selector closes it.
    pub fn unwatch(&self, fd: RawFd) {
        let mut slot = lock(&self.watched);
        if slot.as_ref().is_some_and(|w| w.python_fd == fd) {
            let _guard = self.runtime.enter();
            slot.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    use super::super::{Engine, RequestSpec};
    use super::*;
    use crate::target::DemoTarget;

    fn get(url: &str) -> RequestSpec {
        RequestSpec::for_tests(reqwest::Method::GET, url)
    }

    #[test]
    fn turns_run_requests_on_the_calling_thread_and_record_them() {
        let target = DemoTarget::start("127.0.0.1", 0).unwrap();
        let engine = Engine::start(1).unwrap();
        engine.set_driven(true);
        let session = engine
            .new_session(
                Some(&format!("http://{}", target.addr)),
                Default::default(),
                Default::default(),
            )
            .unwrap();
        let (idle, _keep) = UnixStream::pair().unwrap();
        let ids: Vec<u64> = (0..20)
            .map(|_| engine.submit(&session, get("/hello")))
            .collect();
        let mut done = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.len() < ids.len() && Instant::now() < deadline {
            done.extend(
                engine
                    .drive(idle.as_raw_fd(), Some(Duration::from_secs(1)))
                    .unwrap(),
            );
        }
        let mut seen: Vec<u64> = done.iter().map(|c| c.id).collect();
        seen.sort_unstable();
        assert_eq!(seen, ids);
        assert!(done
            .iter()
            .all(|c| c.response().is_some_and(|r| r.status == 200)));
        assert_eq!(engine.in_flight(), 0);
        assert_eq!(target.state.counts_json()["requests"]["GET /hello"], 20);
        let snap = engine.recorder().snapshot().unwrap();
        assert_eq!(snap.total.num_requests, 20);
    }

    #[test]
    fn a_blocking_turn_ends_when_the_watched_descriptor_turns_readable() {
        let engine = Engine::start(1).unwrap();
        engine.set_driven(true);
        let (watched, mut peer) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(b"x").unwrap();
            peer
        });
        // No request and no timeout: only the descriptor can end this turn
        // (the test's own time limit catches a turn that never ends).
        let done = engine.drive(watched.as_raw_fd(), None).unwrap();
        assert!(done.is_empty());
        let _peer = writer.join().unwrap();
        // A timeout ends a turn too, and a closed watch can be renewed.
        engine.unwatch(watched.as_raw_fd());
        let (other, _peer2) = UnixStream::pair().unwrap();
        let done = engine
            .drive(other.as_raw_fd(), Some(Duration::from_millis(10)))
            .unwrap();
        assert!(done.is_empty());
    }

    #[test]
    fn a_blocking_turn_lasts_its_timeout_even_after_an_expiry_it_did_not_wait_for() {
        let engine = Engine::start(1).unwrap();
        engine.set_driven(true);
        let (watched, mut peer) = UnixStream::pair().unwrap();
        let began = Instant::now();
        engine
            .drive(watched.as_raw_fd(), Some(Duration::from_millis(5)))
            .unwrap();
        assert!(began.elapsed() >= Duration::from_millis(5));
        // A turn armed for 1 ms that the descriptor ends at once; its timer
        // then expires with no turn waiting for it.
        peer.write_all(b"x").unwrap();
        engine
            .drive(watched.as_raw_fd(), Some(Duration::from_millis(1)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        engine
            .drive(watched.as_raw_fd(), Some(Duration::ZERO))
            .unwrap();
        // That old expiry must not end a new turn early.
        let (quiet, _peer2) = UnixStream::pair().unwrap();
        engine.unwatch(watched.as_raw_fd());
        let began = Instant::now();
        engine
            .drive(quiet.as_raw_fd(), Some(Duration::from_millis(30)))
            .unwrap();
        assert!(began.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_bad_descriptor_is_an_error_not_a_hang() {
        let engine = Engine::start(1).unwrap();
        let err = engine.drive(-1, Some(Duration::from_secs(5)));
        assert!(err.is_err());
    }
}
