//! `EcsCompute` against moto's ECS (a `moto_server` per test on 127.0.0.1, see `support`), and
//! the pure stop classification.
//!
//! moto starts Fargate tasks in `RUNNING` and, by default, moves a task one state towards
//! `STOPPED` each time it is described; the fixture sets moto's transition so that tasks keep
//! running until stopped, as a worker does. A counting proxy between the adapter and moto
//! shows the calls the adapter makes (moto accepts any count per call).

#![cfg(feature = "network")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::Filter;
use starburst_aws::{
    Aws, AwsOptions, EcsCompute, EcsOptions, Pace, STOP_REASON_PREFIX, classify_stop, started_by,
};
use starburst_cloud::{
    Arch, Capacity, Compute, Error, StopCause, WorkerId, WorkerPhase, WorkerSize, WorkerSpec,
};
use support::{Moto, REGION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLUSTER: &str = "starburst";
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst:r4.4";

/// A moto server with a cluster and the default VPC's network.
struct Fixture {
    moto: Moto,
    ecs: aws_sdk_ecs::Client,
    options: EcsOptions,
}

impl Fixture {
    async fn start() -> Self {
        Self::on(Moto::start().await).await
    }

    /// A fixture on `moto`.
    async fn on(moto: Moto) -> Self {
        moto_api(
            &moto,
            "/moto-api/state-manager/set-transition",
            r#"{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}}"#,
        )
        .await;
        moto.ecs_service_linked_role().await;
        let conf = moto.sdk_config();
        let ecs = aws_sdk_ecs::Client::new(&conf);
        ecs.create_cluster()
            .cluster_name(CLUSTER)
            .capacity_providers("FARGATE")
            .capacity_providers("FARGATE_SPOT")
            .send()
            .await
            .expect("create cluster");
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let subnets: Vec<String> = ec2
            .describe_subnets()
            .filters(
                Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            )
            .send()
            .await
            .expect("describe subnets")
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect();
        assert!(!subnets.is_empty(), "moto has a default VPC");
        let groups: Vec<String> = ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name("group-name")
                    .values("default")
                    .build(),
            )
            .send()
            .await
            .expect("describe security groups")
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .take(1)
            .collect();
        let options = EcsOptions::new(CLUSTER)
            .with_execution_role_arn("arn:aws:iam::123456789012:role/starburst-execution")
            .with_subnets(subnets.into_iter().take(2))
            .with_security_groups(groups)
            .with_pace(Pace::new(10_000.0, 10_000));
        Self { moto, ecs, options }
    }

    async fn compute(&self) -> EcsCompute {
        EcsCompute::new(&self.moto.aws().await, self.options.clone()).expect("adapter")
    }

    /// The adapter talking to moto through a proxy that records its requests.
    async fn recorded_compute(&self) -> (EcsCompute, Recorder) {
        self.throttled_compute(0).await
    }

    /// The adapter talking to moto through a recording proxy that throttles the first
    /// `throttle` RunTask calls; the SDK does not retry.
    async fn throttled_compute(&self, throttle: u32) -> (EcsCompute, Recorder) {
        let recorder = Recorder::start(&self.moto.endpoint, throttle).await;
        let aws = Aws::connect(
            AwsOptions::emulator(&recorder.endpoint, REGION, "testing", "testing")
                .with_max_attempts(if throttle > 0 { 1 } else { 5 }),
        )
        .await;
        (
            EcsCompute::new(&aws, self.options.clone()).expect("adapter"),
            recorder,
        )
    }

    /// The tasks as ECS returns them, with tags.
    async fn raw_tasks(&self, ids: &[WorkerId]) -> Vec<aws_sdk_ecs::types::Task> {
        self.ecs
            .describe_tasks()
            .cluster(CLUSTER)
            .set_tasks(Some(ids.iter().map(|i| i.to_string()).collect()))
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .expect("describe tasks")
            .tasks()
            .to_vec()
    }
}

fn spec(session: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    });
    spec.image = Some(IMAGE.into());
    spec.tags
        .insert(starburst_aws::SESSION_TAG.into(), session.into());
    spec.env.insert("STARBURST_SESSION".into(), session.into());
    spec
}

/// Sends `body` to a moto API path and checks it succeeded.
async fn moto_api(moto: &Moto, path: &str, body: &str) {
    let addr = moto.endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect to moto");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 20"),
        "moto API {path}: {response}"
    );
}

