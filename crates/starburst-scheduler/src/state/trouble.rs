//! Requests that keep failing: each kind (the store, launches, watching workers) and each
//! task's own objects are retried up to the session's failure bound; the user is told once a
//! failure persists, and the futures waiting on it fail with a cause naming it after the
//! bound, at once when waiting cannot help (access denied, no usable credentials).

use std::time::Duration;

use starburst_cloud::TaskId;

use super::Core;
use crate::{Error, FailureCause, TaskFailure, TaskState};

/// A kind of request the session depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Path {
    /// Reads and writes of the session's objects (assignments, results, heartbeats).
    Store,
    /// Starting workers.
    Launch,
    /// Watching workers (their status on the platform).
    Watch,
}

impl Path {
    pub(crate) fn what(self) -> &'static str {
        match self {
            Self::Store => "reading and writing the session's data in the object store",
            Self::Launch => "starting workers",
            Self::Watch => "watching the session's workers",
        }
    }
}

/// A kind of request that keeps failing.
#[derive(Debug, Clone)]
pub(crate) struct Trouble {
    /// When it began to fail (since the last success).
    pub(crate) since: Duration,
    /// The last error.
    pub(crate) error: String,
    /// Waiting cannot fix it (access denied, no usable credentials).
    pub(crate) needs_user: bool,
    /// What its futures fail with.
    pub(crate) cause: FailureCause,
    /// The user was told it persists.
    pub(crate) noticed: bool,
}

/// Whether waiting cannot fix `e`, and the cause of the futures it fails, for `path`.
fn classify(path: Path, e: &Error) -> (bool, FailureCause) {
    use starburst_cloud::Error as Port;
    match e {
        Error::Cloud(Port::Credentials { .. }) => (true, FailureCause::Credentials),
        Error::Cloud(Port::AccessDenied { .. }) => (true, FailureCause::AccessDenied),
        _ => (
            false,
            match path {
                Path::Store => FailureCause::StoreUnreachable,
                Path::Launch => FailureCause::LaunchFailed,
                Path::Watch => FailureCause::ComputeUnreachable,
            },
        ),
    }
}

/// Starts or continues `trouble` with `e` at `now`.
fn note(trouble: &mut Option<Trouble>, path: Path, e: &Error, now: Duration) {
    let (needs_user, cause) = classify(path, e);
    let t = trouble.get_or_insert(Trouble {
        since: now,
        error: String::new(),
        needs_user,
        cause,
        noticed: false,
    });
    t.error = e.to_string();
    t.needs_user = needs_user;
    t.cause = cause;
}

/// What the user can do about a failing kind of request.
fn advice(cause: FailureCause) -> &'static str {
    match cause {
        FailureCause::AccessDenied => {
            "The AWS identity in use lacks the permission named above: ask an administrator for it (the README lists the policy starburst needs), or use a profile that has it (AWS_PROFILE)"
        }
        FailureCause::StoreUnreachable => {
            "Check the network connection to AWS and the set-up's bucket (starburst_status()); workers stop by themselves once they cannot hear from this R session"
        }
        FailureCause::ComputeUnreachable => {
            "Check the network connection to AWS and the set-up's ECS cluster (starburst_status()); workers stop by themselves once they cannot hear from this R session"
        }
        FailureCause::LaunchFailed => {
            "Check the ECS cluster and Fargate capacity in the region (starburst_status()), or try Spot/on-demand or another architecture"
        }
        _ => "",
    }
}

/// Why the futures waiting on `path` fail: the error, for how long it lasted (unless waiting
/// could not help), and what to do.
fn bound_message(path: Path, t: &Trouble, failing_for: Duration, bound: Duration) -> String {
    if t.needs_user {
        format!("{} failed: {}. {}", path.what(), t.error, advice(t.cause))
    } else {
        format!(
            "{} has failed for {:.0} s, longer than the session's failure bound of {:.0} s: {}. {}",
            path.what(),
            failing_for.as_secs_f64(),
            bound.as_secs_f64(),
            t.error,
            advice(t.cause)
        )
    }
}

impl Core {
    /// A request of `path` succeeded: its trouble, if any, is over.
    pub(crate) fn succeeded(&mut self, path: Path) {
        if self.trouble.remove(&path).is_some_and(|t| t.noticed) {
            self.notices
                .push(format!("starburst: {} works again", path.what()));
        }
    }

    /// A request of `path` failed with `e` at `now`: its trouble starts or goes on.
    pub(crate) fn failed(&mut self, path: Path, e: &Error, now: Duration) {
        let mut t = self.trouble.remove(&path);
        note(&mut t, path, e, now);
        self.trouble.insert(path, t.expect("just noted"));
    }

