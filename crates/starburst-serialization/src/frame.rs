//! The frame: a fixed header, a bincode metadata section and a (possibly compressed) payload,
//! protected by a BLAKE3 checksum.
//!
//! ```text
//! offset size field
//!  0      4   magic "SBWF"
//!  4      2   format version (LE)
//!  6      1   kind
//!  7      1   codec (0 = none, 1 = zstd)
//!  8      4   metadata length (LE)
//! 12      8   stored payload length (LE)
//! 20      8   raw payload length (LE), after decompression
//! 28     32   BLAKE3 of bytes 0..28, the metadata and the stored payload
//! 60      -   metadata (bincode 2, standard config), then the stored payload
//! ```

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// The frame magic.
pub const MAGIC: [u8; 4] = *b"SBWF";
/// The format version this build writes and reads.
/// Version 2: heartbeats carry the running task's attempt and event count, results their
/// event count, and inboxes may hold a `Skip`.
/// Version 3: the client beats a session heartbeat (`ClientBeat`) that workers follow: a
/// worker stops when it goes stale (its client is gone) or its hard deadline passes.
pub const FORMAT_VERSION: u16 = 3;
/// Header length in bytes.
pub const HEADER_LEN: usize = 60;
/// The largest metadata section accepted (metadata is small by design; payloads carry data).
pub const MAX_META: u64 = 1 << 20;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A worker inbox message (a task to run, or stop).
    Inbox = 1,
    /// A task's result.
    Result = 2,
    /// An event emitted while a task runs (an immediate condition).
    Event = 3,
    /// A worker heartbeat.
    Heartbeat = 4,
    /// A content-addressed blob.
    Blob = 5,
    /// The client's session heartbeat.
    ClientBeat = 6,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Inbox => "inbox",
            Kind::Result => "result",
            Kind::Event => "event",
            Kind::Heartbeat => "heartbeat",
            Kind::Blob => "blob",
            Kind::ClientBeat => "client beat",
        }
    }
}

/// How payloads are compressed when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Compress payloads of at least this many bytes with zstd; `None` never compresses (a
    /// local directory store, where CPU costs more than bytes).
    pub compress_at: Option<usize>,
    /// zstd level.
    pub level: i32,
}

impl EncodeOptions {
    /// Never compress.
    pub const PLAIN: Self = Self {
        compress_at: None,
        level: 0,
    };
    /// Compress payloads of 64 KiB or more at zstd's fast level 1 (object stores over a
    /// network), keeping the result only when it saves a tenth or more; payloads of 4 MiB or
    /// more are first judged by a 1.75 MiB sample. Level 1 because it compresses R's
    /// serialized data at 230-1000 MB/s per core to within 10% of level 9's ratio (integers
    /// 0.43 vs 0.40), and random doubles not at all (0.96: stored plain).
    pub const NETWORK: Self = Self {
        compress_at: Some(64 * 1024),
        level: 1,
    };
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self::PLAIN
    }
}

/// Limits a reader enforces before it allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest raw payload accepted.
    pub max_payload: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // R's serialize() of a single object rarely exceeds a few GiB; refuse more.
        Self {
            max_payload: 16 << 30,
        }
    }
}

const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_META as usize }>()
}

/// Compression is kept only when it saves at least a tenth: below that, every reader's
/// decompression costs more than the bytes saved (random doubles, already compressed data).
const PAYS: f64 = 0.9;

/// Whether compressing `payload` looks worth it: a large payload is judged by a sample (its
/// first MiB and three spread 256 KiB pieces, a few milliseconds), so incompressible data is not
/// compressed whole for nothing; a small one is simply compressed and judged by the result.
fn pays(payload: &[u8], level: i32) -> bool {
    const HEAD: usize = 1 << 20;
    const PIECE: usize = 256 << 10;
    if payload.len() < 4 * HEAD {
        return true;
    }
    let mut sample = Vec::with_capacity(HEAD + 3 * PIECE);
    sample.extend_from_slice(&payload[..HEAD]);
    for k in 1..=3 {
        let at = payload.len() / 4 * k;
        sample.extend_from_slice(&payload[at..at + PIECE]);
    }
    zstd::bulk::compress(&sample, level)
        .map(|c| (c.len() as f64) <= PAYS * sample.len() as f64)
        .unwrap_or(false)
}

