//! The price catalog: Fargate Linux list prices per region and architecture, kept as data
//! (`data/fargate-prices.json`) and overridable by the user, and the billing rule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starburst_cloud::{Arch, Capacity, WorkerSize};

use crate::{Error, Result};

/// The catalog compiled into the crate.
const BUILTIN: &str = include_str!("../data/fargate-prices.json");

/// The shortest run Fargate bills: a worker that runs less is billed a minute.
pub const MINIMUM_BILLED: Duration = Duration::from_secs(60);

/// The architecture's name as the catalog spells it (`x86_64`, `arm64`).
pub fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Arm64 => "arm64",
    }
}

/// The seconds Fargate bills for a run of `run`: whole seconds, rounded up, at least
/// [`MINIMUM_BILLED`].
pub fn billed_seconds(run: Duration) -> u64 {
    let whole = run.as_secs() + u64::from(run.subsec_nanos() > 0);
    whole.max(MINIMUM_BILLED.as_secs())
}

/// Fargate prices of one region and architecture, USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// On-demand price per vCPU-hour.
    pub vcpu_hour: f64,
    /// On-demand price per GB-hour (GiB of task memory).
    pub gb_hour: f64,
    /// Spot price as a fraction of the on-demand price (in (0, 1]). Spot prices float; this is
    /// a typical ratio, an estimate.
    pub spot_factor: f64,
}

impl Prices {
    /// USD per hour of one worker of `size` bought as `capacity`.
    pub fn hourly(&self, size: WorkerSize, capacity: Capacity) -> f64 {
        let on_demand = size.vcpu() * self.vcpu_hour + size.memory_gib() * self.gb_hour;
        match capacity {
            Capacity::OnDemand => on_demand,
            Capacity::Spot => on_demand * self.spot_factor,
        }
    }

    /// The billed cost, USD, of one worker of `size` bought as `capacity` that ran for `run`:
    /// per second (rounded up), at least a minute.
    pub fn run_cost(&self, size: WorkerSize, capacity: Capacity, run: Duration) -> f64 {
        self.hourly(size, capacity) * billed_seconds(run) as f64 / 3600.0
    }

    fn validate(&self, region: &str, arch: Arch) -> Result<()> {
        let at = format!("{region}/{}", arch_name(arch));
        for (name, v) in [("vcpu_hour", self.vcpu_hour), ("gb_hour", self.gb_hour)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidCatalog {
                    message: format!(
                        "{at}: {name} is {v}; prices must be finite and not negative (USD per hour)"
                    ),
                });
            }
        }
        let f = self.spot_factor;
        if !f.is_finite() || f <= 0.0 || f > 1.0 {
            return Err(Error::InvalidCatalog {
                message: format!(
                    "{at}: spot_factor is {f}; it must be in (0, 1], the Spot price as a fraction of on-demand"
                ),
            });
        }
        Ok(())
    }
}

/// The prices of one region, per architecture (either may be missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionPrices {
    /// x86-64 prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x86_64: Option<Prices>,
    /// ARM64 (Graviton) prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm64: Option<Prices>,
}

impl RegionPrices {
    /// The prices for `arch`, when present.
    pub fn get(&self, arch: Arch) -> Option<Prices> {
        match arch {
            Arch::X86_64 => self.x86_64,
            Arch::Arm64 => self.arm64,
        }
    }
}

/// A regional Fargate price catalog.
///
/// The built-in catalog ([`Catalog::builtin`]) comes from `data/fargate-prices.json`, list
/// prices as of its `as_of` date. A user catalog in the same format (any subset of regions and
/// architectures) is laid over it with [`Catalog::merge`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// The date the prices were taken (`YYYY-MM-DD`), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Where the prices come from, when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How the Spot factors were chosen, when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_note: Option<String>,
    /// Prices by region code (`us-east-1`).
    pub regions: BTreeMap<String, RegionPrices>,
}

