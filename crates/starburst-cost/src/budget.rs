//! Budget caps: the decisions that keep a session's spend under `max_cost` (USD per session)
//! and its burn rate under `max_hourly_cost` (USD per hour), as hard caps.
//!
//! # The model
//!
//! A worker is billed from its start, per second, at least a minute, until it stops. The
//! scheduler asks the budget at least every `check_interval`, and a worker it stops is billed
//! for at most `stop_latency` more. At a check at time `t` the budget's **projected spend** is
//!
//! * a stopped worker: its billed cost;
//! * a stopping worker (stop asked at `r`): its cost up to `max(t, r + stop_latency)`;
//! * a running worker: its cost up to `t + check_interval + stop_latency` — at the latest it
//!   is stopped at the next check and billed for `stop_latency` after;
//! * a worker about to launch: a run of `check_interval + stop_latency`, at least a minute.
//!
//! [`Budget::may_launch`] allows only launches that keep the projection within `max_cost`;
//! [`Budget::must_stop`] names the workers to stop so that it is within `max_cost` again.
//! Because stopping every running worker at the next check always brings the projection back
//! to at most the previous check's, a scheduler that launches only what `may_launch` allows,
//! stops what `must_stop` names, checks at least every `check_interval`, and whose stops take
//! at most `stop_latency` never spends more than `max_cost`. The hourly cap counts the hourly
//! prices of all billed workers (running or stopping) and launches only what fits under it.

use std::time::Duration;

use starburst_cloud::{Arch, Capacity, WorkerId, WorkerSize};

use crate::{Error, Meter, Result, billed_seconds};

/// A session's spending caps and the scheduler's timing they rely on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// USD per session, a hard cap; `None` for no cap.
    pub max_cost: Option<f64>,
    /// USD per hour summed over billed workers, a hard cap; `None` for no cap.
    pub max_hourly_cost: Option<f64>,
    /// The longest time between two budget checks of the scheduler.
    pub check_interval: Duration,
    /// The longest time from a stop request to the end of a worker's billing.
    pub stop_latency: Duration,
}

impl Budget {
    /// A budget with the given caps (each finite and positive, or `None`).
    pub fn new(
        max_cost: Option<f64>,
        max_hourly_cost: Option<f64>,
        check_interval: Duration,
        stop_latency: Duration,
    ) -> Result<Self> {
        for (name, cap) in [("max_cost", max_cost), ("max_hourly_cost", max_hourly_cost)] {
            if let Some(v) = cap
                && (!v.is_finite() || v <= 0.0)
            {
                return Err(Error::InvalidBudget {
                    message: format!("{name} is {v}; pass a positive number of USD or no cap"),
                });
            }
        }
        Ok(Self {
            max_cost,
            max_hourly_cost,
            check_interval,
            stop_latency,
        })
    }

    fn horizon(&self) -> Duration {
        self.check_interval + self.stop_latency
    }

    /// The projected spend at `now` (see the module documentation), USD.
    pub fn projected(&self, meter: &Meter, now: Duration) -> f64 {
        meter
            .runs
            .values()
            .map(|run| {
                let end = match (run.stop, run.stop_requested) {
                    (Some(stop), _) => stop,
                    (None, Some(r)) => now.max(r + self.stop_latency),
                    (None, None) => now + self.horizon(),
                };
                run.cost_until(end)
            })
            .sum()
    }

    /// The hourly price of the billed workers (running or stopping), USD per hour.
    pub fn hourly_rate(&self, meter: &Meter) -> f64 {
        meter
            .runs
            .values()
            .filter(|r| r.is_billing())
            .map(|r| r.hourly)
            .sum()
    }

