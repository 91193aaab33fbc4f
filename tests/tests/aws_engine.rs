//! End to end on the aws backend, against the local AWS emulator (`xtask/emulator`): a session
//! makes real S3, ECS and CloudWatch Logs calls to moto; the Fargate simulator runs a real
//! `starburst-worker` process for every task RunTask creates, and the worker evaluates with the
//! protocol-speaking stand-in for R (`fixtures/fake_rscript.py`).
//!
//! Needs the moto venv (`cargo xtask emulator-venv`; `STARBURST_MOTO` names its `moto_server`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use starburst::aws::{AwsOptions, EcsCompute, EcsOptions};
use starburst::cloud::{Capacity, Compute, TaskId};
use starburst::scheduler::{Collected, FailureCause, TaskState};
use starburst::{AwsSettings, Backend, Config, Session};
use starburst_e2e::worker_bin;

const REGION: &str = "us-east-1";

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<this test>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The moto venv's Python.
fn python() -> PathBuf {
    let python = match std::env::var_os("STARBURST_MOTO") {
        Some(moto) => PathBuf::from(moto).with_file_name("python"),
        None => target_dir().join("moto-venv/bin/python"),
    };
    assert!(
        python.is_file(),
        "no emulator Python at {}: run `cargo xtask emulator-venv` (or set STARBURST_MOTO)",
        python.display()
    );
    python
}

/// A running emulator; it exits (stopping its workers) when its stdin closes.
struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    settings: AwsSettings,
    _dir: tempfile::TempDir,
}

