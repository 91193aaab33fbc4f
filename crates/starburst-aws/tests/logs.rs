//! `CloudWatchLogs` against moto's CloudWatch Logs (a `moto_server` per test on 127.0.0.1, see
//! `support`).

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use starburst_aws::{CloudWatchLogs, EcsOptions};
use starburst_cloud::{Error, LogQuery, Logs, WorkerId};
use support::Moto;

const GROUP: &str = "/starburst/workers";

/// A moto server with the log group, a raw client and the adapter.
struct Fixture {
    _moto: Moto,
    raw: aws_sdk_cloudwatchlogs::Client,
    logs: CloudWatchLogs,
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start().await;
        let raw = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config());
        raw.create_log_group()
            .log_group_name(GROUP)
            .send()
            .await
            .expect("create log group");
        let logs = CloudWatchLogs::new(&moto.aws().await, GROUP, "starburst", "worker").unwrap();
        Self {
            _moto: moto,
            raw,
            logs,
        }
    }

    /// Writes `lines` (message, milliseconds since the epoch) to `worker`'s stream, as the
    /// awslogs driver would.
    async fn write(&self, worker: &WorkerId, lines: &[(String, i64)]) {
        let stream = format!("starburst/worker/{worker}");
        self.raw
            .create_log_stream()
            .log_group_name(GROUP)
            .log_stream_name(&stream)
            .send()
            .await
            .expect("create log stream");
        for chunk in lines.chunks(10_000) {
            let events = chunk
                .iter()
                .map(|(m, t)| InputLogEvent::builder().message(m).timestamp(*t).build())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            self.raw
                .put_log_events()
                .log_group_name(GROUP)
                .log_stream_name(&stream)
                .set_log_events(Some(events))
                .send()
                .await
                .expect("put log events");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn messages(lines: &[starburst_cloud::LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.message.as_str()).collect()
}

/// Ten lines a second apart, ending a minute ago.
fn ten_lines() -> (i64, Vec<(String, i64)>) {
    let base = now_ms() - 70_000;
    let lines = (0..10)
        .map(|i| (format!("line {i}"), base + i * 1000))
        .collect();
    (base, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_a_log_has_no_lines() {
    let fx = Fixture::start().await;
    let missing = WorkerId::new("0123456789abcdef").unwrap();
    starburst_cloud::conformance::logs_empty(Arc::new(fx.logs.clone()), &missing).await;
    let tail = LogQuery {
        tail: Some(5),
        since: None,
    };
    assert!(fx.logs.read(&missing, &tail).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_group_reads_as_no_lines() {
    let moto = Moto::start().await;
    let logs =
        CloudWatchLogs::new(&moto.aws().await, "/no/such/group", "starburst", "worker").unwrap();
    let w = WorkerId::new("w1").unwrap();
    assert!(
        logs.read(&w, &LogQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let tail = LogQuery {
        tail: Some(3),
        since: None,
    };
    assert!(logs.read(&w, &tail).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_read_whole_by_tail_and_since() {
    let fx = Fixture::start().await;
    let w = WorkerId::new("6f1c2a9e0b3d4c5e8f7a6b5c4d3e2f1a").unwrap();
    let (base, lines) = ten_lines();
    fx.write(&w, &lines).await;
    assert_eq!(
        fx.logs.stream_name(&w),
        "starburst/worker/6f1c2a9e0b3d4c5e8f7a6b5c4d3e2f1a"
    );

    let all = fx.logs.read(&w, &LogQuery::default()).await.unwrap();
    let want: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    assert_eq!(messages(&all), want);
    assert_eq!(all[3].time, Some(at(base + 3000)), "times are kept");

    let tail = |n| LogQuery {
        tail: Some(n),
        since: None,
    };
    assert_eq!(
        messages(&fx.logs.read(&w, &tail(3)).await.unwrap()),
        ["line 7", "line 8", "line 9"]
    );
    assert_eq!(fx.logs.read(&w, &tail(50)).await.unwrap().len(), 10);
    assert!(fx.logs.read(&w, &tail(0)).await.unwrap().is_empty());

    let since = LogQuery {
        tail: None,
        since: Some(at(base + 6000)),
    };
    assert_eq!(
        messages(&fx.logs.read(&w, &since).await.unwrap()),
        ["line 6", "line 7", "line 8", "line 9"]
    );
    let both = LogQuery {
        tail: Some(2),
        since: Some(at(base + 6000)),
    };
    assert_eq!(
        messages(&fx.logs.read(&w, &both).await.unwrap()),
        ["line 8", "line 9"]
    );
    let few_since = LogQuery {
        tail: Some(8),
        since: Some(at(base + 6000)),
    };
    assert_eq!(
        fx.logs.read(&w, &few_since).await.unwrap().len(),
        4,
        "tail does not reach before since"
    );
    let later = LogQuery {
        tail: None,
        since: Some(at(base + 60_000)),
    };
    assert!(fx.logs.read(&w, &later).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_logs_are_read_across_pages_in_both_directions() {
    let fx = Fixture::start().await;
    let w = WorkerId::new("long").unwrap();
    // GetLogEvents returns at most 10,000 events a page.
    let base = now_ms() - 3_600_000;
    let lines: Vec<(String, i64)> = (0..10_050)
        .map(|i| (format!("l{i:05}"), base + i * 10))
        .collect();
    fx.write(&w, &lines).await;

    let all = fx.logs.read(&w, &LogQuery::default()).await.unwrap();
    assert_eq!(all.len(), 10_050, "forward paging reads every page");
    assert_eq!(all[0].message, "l00000");
    assert_eq!(all[10_049].message, "l10049");
    assert!(all.windows(2).all(|p| p[0].time <= p[1].time), "in order");

    let tail = LogQuery {
        tail: Some(10_020),
        since: None,
    };
    let last = fx.logs.read(&w, &tail).await.unwrap();
    assert_eq!(last.len(), 10_020, "backward paging reads a second page");
    assert_eq!(last[0].message, "l00030");
    assert_eq!(last[10_019].message, "l10049");
}

#[tokio::test]
async fn the_logs_of_ecs_workers_need_a_log_group() {
    let aws = starburst_aws::Aws::connect(starburst_aws::AwsOptions::emulator(
        "http://127.0.0.1:9",
        support::REGION,
        "testing",
        "testing",
    ))
    .await;
    let e = CloudWatchLogs::for_workers(&aws, &EcsOptions::new("c")).unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    let logs =
        CloudWatchLogs::for_workers(&aws, &EcsOptions::new("c").with_log_group(GROUP)).unwrap();
    assert_eq!(logs.log_group(), GROUP);
    assert_eq!(
        logs.stream_name(&WorkerId::new("t1").unwrap()),
        "starburst/worker/t1"
    );
    assert!(CloudWatchLogs::new(&aws, "", "starburst", "worker").is_err());
}
