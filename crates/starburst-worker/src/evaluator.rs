//! The evaluator: a persistent R process that runs one task at a time, spoken to over pipes.
//!
//! Frames in both directions are one ASCII kind byte, a little-endian `i32` length and the
//! payload. The worker writes to the child's stdin: `T` (the task payload), `I` (the task's
//! blobs: which are sent and which the child keeps in memory) and one `B` per blob sent. The
//! child writes to file descriptor 3: `H` once when ready, `E` for each immediate condition, `K`
//! (the blobs it keeps now, before its result; optional) and `R` with the result. The worker
//! sends a blob's content only when the child has not said it keeps it, so a large global
//! shared by many futures crosses the pipe and is unserialized once per R process. The child's
//! stdout and stderr are the worker's, so they land in the worker log.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use command_fds::{CommandFdExt, FdMapping};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use starburst_serialization::{BlobHash, BlobRef};

use crate::{Error, Result};

/// How an evaluation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// The evaluator returned a result payload.
    Value(Bytes),
    /// The evaluator died; it will be restarted before the next task.
    Died {
        /// What happened (exit status or signal).
        message: String,
        /// The last lines it wrote, when known.
        log_tail: Vec<String>,
    },
}

/// A blob of a task, in the task's order: its content, or `None` when the evaluator said it
/// [holds](Evaluator::holds) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBlob {
    /// Which blob.
    pub blob: BlobRef,
    /// Its verified content; `None` when the evaluator holds it in memory.
    pub content: Option<Bytes>,
}

/// Runs task payloads. Events (immediate conditions) are sent on `events` as they happen.
#[async_trait]
pub trait Evaluator: Send + std::fmt::Debug {
    /// Makes sure the evaluator is running (started lazily otherwise).
    async fn start(&mut self) -> Result<()>;
    /// Evaluates one task.
    async fn eval(
        &mut self,
        payload: Bytes,
        blobs: Vec<TaskBlob>,
        events: mpsc::UnboundedSender<Bytes>,
    ) -> Evaluation;
    /// Whether the evaluator keeps this blob in memory since an earlier task, so the next task
    /// may name it without its content. Never true for an evaluator that cannot keep blobs.
    fn holds(&self, _blob: &BlobHash) -> bool {
        false
    }
    /// Kills a running evaluation; the evaluator restarts before the next task.
    async fn kill(&mut self);
}

/// How to start R.
#[derive(Debug, Clone)]
pub struct RCommand {
    /// `Rscript` (path or name on `PATH`).
    pub rscript: PathBuf,
    /// Arguments, e.g. `--vanilla -e starburst:::worker_child()`.
    pub args: Vec<String>,
    /// How long R may take to say hello.
    pub start_timeout: Duration,
    /// How many bytes of blobs (large globals, by serialized size) the R process may keep in
    /// memory between tasks (`STARBURST_KEEP_BYTES` in its environment); 0 keeps none.
    pub keep_bytes: u64,
    /// Extra environment variables of the R process (e.g. `R_LIBS` of a restored library).
    pub env: Vec<(String, String)>,
}

impl RCommand {
    /// `rscript --vanilla -e 'starburst:::worker_child()'`.
    pub fn starburst(rscript: impl Into<PathBuf>) -> Self {
        Self {
            rscript: rscript.into(),
            args: vec![
                "--vanilla".into(),
                "-e".into(),
                "starburst:::worker_child()".into(),
            ],
            start_timeout: Duration::from_secs(60),
            keep_bytes: default_keep_bytes(),
            env: Vec::new(),
        }
    }
}

/// What an R process keeps of large globals by default: a quarter of the memory it may use
/// (the container's limit, else the machine's), or `STARBURST_KEEP_BYTES` when set.
pub fn default_keep_bytes() -> u64 {
    if let Some(n) = std::env::var("STARBURST_KEEP_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return n;
    }
    memory_limit().map_or(1 << 30, |m| m / 4)
}

/// The memory this process may use: its cgroup's limit (v2, then v1) when there is one, else
/// the machine's.
fn memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let total = read("/proc/meminfo").and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

enum Frame {
    Msg(u8, Bytes),
    Eof(String),
}

struct Child {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    frames: mpsc::UnboundedReceiver<Frame>,
    /// The relays of its stdout and stderr into the log tail.
    relays: Vec<tokio::task::JoinHandle<()>>,
}

