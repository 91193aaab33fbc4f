//! Test support shared by the worker's and the scheduler's integration tests.

pub mod script;
