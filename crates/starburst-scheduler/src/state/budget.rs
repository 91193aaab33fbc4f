//! The cost meter and the spending caps: how many workers the caps allow to start, the
//! deadline every worker carries, and what happens when the session reaches a cap.

use std::time::Duration;

use starburst_cloud::{TaskId, WorkerId};
use starburst_cost::{Budget, Meter};

use super::Core;
use crate::{FailureCause, SchedulerConfig, TaskFailure, TaskState};

/// How long a worker may go on after this client died before it must have stopped: its
/// orphan timeout plus two heartbeat periods (it may not have read the newest beat). A worker
/// is launched only while the budget lasts at least this long with it running.
pub(crate) fn unattended_horizon(config: &SchedulerConfig) -> Duration {
    config.orphan_timeout
        + 2 * config.client_beat.unwrap_or(Duration::ZERO)
        + Duration::from_secs(1)
}

/// What reaching a cap changes: the workers to stop (with the tasks they had) and the failure
/// of the futures that cannot run.
pub(crate) type BudgetStops = (Vec<(WorkerId, Vec<TaskId>)>, TaskFailure);

impl Core {
    /// How many of `want` workers the caps allow to launch at `now`: within the cap while
    /// this client watches, and within it if the client died right after.
    pub(crate) fn affordable(&self, want: u32, now: Duration) -> u32 {
        if self.budget_exceeded {
            return 0;
        }
        let (Some(budget), Some(meter)) = (&self.budget, &self.meter) else {
            return want;
        };
        let spec = &self.config.spec;
        let horizon = unattended_horizon(&self.config);
        let allowed = budget
            .may_launch(meter, now, want, spec.size, spec.arch, spec.capacity)
            .and_then(|n| {
                budget.unattended_launches(
                    meter,
                    now,
                    n,
                    horizon,
                    spec.size,
                    spec.arch,
                    spec.capacity,
                )
            });
        match allowed {
            Ok(n) => n,
            // Checked at start: the spec has prices.
            Err(e) => {
                tracing::warn!(error = %e, "pricing a launch failed");
                0
            }
        }
    }

    /// The session's unattended deadline at `now` with `launching` workers about to start
    /// ([`Budget::unattended_deadline`]): when every worker must have stopped by itself for
    /// the spend to stay within `max_cost` if the client died now. `None` without a cost cap.
    pub(crate) fn unattended_deadline(&self, now: Duration, launching: u32) -> Option<Duration> {
        let budget = self.budget?;
        let meter = self.meter.as_ref()?;
        let spec = &self.config.spec;
        budget
            .unattended_deadline(meter, now, launching, spec.size, spec.arch, spec.capacity)
            // Checked at start: the spec has prices. Were it not so, stopping now is safe.
            .unwrap_or(Some(now))
    }

