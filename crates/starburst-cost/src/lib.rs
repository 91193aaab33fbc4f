//! starburst's cost arithmetic: a regional Fargate price catalog kept as data and overridable
//! by the user ([`Catalog`]), per-second billing with a one-minute minimum
//! ([`Prices::run_cost`]), estimates of a whole run from a small local sample ([`estimate`]),
//! the live meter of a session's workers ([`Meter`]) and hard budget caps ([`Budget`]).
//!
//! It holds decisions and arithmetic only: no I/O beyond the price data compiled in, no clock
//! (callers pass times on their session clock), no knowledge of schedulers or AWS. Depends
//! only on `starburst-cloud` for the domain types.

#![deny(missing_docs)]

mod budget;
mod catalog;
mod error;
mod estimate;
mod meter;

pub use budget::Budget;
pub use catalog::{Catalog, MINIMUM_BILLED, Prices, RegionPrices, arch_name, billed_seconds};
pub use error::{Error, Result};
pub use estimate::{Estimate, EstimateRequest, Sample, estimate};
pub use meter::{Meter, MeterReport};
