//! The live meter: what a session's workers have cost so far, from their real start and stop
//! times.

use std::collections::BTreeMap;
use std::time::Duration;

use starburst_cloud::{Arch, Capacity, WorkerId, WorkerSize};

use crate::{Catalog, Error, RegionPrices, Result, billed_seconds};

/// One worker's run as the meter knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub(crate) size: WorkerSize,
    /// USD per hour at the worker's capacity.
    pub(crate) hourly: f64,
    /// USD per hour had it been on-demand.
    pub(crate) hourly_on_demand: f64,
    pub(crate) start: Duration,
    /// When a stop was asked for, while the worker is still billed.
    pub(crate) stop_requested: Option<Duration>,
    pub(crate) stop: Option<Duration>,
}

impl Run {
    /// Billed seconds if the run ends at `end` (or at its recorded stop, whichever is first).
    pub(crate) fn billed_until(&self, end: Duration) -> u64 {
        let end = self.stop.map_or(end, |s| s.min(end));
        billed_seconds(end.saturating_sub(self.start))
    }

    /// USD if the run ends at `end`.
    pub(crate) fn cost_until(&self, end: Duration) -> f64 {
        self.hourly * self.billed_until(end) as f64 / 3600.0
    }

    pub(crate) fn is_billing(&self) -> bool {
        self.stop.is_none()
    }
}

/// A session's spend so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterReport {
    /// Workers ever started in the session.
    pub workers: u32,
    /// Workers still billed (running, or stopping).
    pub running: u32,
    /// Billed vCPU-seconds (per second, each run at least a minute; running workers up to now).
    pub vcpu_seconds: f64,
    /// Billed GB-seconds.
    pub gb_seconds: f64,
    /// USD so far at each worker's capacity (on-demand or Spot).
    pub usd: f64,
    /// USD the same runs would have cost on on-demand capacity.
    pub usd_on_demand: f64,
    /// USD per hour the billed workers cost now.
    pub hourly_rate: f64,
}

/// Records workers' start and stop times and prices them with one region's prices.
///
/// Times are durations on the session's clock (`starburst_cloud::Clock::now`). A local-backend
/// session fed with its local workers' times reports what the same run would have cost on
/// Fargate.
#[derive(Debug, Clone)]
pub struct Meter {
    region: String,
    prices: RegionPrices,
    pub(crate) runs: BTreeMap<WorkerId, Run>,
}

impl Meter {
    /// A meter with no workers, pricing with `catalog`'s prices for `region`.
    pub fn new(catalog: &Catalog, region: &str) -> Result<Self> {
        Ok(Self {
            region: region.to_string(),
            prices: catalog.region(region)?,
            runs: BTreeMap::new(),
        })
    }

    /// The region whose prices apply.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// USD per hour of one worker of `size`, `arch` and `capacity` in this meter's region.
    pub fn hourly(&self, size: WorkerSize, arch: Arch, capacity: Capacity) -> Result<f64> {
        let prices = self.prices.get(arch).ok_or_else(|| Error::UnknownArch {
            region: self.region.clone(),
            arch,
        })?;
        Ok(prices.hourly(size, capacity))
    }