    /// A request for task `id`'s own objects failed with `e` (one bad key must not hold up
    /// the others, nor be hidden by their successes).
    pub(crate) fn task_failed(&mut self, id: &TaskId, e: &Error, now: Duration) {
        if let Some(t) = self.tasks.get_mut(id) {
            note(&mut t.trouble, Path::Store, e, now);
        }
    }

    /// A request for task `id`'s own objects succeeded.
    pub(crate) fn task_succeeded(&mut self, id: &TaskId) {
        if let Some(t) = self.tasks.get_mut(id) {
            t.trouble = None;
        }
    }

    /// Enforces the failure bound at `now`: the futures that wait on a kind of request failing
    /// for longer than [`crate::SchedulerConfig::failure_timeout`] (at once when waiting cannot
    /// help) fail with a cause naming it; a failure that persists for a sixth of the bound is
    /// told to the user once. True when it failed futures.
    pub(crate) fn enforce_failure_bound(&mut self, now: Duration) -> bool {
        let bound = self.config.failure_timeout;
        let mut changed = false;
        let paths: Vec<Path> = self.trouble.keys().copied().collect();
        for path in paths {
            let t = self.trouble[&path].clone();
            let failing_for = now.saturating_sub(t.since);
            if !t.needs_user && failing_for < bound {
                if !t.noticed && failing_for >= (bound / 6).max(Duration::from_secs(5)) {
                    let notice = format!(
                        "starburst: {} has failed for {:.0} s ({}); retrying for up to {:.0} s before the futures waiting on it fail",
                        path.what(),
                        failing_for.as_secs_f64(),
                        t.error,
                        bound.as_secs_f64()
                    );
                    tracing::warn!("{notice}");
                    self.notices.push(notice);
                    if let Some(t) = self.trouble.get_mut(&path) {
                        t.noticed = true;
                    }
                }
                continue;
            }
            let victims: Vec<TaskId> = match path {
                // Nothing moves without the store; nothing is known of workers nobody can watch.
                Path::Store | Path::Watch => self
                    .tasks
                    .iter()
                    .filter(|(_, t)| !t.state.is_final())
                    .map(|(id, _)| id.clone())
                    .collect(),
                // Workers that run still take the queue; ones still starting may fail as well.
                Path::Launch if !self.workers.values().any(|w| w.ready) => {
                    self.queue.iter().cloned().collect()
                }
                Path::Launch => Vec::new(),
            };
            if victims.is_empty() {
                continue;
            }
            let message = bound_message(path, &t, failing_for, bound);
            tracing::warn!(futures = victims.len(), "{message}");
            let failure = TaskFailure::new(t.cause, message);
            for id in victims {
                self.unassign(&id, now);
                self.finish(&id, TaskState::Failed, None, Some(failure.clone()));
            }
            // The futures submitted from now on get a bound of their own.
            if let Some(t) = self.trouble.get_mut(&path) {
                t.since = now;
            }
            changed = true;
        }
        // Tasks whose own objects keep failing.
        let troubled: Vec<(TaskId, Trouble)> = self
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_final())
            .filter_map(|(id, t)| t.trouble.clone().map(|tr| (id.clone(), tr)))
            .collect();
        let mut persisting = Vec::new();
        for (id, t) in troubled {
            let failing_for = now.saturating_sub(t.since);
            if !t.needs_user && failing_for < bound {
                if !t.noticed && failing_for >= (bound / 6).max(Duration::from_secs(5)) {
                    persisting.push((id, t));
                }
                continue;
            }
            let message = bound_message(Path::Store, &t, failing_for, bound);
            tracing::warn!(task = %id, "{message}");
            self.unassign(&id, now);
            self.finish(
                &id,
                TaskState::Failed,
                None,
                Some(TaskFailure::new(t.cause, message)),
            );
            changed = true;
        }
        if let Some((_, first)) = persisting.first() {
            let notice = format!(
                "starburst: {} has failed for {} future(s) for {:.0} s ({}); retrying for up to {:.0} s before they fail",
                Path::Store.what(),
                persisting.len(),
                now.saturating_sub(first.since).as_secs_f64(),
                first.error,
                bound.as_secs_f64()
            );
            tracing::warn!("{notice}");
            self.notices.push(notice);
            for (id, _) in &persisting {
                if let Some(tr) = self.tasks.get_mut(id).and_then(|t| t.trouble.as_mut()) {
                    tr.noticed = true;
                }
            }
        }
        changed
    }
}
