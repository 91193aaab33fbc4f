//! The logs port: what a worker wrote to stdout and stderr.

use std::fmt::Debug;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, WorkerId};

/// Which lines to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last `tail` lines (after `since`), when set.
    pub tail: Option<usize>,
    /// Only lines at or after this time, when set.
    pub since: Option<SystemTime>,
}

impl LogQuery {
    /// The lines of `lines` (oldest first) this query selects; every `Logs` implementation
    /// applies it the same way. Lines without a time pass a `since` filter.
    pub fn select(&self, lines: impl IntoIterator<Item = LogLine>) -> Vec<LogLine> {
        let mut out: Vec<LogLine> = lines
            .into_iter()
            .filter(|l| match (self.since, l.time) {
                (Some(since), Some(t)) => t >= since,
                _ => true,
            })
            .collect();
        if let Some(n) = self.tail {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        out
    }
}

/// One line of a worker's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was written, if the backend records it.
    pub time: Option<SystemTime>,
    /// The text, without the trailing newline.
    pub message: String,
}

/// Reads worker logs.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Logs: Send + Sync + Debug + 'static {
    /// The lines of `worker`'s log selected by `query`, oldest first; a worker with no log
    /// (yet) has none.
    async fn read(&self, worker: &WorkerId, query: &LogQuery) -> Result<Vec<LogLine>>;
}