/// Encodes `meta` and `payload` as a frame of `kind`.
pub fn encode<M: Serialize>(kind: Kind, meta: &M, payload: &[u8], opts: EncodeOptions) -> Vec<u8> {
    let meta = bincode::serde::encode_to_vec(meta, bincode_config())
        .expect("metadata types are plain data and always encode");
    assert!(
        meta.len() as u64 <= MAX_META,
        "metadata of {} bytes exceeds the frame limit",
        meta.len()
    );
    let compressed = match opts.compress_at {
        Some(min) if payload.len() >= min && pays(payload, opts.level) => {
            zstd::bulk::compress(payload, opts.level)
                .ok()
                .filter(|c| (c.len() as f64) <= PAYS * payload.len() as f64)
        }
        _ => None,
    };
    let (codec, stored): (u8, &[u8]) = match &compressed {
        Some(c) => (CODEC_ZSTD, c),
        None => (CODEC_NONE, payload),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + meta.len() + stored.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(codec);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = blake3::Hasher::new();
    h.update(&out[..28]);
    h.update(&meta);
    h.update(stored);
    out.extend_from_slice(h.finalize().as_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(stored);
    out
}

/// Decodes a frame of `kind`, checking magic, version, sizes, limits and checksum before
/// trusting any field. The payload is a zero-copy slice of `buf` when it was not compressed.
pub fn decode<M: DeserializeOwned>(kind: Kind, buf: &Bytes, limits: Limits) -> Result<(M, Bytes)> {
    let have = buf.len() as u64;
    if buf.len() < HEADER_LEN {
        if buf.len() >= 4 && buf[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        return Err(Error::Truncated {
            what: "header",
            need: HEADER_LEN as u64,
            have,
        });
    }
    if buf[..4] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if buf[6] != kind as u8 {
        return Err(Error::WrongKind {
            expected: kind.name(),
            found: buf[6],
        });
    }
    let codec = buf[7];
    if codec != CODEC_NONE && codec != CODEC_ZSTD {
        return Err(Error::UnknownCodec(codec));
    }
    let meta_len = u64::from(u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")));
    let stored_len = u64::from_le_bytes(buf[12..20].try_into().expect("8 bytes"));
    let raw_len = u64::from_le_bytes(buf[20..28].try_into().expect("8 bytes"));
    if meta_len > MAX_META {
        return Err(Error::Oversized {
            what: "metadata",
            size: meta_len,
            limit: MAX_META,
        });
    }
    if raw_len > limits.max_payload {
        return Err(Error::Oversized {
            what: "payload",
            size: raw_len,
            limit: limits.max_payload,
        });
    }
    if codec == CODEC_NONE && stored_len != raw_len {
        return Err(Error::Corrupted { what: kind.name() });
    }
    let need = (HEADER_LEN as u64)
        .saturating_add(meta_len)
        .saturating_add(stored_len);
    if have < need {
        return Err(Error::Truncated {
            what: kind.name(),
            need,
            have,
        });
    }
    if have > need {
        return Err(Error::TrailingBytes { extra: have - need });
    }
    let meta_end = HEADER_LEN + meta_len as usize;
    let mut h = blake3::Hasher::new();
    h.update(&buf[..28]);
    h.update(&buf[HEADER_LEN..]);
    if h.finalize().as_bytes() != &buf[28..HEADER_LEN] {
        return Err(Error::Corrupted { what: kind.name() });
    }
    let (meta, used) =
        bincode::serde::decode_from_slice::<M, _>(&buf[HEADER_LEN..meta_end], bincode_config())
            .map_err(|e| Error::Meta(e.to_string()))?;
    if used != meta_len as usize {
        return Err(Error::Meta(format!(
            "{} unread metadata bytes",
            meta_len as usize - used
        )));
    }
    let stored = buf.slice(meta_end..);
    let payload = if codec == CODEC_ZSTD {
        Bytes::from(decompress(&stored, raw_len)?)
    } else {
        stored
    };
    Ok((meta, payload))
}

/// At most this much of a claimed raw payload is allocated before decompression starts.
const PREALLOC_MAX: u64 = 64 << 20;

/// Decompresses a zstd payload that must yield exactly `raw_len` bytes. The header's claim
/// only bounds the output: beyond [`PREALLOC_MAX`] the buffer grows as bytes actually arrive,
/// so a small frame claiming a huge payload cannot make the reader allocate it up front.
fn decompress(stored: &[u8], raw_len: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let err = |e: std::io::Error| Error::Decompress(e.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(stored).map_err(err)?;
    let mut raw = Vec::with_capacity(raw_len.min(PREALLOC_MAX) as usize);
    (&mut decoder)
        .take(raw_len)
        .read_to_end(&mut raw)
        .map_err(err)?;
    if raw.len() as u64 != raw_len {
        return Err(Error::Decompress(format!(
            "expected {raw_len} bytes, got {}",
            raw.len()
        )));
    }
    // The stream must end here (this also reads the rest of the frame, checking it).
    if decoder.read(&mut [0u8; 1]).map_err(err)? != 0 {
        return Err(Error::Decompress(format!(
            "expected {raw_len} bytes, got more"
        )));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_stable() {
        let f = encode(Kind::Event, &7u32, b"abc", EncodeOptions::PLAIN);
        assert_eq!(&f[..4], b"SBWF");
        assert_eq!(f.len(), HEADER_LEN + 1 + 3);
        let (m, p): (u32, Bytes) = decode(Kind::Event, &Bytes::from(f), Limits::default()).unwrap();
        assert_eq!((m, &p[..]), (7, &b"abc"[..]));
    }

    #[test]
    fn compression_is_used_only_when_it_helps() {
        let data = vec![0u8; 100_000];
        let f = encode(Kind::Blob, &(), &data, EncodeOptions::NETWORK);
        assert!(f.len() < 1000);
        let (_, p): ((), Bytes) = decode(Kind::Blob, &Bytes::from(f), Limits::default()).unwrap();
        assert_eq!(p.len(), 100_000);
    }

    /// Pseudo-random bytes (xorshift): incompressible.
    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn compression_is_kept_only_when_it_saves_a_tenth_and_large_payloads_are_judged_by_a_sample() {
        let plain_size = |data: &[u8]| {
            let f = encode(Kind::Blob, &(), data, EncodeOptions::NETWORK);
            let stored = f.len() - HEADER_LEN;
            let (_, p): ((), Bytes) =
                decode(Kind::Blob, &Bytes::from(f), Limits::default()).unwrap();
            assert_eq!(&p[..], data, "round trip");
            stored == data.len()
        };
        // Small: 95% noise saves less than a tenth (stored plain); 50% noise more (compressed).
        let mostly_noise = [noise(95_000, 1), vec![0u8; 5_000]].concat();
        assert!(plain_size(&mostly_noise));
        let half_noise = [noise(50_000, 2), vec![0u8; 50_000]].concat();
        assert!(!plain_size(&half_noise));
        // Large: the sample decides. Noise throughout: plain.
        assert!(plain_size(&noise(6 << 20, 3)));
        // Zeros throughout: compressed.
        assert!(!plain_size(&vec![0u8; 6 << 20]));
        // Zeros everywhere the sample looks and noise elsewhere: the sample says compress, the
        // result then saves less than a tenth, so it is stored plain all the same.
        let mut tricky = noise(32 << 20, 4);
        tricky[..1 << 20].fill(0);
        for k in 1..=3 {
            let at = tricky.len() / 4 * k;
            tricky[at..at + (256 << 10)].fill(0);
        }
        assert!(plain_size(&tricky));
    }

    #[test]
    fn limits_are_checked_before_allocation() {
        let f = encode(Kind::Blob, &(), &vec![1u8; 1000], EncodeOptions::PLAIN);
        let e = decode::<()>(Kind::Blob, &Bytes::from(f), Limits { max_payload: 999 }).unwrap_err();
        assert!(matches!(
            e,
            Error::Oversized {
                what: "payload",
                ..
            }
        ));
    }
}