/// One request the adapter sent: the operation (`RunTask`, ...) and the JSON body.
#[derive(Debug, Clone)]
struct Request {
    operation: String,
    body: String,
}

/// A TCP proxy in front of moto that records every request passing through it, and answers
/// the first `throttle` RunTask requests itself with ECS's `ThrottlingException`.
struct Recorder {
    endpoint: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// ECS's answer to a throttled call.
fn throttled_response() -> String {
    let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

impl Recorder {
    async fn start(upstream: &str, throttle: u32) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let throttle = Arc::new(AtomicU32::new(throttle));
        let log = requests.clone();
        // Ends with the test's runtime.
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, log, throttle) = (upstream.clone(), log.clone(), throttle.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_read, client_write) = client.into_split();
                    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
                    let (mut server_read, mut server_write) = server.into_split();
                    let to_client = client_write.clone();
                    let responses = tokio::spawn(async move {
                        let mut chunk = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = server_read.read(&mut chunk).await {
                            if to_client.lock().await.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut pending = Vec::new();
                    let mut chunk = vec![0u8; 64 * 1024];
                    // HTTP/1.1 without pipelining: a client sends its next request on a
                    // connection only after the whole previous response.
                    'connection: while let Ok(n @ 1..) = client_read.read(&mut chunk).await {
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some((request, used)) = parse_request(&pending) {
                            let throttled = request.operation == "RunTask"
                                && throttle
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                                        t.checked_sub(1)
                                    })
                                    .is_ok();
                            log.lock().unwrap().push(request);
                            let sent = if throttled {
                                client_write
                                    .lock()
                                    .await
                                    .write_all(throttled_response().as_bytes())
                                    .await
                            } else {
                                server_write.write_all(&pending[..used]).await
                            };
                            pending.drain(..used);
                            if sent.is_err() {
                                break 'connection;
                            }
                        }
                    }
                    let _ = server_write.shutdown().await;
                    let _ = responses.await;
                });
            }
        });
        Self { endpoint, requests }
    }

    fn requests(&self, operation: &str) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.operation == operation)
            .cloned()
            .collect()
    }
}

/// The first complete HTTP/1.1 request in `buf` and its length (bodies with Content-Length,
/// as the SDK sends JSON requests).
fn parse_request(buf: &[u8]) -> Option<(Request, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    if buf.len() < head_end + len {
        return None;
    }
    let operation = header("x-amz-target")
        .and_then(|t| t.rsplit('.').next().map(str::to_owned))
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Some((Request { operation, body }, head_end + len))
}

