//! The messages that travel between client and workers through the object store.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::blob::BlobRef;
use crate::frame::{self, EncodeOptions, Kind, Limits};

/// A task: which future, which attempt, which blobs it needs. The payload (the R-serialized
/// future) travels beside it in the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// The session.
    pub session_id: String,
    /// The task (one future).
    pub task_id: String,
    /// 1 for the first run, 2 after the first re-queue, ...
    pub attempt: u32,
    /// The future's label, for logs.
    pub label: Option<String>,
    /// Blobs the evaluator needs, in the order it expects them.
    pub blobs: Vec<BlobRef>,
    /// When the client submitted it (Unix milliseconds).
    pub submitted_unix_ms: u64,
}

/// A message in a worker's inbox (`workers/<id>/inbox/<seq>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxMeta {
    /// Run this task.
    Run(TaskMeta),
    /// The task once assigned at this sequence number was cancelled before the worker started
    /// it: commit a `Cancelled` result for it without running it. The client overwrites a
    /// prefetched `Run` with this; a worker that already read the `Run` is stopped by the
    /// task's cancellation marker instead.
    Skip {
        /// The task.
        task_id: String,
        /// The attempt that was assigned.
        attempt: u32,
    },
    /// Finish and exit.
    Stop {
        /// Why, for the log.
        reason: String,
    },
}

/// How a task ended on the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The evaluator returned a result (R's `FutureResult`, which may itself hold an R error);
    /// it is the frame's payload.
    Value,
    /// The worker could not produce a result.
    Failed(Failure),
}

/// What kind of failure a worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The R process died while evaluating (crash, `quit()`, killed); it was restarted.
    EvaluatorDied,
    /// A blob the task needs is missing or corrupted.
    BlobUnavailable,
    /// The evaluator broke the pipe protocol.
    Protocol,
    /// The task was cancelled while it ran.
    Cancelled,
}

/// A failure report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind.
    pub kind: FailureKind,
    /// What happened, for the user.
    pub message: String,
    /// The last lines the evaluator wrote to stderr/stdout.
    pub log_tail: Vec<String>,
}

/// `t` as Unix milliseconds, the unit of every time in the envelopes (0 before 1970).
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When things happened on the worker (Unix milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// The worker read the task.
    pub received_unix_ms: u64,
    /// The evaluator got the payload.
    pub started_unix_ms: u64,
    /// The evaluator returned.
    pub finished_unix_ms: u64,
}

/// A task's result (`results/<task-id>`, committed once with put-if-absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultMeta {
    /// The task.
    pub task_id: String,
    /// The worker that ran it.
    pub worker_id: String,
    /// Which attempt produced it.
    pub attempt: u32,
    /// The outcome.
    pub outcome: Outcome,
    /// Worker-side timing.
    pub timing: Timing,
    /// How many events this attempt wrote (`events/<task-id>/<attempt>/0..events`), all of
    /// them before the result: the client reads exactly these and never probes for more.
    pub events: u32,
}

/// An event emitted while a task runs (`events/<task-id>/<seq>`); the payload is an
/// R-serialized condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// The task.
    pub task_id: String,
    /// 0, 1, 2, ... in emission order.
    pub seq: u32,
}

/// What a worker is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerActivity {
    /// Starting its evaluator.
    Starting,
    /// Waiting for work.
    Idle,
    /// Running a task.
    Busy {
        /// The task.
        task_id: String,
        /// The attempt being run.
        attempt: u32,
        /// Events of this attempt written so far (all readable when the beat is): the client
        /// reads new events when this count moves instead of probing event keys.
        events: u32,
    },
    /// Shutting down.
    Exiting,
}

/// A worker heartbeat (`workers/<id>/beat`), rewritten periodically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The worker.
    pub worker_id: String,
    /// Increases with every beat.
    pub seq: u64,
    /// When it was written (Unix milliseconds, the worker's clock).
    pub unix_ms: u64,
    /// What the worker is doing.
    pub activity: WorkerActivity,
    /// Tasks completed so far.
    pub tasks_done: u64,
}

/// The client's session heartbeat (`sessions/<sid>/client`), rewritten while the client runs.
/// Workers read it now and then: one whose `seq` has not moved for the session's orphan
/// timeout (on the worker's own clock, so clocks need not agree) has lost its client and
/// stops; one past its deadline stops whatever it is doing; a `closed` session stops them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientBeat {
    /// The session.
    pub session_id: String,
    /// Increases with every beat.
    pub seq: u64,
    /// When it was written (Unix milliseconds, the client's clock).
    pub unix_ms: u64,
    /// The latest moment every worker of the session must have stopped by, as milliseconds
    /// after `unix_ms` (relative, so a worker needs no agreement between clocks): the spend of
    /// the session's workers stays within `max_cost` when each stops by then. `None` without a
    /// cost cap.
    pub deadline_after_ms: Option<u64>,
    /// The session ended: workers stop now.
    pub closed: bool,
    /// The session's orphan timeout (milliseconds): a beat older than this is a sign that the
    /// session is gone, for those who sweep up after sessions (workers judge by `seq`).
    pub orphan_timeout_ms: u64,
}

/// The environment variable that gives a worker its hard deadline at launch (Unix
/// milliseconds): the [`ClientBeat`]'s deadline until the worker has seen a beat move.
pub const DEADLINE_ENV: &str = "STARBURST_DEADLINE_UNIX_MS";

/// Encodes a client beat.
pub fn encode_client_beat(beat: &ClientBeat) -> Vec<u8> {
    frame::encode(Kind::ClientBeat, beat, &[], EncodeOptions::PLAIN)
}

/// Decodes a client beat.
pub fn decode_client_beat(buf: &Bytes) -> Result<ClientBeat> {
    frame::decode(Kind::ClientBeat, buf, Limits { max_payload: 0 }).map(|(m, _)| m)
}

macro_rules! codec {
    ($meta:ty, $kind:expr, $enc:ident, $dec:ident) => {
        /// Encodes a frame of this type.
        pub fn $enc(meta: &$meta, payload: &[u8], opts: EncodeOptions) -> Vec<u8> {
            frame::encode($kind, meta, payload, opts)
        }

        /// Decodes and checks a frame of this type.
        pub fn $dec(buf: &Bytes, limits: Limits) -> Result<($meta, Bytes)> {
            frame::decode($kind, buf, limits)
        }
    };
}

codec!(InboxMeta, Kind::Inbox, encode_inbox, decode_inbox);
codec!(ResultMeta, Kind::Result, encode_result, decode_result);
codec!(EventMeta, Kind::Event, encode_event, decode_event);

/// Encodes a heartbeat.
pub fn encode_heartbeat(beat: &Heartbeat) -> Vec<u8> {
    frame::encode(Kind::Heartbeat, beat, &[], EncodeOptions::PLAIN)
}

/// Decodes a heartbeat.
pub fn decode_heartbeat(buf: &Bytes) -> Result<Heartbeat> {
    frame::decode(Kind::Heartbeat, buf, Limits { max_payload: 0 }).map(|(m, _)| m)
}