    /// How many of `n` workers of `size`, `arch` and `capacity` may launch at `now` without
    /// the projected spend passing `max_cost` or the hourly rate passing `max_hourly_cost`.
    /// Record each launched worker with [`Meter::worker_started`] before the next decision.
    pub fn may_launch(
        &self,
        meter: &Meter,
        now: Duration,
        n: u32,
        size: WorkerSize,
        arch: Arch,
        capacity: Capacity,
    ) -> Result<u32> {
        let hourly = meter.hourly(size, arch, capacity)?;
        let mut allowed = n;
        if let Some(cap) = self.max_cost {
            let each = hourly * billed_seconds(self.horizon()) as f64 / 3600.0;
            allowed = allowed.min(fit(cap - self.projected(meter, now), each));
        }
        if let Some(cap) = self.max_hourly_cost {
            allowed = allowed.min(fit(cap - self.hourly_rate(meter), hourly));
        }
        Ok(allowed)
    }

    /// The running workers to stop at `now` so that the projected spend is within `max_cost`
    /// and the hourly price of the workers not yet stopping is within `max_hourly_cost`. The
    /// workers whose stop saves the most go first (ties: the most recently started); every
    /// running worker when even that is not enough. Record each stop request with
    /// [`Meter::worker_stopping`].
    pub fn must_stop(&self, meter: &Meter, now: Duration) -> Vec<WorkerId> {
        let mut running: Vec<(&WorkerId, f64, f64, Duration)> = meter
            .runs
            .iter()
            .filter(|(_, r)| r.stop.is_none() && r.stop_requested.is_none())
            .map(|(id, r)| {
                let saving =
                    r.cost_until(now + self.horizon()) - r.cost_until(now + self.stop_latency);
                (id, saving, r.hourly, r.start)
            })
            .collect();
        let mut stop = Vec::new();
        if let Some(cap) = self.max_cost {
            let mut projected = self.projected(meter, now);
            running.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.3.cmp(&a.3)));
            while projected > cap && !running.is_empty() {
                let (id, saving, _, _) = running.remove(0);
                projected -= saving;
                stop.push(id.clone());
            }
        }
        if let Some(cap) = self.max_hourly_cost {
            let mut rate: f64 = running.iter().map(|r| r.2).sum();
            running.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)));
            while rate > cap && !running.is_empty() {
                let (id, _, hourly, _) = running.remove(0);
                rate -= hourly;
                stop.push(id.clone());
            }
        }
        stop
    }

    /// The latest session time by which every worker of the session must have stopped *by
    /// itself* for the spend to stay within `max_cost` when nobody is watching (the client
    /// died): the workers' own hard deadline. `None` without a `max_cost`. Never before `now`.
    ///
    /// It assumes every running worker, and `launching` new ones of `size`/`arch`/`capacity`
    /// about to start, billed until the deadline plus `stop_latency` (new ones at least a
    /// minute); stopping workers billed until `r + stop_latency`. A deadline computed for the
    /// running workers stays valid while no worker is launched; see
    /// [`Budget::unattended_launches`] for how a launch keeps every worker's deadline valid.
    pub fn unattended_deadline(
        &self,
        meter: &Meter,
        now: Duration,
        launching: u32,
        size: WorkerSize,
        arch: Arch,
        capacity: Capacity,
    ) -> Result<Option<Duration>> {
        let Some(cap) = self.max_cost else {
            return Ok(None);
        };
        let hourly = meter.hourly(size, arch, capacity)?;
        let mut fixed = 0.0;
        let mut running = Vec::new();
        for run in meter.runs.values() {
            match (run.stop, run.stop_requested) {
                (Some(stop), _) => fixed += run.cost_until(stop),
                (None, Some(r)) => fixed += run.cost_until(now.max(r + self.stop_latency)),
                (None, None) => running.push(run),
            }
        }
        let phantom = launching;
        let spend = |deadline: Duration| {
            let end = deadline + self.stop_latency;
            fixed
                + running.iter().map(|r| r.cost_until(end)).sum::<f64>()
                + f64::from(phantom) * hourly * billed_seconds(end.saturating_sub(now)) as f64
                    / 3600.0
        };
        // A relative 1e-12 absorbs float rounding (a cap of exactly n worker-hours fits).
        let cap = cap * (1.0 + 1e-12);
        if spend(now) > cap {
            return Ok(Some(now));
        }
        // Spend grows with the deadline: find the last whole second that fits (at most a year).
        let (mut lo, mut hi) = (0u64, 365 * 24 * 3600);
        if spend(now + Duration::from_secs(hi)) <= cap {
            return Ok(Some(now + Duration::from_secs(hi)));
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if spend(now + Duration::from_secs(mid)) <= cap {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(Some(now + Duration::from_secs(lo)))
    }

    /// How many of `n` workers may launch at `now` so that the spend stays within `max_cost`
    /// even if the client dies right after: the unattended deadline with them launching must
    /// lie at least `horizon` ahead, where `horizon` bounds how long a worker that has not yet
    /// learned the new (earlier) deadline goes on after the client died (its orphan timeout
    /// plus two periods of the session heartbeat). Until then it is stopped by its orphan
    /// timeout, before the new deadline; after it, by the deadline. All `n` without a
    /// `max_cost`. In the last `horizon` of a budget no worker is launched; the running ones
    /// go on until the cap.
    #[allow(clippy::too_many_arguments)] // the worker's kind as in every other decision here
    pub fn unattended_launches(
        &self,
        meter: &Meter,
        now: Duration,
        n: u32,
        horizon: Duration,
        size: WorkerSize,
        arch: Arch,
        capacity: Capacity,
    ) -> Result<u32> {
        if self.max_cost.is_none() {
            return Ok(n);
        }
        let fits = |k: u32| -> Result<bool> {
            Ok(self
                .unattended_deadline(meter, now, k, size, arch, capacity)?
                .is_none_or(|d| d >= now + horizon))
        };
        // More launches, an earlier deadline: the largest k that fits.
        let (mut lo, mut hi) = (0u32, n);
        if fits(hi)? {
            return Ok(n);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(if lo == 0 && !fits(0)? { 0 } else { lo })
    }

    /// True when no worker of `size`, `arch` and `capacity` may launch at `now` and none is
    /// billed: the session can make no more progress within its caps, and its pending futures
    /// should fail (R class `starburst_budget_exceeded`).
    pub fn exhausted(
        &self,
        meter: &Meter,
        now: Duration,
        size: WorkerSize,
        arch: Arch,
        capacity: Capacity,
    ) -> Result<bool> {
        Ok(
            meter.running().is_empty()
                && self.may_launch(meter, now, 1, size, arch, capacity)? == 0,
        )
    }
}

/// How many items of price `each` fit in `room` (all when `each` is zero).
fn fit(room: f64, each: f64) -> u32 {
    if room < 0.0 || room.is_nan() {
        return 0;
    }
    if each <= 0.0 {
        return u32::MAX;
    }
    let mut k = (room / each).floor().min(f64::from(u32::MAX)) as u32;
    // Float division may round up across an integer; never allow more than fits.
    while k > 0 && f64::from(k) * each > room {
        k -= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;
    use proptest::prelude::*;

    const ONE: WorkerSize = WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    };
    /// us-east-1 x86 on-demand, USD per hour of ONE.
    const HOURLY: f64 = 0.04048 + 2.0 * 0.004445;

    fn id(i: usize) -> WorkerId {
        WorkerId::new(format!("w{i}")).unwrap()
    }

    fn meter() -> Meter {
        Meter::new(&Catalog::builtin(), "us-east-1").unwrap()
    }

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn launches_fit_the_session_cap() {
        // Each new worker is projected at 60 s + 60 s = 120 s of HOURLY.
        let each = HOURLY * 120.0 / 3600.0;
        let b = Budget::new(Some(10.5 * each), None, s(60), s(60)).unwrap();
        let mut m = meter();
        let n = b
            .may_launch(&m, s(0), 100, ONE, Arch::X86_64, Capacity::OnDemand)
            .unwrap();
        assert_eq!(n, 10);
        for i in 0..n as usize {
            m.worker_started(id(i), ONE, Arch::X86_64, Capacity::OnDemand, s(0))
                .unwrap();
        }
        assert_eq!(
            b.may_launch(&m, s(0), 100, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            0
        );
        assert!(b.must_stop(&m, s(0)).is_empty());
        // A minute later the ten running workers project to 180 s each: stop enough of them.
        let stop = b.must_stop(&m, s(60));
        assert!(!stop.is_empty() && stop.len() <= 10);
        for w in &stop {
            m.worker_stopping(w, s(60));
        }
        assert!(b.projected(&m, s(60)) <= 10.5 * each + 1e-12);
        assert!(
            !b.exhausted(&m, s(60), ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap()
        );
    }

    #[test]
    fn the_hourly_cap_counts_billed_workers() {
        let b = Budget::new(None, Some(3.5 * HOURLY), s(30), s(30)).unwrap();
        let mut m = meter();
        assert_eq!(
            b.may_launch(&m, s(0), 10, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            3
        );
        // Spot workers cost 0.3 of the price: 11 fit under 3.5 on-demand workers' rate.
        assert_eq!(
            b.may_launch(&m, s(0), 100, ONE, Arch::X86_64, Capacity::Spot)
                .unwrap(),
            11
        );
        for i in 0..3 {
            m.worker_started(id(i), ONE, Arch::X86_64, Capacity::OnDemand, s(i as u64))
                .unwrap();
        }
        m.worker_stopping(&id(0), s(10));
        // The stopping worker is still billed.
        assert_eq!(
            b.may_launch(&m, s(20), 10, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            0
        );
        m.worker_stopped(&id(0), s(40));
        assert_eq!(
            b.may_launch(&m, s(40), 10, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            1
        );
        // A lowered cap stops the most expensive, most recent workers first.
        let lower = Budget::new(None, Some(1.2 * HOURLY), s(30), s(30)).unwrap();
        assert_eq!(lower.must_stop(&m, s(40)), vec![id(2)]);
    }

    #[test]
    fn an_exhausted_budget_says_so() {
        let b = Budget::new(Some(0.001), None, s(60), s(30)).unwrap();
        let m = meter();
        assert!(
            b.exhausted(&m, s(0), ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap()
        );
        assert!(Budget::new(Some(-1.0), None, s(1), s(1)).is_err());
        assert!(Budget::new(None, Some(f64::NAN), s(1), s(1)).is_err());
        let free = Budget::new(None, None, s(1), s(1)).unwrap();
        assert_eq!(
            free.may_launch(&m, s(0), 7, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            7
        );
    }

    #[test]
    fn the_unattended_deadline_is_what_the_cap_allows_every_worker() {
        // Stop latency 30 s, cap = 2 workers x 1 hour of HOURLY.
        let b = Budget::new(Some(2.0 * HOURLY), None, s(60), s(30)).unwrap();
        let mut m = meter();
        let d = |m: &Meter, now, launching| {
            b.unattended_deadline(m, s(now), launching, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap()
                .unwrap()
        };
        // Two about to launch: two workers from now for 3600 s - 30 s of stop latency.
        assert_eq!(d(&m, 0, 2), s(3570));
        m.worker_started(id(0), ONE, Arch::X86_64, Capacity::OnDemand, s(0))
            .unwrap();
        assert_eq!(d(&m, 0, 1), s(3570));
        // One running alone may go on for the whole cap.
        assert_eq!(d(&m, 0, 0), s(7170));
        // 600 s later, one worker ran 600 s, and one more would start: (7200 - 600) / 2 - 30.
        assert_eq!(d(&m, 600, 1), s(600 + 3300 - 30));
        // A stopped worker's cost is fixed; two may run on the rest.
        m.worker_stopped(&id(0), s(600));
        assert_eq!(d(&m, 600, 2), s(600 + 3300 - 30));
        // Launches that leave less than the horizon are refused: after 600 s of one worker,
        // 6600 worker-seconds remain; with a horizon of an hour, 1 more fits (3300 s each for
        // two, minus 30), 2 more (2200 s each for three) do not.
        m.worker_started(id(1), ONE, Arch::X86_64, Capacity::OnDemand, s(600))
            .unwrap();
        let may = |h| {
            b.unattended_launches(&m, s(600), 5, s(h), ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap()
        };
        assert_eq!(may(600), 5);
        assert_eq!(may(3000), 1);
        assert_eq!(may(7000), 0);
        // Spent: the deadline is now; no cap: none.
        let broke = Budget::new(Some(0.0001), None, s(60), s(30)).unwrap();
        assert_eq!(
            broke
                .unattended_deadline(&m, s(700), 2, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            Some(s(700))
        );
        let free = Budget::new(None, Some(1.0), s(60), s(30)).unwrap();
        assert_eq!(
            free.unattended_deadline(&m, s(0), 2, ONE, Arch::X86_64, Capacity::OnDemand)
                .unwrap(),
            None
        );
        assert_eq!(
            free.unattended_launches(
                &m,
                s(0),
                9,
                s(1e6 as u64),
                ONE,
                Arch::X86_64,
                Capacity::OnDemand
            )
            .unwrap(),
            9
        );
    }

    /// A worker in the model of the unattended protocol.
    struct Follower {
        id: WorkerId,
        launched: Duration,
        /// Its deadline (from the launch, then from the beats it read).
        deadline: Duration,
        /// When it last saw the session heartbeat move (its orphan clock).
        moved_at: Duration,
        /// Beats it has read.
        reads: u32,
        /// It stopped by itself at this time (billing then ends within the stop latency).
        stopped: Option<Duration>,
    }

    /// The modelled session heartbeat period, orphan timeout and stop latency, seconds.
    const BEAT: u64 = 30;
    const ORPHAN: u64 = 120;
    const LATENCY: u64 = 30;

    /// Second `t` of the workers in the model: each reads the beats published `BEAT` seconds
    /// ago (the latest it may), takes a moving beat's deadline, and stops by itself at its
    /// deadline or `ORPHAN` after the beat last moved (billing ends `LATENCY` later).
    fn follow(workers: &mut [Follower], beats: &[(u64, Option<Duration>)], t: u64, m: &mut Meter) {
        for w in workers.iter_mut().filter(|w| w.stopped.is_none()) {
            for &(_, d) in beats.iter().filter(|(p, _)| p + BEAT == t) {
                if s(t) > w.launched {
                    w.reads += 1;
                    if w.reads > 1 {
                        w.moved_at = s(t);
                        w.deadline = d.unwrap();
                    }
                }
            }
            if s(t) >= w.deadline || s(t) >= w.moved_at + s(ORPHAN) {
                w.stopped = Some(s(t));
                m.worker_stopped(&w.id, s(t + LATENCY));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// The unattended protocol keeps the cap whenever the client dies: the client checks the
        /// caps every minute, beats every `BEAT` seconds with the running workers' deadline,
        /// launches only what `unattended_launches` allows, and each worker (reading every beat
        /// `BEAT` late, the worst case) stops at its deadline or `ORPHAN` after it last saw the
        /// beat move. After the death nothing is stopped by the client any more.
        #[test]
        fn the_unattended_protocol_keeps_the_cap_whenever_the_client_dies(
            max_cost in 0.0005f64..0.03,
            wants in prop::collection::vec((0u64..5000, 1u32..4), 0..25),
            finishes in prop::collection::vec(prop::option::of(0u64..6000), 0..40),
            died in 0u64..6000,
        ) {
            let horizon = s(ORPHAN + 2 * BEAT + 1);
            let b = Budget::new(Some(max_cost), None, s(60), s(LATENCY)).unwrap();
            let mut m = meter();
            let mut workers: Vec<Follower> = Vec::new();
            // Published beats: (time, deadline).
            let mut beats: Vec<(u64, Option<Duration>)> = Vec::new();
            let deadline = |m: &Meter, t: u64, k: u32| {
                b.unattended_deadline(m, s(t), k, ONE, Arch::X86_64, Capacity::OnDemand).unwrap().unwrap()
            };
            for t in 0..=died {
                follow(&mut workers, &beats, t, &mut m);
                // The live client: finishes, checks, beats, launches.
                for (i, f) in finishes.iter().enumerate() {
                    if *f == Some(t) && let Some(w) = workers.get_mut(i).filter(|w| w.stopped.is_none()) {
                        w.stopped = Some(s(t));
                        m.worker_stopped(&w.id, s(t));
                    }
                }
                if t % 60 == 0 {
                    for id in b.must_stop(&m, s(t)) {
                        m.worker_stopped(&id, s(t + LATENCY));
                        if let Some(w) = workers.iter_mut().find(|w| w.id == id) {
                            w.stopped.get_or_insert(s(t));
                        }
                    }
                }
                if t % BEAT == 0 {
                    beats.push((t, Some(deadline(&m, t, 0))));
                }
                for &(_, want) in wants.iter().filter(|(at, _)| *at == t) {
                    let n = b.may_launch(&m, s(t), want, ONE, Arch::X86_64, Capacity::OnDemand).unwrap();
                    let n = b.unattended_launches(&m, s(t), n, horizon, ONE, Arch::X86_64, Capacity::OnDemand).unwrap();
                    let d = deadline(&m, t, n);
                    for _ in 0..n {
                        let id = id(workers.len());
                        m.worker_started(id.clone(), ONE, Arch::X86_64, Capacity::OnDemand, s(t)).unwrap();
                        workers.push(Follower { id, launched: s(t), deadline: d, moved_at: s(t), reads: 0, stopped: None });
                    }
                }
            }
            // After the death: the workers go on by themselves until they stop.
            for t in died + 1..died + 10_000 {
                follow(&mut workers, &beats, t, &mut m);
            }
            prop_assert!(workers.iter().all(|w| w.stopped.is_some()));
            let spent = m.report(s(died + 20_000)).usd;
            prop_assert!(spent <= max_cost + 1e-9, "spent {spent} > cap {max_cost}");
        }
    }

    /// One step of the simulated scheduler.
    #[derive(Debug, Clone)]
    struct Step {
        /// Seconds until the next check (≤ the check interval).
        dt: u64,
        /// Workers the scheduler would like to launch.
        want: u32,
        /// Delay from launch to the real start, seconds.
        start_delay: u64,
        /// Of the running workers, which finish by themselves during the step (bit mask).
        finish: u32,
        /// Seconds a stop takes (≤ the stop latency).
        stop_delay: u64,
        spot: bool,
        big: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            1u64..=60,
            0u32..6,
            0u64..40,
            any::<u32>(),
            0u64..=30,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(dt, want, start_delay, finish, stop_delay, spot, big)| Step {
                    dt,
                    want,
                    start_delay,
                    finish,
                    stop_delay,
                    spot,
                    big,
                },
            )
    }

    /// The true record of a simulated worker.
    #[derive(Debug)]
    struct Truth {
        size: WorkerSize,
        capacity: Capacity,
        /// When billing really starts (launch + start delay).
        start: u64,
        /// When billing really ends: set when a stop is ordered or the worker finishes; the
        /// meter learns of an ordered stop only at the first check after it.
        stop: Option<u64>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn simulated_sessions_never_pass_the_caps(
            max_cost in 0.001f64..0.5,
            max_hourly in prop::option::of(0.05f64..2.0),
            steps in prop::collection::vec(step(), 1..80),
        ) {
            let catalog = Catalog::builtin();
            let prices = catalog.prices("us-east-1", Arch::X86_64).unwrap();
            let budget = Budget::new(Some(max_cost), max_hourly, s(60), s(30)).unwrap();
            let mut m = meter();
            let mut truth: Vec<Truth> = Vec::new();
            // Stops in flight: (worker, when billing ends).
            let mut stopping: Vec<(usize, u64)> = Vec::new();
            let mut now = 0u64;
            // The true spend and rate at time `t`.
            let spend = |truth: &[Truth], t: u64| -> f64 {
                truth.iter().filter(|w| w.start <= t).map(|w| {
                    let end = w.stop.map_or(t, |e| e.min(t));
                    prices.run_cost(w.size, w.capacity, s(end - w.start))
                }).sum()
            };
            let rate = |truth: &[Truth], t: u64| -> f64 {
                truth.iter().filter(|w| w.start <= t && w.stop.is_none_or(|e| e > t))
                    .map(|w| prices.hourly(w.size, w.capacity)).sum()
            };
            let big = WorkerSize { millicpu: 4000, memory_mib: 8192 };
            for st in &steps {
                // The check at `now`: stops that completed are reported first.
                stopping.retain(|&(w, end)| {
                    if end <= now {
                        m.worker_stopped(&id(w), s(end));
                        false
                    } else {
                        true
                    }
                });
                for w in budget.must_stop(&m, s(now)) {
                    let i: usize = w.as_str()[1..].parse().unwrap();
                    m.worker_stopping(&w, s(now));
                    // A worker stopped before it started is billed its minimum minute.
                    let end = (now + st.stop_delay).max(truth[i].start);
                    truth[i].stop = Some(end);
                    stopping.push((i, end));
                }
                let size = if st.big { big } else { ONE };
                let capacity = if st.spot { Capacity::Spot } else { Capacity::OnDemand };
                let n = budget.may_launch(&m, s(now), st.want, size, Arch::X86_64, capacity).unwrap();
                prop_assert!(n <= st.want);
                for _ in 0..n {
                    let i = truth.len();
                    m.worker_started(id(i), size, Arch::X86_64, capacity, s(now)).unwrap();
                    truth.push(Truth { size, capacity, start: now + st.start_delay, stop: None });
                }
                // Between checks: real starts become known, some workers finish on their own.
                let next = now + st.dt;
                for (i, w) in truth.iter_mut().enumerate() {
                    if w.start < next {
                        m.worker_started(id(i), w.size, Arch::X86_64, w.capacity, s(w.start)).unwrap();
                        if w.stop.is_none() && st.finish & (1 << (i % 32)) != 0 {
                            let end = (w.start + 1).max(now).min(next);
                            w.stop = Some(end);
                            m.worker_stopped(&id(i), s(end));
                        }
                    }
                }
                // The caps hold at every second until the next check.
                for t in now..=next {
                    prop_assert!(spend(&truth, t) <= max_cost + 1e-9,
                        "spent {} > {} at {}", spend(&truth, t), max_cost, t);
                    if let Some(h) = max_hourly {
                        prop_assert!(rate(&truth, t) <= h + 1e-9);
                    }
                }
                now = next;
            }
            // End of session: stop everything; the final bill stays within the cap.
            for (i, w) in truth.iter_mut().enumerate() {
                if w.stop.is_none() {
                    w.stop = Some((now + 30).max(w.start));
                }
                m.worker_stopped(&id(i), s(w.stop.unwrap()));
            }
            let end = now + 1000;
            let total = spend(&truth, end);
            prop_assert!(total <= max_cost + 1e-9, "final {} > {}", total, max_cost);
            prop_assert!(m.report(s(end)).usd <= max_cost + 1e-9);
        }
    }
}