    /// Records that worker `id` started billing at `at`. Call it at launch (with the launch
    /// time, which over-counts a little and keeps the budget safe) and again when the platform
    /// reports the real start: a later call for a worker that has not stopped replaces the start
    /// time. Calls for a stopped worker are ignored.
    pub fn worker_started(
        &mut self,
        id: WorkerId,
        size: WorkerSize,
        arch: Arch,
        capacity: Capacity,
        at: Duration,
    ) -> Result<()> {
        let hourly = self.hourly(size, arch, capacity)?;
        let hourly_on_demand = self.hourly(size, arch, Capacity::OnDemand)?;
        match self.runs.get_mut(&id) {
            Some(run) if run.stop.is_some() => {}
            Some(run) => run.start = at,
            None => {
                self.runs.insert(
                    id,
                    Run {
                        size,
                        hourly,
                        hourly_on_demand,
                        start: at,
                        stop_requested: None,
                        stop: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Records that a stop of worker `id` was asked for at `at`; it stays billed until
    /// [`Meter::worker_stopped`]. Returns false for an unknown or already stopped worker.
    pub fn worker_stopping(&mut self, id: &WorkerId, at: Duration) -> bool {
        match self.runs.get_mut(id) {
            Some(run) if run.stop.is_none() => {
                run.stop_requested.get_or_insert(at);
                true
            }
            _ => false,
        }
    }

    /// Records that worker `id` stopped billing at `at` (not before its start). The first stop
    /// counts. Returns false for an unknown worker.
    pub fn worker_stopped(&mut self, id: &WorkerId, at: Duration) -> bool {
        match self.runs.get_mut(id) {
            Some(run) => {
                if run.stop.is_none() {
                    run.stop = Some(at.max(run.start));
                }
                true
            }
            None => false,
        }
    }

    /// The workers still billed (not recorded as stopped), in id order.
    pub fn running(&self) -> Vec<WorkerId> {
        self.runs
            .iter()
            .filter(|(_, r)| r.is_billing())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What worker `id` has cost up to `now` (its whole run once stopped, at least a minute);
    /// `None` for a worker the meter does not know.
    pub fn worker_usd(&self, id: &WorkerId, now: Duration) -> Option<f64> {
        self.runs.get(id).map(|run| run.cost_until(now))
    }

    /// The spend (USD) committed by time `t` of a run that went on to `now`: each worker that
    /// had started by `t` for its run up to `t` (at least a minute, billed from its start).
    /// Equal to [`Meter::report`]'s `usd` at `t = now`.
    pub fn usd_at(&self, t: Duration) -> f64 {
        self.runs
            .values()
            .filter(|run| run.start <= t)
            .map(|run| run.cost_until(t))
            .sum()
    }

    /// The spend at `now`: stopped workers for their whole run, billed workers up to `now`,
    /// each run at least a minute.
    pub fn report(&self, now: Duration) -> MeterReport {
        let mut r = MeterReport {
            workers: u32::try_from(self.runs.len()).unwrap_or(u32::MAX),
            ..MeterReport::default()
        };
        for run in self.runs.values() {
            let secs = run.billed_until(now) as f64;
            r.vcpu_seconds += secs * run.size.vcpu();
            r.gb_seconds += secs * run.size.memory_gib();
            r.usd += run.hourly * secs / 3600.0;
            r.usd_on_demand += run.hourly_on_demand * secs / 3600.0;
            if run.is_billing() {
                r.running += 1;
                r.hourly_rate += run.hourly;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: WorkerSize = WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    };
    const HOURLY: f64 = 0.04048 + 2.0 * 0.004445;

    fn id(s: &str) -> WorkerId {
        WorkerId::new(s).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn meters_stopped_and_running_workers() {
        let mut m = Meter::new(&Catalog::builtin(), "us-east-1").unwrap();
        m.worker_started(id("a"), ONE, Arch::X86_64, Capacity::OnDemand, secs(0))
            .unwrap();
        m.worker_started(id("b"), ONE, Arch::X86_64, Capacity::Spot, secs(10))
            .unwrap();
        // b's real start is later than its launch.
        m.worker_started(id("b"), ONE, Arch::X86_64, Capacity::Spot, secs(40))
            .unwrap();
        assert!(m.worker_stopped(&id("a"), secs(100)));
        assert!(!m.worker_stopped(&id("zz"), secs(100)));
        let r = m.report(secs(70));
        // a: stopped at 100 but the report is at 70 → 70 s; b: 30 s running → a minute.
        assert_eq!((r.workers, r.running), (2, 1));
        assert!(close(r.vcpu_seconds, 70.0 + 60.0), "{}", r.vcpu_seconds);
        assert!(close(r.gb_seconds, 2.0 * 130.0));
        assert!(
            close(r.usd, HOURLY * (70.0 + 0.3 * 60.0) / 3600.0),
            "{}",
            r.usd
        );
        assert!(close(r.usd_on_demand, HOURLY * 130.0 / 3600.0));
        assert!(close(r.hourly_rate, 0.3 * HOURLY));
        let r = m.report(secs(1000));
        assert!(close(r.vcpu_seconds, 100.0 + 960.0));
        // A stopped worker ignores later starts; the first stop counts.
        m.worker_started(id("a"), ONE, Arch::X86_64, Capacity::OnDemand, secs(500))
            .unwrap();
        m.worker_stopped(&id("a"), secs(900));
        assert!(close(m.report(secs(1000)).vcpu_seconds, 100.0 + 960.0));
        assert_eq!(m.running(), vec![id("b")]);
    }

    #[test]
    fn spend_over_time_and_per_worker() {
        let mut m = Meter::new(&Catalog::builtin(), "us-east-1").unwrap();
        m.worker_started(id("a"), ONE, Arch::X86_64, Capacity::OnDemand, secs(0))
            .unwrap();
        m.worker_started(id("b"), ONE, Arch::X86_64, Capacity::OnDemand, secs(100))
            .unwrap();
        m.worker_stopped(&id("a"), secs(300));
        // Before b starts, only a (its first minute billed at once); b's minute from 100 s.
        assert!(close(m.usd_at(secs(10)), HOURLY * 60.0 / 3600.0));
        assert!(close(m.usd_at(secs(99)), HOURLY * 99.0 / 3600.0));
        assert!(close(m.usd_at(secs(130)), HOURLY * (130.0 + 60.0) / 3600.0));
        // a stopped at 300: its cost stays; b runs on.
        assert!(close(
            m.usd_at(secs(400)),
            HOURLY * (300.0 + 300.0) / 3600.0
        ));
        assert!(close(m.usd_at(secs(400)), m.report(secs(400)).usd));
        assert!(close(
            m.worker_usd(&id("a"), secs(1000)).unwrap(),
            HOURLY * 300.0 / 3600.0
        ));
        assert!(close(
            m.worker_usd(&id("b"), secs(1000)).unwrap(),
            HOURLY * 900.0 / 3600.0
        ));
        assert_eq!(m.worker_usd(&id("zz"), secs(1000)), None);
    }

    #[test]
    fn unknown_region_and_arch() {
        let e = Meter::new(&Catalog::builtin(), "nowhere-1").unwrap_err();
        assert!(e.to_string().contains("known regions"), "{e}");
        let user =
            r#"{"regions": {"x-1": {"x86_64": {"vcpu_hour": 1, "gb_hour": 0, "spot_factor": 1}}}}"#;
        let mut m = Meter::new(&Catalog::from_json(user).unwrap(), "x-1").unwrap();
        let e = m
            .worker_started(id("a"), ONE, Arch::Arm64, Capacity::OnDemand, secs(0))
            .unwrap_err();
        assert!(e.to_string().contains("no arm64 prices"), "{e}");
    }
}
