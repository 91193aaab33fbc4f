//! The real worker loop against an in-memory store, a manual clock and a scripted evaluator.
//!
//! Nothing here waits on real time for a decision: the worker polls and beats on a
//! [`ManualClock`], and the tests move it in small steps, sleeping a millisecond of real time
//! between steps only so that the worker's tasks get to run.

mod support;

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use starburst_cloud::fake::InMemoryStore;
use starburst_cloud::{
    Clock, ListPage, ManualClock, ObjectMeta, ObjectPath, ObjectStore, ObjectStoreExt,
};
use starburst_serialization::{
    self as wire, BlobRef, EncodeOptions, FailureKind, Heartbeat, InboxMeta, Limits, Outcome,
    ResultMeta, SessionLayout, TaskMeta, Timing, WorkerActivity,
};
use starburst_worker::{Exit, Worker, WorkerConfig};
use support::script::{Entry, Journal, ScriptEvaluator};
use tokio::task::JoinHandle;

const SESSION: &str = "s-test";
const WORKER: &str = "w-1";
/// One clock step: smaller than every period the worker uses here.
const STEP: Duration = Duration::from_millis(10);
/// Upper bound on clock steps while waiting for progress (≈ 50 s of worker time).
const MAX_STEPS: usize = 5_000;

/// Records the order of writes, so tests can check what was written before what, and can make
/// calls fail the way S3 sometimes does (500, 503 SlowDown).
#[derive(Debug, Default)]
struct RecordingStore {
    inner: InMemoryStore,
    writes: Mutex<Vec<(&'static str, String)>>,
    /// (operation, key fragment, failures left)
    faults: Mutex<Vec<(&'static str, String, u32)>>,
}

impl RecordingStore {
    fn writes(&self) -> Vec<(&'static str, String)> {
        self.writes.lock().unwrap().clone()
    }

    /// Makes the next `n` calls of `op` on keys containing `needle` fail transiently.
    fn fail(&self, op: &'static str, needle: &str, n: u32) {
        self.faults
            .lock()
            .unwrap()
            .push((op, needle.to_string(), n));
    }

    fn fault(&self, op: &'static str, path: &ObjectPath) -> starburst_cloud::Result<()> {
        let mut faults = self.faults.lock().unwrap();
        if let Some((_, _, left)) = faults.iter_mut().find(|(o, needle, left)| {
            *o == op && *left > 0 && path.as_str().contains(needle.as_str())
        }) {
            *left -= 1;
            return Err(starburst_cloud::Error::Transient {
                op,
                resource: path.to_string(),
                source: "503 SlowDown (injected)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put(&self, path: &ObjectPath, data: Bytes) -> starburst_cloud::Result<()> {
        self.writes.lock().unwrap().push(("put", path.to_string()));
        self.inner.put(path, data).await
    }
    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> starburst_cloud::Result<()> {
        self.fault("put_if_absent", path)?;
        let r = self.inner.put_if_absent(path, data).await;
        let op = if r.is_ok() {
            "create"
        } else {
            "create-refused"
        };
        self.writes.lock().unwrap().push((op, path.to_string()));
        r
    }
    async fn get(&self, path: &ObjectPath) -> starburst_cloud::Result<Bytes> {
        self.fault("get", path)?;
        self.inner.get(path).await
    }
    async fn get_range(
        &self,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> starburst_cloud::Result<Bytes> {
        self.inner.get_range(path, range).await
    }
    async fn head(&self, path: &ObjectPath) -> starburst_cloud::Result<ObjectMeta> {
        self.inner.head(path).await
    }
    async fn delete(&self, path: &ObjectPath) -> starburst_cloud::Result<()> {
        self.inner.delete(path).await
    }
    async fn list(
        &self,
        prefix: &ObjectPath,
        token: Option<String>,
    ) -> starburst_cloud::Result<ListPage> {
        self.inner.list(prefix, token).await
    }
}

fn p(s: String) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

fn config(cache: &std::path::Path) -> WorkerConfig {
    let mut c = WorkerConfig::new(SESSION, WORKER, cache.to_path_buf());
    c.idle_timeout = Duration::from_secs(3600);
    c.heartbeat = Duration::from_millis(100);
    c.idle_heartbeat = Duration::from_millis(100);
    c.poll_min = Duration::from_millis(10);
    c.poll_max = Duration::from_millis(40);
    c.cancel_poll = Duration::from_millis(20);
    c
}

/// One worker under test.
struct Rig {
    store: Arc<RecordingStore>,
    clock: ManualClock,
    layout: SessionLayout,
    journal: Arc<Journal>,
    cache: tempfile::TempDir,
    run: Option<JoinHandle<starburst_worker::Result<Exit>>>,
    next_seq: u64,
}

impl Rig {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    fn start_with(tweak: impl FnOnce(&mut WorkerConfig)) -> Self {
        let store = Arc::new(RecordingStore::default());
        let clock = ManualClock::new();
        let journal = Journal::new();
        let cache = tempfile::tempdir().unwrap();
        let mut cfg = config(cache.path());
        tweak(&mut cfg);
        let evaluator = ScriptEvaluator::new(WORKER, Arc::new(clock.clone()), journal.clone());
        let worker = Worker::new(
            store.clone(),
            Arc::new(clock.clone()),
            Box::new(evaluator),
            cfg,
        );
        let run = tokio::spawn(worker.run());
        Self {
            store,
            clock,
            layout: SessionLayout::new(SESSION),
            journal,
            cache,
            run: Some(run),
            next_seq: 0,
        }
    }

    fn task(id: &str, blobs: Vec<BlobRef>) -> TaskMeta {
        TaskMeta {
            session_id: SESSION.into(),
            task_id: id.into(),
            attempt: 1,
            label: Some(format!("label-{id}")),
            blobs,
            submitted_unix_ms: 1,
        }
    }

    /// Writes the next inbox message.
    async fn send(&mut self, meta: InboxMeta, payload: &str) {
        let frame = wire::encode_inbox(&meta, payload.as_bytes(), EncodeOptions::PLAIN);
        let key = p(self.layout.inbox(WORKER, self.next_seq));
        self.store.put(&key, Bytes::from(frame)).await.unwrap();
        self.next_seq += 1;
    }

    async fn run_task(&mut self, id: &str, payload: &str) {
        self.send(InboxMeta::Run(Self::task(id, vec![])), payload)
            .await;
    }

    /// Lets the worker run for one clock step.
    async fn tick(&self) {
        self.clock.advance(STEP);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// Steps the clock until `cond` holds.
    async fn until(&self, what: &str, mut cond: impl AsyncFnMut() -> bool) {
        for _ in 0..MAX_STEPS {
            if cond().await {
                return;
            }
            self.tick().await;
        }
        panic!("gave up waiting for {what}");
    }

    /// Steps the clock until the object at `key` exists and returns it.
    async fn wait_for(&self, key: &str) -> Bytes {
        let key = p(key.to_string());
        for _ in 0..MAX_STEPS {
            if let Some(b) = self.store.get_opt(&key).await.unwrap() {
                return b;
            }
            self.tick().await;
        }
        panic!("gave up waiting for {key}");
    }

    async fn result(&self, task: &str) -> (ResultMeta, Bytes) {
        let buf = self.wait_for(&self.layout.result(task)).await;
        wire::decode_result(&buf, Limits::default()).unwrap()
    }

    async fn beat(&self) -> Option<Heartbeat> {
        let buf = self
            .store
            .get_opt(&p(self.layout.beat(WORKER)))
            .await
            .unwrap()?;
        Some(wire::decode_heartbeat(&buf).unwrap())
    }

    /// Steps the clock until `run()` returns.
    async fn exit(&mut self) -> Exit {
        let run = self.run.take().unwrap();
        for _ in 0..MAX_STEPS {
            if run.is_finished() {
                return run.await.unwrap().unwrap();
            }
            self.tick().await;
        }
        panic!("the worker did not exit");
    }

    async fn put_blob(&self, content: &[u8]) -> BlobRef {
        let r = BlobRef::of(content);
        let frame = wire::encode_blob(content, EncodeOptions::PLAIN);
        self.store
            .put(&p(self.layout.blob(&r.hash)), Bytes::from(frame))
            .await
            .unwrap();
        r
    }

    async fn stop(mut self) {
        self.send(
            InboxMeta::Stop {
                reason: "test over".into(),
            },
            "",
        )
        .await;
        assert_eq!(self.exit().await, Exit::Stopped("test over".into()));
    }
}

fn failure_kind(meta: &ResultMeta) -> Option<FailureKind> {
    match &meta.outcome {
        Outcome::Value => None,
        Outcome::Failed(f) => Some(f.kind),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_round_trip_commits_the_result() {
    let mut rig = Rig::start();
    rig.run_task("t1", "value:xyz").await;
    let (meta, value) = rig.result("t1").await;
    assert_eq!(meta.task_id, "t1");
    assert_eq!(meta.worker_id, WORKER);
    assert_eq!(meta.attempt, 1);
    assert_eq!(meta.outcome, Outcome::Value);
    assert_eq!(&value[..], b"xyz");
    let Timing {
        received_unix_ms,
        started_unix_ms,
        finished_unix_ms,
    } = meta.timing;
    assert!(received_unix_ms > 0 && received_unix_ms <= started_unix_ms);
    assert!(started_unix_ms <= finished_unix_ms);
    // The result is committed with put-if-absent, never with a plain put.
    let result_key = rig.layout.result("t1");
    let writes: Vec<_> = rig
        .store
        .writes()
        .into_iter()
        .filter(|(_, k)| *k == result_key)
        .collect();
    assert_eq!(writes, vec![("create", result_key)]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_in_order_before_the_result() {
    let mut rig = Rig::start();
    rig.run_task("t1", "events:3;value:done").await;
    let (meta, value) = rig.result("t1").await;
    assert_eq!(meta.outcome, Outcome::Value);
    assert_eq!(&value[..], b"done");

    for seq in 0..3u32 {
        let buf = rig
            .store
            .get(&p(rig.layout.event("t1", 1, seq)))
            .await
            .unwrap();
        let (ev, payload) = wire::decode_event(&buf, Limits::default()).unwrap();
        assert_eq!((ev.task_id.as_str(), ev.seq), ("t1", seq));
        assert_eq!(payload, Bytes::from(format!("e{seq}")));
    }
    assert!(
        rig.store
            .get_opt(&p(rig.layout.event("t1", 1, 3)))
            .await
            .unwrap()
            .is_none()
    );

    let order: Vec<String> = rig
        .store
        .writes()
        .into_iter()
        .filter(|(_, k)| k.contains("/out/"))
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        order,
        vec![
            rig.layout.event("t1", 1, 0),
            rig.layout.event("t1", 1, 1),
            rig.layout.event("t1", 1, 2),
            rig.layout.result("t1"),
        ]
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_fetched_verified_and_cached() {
    let mut rig = Rig::start();
    let a = rig.put_blob(b"alpha").await;
    let b = rig.put_blob(&vec![7u8; 100_000]).await;
    rig.send(InboxMeta::Run(Rig::task("t1", vec![a, b])), "echo")
        .await;
    let (meta, value) = rig.result("t1").await;
    assert_eq!(meta.outcome, Outcome::Value);
    let mut expected = b"alpha|".to_vec();
    expected.extend(vec![7u8; 100_000]);
    assert_eq!(&value[..], &expected[..]);

    // Both blobs are in the cache (written beside the task), as raw content under their hash.
    for (r, content) in [(a, b"alpha".to_vec()), (b, vec![7u8; 100_000])] {
        let file = rig.cache.path().join(r.hash.to_hex());
        rig.until("the cache file", async || file.exists()).await;
        let cached = std::fs::read(&file).unwrap();
        assert_eq!(cached, content);
    }

    // With the store's copies gone, the next task is served from the cache.
    for r in [a, b] {
        rig.store
            .delete(&p(rig.layout.blob(&r.hash)))
            .await
            .unwrap();
    }
    rig.send(InboxMeta::Run(Rig::task("t2", vec![b, a])), "echo")
        .await;
    let (meta, value) = rig.result("t2").await;
    assert_eq!(meta.outcome, Outcome::Value, "{meta:?}");
    assert_eq!(value.len(), 100_000 + 1 + 5);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_disk_cache_blobs_are_read_from_the_store_and_never_written() {
    let mut rig = Rig::start_with(|c| c.blob_cache = None);
    let a = rig.put_blob(&vec![5u8; 100_000]).await;
    rig.send(InboxMeta::Run(Rig::task("t1", vec![a])), "echo")
        .await;
    let (meta, value) = rig.result("t1").await;
    assert_eq!(meta.outcome, Outcome::Value, "{meta:?}");
    assert_eq!(&value[..], &vec![5u8; 100_000][..]);
    // Nothing was cached: with the store's copy gone the blob is unavailable.
    rig.store
        .delete(&p(rig.layout.blob(&a.hash)))
        .await
        .unwrap();
    rig.send(InboxMeta::Run(Rig::task("t2", vec![a])), "echo")
        .await;
    let (meta, _) = rig.result("t2").await;
    assert_eq!(
        failure_kind(&meta),
        Some(FailureKind::BlobUnavailable),
        "{meta:?}"
    );
    assert_eq!(std::fs::read_dir(rig.cache.path()).unwrap().count(), 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_the_evaluator_keeps_are_neither_read_nor_sent_again() {
    let mut rig = Rig::start();
    let big = rig.put_blob(&vec![3u8; 200_000]).await;
    let small = rig.put_blob(b"fresh").await;
    rig.send(InboxMeta::Run(Rig::task("t1", vec![big])), "keep;sent")
        .await;
    assert_eq!(&rig.result("t1").await.1[..], b"S");

    // Gone from the store and from the disk cache: only the evaluator's memory has it now.
    rig.store
        .delete(&p(rig.layout.blob(&big.hash)))
        .await
        .unwrap();
    let file = rig.cache.path().join(big.hash.to_hex());
    rig.until("the cache file", async || file.exists()).await;
    std::fs::remove_file(&file).unwrap();
    rig.send(InboxMeta::Run(Rig::task("t2", vec![small, big])), "sent")
        .await;
    assert_eq!(&rig.result("t2").await.1[..], b"S,M");
    rig.send(InboxMeta::Run(Rig::task("t3", vec![big])), "echo")
        .await;
    let (meta, value) = rig.result("t3").await;
    assert_eq!(meta.outcome, Outcome::Value, "{meta:?}");
    assert_eq!(&value[..], &vec![3u8; 200_000][..]);

    // A restarted evaluator keeps nothing: the blob must be read again, and it is lost.
    rig.send(InboxMeta::Run(Rig::task("t4", vec![])), "die")
        .await;
    rig.result("t4").await;
    rig.send(InboxMeta::Run(Rig::task("t5", vec![big])), "sent")
        .await;
    let (meta, _) = rig.result("t5").await;
    assert_eq!(
        failure_kind(&meta),
        Some(FailureKind::BlobUnavailable),
        "{meta:?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_or_missing_blobs_give_blob_unavailable() {
    let mut rig = Rig::start();
    // Another blob's frame stored under this blob's hash.
    let wanted = BlobRef::of(b"the real content");
    let impostor = wire::encode_blob(b"something else", EncodeOptions::PLAIN);
    rig.store
        .put(&p(rig.layout.blob(&wanted.hash)), Bytes::from(impostor))
        .await
        .unwrap();
    rig.send(InboxMeta::Run(Rig::task("t1", vec![wanted])), "echo")
        .await;
    // A frame with one flipped byte.
    let flipped = BlobRef::of(b"flip me");
    let mut frame = wire::encode_blob(b"flip me", EncodeOptions::PLAIN);
    *frame.last_mut().unwrap() ^= 0xff;
    rig.store
        .put(&p(rig.layout.blob(&flipped.hash)), Bytes::from(frame))
        .await
        .unwrap();
    rig.send(InboxMeta::Run(Rig::task("t2", vec![flipped])), "echo")
        .await;
    // A blob that was never uploaded.
    let missing = BlobRef::of(b"never uploaded");
    rig.send(InboxMeta::Run(Rig::task("t3", vec![missing])), "echo")
        .await;

    for t in ["t1", "t2", "t3"] {
        let (meta, value) = rig.result(t).await;
        assert_eq!(
            failure_kind(&meta),
            Some(FailureKind::BlobUnavailable),
            "{t}: {meta:?}"
        );
        assert!(value.is_empty());
    }
    // Nothing unverified was cached, and the evaluator never saw those tasks.
    for r in [wanted, flipped, missing] {
        assert!(!rig.cache.path().join(r.hash.to_hex()).exists());
    }
    assert_eq!(rig.journal.count(|e| matches!(e, Entry::Eval { .. })), 0);

    // A damaged cache file is not trusted: the store's copy is used and the cache repaired.
    let good = rig.put_blob(b"good").await;
    std::fs::write(rig.cache.path().join(good.hash.to_hex()), b"bad!").unwrap();
    rig.send(InboxMeta::Run(Rig::task("t4", vec![good])), "echo")
        .await;
    let (meta, value) = rig.result("t4").await;
    assert_eq!(meta.outcome, Outcome::Value);
    assert_eq!(&value[..], b"good");
    assert_eq!(
        std::fs::read(rig.cache.path().join(good.hash.to_hex())).unwrap(),
        b"good"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_committed_by_someone_else_is_not_overwritten() {
    let mut rig = Rig::start();
    let theirs = ResultMeta {
        task_id: "t1".into(),
        worker_id: "w-other".into(),
        attempt: 1,
        outcome: Outcome::Value,
        timing: Timing::default(),
        events: 0,
    };
    let theirs = Bytes::from(wire::encode_result(&theirs, b"first", EncodeOptions::PLAIN));
    rig.store
        .put(&p(rig.layout.result("t1")), theirs.clone())
        .await
        .unwrap();

    rig.run_task("t1", "value:second").await;
    rig.run_task("t2", "value:after").await;
    let (_, after) = rig.result("t2").await;
    assert_eq!(&after[..], b"after");
    // t1 ran (the worker does not know) but its result was refused, not written over.
    assert_eq!(rig.journal.evaluated_by("second").len(), 1);
    assert_eq!(
        rig.store.get(&p(rig.layout.result("t1"))).await.unwrap(),
        theirs
    );
    let result_key = rig.layout.result("t1");
    assert!(rig.store.writes().contains(&("create-refused", result_key)));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_hanging_evaluation_and_the_worker_takes_the_next_task() {
    let mut rig = Rig::start();
    rig.run_task("t1", "hang").await;
    let journal = rig.journal.clone();
    rig.until("the evaluation to start", async || {
        !journal.evaluated_by("hang").is_empty()
    })
    .await;
    // Hanging, not done: no result while time passes.
    for _ in 0..20 {
        rig.tick().await;
    }
    assert!(
        rig.store
            .get_opt(&p(rig.layout.result("t1")))
            .await
            .unwrap()
            .is_none()
    );

    rig.store
        .put(&p(rig.layout.cancel("t1")), Bytes::new())
        .await
        .unwrap();
    let (meta, _) = rig.result("t1").await;
    assert_eq!(
        failure_kind(&meta),
        Some(FailureKind::Cancelled),
        "{meta:?}"
    );
    assert_eq!(rig.journal.count(|e| matches!(e, Entry::Kill { .. })), 1);
    assert_eq!(
        rig.journal.count(|e| matches!(e, Entry::Finished { .. })),
        0
    );

    rig.run_task("t2", "value:next").await;
    let (meta, value) = rig.result("t2").await;
    assert_eq!((meta.outcome, &value[..]), (Outcome::Value, &b"next"[..]));
    // The killed evaluator was started again for t2.
    assert_eq!(rig.journal.count(|e| matches!(e, Entry::Restart { .. })), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_message_ends_run() {
    let mut rig = Rig::start();
    rig.run_task("t1", "value:1").await;
    rig.send(
        InboxMeta::Stop {
            reason: "session closed".into(),
        },
        "",
    )
    .await;
    rig.run_task("t-never", "value:2").await;
    assert_eq!(rig.exit().await, Exit::Stopped("session closed".into()));
    // Messages are taken in order: t1 ran, nothing after the stop did.
    assert!(
        rig.store
            .get_opt(&p(rig.layout.result("t1")))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        rig.store
            .get_opt(&p(rig.layout.result("t-never")))
            .await
            .unwrap()
            .is_none()
    );
    let beat = rig.beat().await.unwrap();
    assert_eq!(beat.activity, WorkerActivity::Exiting);
    assert_eq!(beat.tasks_done, 1);
    assert_eq!(rig.journal.count(|e| matches!(e, Entry::Kill { .. })), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_run() {
    let mut rig = Rig::start_with(|c| c.idle_timeout = Duration::from_secs(5));
    let run = rig.run.take().unwrap();
    // Work resets the idle timer.
    for _ in 0..300 {
        rig.tick().await; // 3 s
    }
    rig.run_task("t1", "value:x").await;
    rig.result("t1").await;
    let busy_until = rig.clock.now();
    while rig.clock.now() < busy_until + Duration::from_secs(4) {
        rig.tick().await;
        assert!(!run.is_finished(), "exited before the idle timeout");
    }
    for _ in 0..MAX_STEPS {
        if run.is_finished() {
            break;
        }
        rig.tick().await;
    }
    assert_eq!(run.await.unwrap().unwrap(), Exit::Idle);
    let idle_for = rig.clock.now() - busy_until;
    assert!(idle_for >= Duration::from_secs(5), "{idle_for:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_seq_increases_and_reports_activity() {
    let mut rig = Rig::start();
    let mut seen = Vec::new();
    rig.until("a few beats", async || {
        if let Some(b) = rig.beat().await
            && seen.last() != Some(&b.seq)
        {
            seen.push(b.seq);
        }
        seen.len() >= 4
    })
    .await;
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let b = rig.beat().await.unwrap();
    assert_eq!(b.worker_id, WORKER);
    assert_eq!(b.activity, WorkerActivity::Idle);

    rig.run_task("t1", "hang").await;
    rig.until("a busy beat", async || {
        rig.beat().await.is_some_and(|b| {
            b.activity
                == WorkerActivity::Busy {
                    task_id: "t1".into(),
                    attempt: 1,
                    events: 0,
                }
        })
    })
    .await;
    // Still beating while the evaluation hangs.
    let before = rig.beat().await.unwrap().seq;
    rig.until("a beat during the task", async || {
        rig.beat().await.unwrap().seq > before
    })
    .await;

    rig.store
        .put(&p(rig.layout.cancel("t1")), Bytes::new())
        .await
        .unwrap();
    rig.result("t1").await;
    rig.until("an idle beat after the task", async || {
        rig.beat()
            .await
            .is_some_and(|b| b.activity == WorkerActivity::Idle && b.tasks_done == 1)
    })
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_run_stops_the_heartbeat() {
    let mut rig = Rig::start();
    rig.until("a beat", async || rig.beat().await.is_some())
        .await;
    rig.run.take().unwrap().abort();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let frozen = rig.beat().await.unwrap().seq;
    for _ in 0..50 {
        rig.tick().await; // 5 heartbeat periods
    }
    assert_eq!(
        rig.beat().await.unwrap().seq,
        frozen,
        "a dropped worker kept beating"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_evaluator_is_reported_and_the_next_task_still_runs() {
    let mut rig = Rig::start();
    rig.run_task("t1", "event:before;die").await;
    rig.run_task("t2", "value:alive").await;
    let (meta, value) = rig.result("t1").await;
    let Outcome::Failed(f) = &meta.outcome else {
        panic!("{meta:?}")
    };
    assert_eq!(f.kind, FailureKind::EvaluatorDied);
    assert!(f.message.contains("exited with status 1"), "{}", f.message);
    assert_eq!(
        f.log_tail,
        vec![format!("[{WORKER}] Error: segfault from 'x'")]
    );
    assert!(value.is_empty());
    // The event sent before the death was still relayed.
    assert!(
        rig.store
            .get_opt(&p(rig.layout.event("t1", 1, 0)))
            .await
            .unwrap()
            .is_some()
    );

    let (meta, value) = rig.result("t2").await;
    assert_eq!((meta.outcome, &value[..]), (Outcome::Value, &b"alive"[..]));
    assert_eq!(rig.journal.count(|e| matches!(e, Entry::Restart { .. })), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_inbox_message_is_an_error() {
    let mut rig = Rig::start();
    let key = p(rig.layout.inbox(WORKER, 0));
    rig.store
        .put(&key, Bytes::from_static(b"not a frame"))
        .await
        .unwrap();
    let run = rig.run.take().unwrap();
    for _ in 0..MAX_STEPS {
        if run.is_finished() {
            break;
        }
        rig.tick().await;
    }
    let err = run.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("inbox message"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_store_errors_do_not_end_the_worker_or_lose_the_result() {
    let mut rig = Rig::start();
    rig.store.fail("get", "/inbox/", 3);
    rig.store.fail("put_if_absent", "/out/results/", 2);
    rig.run_task("t1", "value:kept").await;
    let (meta, value) = rig.result("t1").await;
    assert_eq!((meta.outcome, &value[..]), (Outcome::Value, &b"kept"[..]));
    assert!(!rig.run.as_ref().unwrap().is_finished());
    assert_eq!(
        rig.journal.evaluated_by("value:kept").len(),
        1,
        "evaluated once"
    );
    rig.run_task("t2", "value:next").await;
    assert_eq!(&rig.result("t2").await.1[..], b"next");
    rig.stop().await;
}

#[test]
fn run_is_a_future_that_can_be_spawned() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let clock = ManualClock::new();
    let cache = tempfile::tempdir().unwrap();
    let evaluator = ScriptEvaluator::new(WORKER, Arc::new(clock.clone()), Journal::new());
    let worker = Worker::new(
        Arc::new(InMemoryStore::new()),
        Arc::new(clock),
        Box::new(evaluator),
        config(cache.path()),
    );
    assert_send(&worker.run());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_commits_a_cancelled_result_without_running_the_task() {
    let mut rig = Rig::start();
    // t1 runs while t2 (prefetched behind it) is withdrawn, then t3 runs as usual.
    rig.run_task("t1", "sleep:200;value:one").await;
    rig.send(
        InboxMeta::Skip {
            task_id: "t2".into(),
            attempt: 3,
        },
        "",
    )
    .await;
    rig.run_task("t3", "value:three").await;
    let (meta, _) = rig.result("t2").await;
    assert_eq!(failure_kind(&meta), Some(FailureKind::Cancelled));
    assert_eq!((meta.attempt, meta.events), (3, 0));
    let (meta, value) = rig.result("t3").await;
    assert_eq!(meta.outcome, Outcome::Value);
    assert_eq!(&value[..], b"three");
    assert_eq!(rig.result("t1").await.1, Bytes::from_static(b"one"));
    let evals: Vec<_> = rig
        .journal
        .entries()
        .into_iter()
        .filter(|e| matches!(e, Entry::Eval { .. }))
        .collect();
    assert_eq!(evals.len(), 2, "{evals:?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_and_the_result_count_the_events_with_one_extra_beat_per_burst() {
    let mut rig = Rig::start_with(|c| {
        // Periodic beats far apart: every beat seen during the task is an event beat.
        c.heartbeat = Duration::from_secs(60);
        c.event_beat = Duration::from_millis(200);
    });
    rig.until("the first beat", async || rig.beat().await.is_some())
        .await;
    rig.run_task("t1", "events:5;sleep:1000;event:late;sleep:1000;value:v")
        .await;
    rig.until("a beat reporting the first five events", async || {
        rig.beat().await.is_some_and(|b| {
            b.activity
                == WorkerActivity::Busy {
                    task_id: "t1".into(),
                    attempt: 1,
                    events: 5,
                }
        })
    })
    .await;
    rig.until("a beat reporting the sixth event", async || {
        rig.beat()
            .await
            .is_some_and(|b| matches!(b.activity, WorkerActivity::Busy { events: 6, .. }))
    })
    .await;
    let (meta, _) = rig.result("t1").await;
    assert_eq!(meta.events, 6);
    let beat_key = rig.layout.beat(WORKER);
    let beats = rig
        .store
        .writes()
        .into_iter()
        .filter(|(_, k)| *k == beat_key)
        .count();
    // The first beat, one for the burst of five, one for the late event, and one as it goes
    // idle (the client learns from it that the task is done).
    assert_eq!(beats, 4, "{:?}", rig.store.writes());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_backs_off_to_poll_max_and_a_long_task_checks_cancel_at_its_rate() {
    let mut rig = Rig::start_with(|c| {
        c.heartbeat = Duration::from_secs(3600);
        c.poll_min = Duration::from_millis(10);
        c.poll_max = Duration::from_secs(1);
        c.cancel_poll = Duration::from_secs(2);
    });
    rig.until("the first beat", async || rig.beat().await.is_some())
        .await;
    let before = rig.store.inner.requests();
    // 20 s idle: 10 ms doubling to 1 s is 7 polls for the first second, then one per second.
    for _ in 0..2_000 {
        rig.tick().await;
    }
    let idle = rig.store.inner.requests() - before;
    assert!((20..=30).contains(&idle), "{idle} requests in 20 s idle");
    // A 20 s task: one inbox read, one beat as it takes the task after idling, one head per
    // 2 s (10), one result commit, one beat as it goes idle again, then the inbox misses of the
    // first second idle again (10 ms doubling: 7).
    rig.run_task("t1", "sleep:20000;value:long").await;
    let before = rig.store.inner.requests();
    // Not `rig.result()`: its own reads would count.
    for _ in 0..2_100 {
        rig.tick().await;
    }
    let busy = rig.store.inner.requests() - before;
    assert_eq!(rig.result("t1").await.1, Bytes::from_static(b"long"));
    assert!(busy <= 22, "{busy} requests for a 20 s task");
    rig.stop().await;
}

/// A task that runs for minutes checks for its cancel marker every second at first, then every
/// eighth of its run time up to 5 s: 119 s of a task cost 123 requests at one a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_task_checks_for_cancellation_less_often_as_it_runs() {
    let mut rig = Rig::start_with(|c| {
        c.heartbeat = Duration::from_secs(3600);
        c.cancel_poll = Duration::from_secs(1);
    });
    rig.until("the first beat", async || rig.beat().await.is_some())
        .await;
    rig.run_task("t1", "sleep:120000;value:long").await;
    let before = rig.store.inner.requests();
    // Until just before the task ends (ticks of 10 ms).
    for _ in 0..11_900 {
        rig.tick().await;
    }
    let checks = rig.store.inner.requests() - before;
    eprintln!("{checks} cancel checks in 119 s of a task");
    // 42 measured: 8 in the first 8 s, more while the interval grows to 5 s (each check also
    // waits for the next 10 ms tick), 16 in the last 80 s. At one a second: 123.
    assert!(
        (30..=45).contains(&checks),
        "{checks} requests in 119 s of a task"
    );
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Following the client: no worker outlives its client, its session or its deadline
// ---------------------------------------------------------------------------------------------

/// Writes the client's session heartbeat as a client would.
async fn client_beat(rig: &Rig, seq: u64, deadline_after: Option<Duration>, closed: bool) {
    let beat = wire::ClientBeat {
        session_id: SESSION.into(),
        seq,
        // A client clock far from the worker's: nothing may depend on it.
        unix_ms: 42,
        deadline_after_ms: deadline_after.map(|d| d.as_millis() as u64),
        closed,
        orphan_timeout_ms: 300_000,
    };
    rig.store
        .put(
            &p(rig.layout.client()),
            Bytes::from(wire::encode_client_beat(&beat)),
        )
        .await
        .unwrap();
}

fn following(orphan: u64) -> impl FnOnce(&mut WorkerConfig) {
    move |c| {
        c.orphan_timeout = Some(Duration::from_secs(orphan));
        c.client_check = Duration::from_millis(500);
    }
}

/// Steps the clock by `secs` seconds, keeping the client beat moving every second.
async fn live_client(rig: &Rig, seq: &mut u64, secs: u64, deadline_after: Option<Duration>) {
    let until = rig.clock.now() + Duration::from_secs(secs);
    let mut next = rig.clock.now();
    while rig.clock.now() < until {
        if rig.clock.now() >= next {
            *seq += 1;
            client_beat(rig, *seq, deadline_after, false).await;
            next += Duration::from_secs(1);
        }
        rig.tick().await;
        assert!(
            !rig.run.as_ref().unwrap().is_finished(),
            "the worker stopped while its client was alive"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_client_is_gone_stops_mid_task_and_kills_r() {
    let mut rig = Rig::start_with(following(10));
    let mut seq = 0;
    live_client(&rig, &mut seq, 3, None).await;
    rig.run_task("t1", "hang").await;
    // A long task while the client lives: nothing stops it.
    live_client(&rig, &mut seq, 30, None).await;
    let died = rig.clock.now();
    let exit = rig.exit().await;
    assert_eq!(exit, Exit::ClientGone);
    let after = rig.clock.now() - died;
    // Within the orphan timeout plus one read of the beat.
    assert!(
        after >= Duration::from_secs(9) && after <= Duration::from_secs(11),
        "{after:?}"
    );
    assert!(rig.journal.count(|e| matches!(e, Entry::Kill { .. })) >= 1);
    assert_eq!(rig.beat().await.unwrap().activity, WorkerActivity::Exiting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_sees_its_client_move_stops_after_the_orphan_timeout() {
    let mut rig = Rig::start_with(following(5));
    // A beat written long ago by a client that is gone: it never moves.
    client_beat(&rig, 7, None, false).await;
    let started = rig.clock.now();
    assert_eq!(rig.exit().await, Exit::ClientGone);
    let after = rig.clock.now() - started;
    assert!(
        after >= Duration::from_secs(5) && after <= Duration::from_secs(6),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_session_stops_its_workers() {
    let mut rig = Rig::start_with(following(600));
    let mut seq = 0;
    live_client(&rig, &mut seq, 2, None).await;
    client_beat(&rig, seq + 1, None, true).await;
    assert_eq!(rig.exit().await, Exit::Stopped("session closed".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_deadline_stops_a_busy_worker_whatever_the_client_does() {
    let mut rig = Rig::start_with(|c| {
        c.orphan_timeout = None;
        c.client_check = Duration::from_millis(500);
        // Deadlines are wall-clock at launch: 20 s from the worker's start.
        c.deadline =
            Some(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 20));
    });
    rig.run_task("t1", "hang").await;
    let exit = rig.exit().await;
    assert_eq!(exit, Exit::Deadline);
    let at = rig.clock.now();
    assert!(
        at >= Duration::from_secs(20) && at < Duration::from_secs(21),
        "{at:?}"
    );
    assert!(rig.journal.count(|e| matches!(e, Entry::Kill { .. })) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_client_moves_the_deadline_and_a_dead_one_leaves_the_last() {
    let mut rig = Rig::start_with(|c| {
        c.orphan_timeout = Some(Duration::from_secs(3600));
        c.client_check = Duration::from_millis(500);
        c.deadline =
            Some(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 10));
    });
    let mut seq = 0;
    // The client extends the deadline (workers stopped, budget freed) past the launch one.
    live_client(&rig, &mut seq, 40, Some(Duration::from_secs(15))).await;
    let died = rig.clock.now();
    assert_eq!(rig.exit().await, Exit::Deadline);
    // The last beat was written at most a second before the client died and said 15 s: the
    // worker stops at most 15 s after it (it counts from the read before, so a little early).
    let after = rig.clock.now() - died;
    assert!(
        after >= Duration::from_secs(13) && after <= Duration::from_secs(15),
        "{after:?}"
    );
}

/// An idle worker's beats are billed PUTs nobody reads: it beats once a minute, and at once
/// (within `event_beat`) when it takes a task, so the client's lease sees it working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_beats_rarely_and_at_once_when_it_takes_a_task() {
    let mut rig = Rig::start_with(|c| {
        c.idle_heartbeat = Duration::from_secs(60);
        c.event_beat = Duration::from_millis(200);
    });
    rig.until("an idle beat", async || {
        rig.beat()
            .await
            .is_some_and(|b| b.activity == WorkerActivity::Idle)
    })
    .await;
    let idle = rig.beat().await.unwrap().seq;
    // 30 s of idling: no beat.
    for _ in 0..3_000 {
        rig.clock.advance(STEP);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(rig.beat().await.unwrap().seq, idle);
    rig.run_task("t1", "hang").await;
    let taken = rig.clock.now();
    rig.until("a busy beat", async || {
        rig.beat()
            .await
            .is_some_and(|b| matches!(b.activity, WorkerActivity::Busy { .. }))
    })
    .await;
    let waited = rig.clock.now() - taken;
    assert!(waited <= Duration::from_millis(500), "{waited:?}");
    rig.store
        .put(&p(rig.layout.cancel("t1")), Bytes::new())
        .await
        .unwrap();
    rig.result("t1").await;
    rig.stop().await;
}
