//! Identifiers and object paths.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` (1–128 characters of `[A-Za-z0-9._-]`, not starting with a dot) and
            /// wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                validate_segment(stringify!($name), &s)?;
                Ok(Self(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// One client session (one `plan(starburst)`); every key it writes lives under it.
    SessionId
);
id_type!(
    /// One worker (a local process or a Fargate task), named by the compute provider.
    WorkerId
);
id_type!(
    /// One future's task within a session.
    TaskId
);

fn validate_segment(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "validate id",
            format!(
                "{what} {s:?} must be 1-128 characters of A-Z a-z 0-9 . _ - and not start with a dot"
            ),
        ))
    }
}

/// A key in an object store: `/`-separated segments, each a valid id-like segment. Paths are
/// relative to the store's root (an S3 bucket prefix, a local directory), so a path can never
/// escape it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectPath(String);

impl ObjectPath {
    /// Parses and checks a path such as `sessions/abc/tasks/1`.
    pub fn parse(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() {
            return Err(Error::invalid(
                "parse path",
                "an object path cannot be empty",
            ));
        }
        for seg in s.split('/') {
            validate_segment("path segment", seg)?;
        }
        Ok(Self(s))
    }

    /// This path with one more segment.
    pub fn child(&self, segment: impl AsRef<str>) -> Result<Self> {
        let segment = segment.as_ref();
        validate_segment("path segment", segment)?;
        Ok(Self(format!("{}/{}", self.0, segment)))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments of the path.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// True when `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &ObjectPath) -> bool {
        self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectPath({:?})", self.0)
    }
}

impl TryFrom<String> for ObjectPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(s)
    }
}

impl From<ObjectPath> for String {
    fn from(p: ObjectPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_or_be_empty() {
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", ".hidden", "a b", "a/ü",
        ] {
            assert!(ObjectPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        let p = ObjectPath::parse("sessions/s1/tasks").unwrap();
        assert_eq!(p.child("t-1").unwrap().as_str(), "sessions/s1/tasks/t-1");
        assert!(p.child("a/b").is_err());
        assert_eq!(p.name(), "tasks");
    }

    #[test]
    fn starts_with_respects_segment_boundaries() {
        let p = ObjectPath::parse("a/bc/d").unwrap();
        assert!(p.starts_with(&ObjectPath::parse("a/bc").unwrap()));
        assert!(!p.starts_with(&ObjectPath::parse("a/b").unwrap()));
        assert!(p.starts_with(&p));
    }

    #[test]
    fn ids_are_checked() {
        assert!(TaskId::new("t-00001").is_ok());
        assert!(WorkerId::new("").is_err());
        assert!(SessionId::new("x".repeat(129)).is_err());
    }
}
