//! A scripted [`Evaluator`] for tests: the task payload is a tiny program, so a test says what
//! the "R process" does without running R. Shared by the worker's and the scheduler's tests.
//!
//! Steps are separated by `;` and run in order:
//!
//! | step          | effect                                                   |
//! |---------------|----------------------------------------------------------|
//! | `value:<txt>` | returns `Evaluation::Value(txt)`                         |
//! | `event:<txt>` | sends one event `txt`                                    |
//! | `events:<n>`  | sends the events `e0` .. `e<n-1>`                         |
//! | `sleep:<ms>`  | sleeps `ms` on the test's clock                          |
//! | `hang`        | never returns (until the evaluation is dropped)          |
//! | `die`         | returns `Evaluation::Died` (the "R process" is gone)      |
//! | `echo`        | returns the blobs joined with `|`                        |
//! | `keep`        | keeps the task's blobs in memory for later tasks         |
//! | `sent`        | returns, per blob, `S` (content sent) or `M` (kept), joined with `,` |
//!
//! A script without `value`, `die` or `echo` returns an empty value.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use starburst_cloud::Clock;
use starburst_serialization::BlobHash;
use starburst_worker::{Evaluation, Evaluator, TaskBlob};
use tokio::sync::mpsc;

/// What the evaluators of a test did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The worker started its evaluator.
    Start { worker: String },
    /// An evaluation began.
    Eval { worker: String, payload: String },
    /// An evaluation finished (not dropped).
    Finished { worker: String, payload: String },
    /// The evaluator was killed.
    Kill { worker: String },
    /// A dead evaluator was started again before a task.
    Restart { worker: String },
}

/// A shared, append-only record of evaluator activity.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<Vec<Entry>>,
}

impl Journal {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn push(&self, e: Entry) {
        self.entries.lock().unwrap().push(e);
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// Workers that began evaluating a payload containing `needle`, in order.
    pub fn evaluated_by(&self, needle: &str) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter_map(|e| match e {
                Entry::Eval { worker, payload } if payload.contains(needle) => Some(worker),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        self.entries().iter().filter(|e| pred(e)).count()
    }
}

/// The evaluator.
#[derive(Debug)]
pub struct ScriptEvaluator {
    worker: String,
    clock: Arc<dyn Clock>,
    journal: Arc<Journal>,
    alive: bool,
    /// Blobs kept by `keep` (forgotten when the "R process" dies or is killed).
    kept: HashMap<BlobHash, Bytes>,
}

impl ScriptEvaluator {
    pub fn new(worker: &str, clock: Arc<dyn Clock>, journal: Arc<Journal>) -> Self {
        Self {
            worker: worker.to_string(),
            clock,
            journal,
            alive: false,
            kept: HashMap::new(),
        }
    }
}

#[async_trait]
impl Evaluator for ScriptEvaluator {
    async fn start(&mut self) -> starburst_worker::Result<()> {
        if !self.alive {
            self.alive = true;
            self.journal.push(Entry::Start {
                worker: self.worker.clone(),
            });
        }
        Ok(())
    }

    async fn eval(
        &mut self,
        payload: Bytes,
        blobs: Vec<TaskBlob>,
        events: mpsc::UnboundedSender<Bytes>,
    ) -> Evaluation {
        if !self.alive {
            self.alive = true;
            self.journal.push(Entry::Restart {
                worker: self.worker.clone(),
            });
        }
        let script = String::from_utf8_lossy(&payload).into_owned();
        self.journal.push(Entry::Eval {
            worker: self.worker.clone(),
            payload: script.clone(),
        });
        let mut result = Evaluation::Value(Bytes::new());
        for step in script.split(';').filter(|s| !s.is_empty()) {
            let (cmd, arg) = step.split_once(':').unwrap_or((step, ""));
            match cmd {
                "value" => {
                    result = Evaluation::Value(Bytes::from(arg.to_string()));
                    break;
                }
                "event" => {
                    let _ = events.send(Bytes::from(arg.to_string()));
                }
                "events" => {
                    for i in 0..arg.parse::<u32>().expect("events:<n>") {
                        let _ = events.send(Bytes::from(format!("e{i}")));
                    }
                }
                "sleep" => {
                    let ms = arg.parse().expect("sleep:<ms>");
                    self.clock.sleep(Duration::from_millis(ms)).await;
                }
                "hang" => std::future::pending::<()>().await,
                "die" => {
                    self.alive = false;
                    self.kept.clear();
                    result = Evaluation::Died {
                        message: "the R process evaluating the future exited with status 1".into(),
                        log_tail: vec![format!("[{}] Error: segfault from 'x'", self.worker)],
                    };
                    break;
                }
                "echo" => {
                    let parts: Vec<&[u8]> = blobs
                        .iter()
                        .map(|b| match &b.content {
                            Some(c) => &c[..],
                            None => &self.kept[&b.blob.hash][..],
                        })
                        .collect();
                    result = Evaluation::Value(Bytes::from(parts.join(&b"|"[..])));
                    break;
                }
                "keep" => {
                    for b in &blobs {
                        if let Some(c) = &b.content {
                            self.kept.insert(b.blob.hash, c.clone());
                        }
                    }
                }
                "sent" => {
                    let how: Vec<&str> = blobs
                        .iter()
                        .map(|b| if b.content.is_some() { "S" } else { "M" })
                        .collect();
                    result = Evaluation::Value(Bytes::from(how.join(",")));
                    break;
                }
                other => panic!("unknown script step {other:?}"),
            }
        }
        // Not reached when the evaluation is dropped (cancelled) half-way.
        self.journal.push(Entry::Finished {
            worker: self.worker.clone(),
            payload: script,
        });
        result
    }

    fn holds(&self, blob: &BlobHash) -> bool {
        self.alive && self.kept.contains_key(blob)
    }

    async fn kill(&mut self) {
        self.kept.clear();
        if self.alive {
            self.alive = false;
            self.journal.push(Entry::Kill {
                worker: self.worker.clone(),
            });
        }
    }
}
