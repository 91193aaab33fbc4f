//! starburst's cost arithmetic: Fargate list prices by region and architecture and the cost of
//! a worker's run under per-second billing with a one-minute minimum. Estimates, the live
//! meter and budget caps build on these functions; the table holds us-east-1 so far and
//! becomes an overridable catalog with them. Depends only on `starburst-cloud`.

#![deny(missing_docs)]

use std::time::Duration;

use starburst_cloud::{Arch, WorkerSize};

/// Fargate Linux on-demand prices of one region, USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Per vCPU-hour.
    pub vcpu_hour: f64,
    /// Per GB-hour.
    pub gb_hour: f64,
}

/// The prices of `region` for `arch`, when the catalog has the region.
pub fn fargate_prices(region: &str, arch: Arch) -> Option<Prices> {
    // us-east-1 list prices (Linux); further regions are added as data.
    match (region, arch) {
        ("us-east-1", Arch::X86_64) => Some(Prices {
            vcpu_hour: 0.04048,
            gb_hour: 0.004445,
        }),
        ("us-east-1", Arch::Arm64) => Some(Prices {
            vcpu_hour: 0.03238,
            gb_hour: 0.00356,
        }),
        _ => None,
    }
}

/// The billed cost of one worker of `size` running for `run`: per second, at least a minute.
pub fn worker_cost(prices: Prices, size: WorkerSize, run: Duration) -> f64 {
    let hours = run.max(Duration::from_secs(60)).as_secs_f64() / 3600.0;
    hours * (size.vcpu() * prices.vcpu_hour + size.memory_gib() * prices.gb_hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_workers_one_hour() {
        let p = fargate_prices("us-east-1", Arch::X86_64).unwrap();
        let size = WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        };
        let total = 50.0 * worker_cost(p, size, Duration::from_secs(3600));
        assert!((total - 2.4685).abs() < 1e-9, "{total}");
    }

    #[test]
    fn one_minute_minimum() {
        let p = fargate_prices("us-east-1", Arch::Arm64).unwrap();
        let size = WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        };
        assert_eq!(
            worker_cost(p, size, Duration::from_secs(5)),
            worker_cost(p, size, Duration::from_secs(60))
        );
    }
}
