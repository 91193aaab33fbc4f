//! The logs port on CloudWatch Logs: the `awslogs` streams of worker containers.

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
use starburst_cloud::{Error, LogLine, LogQuery, Logs, Result, WorkerId};

use crate::compute::LOG_STREAM_PREFIX;
use crate::error::map;
use crate::{Aws, EcsOptions};

/// The most events one `GetLogEvents` call returns.
const PAGE_MAX: usize = 10_000;

/// Worker logs written by the `awslogs` driver: the log of worker `W` is the stream
/// `<prefix>/<container>/W` of one log group (`starburst/worker/W` with [`EcsCompute`]'s
/// defaults).
///
/// `read` pages `GetLogEvents` forwards from the start (or from `since`) until the forward
/// token repeats; with `tail`, it pages backwards from the end until it has enough lines. A
/// missing stream or group reads as no lines: a worker that has not logged yet has none.
///
/// [`EcsCompute`]: crate::EcsCompute
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    client: Client,
    group: String,
    prefix: String,
    container: String,
}

impl CloudWatchLogs {
    /// Logs of the group `log_group`, streams named `<stream_prefix>/<container>/<worker id>`
    /// (`awslogs-stream-prefix` and the container name).
    pub fn new(
        aws: &Aws,
        log_group: impl Into<String>,
        stream_prefix: impl Into<String>,
        container: impl Into<String>,
    ) -> Result<Self> {
        let group = log_group.into();
        if group.trim().is_empty() {
            return Err(Error::invalid(
                "connect to CloudWatch Logs",
                "the log group name is empty",
            ));
        }
        Ok(Self {
            client: Client::new(aws.sdk()),
            group,
            prefix: stream_prefix.into(),
            container: container.into(),
        })
    }

    /// The logs of the workers [`crate::EcsCompute`] starts with `options`; an error when the
    /// options name no log group.
    pub fn for_workers(aws: &Aws, options: &EcsOptions) -> Result<Self> {
        let group = options.log_group.clone().ok_or_else(|| {
            Error::invalid(
                "connect to CloudWatch Logs",
                "the workers have no log group: set EcsOptions::log_group",
            )
        })?;
        Self::new(aws, group, LOG_STREAM_PREFIX, &options.container_name)
    }

    /// The log group.
    pub fn log_group(&self) -> &str {
        &self.group
    }

    /// The stream holding `worker`'s log.
    pub fn stream_name(&self, worker: &WorkerId) -> String {
        format!("{}/{}/{}", self.prefix, self.container, worker)
    }

    async fn page(
        &self,
        stream: &str,
        forward: bool,
        start_ms: Option<i64>,
        limit: Option<usize>,
        token: Option<&str>,
    ) -> Result<GetLogEventsOutput> {
        self.client
            .get_log_events()
            .log_group_name(&self.group)
            .log_stream_name(stream)
            .start_from_head(forward)
            .set_start_time(start_ms)
            .set_limit(limit.map(|l| l.min(PAGE_MAX) as i32))
            .set_next_token(token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                map(
                    "read worker log",
                    format!("log stream {stream} of group {}", self.group),
                    e,
                )
            })
    }

    /// Every event of `stream` from `start_ms` on, oldest first.
    async fn read_forward(&self, stream: &str, start_ms: Option<i64>) -> Result<Vec<LogLine>> {
        let mut lines = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .page(stream, true, start_ms, None, token.as_deref())
                .await?;
            lines.extend(out.events().iter().map(line));
            // The end of the stream: the forward token comes back unchanged.
            match out.next_forward_token() {
                Some(next) if token.as_deref() != Some(next) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(lines)
    }

    /// At least the last `n` events of `stream` from `start_ms` on (all of them when fewer),
    /// oldest first.
    async fn read_tail(
        &self,
        stream: &str,
        start_ms: Option<i64>,
        n: usize,
    ) -> Result<Vec<LogLine>> {
        let mut pages: Vec<Vec<LogLine>> = Vec::new();
        let mut have = 0;
        let mut token: Option<String> = None;
        while have < n {
            let out = self
                .page(stream, false, start_ms, Some(n - have), token.as_deref())
                .await?;
            let page: Vec<LogLine> = out.events().iter().map(line).collect();
            have += page.len();
            pages.push(page);
            // The start of the stream: the backward token comes back unchanged.
            match out.next_backward_token() {
                Some(next) if token.as_deref() != Some(next) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(pages.into_iter().rev().flatten().collect())
    }
}

fn line(e: &aws_sdk_cloudwatchlogs::types::OutputLogEvent) -> LogLine {
    LogLine {
        time: e
            .timestamp()
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        message: e
            .message()
            .unwrap_or_default()
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
    }
}

#[async_trait]
impl Logs for CloudWatchLogs {
    async fn read(&self, worker: &WorkerId, query: &LogQuery) -> Result<Vec<LogLine>> {
        let stream = self.stream_name(worker);
        // CloudWatch keeps milliseconds: start at the millisecond `since` falls in, and let
        // `select` apply the exact bound.
        let start_ms = query.since.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        });
        let read = match query.tail {
            Some(0) => Ok(Vec::new()),
            Some(n) => self.read_tail(&stream, start_ms, n).await,
            None => self.read_forward(&stream, start_ms).await,
        };
        match read {
            Ok(lines) => Ok(query.select(lines)),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_lines_without_trailing_newlines() {
        let e = aws_sdk_cloudwatchlogs::types::OutputLogEvent::builder()
            .timestamp(1_500)
            .message("hello\n")
            .build();
        let l = line(&e);
        assert_eq!(l.message, "hello");
        assert_eq!(l.time, Some(UNIX_EPOCH + Duration::from_millis(1_500)));
        let bare = aws_sdk_cloudwatchlogs::types::OutputLogEvent::builder().build();
        assert_eq!(line(&bare).time, None);
    }
}