/// The number after `"key":` in a JSON body.
fn json_number(body: &str, key: &str) -> u32 {
    let pattern = format!("\"{key}\":");
    let at = body.find(&pattern).expect("key in body") + pattern.len();
    body[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecs_compute_passes_the_compute_conformance_suite() {
    let fx = Fixture::start().await;
    let compute = Arc::new(fx.compute().await);
    starburst_cloud::conformance::compute(compute, &spec("conformance")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launches_run_at_most_ten_tasks_per_run_task_call() {
    let fx = Fixture::start().await;
    let (compute, recorder) = fx.recorded_compute().await;
    let report = compute.launch(&spec("batches"), 25).await.unwrap();
    assert_eq!(report.launched.len(), 25, "{report:?}");
    assert!(report.failures.is_empty());
    let unique: BTreeSet<_> = report.launched.iter().collect();
    assert_eq!(unique.len(), 25, "worker ids are unique");

    let calls: Vec<u32> = recorder
        .requests("RunTask")
        .iter()
        .map(|r| json_number(&r.body, "count"))
        .collect();
    assert_eq!(calls, [10, 10, 5], "RunTask calls and their counts");
    assert_eq!(
        recorder.requests("RegisterTaskDefinition").len(),
        1,
        "one task definition for one spec"
    );
    // Launching again reuses the cached task definition.
    compute.launch(&spec("batches"), 1).await.unwrap();
    assert_eq!(recorder.requests("RegisterTaskDefinition").len(), 1);
    assert_eq!(recorder.requests("DescribeTaskDefinition").len(), 1);
    let listed = compute.list(Some("batches")).await.unwrap();
    assert_eq!(listed.len(), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_run_task_calls_are_retried_then_reported() {
    let fx = Fixture::start().await;
    let (compute, recorder) = fx.throttled_compute(2).await;
    let report = compute.launch(&spec("throttled"), 15).await.unwrap();
    assert_eq!(report.launched.len(), 15, "{report:?}");
    let counts: Vec<u32> = recorder
        .requests("RunTask")
        .iter()
        .map(|r| json_number(&r.body, "count"))
        .collect();
    assert_eq!(counts, [10, 10, 10, 5], "the throttled batch is sent again");
    let tokens: BTreeSet<_> = recorder
        .requests("RunTask")
        .iter()
        .map(|r| r.body.split("clientToken").nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 2, "a retried batch keeps its client token");

    // Throttled on every attempt with nothing launched: an error.
    let (compute, _) = fx.throttled_compute(100).await;
    let e = compute.launch(&spec("throttled"), 3).await.unwrap_err();
    assert!(matches!(e, Error::Throttled { .. }), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_workers_are_described_in_batches_of_100_and_listed() {
    let fx = Fixture::start().await;
    let (compute, recorder) = fx.recorded_compute().await;
    let report = compute.launch(&spec("big"), 150).await.unwrap();
    assert_eq!(report.launched.len(), 150, "{:?}", report.failures);
    let other = compute.launch(&spec("other"), 3).await.unwrap();

    let mut ids = report.launched.clone();
    ids.push(WorkerId::new("0123456789abcdef0123456789abcdef").unwrap());
    let statuses = compute.describe(&ids).await.unwrap();
    assert_eq!(statuses.len(), 150, "the unknown id is left out");
    assert!(statuses.iter().all(|s| s.phase == WorkerPhase::Running));
    let described: BTreeSet<_> = statuses.iter().map(|s| s.id.clone()).collect();
    let launched: BTreeSet<_> = report.launched.iter().cloned().collect();
    assert_eq!(described, launched);
    let batches: Vec<usize> = recorder
        .requests("DescribeTasks")
        .iter()
        .map(|r| ids.iter().filter(|id| r.body.contains(id.as_str())).count())
        .collect();
    assert_eq!(batches, [100, 51], "DescribeTasks batches");

    let listed: BTreeSet<_> = compute
        .list(Some("big"))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, launched, "list by session");
    let all = compute.list(None).await.unwrap();
    assert_eq!(all.len(), 153);
    assert_eq!(
        compute.list(Some("other")).await.unwrap().len(),
        other.launched.len()
    );

    compute
        .stop(&report.launched[..40], "shrink")
        .await
        .unwrap();
    assert_eq!(
        compute.list(Some("big")).await.unwrap().len(),
        110,
        "stopped workers are no longer listed"
    );
    assert_eq!(
        recorder.requests("StopTask").len(),
        40,
        "one StopTask per worker"
    );
    // ECS refuses startedBy with any other filter ("must be the only filter").
    for r in recorder.requests("ListTasks") {
        assert!(
            !(r.body.contains("startedBy") && r.body.contains("desiredStatus")),
            "{}",
            r.body
        );
    }

    // Every live worker of the cluster, with its session, size and capacity: what a sweep
    // for workers of dead sessions reads.
    let live = compute.list_live().await.unwrap();
    assert_eq!(live.len(), 113);
    let sessions: BTreeSet<_> = live.iter().filter_map(|w| w.session.clone()).collect();
    assert_eq!(
        sessions,
        ["big", "other"].map(String::from).into_iter().collect()
    );
    let w = &live[0];
    assert_eq!(w.size, Some(spec("big").size));
    assert_eq!(w.capacity, spec("big").capacity);
    // (Plain moto reports neither createdAt nor startedAt; ECS and the emulator do.)
}

/// IAM is eventually consistent: ECS cannot assume a role created moments ago ("ECS was unable
/// to assume the role"), as a first session right after set-up meets. The launch waits for it
/// (here moto refuses the role for 1.5 s after its creation; without the wait it fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_created_moments_ago_is_waited_for() {
    let moto = Moto::start_eventually_consistent(std::time::Duration::from_millis(1500)).await;
    let iam = aws_sdk_iam::Client::new(&moto.sdk_config());
    let mut fx = Fixture::on(moto).await;
    let role = iam
        .create_role()
        .role_name("sb-young-execution")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    fx.options.execution_role_arn = role.role().map(|r| r.arn().to_owned());
    let report = fx.compute().await.launch(&spec("young"), 1).await.unwrap();
    assert_eq!(report.launched.len(), 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ecr_image_without_an_execution_role_is_refused_before_any_call() {
    let mut fx = Fixture::start().await;
    fx.options.execution_role_arn = None;
    let compute = fx.compute().await;
    let err = compute.launch(&spec("norole"), 1).await.unwrap_err();
    assert!(
        matches!(err, starburst_cloud::Error::InvalidInput { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("execution role"), "{err}");
    let families = fx.ecs.list_task_definition_families().send().await.unwrap();
    assert!(families.families().is_empty(), "nothing was registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_task_definition_and_the_tasks_carry_the_spec() {
    let mut fx = Fixture::start().await;
    fx.options = fx
        .options
        .clone()
        .with_log_group("/starburst/workers")
        .with_task_role_arn("arn:aws:iam::123456789012:role/starburst-worker")
        .with_execution_role_arn("arn:aws:iam::123456789012:role/starburst-execution");
    let compute = fx.compute().await;
    let mut spec = spec("carry.session");
    spec.arch = Arch::Arm64;
    spec.capacity = Capacity::Spot;
    spec.env.insert("STARBURST_BUCKET".into(), "data".into());
    spec.tags.insert("team".into(), "stats".into());
    let report = compute.launch(&spec, 2).await.unwrap();
    assert_eq!(report.launched.len(), 2);

    let tasks = fx.raw_tasks(&report.launched).await;
    assert_eq!(tasks.len(), 2);
    let task = &tasks[0];
    assert_eq!(task.started_by(), Some("carry-session"));
    assert_eq!(task.capacity_provider_name(), Some("FARGATE_SPOT"));
    let tags: BTreeMap<_, _> = task
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags.get("starburst:session"), Some(&"carry.session"));
    assert_eq!(tags.get("team"), Some(&"stats"));
    let overrides = task.overrides().expect("overrides").container_overrides();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].name(), Some("worker"));
    let env: BTreeMap<_, _> = overrides[0]
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("STARBURST_BUCKET", "data"),
            ("STARBURST_SESSION", "carry.session")
        ])
    );

    let arn = task.task_definition_arn().unwrap();
    let td = fx
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .cloned()
        .unwrap();
    assert!(td.family().unwrap().starts_with("starburst-worker-"));
    assert_eq!(td.cpu(), Some("1024"));
    assert_eq!(td.memory(), Some("2048"));
    assert_eq!(
        td.network_mode(),
        Some(&aws_sdk_ecs::types::NetworkMode::Awsvpc)
    );
    assert_eq!(
        td.requires_compatibilities(),
        [aws_sdk_ecs::types::Compatibility::Fargate]
    );
    let platform = td.runtime_platform().expect("runtime platform");
    assert_eq!(
        platform.cpu_architecture(),
        Some(&aws_sdk_ecs::types::CpuArchitecture::Arm64)
    );
    assert_eq!(
        platform.operating_system_family(),
        Some(&aws_sdk_ecs::types::OsFamily::Linux)
    );
    assert_eq!(
        td.task_role_arn(),
        Some("arn:aws:iam::123456789012:role/starburst-worker")
    );
    assert_eq!(
        td.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/starburst-execution")
    );
    let [container] = td.container_definitions() else {
        panic!("one container: {td:?}");
    };
    assert_eq!(container.name(), Some("worker"));
    assert_eq!(container.image(), Some(IMAGE));
    assert_eq!(container.essential(), Some(true));
    assert_eq!(
        container.memory(),
        Some(2048),
        "container memory = task memory"
    );
    let logs = container.log_configuration().expect("log configuration");
    assert_eq!(logs.log_driver(), &aws_sdk_ecs::types::LogDriver::Awslogs);
    let options = logs.options().unwrap();
    assert_eq!(options["awslogs-group"], "/starburst/workers");
    assert_eq!(options["awslogs-region"], REGION);
    assert_eq!(options["awslogs-stream-prefix"], "starburst");

    // A new adapter (a later run) reuses the family and its revision.
    let again = fx.compute().await.launch(&spec, 1).await.unwrap();
    let reused = fx.raw_tasks(&again.launched).await;
    assert_eq!(reused[0].task_definition_arn(), Some(arn));
    // Another image is another family.
    spec.image = Some(format!("{IMAGE}-2"));
    let other = compute.launch(&spec, 1).await.unwrap();
    let other = fx.raw_tasks(&other.launched).await;
    let other_arn = other[0].task_definition_arn().unwrap();
    assert_ne!(other_arn, arn);
    assert!(other_arn.contains("starburst-worker-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_records_the_reason_and_is_idempotent() {
    let fx = Fixture::start().await;
    let compute = fx.compute().await;
    let report = compute.launch(&spec("stop"), 3).await.unwrap();
    let long = "x".repeat(400);
    compute.stop(&report.launched, &long).await.unwrap();
    compute.stop(&report.launched, &long).await.unwrap();
    compute.stop(&[], "nothing").await.unwrap();

    for task in fx.raw_tasks(&report.launched).await {
        let reason = task.stopped_reason().unwrap();
        assert!(reason.starts_with(STOP_REASON_PREFIX), "{reason}");
        assert_eq!(reason.len(), 255, "reasons are cut to ECS's limit");
    }
    let statuses = compute.describe(&report.launched).await.unwrap();
    assert_eq!(statuses.len(), 3);
    for s in statuses {
        assert_eq!(s.phase, WorkerPhase::Stopped);
        let stop = s.stop.expect("stop info");
        assert_eq!(stop.cause, StopCause::StoppedByUser);
        assert!(stop.message.contains("xxxx"), "{}", stop.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_that_starts_nothing_is_an_error() {
    let mut fx = Fixture::start().await;
    fx.options.cluster = "no-such-cluster".into();
    let compute = fx.compute().await;
    let e = compute.launch(&spec("missing"), 3).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("no-such-cluster"), "{e}");
}

#[tokio::test]
async fn a_spec_without_an_image_or_a_fargate_size_is_invalid_input() {
    // Nothing listens on port 9: the checks come before any request.
    let aws = Aws::connect(AwsOptions::emulator(
        "http://127.0.0.1:9",
        REGION,
        "testing",
        "testing",
    ))
    .await;
    let compute = EcsCompute::new(&aws, EcsOptions::new("c").with_subnets(["subnet-1"])).unwrap();
    let mut no_image = spec("s");
    no_image.image = None;
    let e = compute.launch(&no_image, 1).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("image"), "{e}");

    let mut odd = spec("s");
    odd.size.memory_mib = 1000;
    let e = compute.launch(&odd, 1).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");

    let e = EcsCompute::new(&aws, EcsOptions::new("c")).unwrap_err();
    assert!(e.to_string().contains("subnet"), "{e}");
}

#[test]
fn started_by_is_the_session_within_ecs_limits() {
    assert_eq!(started_by(&spec("abc_DEF-1/2")), "abc_DEF-1/2");
    assert_eq!(started_by(&spec("s.1")), "s-1");
    assert_eq!(started_by(&spec(&"a".repeat(50))), "a".repeat(36));
    assert_eq!(
        started_by(&WorkerSpec::new(WorkerSize {
            millicpu: 250,
            memory_mib: 512
        })),
        "starburst"
    );
}

/// Stop code, stopped reason, exit code, container reason and the expected cause.
type Case = (
    Option<&'static str>,
    Option<&'static str>,
    Option<i32>,
    Option<&'static str>,
    StopCause,
);

#[test]
fn stops_are_classified_from_the_platform_words() {
    let cases: &[Case] = &[
        (
            Some("SpotInterruption"),
            Some("Your Spot Task was interrupted."),
            Some(143),
            None,
            StopCause::SpotInterruption,
        ),
        (
            Some("TaskFailedToStart"),
            Some(
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): \
                 failed to resolve ref docker.io/x:latest: not found",
            ),
            None,
            None,
            StopCause::ImagePullFailed,
        ),
        // Start failures that may pass start another worker instead of failing the session.
        (
            Some("TaskFailedToStart"),
            Some(
                "ResourceInitializationError: unable to pull secrets or registry auth: \
                 execution resource retrieval failed",
            ),
            None,
            None,
            StopCause::StartFailedTransient,
        ),
        (
            Some("TaskFailedToStart"),
            Some(
                "ResourceInitializationError: unable to pull secrets or registry auth: \
                 pull command failed: : signal: killed: RequestError: send request failed \
                 caused by: Post https://api.ecr.us-east-1.amazonaws.com/: dial tcp: i/o timeout",
            ),
            None,
            None,
            StopCause::StartFailedTransient,
        ),
        (
            Some("TaskFailedToStart"),
            Some("Timeout waiting for network interface provisioning to complete."),
            None,
            None,
            StopCause::StartFailedTransient,
        ),
        (
            Some("TaskFailedToStart"),
            Some(
                "ECS was unable to assume the role 'arn:aws:iam::1:role/starburst-task' that \
                 was provided for this task",
            ),
            None,
            None,
            StopCause::StartFailedTransient,
        ),
        (
            Some("TaskFailedToStart"),
            Some("CannotPullContainerError: failed to do request: dial tcp: i/o timeout"),
            None,
            None,
            StopCause::StartFailedTransient,
        ),
        // ...but one that cannot pass still fails fast.
        (
            Some("TaskFailedToStart"),
            Some(
                "ResourceInitializationError: unable to pull secrets or registry auth: \
                 AccessDeniedException: not authorized to perform ecr:GetAuthorizationToken",
            ),
            None,
            None,
            StopCause::ImagePullFailed,
        ),
        (
            Some("TaskFailedToStart"),
            Some(
                "CannotStartContainerError: Error response from daemon: OCI runtime create failed",
            ),
            None,
            None,
            StopCause::CannotStartContainer,
        ),
        (
            None,
            None,
            None,
            Some("CannotPullContainerError: Error response from daemon: pull access denied"),
            StopCause::ImagePullFailed,
        ),
        (
            Some("EssentialContainerExited"),
            Some("Essential container in task exited"),
            Some(137),
            Some("OutOfMemoryError: Container killed due to memory usage"),
            StopCause::OutOfMemory,
        ),
        // Killed without ECS saying it ran out of memory: a lost worker, re-run.
        (
            Some("EssentialContainerExited"),
            Some("Essential container in task exited"),
            Some(137),
            None,
            StopCause::Killed,
        ),
        (
            Some("UserInitiated"),
            Some("Task stopped by user"),
            Some(143),
            None,
            StopCause::StoppedByUser,
        ),
        (
            Some("UserInitiated"),
            Some("stopped by starburst: session closed"),
            Some(137),
            None,
            StopCause::StoppedByUser,
        ),
        (
            None,
            Some("stopped by starburst: session closed"),
            Some(0),
            None,
            StopCause::StoppedByUser,
        ),
        (
            Some("EssentialContainerExited"),
            Some("Essential container in task exited"),
            Some(0),
            None,
            StopCause::Exited,
        ),
        (
            Some("EssentialContainerExited"),
            Some("Essential container in task exited"),
            Some(78),
            None,
            StopCause::EvaluatorStartFailed,
        ),
        (
            Some("EssentialContainerExited"),
            Some("Essential container in task exited"),
            Some(1),
            None,
            StopCause::Crashed,
        ),
        (
            Some("EssentialContainerExited"),
            Some("Essential container in task exited"),
            Some(139),
            None,
            StopCause::Crashed,
        ),
        (
            Some("TerminationNotice"),
            Some("Task stopped due to a termination notice"),
            None,
            None,
            StopCause::HostRetired,
        ),
        (
            None,
            Some("Task stopped: InfrastructureHealth check failed"),
            Some(143),
            None,
            StopCause::HostRetired,
        ),
        (
            Some("ServiceSchedulerInitiated"),
            Some("Scaling activity initiated by deployment"),
            Some(0),
            None,
            StopCause::PlatformStopped,
        ),
        (None, None, None, None, StopCause::Other),
    ];
    for (code, reason, exit, container, cause) in cases {
        let info = classify_stop(*code, *reason, *exit, *container);
        assert_eq!(
            info.cause, *cause,
            "{code:?} / {reason:?} / {exit:?} / {container:?}"
        );
        assert_eq!(info.exit_code, *exit);
        assert!(!info.message.is_empty());
        if let Some(r) = reason {
            assert!(info.message.contains(r), "{}", info.message);
        }
        if let Some(c) = container {
            assert!(info.message.contains(c), "{}", info.message);
        }
        if let Some(x) = exit {
            assert!(
                info.message.contains(&format!("exit code {x}")),
                "{}",
                info.message
            );
        }
    }
    assert_eq!(
        classify_stop(Some("SpotInterruption"), None, None, None).message,
        "SpotInterruption"
    );
    for (.., cause) in cases {
        // Each of these re-runs its future elsewhere, except the ones the user must fix.
        let fatal = matches!(
            cause,
            StopCause::ImagePullFailed | StopCause::EvaluatorStartFailed
        );
        assert_eq!(cause.is_fatal_for_spec(), fatal, "{cause:?}");
    }
}
