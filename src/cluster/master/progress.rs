//! What Python learns of a run without asking: the milestones the master
//! pushes (spawning complete, every user gone, the iterations done, the stop
//! complete), and the status it answers with when asked.

use super::{ClusterEvent, ClusterStatus, Master, Slot, WorkerStatus};
use crate::cluster::transport::Transport;

/// Which of a run's milestones were already told to Python: each is pushed
/// once, when it first holds (a load shape's step resets `spawned`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Milestones {
    pub spawned: bool,
    pub users_gone: bool,
    pub iterations: bool,
    pub stopped: bool,
}

impl<T: Transport> Master<T> {
    /// Pushes each milestone of the run that holds now and was not told yet.
    pub(super) fn push_milestones(&mut self) {
        self.dirty = false;
        let Some(plan) = &self.run else { return };
        let run_id = self.run_id;
        let (mut live, mut user_count, mut task_runs) = (0usize, 0u64, self.retired_task_runs);
        let (mut all_spawned, mut all_stopped) = (true, true);
        for s in self.slots.values() {
            task_runs += s.task_runs;
            if s.missing {
                continue;
            }
            live += 1;
            user_count += s.user_count;
            all_spawned &= s.spawned_run == run_id;
            all_stopped &= s.stopped_run == run_id;
        }
        let mut out = Vec::new();
        let told = &mut self.told;
        if !self.stopping {
            if !told.spawned && live > 0 && all_spawned {
                told.spawned = true;
                out.push(ClusterEvent::SpawningComplete { run_id, user_count });
            }
            // With no live worker the users are not gone by themselves:
            // they wait for a worker (a partition may heal); nor while a
            // worker that joined or came back has yet to start its share.
            if !told.users_gone
                && told.spawned
                && all_spawned
                && plan.users > 0
                && live > 0
                && user_count == 0
            {
                told.users_gone = true;
                out.push(ClusterEvent::AllUsersStopped { run_id });
            }
        } else if !told.stopped && all_stopped {
            told.stopped = true;
            out.push(ClusterEvent::AllStopped { run_id });
        }
        if let Some(total) = plan.settings.iterations {
            if !told.iterations && task_runs >= total {
                told.iterations = true;
                out.push(ClusterEvent::IterationsReached { run_id, task_runs });
            }
        }
        for event in out {
            self.events.push(event);
        }
    }

    pub(super) fn status(&self) -> ClusterStatus {
        let live: Vec<&Slot> = self.slots.values().filter(|s| !s.missing).collect();
        ClusterStatus {
            workers: self
                .slots
                .values()
                .map(|s| WorkerStatus {
                    index: s.index,
                    worker_id: s.worker_id.clone(),
                    state: s.state.clone(),
                    user_count: s.user_count,
                    cpu_percent: s.load.cpu_percent,
                    memory_bytes: s.load.memory_bytes,
                    last_heartbeat_s: s.last_seen.elapsed().as_secs_f64(),
                })
                .collect(),
            live_workers: live.len(),
            run_id: self.run_id,
            user_count: live.iter().map(|s| s.user_count).sum(),
            task_runs: self.retired_task_runs
                + self.slots.values().map(|s| s.task_runs).sum::<u64>(),
            spawning_complete: !live.is_empty()
                && live.iter().all(|s| s.spawned_run == self.run_id),
            all_stopped: live.iter().all(|s| s.stopped_run == self.run_id),
        }
    }
}
