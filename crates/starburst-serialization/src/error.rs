//! Decoding errors. Every malformed input maps to one of these; decoders never panic.

/// Result of encoding or decoding.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a frame or blob could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the frame says it has.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which part was cut short.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// More bytes than the frame says it has.
    #[error("{extra} trailing bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// Not a starburst frame at all.
    #[error("not a starburst frame (bad magic)")]
    BadMagic,
    /// Written by an incompatible version of starburst.
    #[error(
        "wire format version {found} is not supported (this build reads version {supported}); use the same starburst version on client and workers"
    )]
    UnsupportedVersion {
        /// The version in the frame.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// A frame of another kind than expected.
    #[error("expected a {expected} frame, found kind {found}")]
    WrongKind {
        /// What the caller asked for.
        expected: &'static str,
        /// The kind byte found.
        found: u8,
    },
    /// Unknown compression codec byte.
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    /// A size beyond the configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Which part.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The checksum does not match: the bytes were corrupted in transit or at rest.
    #[error("checksum mismatch: the {what} is corrupted")]
    Corrupted {
        /// Which object.
        what: &'static str,
    },
    /// The metadata section did not decode.
    #[error("malformed metadata: {0}")]
    Meta(String),
    /// The payload did not decompress.
    #[error("payload does not decompress: {0}")]
    Decompress(String),
}