    /// Checks the caps at `now`: the workers [`Budget::must_stop`] names are to stop; once the
    /// session reached a cap (or can afford no worker at all), what waits fails with
    /// [`FailureCause::BudgetExceeded`], new futures fail at once, and idle workers are to
    /// stop. `None` when nothing changes.
    pub(crate) fn budget_decide(&mut self, now: Duration) -> Option<BudgetStops> {
        let budget = self.budget?;
        let spec = self.config.spec.clone();
        self.last_budget_check = Some(now);
        let meter = self.meter.as_ref()?;
        let mut stop = budget.must_stop(meter, now);
        // Also when no worker may start because it could outlive the cap were this client to
        // die (the last orphan timeout of a budget).
        let horizon = unattended_horizon(&self.config);
        let exhausted = budget
            .exhausted(meter, now, spec.size, spec.arch, spec.capacity)
            .unwrap_or(true)
            || (meter.running().is_empty()
                && budget
                    .unattended_launches(
                        meter,
                        now,
                        1,
                        horizon,
                        spec.size,
                        spec.arch,
                        spec.capacity,
                    )
                    .unwrap_or(0)
                    == 0);
        let newly = !self.budget_exceeded && (exhausted || !stop.is_empty());
        let failure = match (&self.fatal, newly) {
            (_, true) => self.budget_failure(&budget, meter, now),
            (Some(f), false) if self.budget_exceeded => f.clone(),
            _ => return None,
        };
        if newly {
            tracing::warn!(message = %failure.message, "budget cap reached");
            self.budget_exceeded = true;
            self.fatal = Some(failure.clone());
        }
        // What waits fails, now and at every later check: a worker that stopped by itself
        // (at its deadline) after the cap was reached has its future re-queued.
        let failed_queued = self.fail_queued(&failure);
        // Nothing new will run: idle workers only cost money.
        for id in self.idle() {
            if !stop.contains(&id) {
                stop.push(id);
            }
        }
        self.stopping(&stop, now, false);
        let stopped: Vec<(WorkerId, Vec<TaskId>)> = stop
            .into_iter()
            .map(|id| {
                let tasks = self
                    .workers
                    .remove(&id)
                    .map(|s| s.tasks.into())
                    .unwrap_or_default();
                (id, tasks)
            })
            .collect();
        (newly || failed_queued || !stopped.is_empty()).then_some((stopped, failure))
    }

    /// The tasks of workers stopped at a cap end failed (after their results were read: a
    /// result committed before the stop is kept).
    pub(crate) fn fail_stopped(&mut self, tasks: &[TaskId], failure: &TaskFailure) {
        for t in tasks {
            self.finish(t, TaskState::Failed, None, Some(failure.clone()));
        }
        self.dirty = true;
    }

    /// Stop requests recorded but not yet sent.
    pub(crate) fn unsent_stops(&self) -> Vec<WorkerId> {
        self.billing
            .iter()
            .filter(|(_, b)| b.stop_requested.is_some() && !b.stop_sent)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The stop requests of `ids` reached the platform.
    pub(crate) fn stops_sent(&mut self, ids: &[WorkerId]) {
        for id in ids {
            if let Some(b) = self.billing.get_mut(id) {
                b.stop_sent = true;
            }
        }
    }

    /// The failure of the futures a session at its cap cannot run: the caps, the spend, and
    /// what to do.
    fn budget_failure(&self, budget: &Budget, meter: &Meter, now: Duration) -> TaskFailure {
        // Never "$-0.0000" in messages: `max` keeps a negative zero, adding 0.0 turns it positive.
        let spent = meter.report(now).usd.max(0.0) + 0.0;
        let projected = budget.projected(meter, now).max(spent) + 0.0;
        let hourly = self.worker_hourly;
        let message = match (budget.max_cost, budget.max_hourly_cost) {
            (_, Some(h)) if hourly > h => format!(
                "the session's max_hourly_cost of ${h:.4} per hour is below the price of one worker (${hourly:.4} per hour); no worker can run. Raise max_hourly_cost (plan(starburst, max_hourly_cost = ...) or starburst_config()) or choose smaller workers"
            ),
            (Some(cap), _) => format!(
                "the session reached its budget cap: max_cost is ${cap:.4}, ${spent:.4} is spent so far (${projected:.4} counting the workers still running or stopping), and every worker is billed at least a minute; this future could not be run within the cap (a worker starts only while the budget leaves it at least the orphan timeout of {:.0} s to run, so that the cap holds even if this R session dies). Raise max_cost (plan(starburst, max_cost = ...) or starburst_config(max_cost = ...)) or run fewer futures",
                self.config.orphan_timeout.as_secs_f64()
            ),
            (None, h) => format!(
                "the session reached its budget cap: max_hourly_cost is ${:.4} per hour, ${spent:.4} is spent so far; this future could not be run within the cap. Raise max_hourly_cost (plan(starburst, max_hourly_cost = ...) or starburst_config()) or run fewer futures",
                h.unwrap_or_default()
            ),
        };
        TaskFailure::new(FailureCause::BudgetExceeded, message)
    }
}