impl Catalog {
    /// The catalog compiled into the crate.
    pub fn builtin() -> Self {
        // The embedded file is checked by the `builtin_catalog_is_valid` test.
        Self::from_json(BUILTIN).expect("the built-in price catalog is valid")
    }

    /// Parses and validates a catalog in the JSON format of `data/fargate-prices.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let catalog: Self = serde_json::from_str(json).map_err(|source| Error::Parse { source })?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// The built-in catalog with the user catalog `json` laid over it (see [`Catalog::merge`]).
    pub fn builtin_with(json: &str) -> Result<Self> {
        let mut catalog = Self::builtin();
        catalog.merge(Self::from_json(json)?);
        Ok(catalog)
    }

    /// Lays `user` over this catalog: each architecture `user` prices replaces this catalog's
    /// entry for that region and architecture; regions and architectures it leaves out are
    /// kept. Its `as_of`, `source` and `spot_note`, when present, replace these.
    pub fn merge(&mut self, user: Catalog) {
        for (region, prices) in user.regions {
            let entry = self.regions.entry(region).or_default();
            if prices.x86_64.is_some() {
                entry.x86_64 = prices.x86_64;
            }
            if prices.arm64.is_some() {
                entry.arm64 = prices.arm64;
            }
        }
        if user.as_of.is_some() {
            self.as_of = user.as_of;
        }
        if user.source.is_some() {
            self.source = user.source;
        }
        if user.spot_note.is_some() {
            self.spot_note = user.spot_note;
        }
    }

    /// Checks every price: finite, not negative, Spot factor in (0, 1].
    pub fn validate(&self) -> Result<()> {
        for (region, prices) in &self.regions {
            for arch in [Arch::X86_64, Arch::Arm64] {
                if let Some(p) = prices.get(arch) {
                    p.validate(region, arch)?;
                }
            }
        }
        Ok(())
    }

    /// The region codes the catalog knows, sorted.
    pub fn regions(&self) -> Vec<String> {
        self.regions.keys().cloned().collect()
    }

    /// The prices of `region`; the error for an unknown region lists the known ones.
    pub fn region(&self, region: &str) -> Result<RegionPrices> {
        self.regions
            .get(region)
            .copied()
            .ok_or_else(|| Error::UnknownRegion {
                region: region.to_string(),
                known: self.regions(),
            })
    }

    /// The prices of `region` for `arch`.
    pub fn prices(&self, region: &str, arch: Arch) -> Result<Prices> {
        self.region(region)?
            .get(arch)
            .ok_or_else(|| Error::UnknownArch {
                region: region.to_string(),
                arch,
            })
    }

