//! Where a session's objects live, relative to the store's root. Client and workers agree on
//! these keys and on nothing else.
//!
//! ```text
//! sessions/<sid>/client                            the client's session heartbeat
//! sessions/<sid>/blobs/<blake3-hex>                 content-addressed large globals
//! sessions/<sid>/workers/<wid>/inbox/<seq:08>       assignments to one worker (task or stop)
//! sessions/<sid>/workers/<wid>/beat                 the worker's heartbeat
//! sessions/<sid>/cancel/<tid>                       a cancellation request
//! sessions/<sid>/out/results/<tid>                  the result, committed once (put-if-absent)
//! sessions/<sid>/out/events/<tid>/<attempt>/<seq:06> immediate conditions, in order, per attempt
//! ```
//!
//! Everything the client polls lies under `out/`, so one watch covers it; everything a worker
//! polls lies under its own `workers/<wid>/`.

use crate::BlobHash;

/// The keys of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLayout {
    root: String,
}

impl SessionLayout {
    /// The layout of session `session_id`.
    pub fn new(session_id: &str) -> Self {
        Self {
            root: format!("sessions/{session_id}"),
        }
    }

    /// The session's root prefix.
    pub fn root(&self) -> String {
        self.root.clone()
    }
    /// The client's session heartbeat, which every worker follows.
    pub fn client(&self) -> String {
        format!("{}/client", self.root)
    }
    /// A blob.
    pub fn blob(&self, hash: &BlobHash) -> String {
        format!("{}/blobs/{}", self.root, hash.to_hex())
    }
    /// A worker's prefix.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}", self.root)
    }
    /// A worker's inbox prefix.
    pub fn inbox_dir(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/inbox", self.root)
    }
    /// Message `seq` of a worker's inbox.
    pub fn inbox(&self, worker_id: &str, seq: u64) -> String {
        format!("{}/workers/{worker_id}/inbox/{seq:08}", self.root)
    }
    /// A worker's heartbeat.
    pub fn beat(&self, worker_id: &str) -> String {
        format!("{}/workers/{worker_id}/beat", self.root)
    }
    /// A task's cancellation marker.
    pub fn cancel(&self, task_id: &str) -> String {
        format!("{}/cancel/{task_id}", self.root)
    }
    /// Everything the client polls.
    pub fn out(&self) -> String {
        format!("{}/out", self.root)
    }
    /// A task's result.
    pub fn result(&self, task_id: &str) -> String {
        format!("{}/out/results/{task_id}", self.root)
    }
    /// Event `seq` of a task's attempt `attempt` (a re-run starts its events afresh).
    pub fn event(&self, task_id: &str, attempt: u32, seq: u32) -> String {
        format!("{}/out/events/{task_id}/{attempt}/{seq:06}", self.root)
    }
}

/// What kind of session key `path` is (`"inbox"`, `"result"`, `"event"`, `"cancel"`,
/// `"blob"`, `"beat"`, `"session beat"`, else `"other"`), for counting requests by kind.
pub fn key_kind(path: &str) -> &'static str {
    [
        ("/inbox/", "inbox"),
        ("/out/results/", "result"),
        ("/out/events/", "event"),
        ("/cancel/", "cancel"),
        ("/blobs/", "blob"),
        ("/beat", "beat"),
        ("/client", "session beat"),
    ]
    .into_iter()
    .find(|(needle, _)| path.contains(needle))
    .map_or("other", |(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let l = SessionLayout::new("s1");
        assert_eq!(l.inbox("w-1", 3), "sessions/s1/workers/w-1/inbox/00000003");
        assert_eq!(l.event("t9", 2, 12), "sessions/s1/out/events/t9/2/000012");
        assert!(l.result("t9").starts_with(&l.out()));
    }
}