/// Waits (at most 2 s: a process the future started may hold the pipes open) until the relays
/// of a dead process's output have read all it wrote, so its log tail ends with its last words.
async fn settle(relays: Vec<tokio::task::JoinHandle<()>>) {
    let all = async {
        for relay in relays {
            let _ = relay.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
}

/// A persistent R process supervised over pipes; restarted when it dies.
#[derive(Debug)]
pub struct RProcess {
    command: RCommand,
    child: Option<ChildHandle>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The blobs the running R process said (`K`) it keeps; empty when it is not running.
    held: HashSet<BlobHash>,
}

struct ChildHandle(Child);

impl std::fmt::Debug for ChildHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RChild(pid {:?})", self.0.process.id())
    }
}

const MAX_FRAME: usize = i32::MAX as usize;

fn read_frames(mut r: std::io::PipeReader, tx: mpsc::UnboundedSender<Frame>) {
    loop {
        let mut head = [0u8; 5];
        if let Err(e) = r.read_exact(&mut head) {
            let _ = tx.send(Frame::Eof(format!("pipe closed ({e})")));
            return;
        }
        let len = i32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len < 0 {
            let _ = tx.send(Frame::Eof(format!("bad frame length {len}")));
            return;
        }
        let mut buf = vec![0u8; len as usize];
        if let Err(e) = r.read_exact(&mut buf) {
            let _ = tx.send(Frame::Eof(format!("pipe closed mid-frame ({e})")));
            return;
        }
        if tx.send(Frame::Msg(head[0], Bytes::from(buf))).is_err() {
            return;
        }
    }
}

async fn write_frame(
    w: &mut tokio::process::ChildStdin,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "payload over 2 GiB",
        ));
    }
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(payload.len() as i32).to_le_bytes());
    w.write_all(&head).await?;
    w.write_all(payload).await
}

impl RProcess {
    /// An evaluator that starts R with `command` when first needed.
    pub fn new(command: RCommand) -> Self {
        Self {
            command,
            child: None,
            tail: Arc::default(),
            held: HashSet::new(),
        }
    }

    async fn spawn(&self) -> Result<Child> {
        if let Ok(mut t) = self.tail.lock() {
            // A failure report shows what this R process wrote, not its predecessor.
            t.clear();
        }
        let (reader, writer) = std::io::pipe().map_err(|e| Error::EvaluatorStart(e.to_string()))?;
        let mut cmd = tokio::process::Command::new(&self.command.rscript);
        cmd.args(&self.command.args)
            .env("STARBURST_KEEP_BYTES", self.command.keep_bytes.to_string())
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: writer.into(),
            child_fd: 3,
        }])
        .map_err(|e| Error::EvaluatorStart(e.to_string()))?;
        let mut process = cmd.spawn().map_err(|e| {
            Error::EvaluatorStart(format!("{}: {e}", self.command.rscript.display()))
        })?;
        // The child holds the write end now; ours was moved into the mapping and is closed
        // when `cmd` drops, so EOF on `reader` means the child is gone.
        drop(cmd);
        let stdin = process
            .stdin
            .take()
            .ok_or_else(|| Error::EvaluatorStart("no stdin".into()))?;
        let mut relays = Vec::new();
        if let Some(out) = process.stdout.take() {
            relays.push(tokio::spawn(relay_lines(out, self.tail.clone())));
        }
        if let Some(err) = process.stderr.take() {
            relays.push(tokio::spawn(relay_lines(err, self.tail.clone())));
        }
        let (tx, mut frames) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("r-frames".into())
            .spawn(move || read_frames(reader, tx))
            .map_err(|e| Error::EvaluatorStart(e.to_string()))?;
        let hello = tokio::time::timeout(self.command.start_timeout, frames.recv()).await;
        match hello {
            Ok(Some(Frame::Msg(b'H', v))) => {
                tracing::info!(r = %String::from_utf8_lossy(&v), pid = process.id(), "R evaluator ready");
                Ok(Child {
                    process,
                    stdin,
                    frames,
                    relays,
                })
            }
            Ok(Some(Frame::Msg(k, _))) => Err(Error::EvaluatorStart(format!(
                "R sent frame {:?} before hello",
                k as char
            ))),
            Ok(Some(Frame::Eof(_))) | Ok(None) => {
                let status = process
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                Err(Error::EvaluatorStart(format!(
                    "R exited before it was ready ({status}); is the starburst R package installed in the library paths the worker uses (R_LIBS)?"
                )))
            }
            Err(_) => Err(Error::EvaluatorStart(format!(
                "R did not become ready within {:?}",
                self.command.start_timeout
            ))),
        }
    }

    async fn died(&mut self, child: Option<Child>, why: String) -> Evaluation {
        self.held.clear();
        let status = match child {
            Some(mut c) => {
                // The pipe closes as the process exits: give it a moment to finish exiting so the
                // report names its real status, then make sure it is gone.
                let exited = tokio::time::timeout(Duration::from_secs(2), c.process.wait()).await;
                let status = match exited {
                    Ok(Ok(s)) => describe_status(s),
                    _ => {
                        let _ = c.process.start_kill();
                        match tokio::time::timeout(Duration::from_secs(5), c.process.wait()).await {
                            Ok(Ok(_)) => format!("stopped responding ({why}) and was killed"),
                            _ => why,
                        }
                    }
                };
                settle(c.relays).await;
                status
            }
            None => why,
        };
        Evaluation::Died {
            message: format!("the R process evaluating the future {status}"),
            log_tail: self.tail(),
        }
    }

    fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Relays what an exited R process wrote before it died; its result, if it sent one.
