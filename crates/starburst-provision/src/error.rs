//! Errors of this crate. Operations return `starburst_cloud::Error` (the image builder is a
//! port); the types here are the sources such errors carry.

use std::fmt;

/// An external command ran and failed: what ran, how it ended, its last output lines and what
/// to do. Carried as the source of a `starburst_cloud::Error::Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailed {
    /// The command line (never includes secrets, which go through standard input).
    pub command: String,
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Its last output lines.
    pub tail: Vec<String>,
    /// What to do about it.
    pub hint: String,
}

/// The output first, then the command: R shows only the first 1,000 bytes of an error message
/// by default (`warning.length`), and what went wrong is in the output.
impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = self.command.split_whitespace().next().unwrap_or("");
        match self.code {
            Some(code) => write!(f, "{program} exited with status {code}")?,
            None => write!(f, "{program} was killed by a signal")?,
        }
        if !self.tail.is_empty() {
            write!(f, "; last output:")?;
            for line in &self.tail {
                write!(f, "\n  {line}")?;
            }
            writeln!(f)?;
        } else {
            write!(f, "; ")?;
        }
        write!(f, "{} (command: `{}`)", self.hint, self.command)
    }
}

impl std::error::Error for CommandFailed {}
