//! starburst's wire format, pure and free of I/O: versioned task, result, event and heartbeat
//! envelopes, and content-addressed blobs. Every frame carries a BLAKE3 checksum checked on
//! every read; payloads can be zstd-compressed; metadata is bincode 2 (serde). Malformed input
//! of any kind (truncated, corrupted, another version, oversized) gives an [`Error`], never a
//! panic.
//!
//! This crate knows nothing of object stores, R or clouds, and depends on no workspace crate.

#![deny(missing_docs)]

pub mod blob;
pub mod envelope;
mod error;
pub mod frame;
pub mod layout;

pub use blob::{BlobHash, BlobRef, decode_blob, encode_blob};
pub use envelope::*;
pub use error::{Error, Result};
pub use frame::{EncodeOptions, FORMAT_VERSION, Limits};
pub use layout::SessionLayout;