async fn drain(
    frames: &mut mpsc::UnboundedReceiver<Frame>,
    events: &mpsc::UnboundedSender<Bytes>,
) -> Option<Bytes> {
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_millis(200), frames.recv()).await
    {
        match frame {
            Frame::Msg(b'E', ev) => {
                let _ = events.send(ev);
            }
            Frame::Msg(b'R', value) => return Some(value),
            Frame::Msg(..) => {}
            Frame::Eof(_) => return None,
        }
    }
    None
}

/// Lines kept for a failure report.
const TAIL_LINES: usize = 40;
/// The longest line kept (and logged) whole; the rest of a longer one is counted, not kept.
const MAX_LINE: usize = 4096;

/// Copies the child's output to the worker's stderr (the worker log) and keeps the last lines.
/// Reads whatever R writes, however much and in whatever encoding: lines are cut at
/// [`MAX_LINE`] bytes and decoded lossily, so a process that writes megabytes without a
/// newline, or bytes that are not UTF-8, never stops the relay (which would leave R blocked on
/// a full pipe) nor grows the worker's memory.
async fn relay_lines(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    use tokio::io::AsyncReadExt;
    let mut line = LineCutter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for l in line.feed(&buf[..n]) {
            keep(&tail, l);
        }
    }
    if let Some(l) = line.finish() {
        keep(&tail, l);
    }
}

fn keep(tail: &Mutex<VecDeque<String>>, line: String) {
    eprintln!("[R] {line}");
    if let Ok(mut t) = tail.lock() {
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// Splits bytes into lines of at most [`MAX_LINE`] bytes (longer ones end with a note of how
/// much was cut).
#[derive(Debug, Default)]
struct LineCutter {
    current: Vec<u8>,
    cut: u64,
}

impl LineCutter {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            let room = MAX_LINE.saturating_sub(self.current.len());
            let take = body.len().min(room);
            self.current.extend_from_slice(&body[..take]);
            self.cut += (body.len() - take) as u64;
            if ends {
                out.push(self.take());
            }
        }
        out
    }

    fn take(&mut self) -> String {
        let mut line = String::from_utf8_lossy(&self.current).into_owned();
        if self.cut > 0 {
            line.push_str(&format!(" [... {} more bytes]", self.cut));
        }
        self.current.clear();
        self.cut = 0;
        line
    }

    fn finish(&mut self) -> Option<String> {
        (!self.current.is_empty() || self.cut > 0).then(|| self.take())
    }
}

fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exited with status {code} (for example quit() was called)"),
        (None, Some(9)) => {
            "was killed (signal 9: out of memory or killed by another process)".into()
        }
        (None, Some(11)) => "crashed with a segmentation fault (signal 11)".into(),
        (None, Some(sig)) => format!("was terminated by signal {sig}"),
        _ => "ended".into(),
    }
}

/// The `I` frame: one line per blob of the task, in order, `<hash hex> <size> <S|M>`: `S` when
/// its content follows in a `B` frame, `M` when the R process keeps it in memory.
fn blob_index(blobs: &[TaskBlob]) -> String {
    let mut out = String::with_capacity(blobs.len() * 90);
    for b in blobs {
        let how = if b.content.is_some() { 'S' } else { 'M' };
        out.push_str(&format!("{} {} {how}\n", b.blob.hash, b.blob.size));
    }
    out
}

/// The `K` frame: the hashes (hex, one per line) of the blobs the R process keeps in memory.
/// A line that is not a hash is ignored: the worker then sends that blob again.
fn parse_kept(kept: &[u8]) -> HashSet<BlobHash> {
    String::from_utf8_lossy(kept)
        .lines()
        .filter_map(|l| BlobHash::from_hex(l.trim()))
        .collect()
}

#[async_trait]
impl Evaluator for RProcess {
    async fn start(&mut self) -> Result<()> {
        if self.child.is_none() {
            self.child = Some(ChildHandle(self.spawn().await?));
        }
        Ok(())
    }

