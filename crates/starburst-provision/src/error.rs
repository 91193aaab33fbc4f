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

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "`{}` exited with status {code}", self.command)?,
            None => write!(f, "`{}` was killed by a signal", self.command)?,
        }
        write!(f, "; {}", self.hint)?;
        if !self.tail.is_empty() {
            write!(f, "; last output:")?;
            for line in &self.tail {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailed {}
