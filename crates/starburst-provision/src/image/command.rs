//! The command-runner seam: how the image builder runs external programs (`docker`), so tests
//! can record the command sequence instead of running it.

use std::collections::VecDeque;
use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

/// A callback that receives progress, one line at a time.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// One program invocation.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// The program, looked up on `PATH`.
    pub program: String,
    /// Its arguments (never secrets: those go through `stdin`).
    pub args: Vec<String>,
    /// Bytes written to its standard input, which is then closed (`None`: no input).
    pub stdin: Option<Vec<u8>>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Command {
    /// `program` with `args`, no input, no extra environment.
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
            env: Vec::new(),
        }
    }

    /// With `bytes` on standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as a user would type it (arguments with spaces quoted; no input).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    format!("'{a}'")
                } else {
                    a.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for Command {
    /// Never prints the input, which may be a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// True when it exited with status 0.
    pub success: bool,
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Its standard output and error lines, in the order they were read.
    pub lines: Vec<String>,
}

impl CommandOutput {
    /// A successful run that printed `lines`.
    pub fn ok<S: Into<String>>(lines: impl IntoIterator<Item = S>) -> Self {
        Self {
            success: true,
            code: Some(0),
            lines: lines.into_iter().map(Into::into).collect(),
        }
    }

    /// A run that exited with `code` after printing `lines`.
    pub fn failed<S: Into<String>>(code: i32, lines: impl IntoIterator<Item = S>) -> Self {
        Self {
            success: false,
            code: Some(code),
            lines: lines.into_iter().map(Into::into).collect(),
        }
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(n)..]
    }
}

/// Runs external programs.
#[async_trait]
pub trait CommandRunner: Send + Sync + fmt::Debug + 'static {
    /// Runs `command` to completion, passing each output line to `on_line` as it arrives. An
    /// `Err` means the program could not be started (e.g. not installed); a program that ran
    /// and failed is an `Ok` with `success == false`.
    async fn run(&self, command: &Command, on_line: Progress<'_>)
    -> std::io::Result<CommandOutput>;
}

/// Runs programs as child processes (tokio), stdout and stderr merged line by line.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessRunner;

#[async_trait]
impl CommandRunner for ProcessRunner {
    async fn run(
        &self,
        command: &Command,
        on_line: Progress<'_>,
    ) -> std::io::Result<CommandOutput> {
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(if command.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let input = command.stdin.clone();
        let feed = async move {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                // A program that exits without reading its input is not an error here: its
                // exit status says what happened.
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().map(|s| pump(s, tx.clone()));
        let stderr = child.stderr.take().map(|s| pump(s, tx.clone()));
        drop(tx);
        let collect = async {
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                on_line(&line);
                lines.push(line);
            }
            lines
        };
        let pumps = async {
            if let Some(p) = stdout {
                p.await;
            }
        };
        let pumps_err = async {
            if let Some(p) = stderr {
                p.await;
            }
        };
        let ((), (), (), lines) = tokio::join!(feed, pumps, pumps_err, collect);
        let status = child.wait().await?;
        Ok(CommandOutput {
            success: status.success(),
            code: status.code(),
            lines,
        })
    }
}

async fn pump(stream: impl AsyncRead + Unpin, tx: tokio::sync::mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_owned();
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    }
}

/// A runner that records every command and answers from a script instead of running
/// anything: each command gets the first scripted response whose program and leading
/// arguments match it, else a success with no output.
#[derive(Debug, Default, Clone)]
pub struct RecordingRunner {
    calls: Arc<Mutex<Vec<Command>>>,
    script: Arc<Mutex<VecDeque<Rule>>>,
}

/// A scripted response: the command prefix it answers, and the answer.
type Rule = (Vec<String>, Scripted);

#[derive(Debug, Clone)]
enum Scripted {
    Output(CommandOutput),
    NotFound,
}

impl RecordingRunner {
    /// Records everything, every command succeeds silently.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next command that starts with `prefix` (program, then arguments) returns `output`.
    pub fn respond<S: Into<String>>(
        &self,
        prefix: impl IntoIterator<Item = S>,
        output: CommandOutput,
    ) -> &Self {
        self.push(prefix, Scripted::Output(output))
    }

    /// The next command that starts with `prefix` cannot be started (as if not installed).
    pub fn not_found<S: Into<String>>(&self, prefix: impl IntoIterator<Item = S>) -> &Self {
        self.push(prefix, Scripted::NotFound)
    }

    fn push<S: Into<String>>(&self, prefix: impl IntoIterator<Item = S>, s: Scripted) -> &Self {
        let prefix = prefix.into_iter().map(Into::into).collect();
        lock(&self.script).push_back((prefix, s));
        self
    }

    /// Every command run so far, in order.
    pub fn calls(&self) -> Vec<Command> {
        lock(&self.calls).clone()
    }
}

#[async_trait]
impl CommandRunner for RecordingRunner {
    async fn run(
        &self,
        command: &Command,
        on_line: Progress<'_>,
    ) -> std::io::Result<CommandOutput> {
        lock(&self.calls).push(command.clone());
        let words: Vec<&str> = std::iter::once(command.program.as_str())
            .chain(command.args.iter().map(String::as_str))
            .collect();
        let scripted = {
            let mut script = lock(&self.script);
            let found = script.iter().position(|(prefix, _)| {
                prefix.len() <= words.len() && prefix.iter().zip(&words).all(|(p, w)| p == w)
            });
            found.and_then(|i| script.remove(i)).map(|(_, s)| s)
        };
        match scripted {
            None => Ok(CommandOutput::ok(Vec::<String>::new())),
            Some(Scripted::NotFound) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: not found", command.program),
            )),
            Some(Scripted::Output(output)) => {
                for line in &output.lines {
                    on_line(line);
                }
                Ok(output)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn process_runner_feeds_stdin_and_streams_both_outputs() {
        let seen = Mutex::new(Vec::new());
        let on_line = |l: &str| seen.lock().unwrap().push(l.to_owned());
        let cmd = Command::new("sh", ["-c", "read x; echo out:$x; echo err >&2; exit 3"])
            .stdin("secret\n");
        let out = ProcessRunner.run(&cmd, &on_line).await.unwrap();
        assert!(!out.success);
        assert_eq!(out.code, Some(3));
        let mut lines = out.lines.clone();
        lines.sort();
        assert_eq!(lines, ["err", "out:secret"]);
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert!(!format!("{cmd:?}").contains("secret"));
    }

    #[tokio::test]
    async fn process_runner_reports_a_missing_program() {
        let cmd = Command::new("starburst-no-such-program", Vec::<String>::new());
        let err = ProcessRunner.run(&cmd, &|_| {}).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn recording_runner_matches_prefixes_once() {
        let runner = RecordingRunner::new();
        runner.respond(["docker", "build"], CommandOutput::failed(1, ["boom"]));
        let build = Command::new("docker", ["build", "."]);
        assert!(!runner.run(&build, &|_| {}).await.unwrap().success);
        assert!(runner.run(&build, &|_| {}).await.unwrap().success);
        assert_eq!(runner.calls(), [build.clone(), build]);
    }
}