    async fn eval(
        &mut self,
        payload: Bytes,
        blobs: Vec<TaskBlob>,
        events: mpsc::UnboundedSender<Bytes>,
    ) -> Evaluation {
        if let Err(e) = self.start().await {
            return Evaluation::Died {
                message: e.to_string(),
                log_tail: self.tail(),
            };
        }
        let mut child = self.child.take().expect("started").0;
        let mut sent = write_frame(&mut child.stdin, b'T', &payload).await;
        if sent.is_ok() {
            sent = write_frame(&mut child.stdin, b'I', blob_index(&blobs).as_bytes()).await;
        }
        for b in blobs.iter().filter_map(|b| b.content.as_ref()) {
            if sent.is_ok() {
                sent = write_frame(&mut child.stdin, b'B', b).await;
            }
        }
        if sent.is_ok() {
            sent = child.stdin.flush().await;
        }
        if let Err(e) = sent {
            return self
                .died(Some(child), format!("stopped reading its input ({e})"))
                .await;
        }
        loop {
            let frame = tokio::select! {
                f = child.frames.recv() => f,
                // A process the future started may hold the result pipe open, so the pipe alone
                // does not tell that R died: watch the process itself too.
                status = child.process.wait() => {
                    let status = status.map(describe_status).unwrap_or_else(|e| e.to_string());
                    return match drain(&mut child.frames, &events).await {
                        Some(value) => Evaluation::Value(value),
                        None => {
                            settle(std::mem::take(&mut child.relays)).await;
                            Evaluation::Died {
                                message: format!("the R process evaluating the future {status}"),
                                log_tail: self.tail(),
                            }
                        }
                    };
                }
            };
            match frame {
                Some(Frame::Msg(b'E', ev)) => {
                    let _ = events.send(ev);
                }
                Some(Frame::Msg(b'K', kept)) => {
                    self.held = parse_kept(&kept);
                }
                Some(Frame::Msg(b'R', value)) => {
                    self.child = Some(ChildHandle(child));
                    return Evaluation::Value(value);
                }
                Some(Frame::Msg(k, _)) => {
                    return self
                        .died(
                            Some(child),
                            format!("sent an unexpected frame {:?}", k as char),
                        )
                        .await;
                }
                Some(Frame::Eof(why)) => return self.died(Some(child), why).await,
                None => return self.died(Some(child), "closed its output".into()).await,
            }
        }
    }

    fn holds(&self, blob: &BlobHash) -> bool {
        self.child.is_some() && self.held.contains(blob)
    }

    async fn kill(&mut self) {
        self.held.clear();
        if let Some(ChildHandle(mut c)) = self.child.take() {
            let _ = c.process.start_kill();
            let _ = c.process.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_decoded_lossily_and_split_across_reads() {
        let mut c = LineCutter::default();
        assert_eq!(c.feed(b"one\ntw"), ["one"]);
        assert_eq!(
            c.feed(b"o\n\xff\xfe bad\n"),
            ["two", "\u{fffd}\u{fffd} bad"]
        );
        // Megabytes without a newline: kept to MAX_LINE bytes, the rest counted.
        let big = vec![b'x'; 3 << 20];
        assert!(c.feed(&big).is_empty());
        assert!(c.feed(&big).is_empty());
        let lines = c.feed(b"\nafter\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE + " [... 6287360 more bytes]".len());
        assert!(lines[0].ends_with(&format!("[... {} more bytes]", (6 << 20) - MAX_LINE)));
        assert_eq!(lines[1], "after");
        assert_eq!(c.feed(b"no newline at the end"), Vec::<String>::new());
        assert_eq!(c.finish().as_deref(), Some("no newline at the end"));
        assert_eq!(c.finish(), None);
    }

    #[tokio::test]
    async fn a_flood_of_output_keeps_a_bounded_tail_and_never_stops_the_relay() {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let mut flood = Vec::new();
        for i in 0..1000 {
            flood.extend_from_slice(format!("line {i}: ").as_bytes());
            flood.extend(std::iter::repeat_n(b'y', 10_000));
            flood.push(b'\n');
        }
        flood.extend_from_slice(b"\xc3\x28 invalid utf-8, then the last words\n");
        relay_lines(&flood[..], tail.clone()).await;
        let t = tail.lock().unwrap();
        assert_eq!(t.len(), TAIL_LINES);
        assert!(t.iter().all(|l| l.len() <= MAX_LINE + 40));
        assert!(t.back().unwrap().ends_with("then the last words"));
    }
}
