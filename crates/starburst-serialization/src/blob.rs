//! Content-addressed blobs: large globals stored once per session under their BLAKE3 hash and
//! verified against it on every read.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::frame::{self, EncodeOptions, Kind, Limits};
use crate::{Error, Result};

/// The BLAKE3 hash of a blob's raw content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// Hashes `content`.
    pub fn of(content: &[u8]) -> Self {
        Self(*blake3::hash(content).as_bytes())
    }

    /// Lower-case hex, the blob's object name.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        blake3::Hash::from_hex(s).ok().map(|h| Self(*h.as_bytes()))
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A reference to a blob: its hash and raw size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// Content hash.
    pub hash: BlobHash,
    /// Raw size in bytes.
    pub size: u64,
}

impl BlobRef {
    /// The reference of `content`.
    pub fn of(content: &[u8]) -> Self {
        Self {
            hash: BlobHash::of(content),
            size: content.len() as u64,
        }
    }
}

/// Encodes a blob for storage.
pub fn encode_blob(content: &[u8], opts: EncodeOptions) -> Vec<u8> {
    frame::encode(Kind::Blob, &BlobHash::of(content), content, opts)
}

/// Decodes a stored blob and checks that it is the blob `expected` names.
pub fn decode_blob(buf: &Bytes, expected: &BlobRef, limits: Limits) -> Result<Bytes> {
    let (hash, content): (BlobHash, Bytes) = frame::decode(Kind::Blob, buf, limits)?;
    if hash != expected.hash
        || content.len() as u64 != expected.size
        || BlobHash::of(&content) != expected.hash
    {
        return Err(Error::Corrupted { what: "blob" });
    }
    Ok(content)
}