    /// The billed cost, USD, of one worker run in `region` (see [`Prices::run_cost`]).
    pub fn run_cost(
        &self,
        region: &str,
        size: WorkerSize,
        arch: Arch,
        capacity: Capacity,
        run: Duration,
    ) -> Result<f64> {
        Ok(self.prices(region, arch)?.run_cost(size, capacity, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: WorkerSize = WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    };

    #[test]
    fn builtin_catalog_is_valid() {
        let c = Catalog::from_json(BUILTIN).unwrap();
        assert!(c.as_of.is_some());
        assert!(c.regions.len() >= 10);
        for (region, p) in &c.regions {
            assert!(p.x86_64.is_some() && p.arm64.is_some(), "{region}");
        }
        let p = c.prices("us-east-1", Arch::X86_64).unwrap();
        assert_eq!((p.vcpu_hour, p.gb_hour), (0.04048, 0.004445));
        let p = c.prices("us-east-1", Arch::Arm64).unwrap();
        assert_eq!((p.vcpu_hour, p.gb_hour), (0.03238, 0.00356));
    }

    #[test]
    fn fifty_workers_one_hour_x86_on_demand() {
        let c = Catalog::builtin();
        let one = c
            .run_cost(
                "us-east-1",
                ONE,
                Arch::X86_64,
                Capacity::OnDemand,
                Duration::from_secs(3600),
            )
            .unwrap();
        // 50 × (1 × 0.04048 + 2 × 0.004445) = 50 × 0.04937 = 2.4685
        let total = 50.0 * one;
        assert!((total - 2.4685).abs() < 1e-9, "{total}");
        assert_eq!(format!("{total:.2}"), "2.47");
    }

    #[test]
    fn billing_is_per_second_with_a_minimum_minute() {
        assert_eq!(billed_seconds(Duration::ZERO), 60);
        assert_eq!(billed_seconds(Duration::from_secs(5)), 60);
        assert_eq!(billed_seconds(Duration::from_secs(60)), 60);
        assert_eq!(billed_seconds(Duration::from_millis(60_001)), 61);
        assert_eq!(billed_seconds(Duration::from_secs(61)), 61);
        let p = Catalog::builtin().prices("us-east-1", Arch::Arm64).unwrap();
        // 0.03238 + 2 × 0.00356 = 0.0395 per hour; 90 s of it.
        let c = p.run_cost(ONE, Capacity::OnDemand, Duration::from_secs(90));
        assert!((c - 0.0395 * 90.0 / 3600.0).abs() < 1e-12, "{c}");
        let s = p.run_cost(ONE, Capacity::Spot, Duration::from_secs(90));
        assert!((s - c * p.spot_factor).abs() < 1e-12);
    }

    #[test]
    fn unknown_region_lists_the_known_ones() {
        let e = Catalog::builtin()
            .prices("mars-north-1", Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mars-north-1"), "{e}");
        assert!(e.contains("us-east-1, us-east-2"), "{e}");
        assert!(e.contains("user price catalog"), "{e}");
    }

    #[test]
    fn user_catalog_overrides_and_extends() {
        let user = r#"{"as_of": "2030-01-01", "regions": {
            "us-east-1": {"arm64": {"vcpu_hour": 0.02, "gb_hour": 0.002, "spot_factor": 0.5}},
            "xx-test-1": {"x86_64": {"vcpu_hour": 0.1, "gb_hour": 0.01, "spot_factor": 1}}}}"#;
        let c = Catalog::builtin_with(user).unwrap();
        assert_eq!(c.as_of.as_deref(), Some("2030-01-01"));
        assert_eq!(c.prices("us-east-1", Arch::Arm64).unwrap().vcpu_hour, 0.02);
        // The architecture the user left out keeps the built-in price.
        assert_eq!(
            c.prices("us-east-1", Arch::X86_64).unwrap().vcpu_hour,
            0.04048
        );
        assert_eq!(c.prices("xx-test-1", Arch::X86_64).unwrap().gb_hour, 0.01);
        let e = c.prices("xx-test-1", Arch::Arm64).unwrap_err().to_string();
        assert!(e.contains("no arm64 prices"), "{e}");
        assert!(c.source.is_some(), "built-in source kept");
    }

    #[test]
    fn invalid_catalogs_are_refused() {
        let neg = r#"{"regions": {"us-east-1": {"x86_64": {"vcpu_hour": -1, "gb_hour": 0.1, "spot_factor": 0.3}}}}"#;
        let e = Catalog::from_json(neg).unwrap_err().to_string();
        assert!(e.contains("us-east-1/x86_64: vcpu_hour is -1"), "{e}");
        let spot = r#"{"regions": {"r": {"arm64": {"vcpu_hour": 1, "gb_hour": 0.1, "spot_factor": 1.5}}}}"#;
        let e = Catalog::from_json(spot).unwrap_err().to_string();
        assert!(e.contains("r/arm64: spot_factor is 1.5"), "{e}");
        let typo = r#"{"regions": {"r": {"arm": {}}}}"#;
        let e = Catalog::from_json(typo).unwrap_err().to_string();
        assert!(e.contains("read price catalog") && e.contains("arm"), "{e}");
        assert!(Catalog::from_json("not json").is_err());
    }
}
