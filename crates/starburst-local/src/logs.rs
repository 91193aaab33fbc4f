//! Worker logs as files.

use std::path::PathBuf;

use async_trait::async_trait;
use starburst_cloud::{Error, LogLine, LogQuery, Logs, Result, WorkerId};

/// Reads `<dir>/<worker-id>.log`, the files [`crate::LocalCompute`] writes.
#[derive(Debug, Clone)]
pub struct FileLogs {
    dir: PathBuf,
}

impl FileLogs {
    /// Logs in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl Logs for FileLogs {
    async fn read(&self, worker: &WorkerId, query: &LogQuery) -> Result<Vec<LogLine>> {
        let file = self.dir.join(format!("{worker}.log"));
        let text = match std::fs::read(&file) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::other("read log", file.display().to_string(), e)),
        };
        // Plain files carry no per-line time; `since` is applied to none of them.
        let lines = text.lines().map(|l| LogLine {
            time: None,
            message: l.to_string(),
        });
        Ok(query.select(lines))
    }
}