impl Emulator {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../xtask/emulator/starburst_emulator.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--port", "0", "--bootstrap", "--exit-on-stdin-eof"])
            .args(["--stop-grace", "1", "--spot-grace", "1"])
            .arg("--config-out")
            .arg(&config)
            .arg("--worker-bin")
            .arg(worker_bin())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the emulator starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let url = lines.by_ref().find_map(|l| {
                l.strip_prefix("STARBURST_EMULATOR_READY ")
                    .map(str::to_owned)
            });
            let _ = tx.send(url);
            lines.for_each(drop);
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the emulator is ready within 120 s")
            .expect("the emulator printed its URL");
        let settings: AwsSettings =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        Self {
            stdin: child.stdin.take(),
            child,
            url,
            settings,
            _dir: dir,
        }
    }

    fn aws_options(&self) -> AwsOptions {
        AwsOptions::emulator(&self.url, REGION, "testing", "testing")
    }

    /// A session of `workers` workers on this emulator, evaluating with the stand-in for R.
    fn session(&self, workers: u32, capacity: Capacity, image: Option<&str>) -> Session {
        let mut c = Config::local(workers);
        c.backend = Backend::Aws;
        c.capacity = capacity;
        c.max_retries = 2;
        let mut settings = self.settings.clone();
        if let Some(image) = image {
            settings.image = image.into();
        }
        c.aws = Some(settings);
        let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake_rscript.py");
        c.env
            .insert("STARBURST_RSCRIPT".into(), fake.display().to_string());
        Session::start_aws_with(c, self.aws_options()).expect("session starts")
    }

    /// An HTTP request to the emulator's control API; the response body.
    fn control(&self, method: &str, path: &str) -> String {
        self.control_with_body(method, path, "")
    }

    /// As [`Self::control`], with a JSON body.
    fn control_with_body(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut sock = TcpStream::connect(addr).unwrap();
        write!(
            sock,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        sock.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.control("GET", "/_starburst/stats")).unwrap()
    }

    /// Runs `f` with an ECS adapter on this emulator's cluster.
    fn with_ecs<T>(&self, f: impl AsyncFnOnce(EcsCompute) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let aws = starburst::aws::Aws::connect(self.aws_options()).await;
            let mut options = EcsOptions::new(&self.settings.cluster);
            options.subnets = self.settings.subnets.clone();
            options.execution_role_arn = self.settings.execution_role_arn.clone();
            f(EcsCompute::new(&aws, options).unwrap()).await
        })
    }

    /// The ids of the session's running workers, as ECS lists them.
    fn running_workers(&self, session: &Session) -> Vec<String> {
        let session_id = session.info().session_id.to_string();
        self.with_ecs(async |ecs| {
            ecs.list(Some(&session_id))
                .await
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }

    /// Whether ECS reports every one of `ids` stopped.
    fn all_stopped(&self, ids: &[String]) -> bool {
        let ids: Vec<_> = ids
            .iter()
            .map(|id| starburst::cloud::WorkerId::new(id.clone()).unwrap())
            .collect();
        self.with_ecs(async |ecs| {
            let st = ecs.describe(&ids).await.unwrap();
            st.len() == ids.len()
                && st
                    .iter()
                    .all(|s| s.phase == starburst::cloud::WorkerPhase::Stopped)
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Strict mode answers what AWS would reject as AWS would; the engine must have sent
        // nothing of the kind.
        if !std::thread::panicking() {
            let rejected = self.control("GET", "/_starburst/rejected");
            assert!(
                rejected.ends_with(r#"{"rejected": []}"#),
                "the emulator rejected requests that AWS would reject: {rejected}"
            );
        }
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(s: &Session, id: &TaskId) -> Collected {
    starburst_e2e::wait_for(s, id, Duration::from_secs(120))
}

fn submit(s: &Session, cmd: &str) -> TaskId {
    s.submit(Bytes::from(cmd.to_string()), vec![], None)
        .unwrap()
}

fn s3_ops(stats: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    stats["requests"]["s3"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn futures_run_on_simulated_fargate_workers_through_s3() {
    let emu = Emulator::start();
    let s = emu.session(3, Capacity::OnDemand, None);
    let ids: Vec<_> = (0..40).map(|i| submit(&s, &format!("echo:{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        let c = wait(&s, id);
        assert_eq!(c.state, TaskState::Done, "{:?}", c.failure);
        assert_eq!(c.value.unwrap(), Bytes::from(i.to_string()));
    }
    // Events arrive complete and in order; shared blobs reach the worker.
    let ev = wait(&s, &submit(&s, "events:4"));
    assert_eq!(ev.value.unwrap(), Bytes::from("done"));
    let events: Vec<_> = ev.events.iter().map(|e| e.to_vec()).collect();
    assert_eq!(
        events,
        vec![
            b"ev0".to_vec(),
            b"ev1".to_vec(),
            b"ev2".to_vec(),
            b"ev3".to_vec()
        ]
    );
    let blob = Bytes::from(vec![7u8; 3 << 20]);
    let id = s
        .submit(Bytes::from("blobs|1"), vec![blob.clone()], None)
        .unwrap();
    assert_eq!(
        wait(&s, &id).value.unwrap(),
        Bytes::from((3u32 << 20).to_string())
    );

    let workers = emu.running_workers(&s);
    assert!(
        (1..=3).contains(&workers.len()),
        "at most 3 workers run: {workers:?}"
    );
    let ops = s3_ops(&emu.stats());
    assert!(
        !ops.keys().any(|k| k.contains("LIST")),
        "no LIST in the hot path: {ops:?}"
    );
    assert!(ops.contains_key("PUT object conditional"), "{ops:?}");

    // Closing the session stops its ECS tasks.
    s.close();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !emu.all_stopped(&workers) {
        assert!(
            Instant::now() < deadline,
            "workers still running after close"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_spot_interruption_requeues_the_future_which_then_completes() {
    let emu = Emulator::start();
    let s = emu.session(1, Capacity::Spot, None);
    let id = submit(&s, "sleep:4");
    // Wait until a worker runs it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker = loop {
        let c = s.collect(&id, Duration::from_millis(100)).unwrap();
        let running = emu.running_workers(&s);
        if c.state == TaskState::Running && running.len() == 1 {
            break running[0].clone();
        }
        assert!(Instant::now() < deadline, "the future never started");
    };
    // Give the worker time to pick the assignment up, then reclaim its capacity.
    std::thread::sleep(Duration::from_millis(1500));
    let answer = emu.control("POST", &format!("/_starburst/interrupt/{worker}"));
    assert!(!answer.contains("error"), "{answer}");
    let c = wait(&s, &id);
    assert_eq!(c.state, TaskState::Done, "{:?}", c.failure);
    assert_eq!(c.value.unwrap(), Bytes::from("slept"));
    let now = emu.running_workers(&s);
    assert!(
        !now.contains(&worker),
        "the interrupted worker is gone: {now:?}"
    );
    assert!(emu.all_stopped(std::slice::from_ref(&worker)));
}

#[test]
fn a_worker_lost_for_good_fails_its_future_with_the_cloudwatch_log_tail() {
    let emu = Emulator::start();
    let mut c = Config::local(1);
    c.backend = Backend::Aws;
    c.capacity = Capacity::Spot;
    c.max_retries = 0;
    c.aws = Some(emu.settings.clone());
    let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake_rscript.py");
    c.env
        .insert("STARBURST_RSCRIPT".into(), fake.display().to_string());
    let s = Session::start_aws_with(c, emu.aws_options()).unwrap();
    let id = submit(&s, "sleep:30");
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker = loop {
        let running = emu.running_workers(&s);
        if s.collect(&id, Duration::from_millis(100)).unwrap().state == TaskState::Running
            && running.len() == 1
        {
            break running[0].clone();
        }
        assert!(Instant::now() < deadline, "the future never started");
    };
    std::thread::sleep(Duration::from_millis(1500));
    emu.control("POST", &format!("/_starburst/interrupt/{worker}"));
    let c = wait(&s, &id);
    assert_eq!(c.state, TaskState::Failed);
    let failure = c.failure.unwrap();
    assert_eq!(failure.cause, FailureCause::WorkerLost, "{failure:?}");
    assert!(
        failure.message.contains("Spot"),
        "the message says what happened: {}",
        failure.message
    );
    assert!(
        failure
            .log_tail
            .iter()
            .any(|l| l.contains("fake R running sleep")),
        "the log tail comes from CloudWatch: {:?}",
        failure.log_tail
    );
}

#[test]
fn an_image_that_cannot_be_pulled_fails_every_future_at_once() {
    let emu = Emulator::start();
    let s = emu.session(
        2,
        Capacity::OnDemand,
        Some("sim-pull-fail/starburst:missing"),
    );
    let ids: Vec<_> = (0..5).map(|i| submit(&s, &format!("echo:{i}"))).collect();
    for id in &ids {
        let c = wait(&s, id);
        assert_eq!(c.state, TaskState::Failed);
        let failure = c.failure.unwrap();
        assert_eq!(
            failure.cause,
            FailureCause::WorkerStartFailed,
            "{failure:?}"
        );
        assert!(
            failure.message.contains("CannotPullContainerError"),
            "the platform's words are kept: {}",
            failure.message
        );
    }
    let stats = emu.stats();
    let run_task = stats["requests"]["ecs"]["RunTask"].as_u64().unwrap_or(0);
    assert!(
        run_task <= 2,
        "no launch storm after a pull failure: {run_task} RunTask calls"
    );
}

#[test]
fn throttling_and_server_errors_are_retried_with_backoff() {
    let emu = Emulator::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inject = |status: u16, code: &str, count: u32| {
        let body = format!(
            r#"{{"service":"s3","method":"PUT","status":{status},"code":"{code}","count":{count}}}"#
        );
        emu.control_with_body("POST", "/_starburst/faults", &body)
    };
    rt.block_on(async {
        use starburst::aws::{Aws, S3Options, S3Store};
        use starburst::cloud::{ObjectPath, ObjectStore};
        let path = ObjectPath::parse("retry/object").unwrap();
        let store = |attempts: u32| {
            let options = emu.aws_options().with_max_attempts(attempts);
            let bucket = emu.settings.bucket.clone();
            async move {
                S3Store::new(
                    &Aws::connect(options).await,
                    bucket,
                    "retry",
                    S3Options::default(),
                )
                .unwrap()
            }
        };
        // Two SlowDowns, then an internal error: the default 5 attempts ride them out.
        inject(503, "SlowDown", 2);
        inject(500, "InternalError", 1);
        store(5)
            .await
            .put(&path, Bytes::from("x"))
            .await
            .expect("retried past 3 faults");
        // With a single attempt the fault surfaces, mapped onto the port's error.
        inject(503, "SlowDown", 1);
        let e = store(1)
            .await
            .put(&path, Bytes::from("y"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, starburst::cloud::Error::Throttled { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("retry/object"), "names the key: {e}");
    });
    let faults = &emu.stats()["faults_injected"]["s3"];
    let total: u64 = faults
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 4, "every injected fault was hit: {faults}");

    // A session rides out faults on its own writes too.
    let s = emu.session(1, Capacity::OnDemand, None);
    inject(503, "SlowDown", 3);
    let ids: Vec<_> = (0..5).map(|i| submit(&s, &format!("echo:{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(wait(&s, id).value.unwrap(), Bytes::from(i.to_string()));
    }
}
