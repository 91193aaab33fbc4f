//! starburst's ports on this machine, a real backend rather than a test double: [`DirStore`]
//! (objects as files below a directory, atomic writes, put-if-absent by hard link, change
//! notifications), [`LocalCompute`] (workers as `starburst-worker` child processes) and
//! [`FileLogs`] (their log files).
//!
//! This crate knows nothing about AWS, R or the scheduler's protocol.

#![deny(missing_docs)]

mod compute;
mod logs;
mod store;

pub use compute::{ENV_PARENT_PID, ENV_WORKER_ID, EXIT_EVALUATOR_START, LocalCompute};
pub use logs::FileLogs;
pub use store::{DirStore, private_dir};
