//! Helpers shared by the fuzz targets: frame builders that get fuzz input past the checksum,
//! and a checker that runs a decoder and verifies that whatever it accepts round-trips.

use bytes::Bytes;
use starburst_serialization::frame::{self, HEADER_LEN, Kind, MAGIC};
use starburst_serialization::{
    BlobHash, BlobRef, EncodeOptions, FORMAT_VERSION, Limits, decode_blob, decode_client_beat,
    decode_event, decode_heartbeat, decode_inbox, decode_result, encode_blob, encode_client_beat, encode_event, encode_heartbeat,
    encode_inbox, encode_result,
};

/// Every frame kind, for targets that pick one from the input.
pub const KINDS: [Kind; 6] = [
    Kind::Inbox,
    Kind::Result,
    Kind::Event,
    Kind::Heartbeat,
    Kind::Blob,
    Kind::ClientBeat,
];

const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// Recomputes the checksum of a frame with a full header, in place.
pub fn reseal(f: &mut [u8]) {
    if f.len() < HEADER_LEN {
        return;
    }
    let mut h = blake3::Hasher::new();
    h.update(&f[..28]);
    h.update(&f[HEADER_LEN..]);
    let sum = *h.finalize().as_bytes();
    f[28..HEADER_LEN].copy_from_slice(&sum);
}

/// Decodes `data` with the decoder of `kind` as given, and again with its checksum recomputed.
pub fn check_raw(kind: Kind, data: &[u8]) {
    check(kind, &Bytes::copy_from_slice(data));
    if data.len() >= HEADER_LEN {
        let mut sealed = data.to_vec();
        reseal(&mut sealed);
        check(kind, &sealed.into());
    }
}

/// Builds a frame of `kind` whose header is consistent and whose checksum is valid around fuzz
/// input laid out as:
///
/// ```text
/// byte 0     mode: bits 0-1 payload mode (below); bits 2-6 a parameter; bit 7: for blobs,
///            make the metadata the payload's real hash (so decode_blob can succeed)
/// bytes 1-2  metadata length (LE), clamped to what is there
/// byte 3     a parameter
/// then       the metadata, then the payload
///
/// mode 0: uncompressed payload
/// mode 1: the payload bytes are the "compressed" stream as is (garbage to zstd, mostly), with
///         a raw length of byte3 << (bits 2-6)
/// mode 2: the payload compressed with zstd at level bits 2-4; if bit 5, the raw length is off
///         by byte 3 (as i8); if bit 6, byte (byte 3) of the stream is flipped
/// mode 3: the payload stored under codec byte = byte 0 (unknown codecs, mostly)
/// ```
pub fn build_frame(kind: Kind, data: &[u8]) -> Vec<u8> {
    let mut ctrl = [0u8; 4];
    let n = data.len().min(4);
    ctrl[..n].copy_from_slice(&data[..n]);
    let body = &data[n..];
    let [mode, m0, m1, param] = ctrl;
    let meta_len = usize::from(u16::from_le_bytes([m0, m1])).min(body.len());
    let (meta, raw) = body.split_at(meta_len);
    let hash;
    let meta = if kind == Kind::Blob && mode & 0x80 != 0 {
        hash = BlobHash::of(raw).0;
        &hash[..]
    } else {
        meta
    };
    let bits = (mode >> 2) & 0x1f;
    let (codec, stored, raw_len): (u8, Vec<u8>, u64) = match mode & 3 {
        0 => (CODEC_NONE, raw.to_vec(), raw.len() as u64),
        1 => (CODEC_ZSTD, raw.to_vec(), u64::from(param) << bits),
        2 => {
            let level = i32::from(bits & 7);
            let mut stored = zstd::bulk::compress(raw, level).expect("zstd compresses anything");
            let mut raw_len = raw.len() as u64;
            if bits & 0x08 != 0 {
                raw_len = raw_len.saturating_add_signed(i64::from(param as i8));
            }
            if bits & 0x10 != 0 && !stored.is_empty() {
                let i = usize::from(param) % stored.len();
                stored[i] ^= 0x5a;
            }
            (CODEC_ZSTD, stored, raw_len)
        }
        _ => (mode, raw.to_vec(), raw.len() as u64),
    };
    let mut f = Vec::with_capacity(HEADER_LEN + meta.len() + stored.len());
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    f.push(kind as u8);
    f.push(codec);
    f.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    f.extend_from_slice(&raw_len.to_le_bytes());
    f.extend_from_slice(&[0; 32]);
    f.extend_from_slice(meta);
    f.extend_from_slice(&stored);
    reseal(&mut f);
    f
}

const OPTIONS: [EncodeOptions; 3] = [
    EncodeOptions::PLAIN,
    EncodeOptions::NETWORK,
    EncodeOptions {
        compress_at: Some(0),
        level: 3,
    },
];

/// Runs the decoder of `kind` on `buf` (it must not panic). If it accepts the frame, the values
/// it returns must survive encoding (with every option) and decoding again unchanged.
pub fn check(kind: Kind, buf: &Bytes) {
    let limits = Limits::default();
    match kind {
        Kind::Inbox => {
            if let Ok((m, p)) = decode_inbox(buf, limits) {
                for o in OPTIONS {
                    let again = decode_inbox(&encode_inbox(&m, &p, o).into(), limits);
                    assert_eq!(again.as_ref(), Ok(&(m.clone(), p.clone())));
                }
            }
        }
        Kind::Result => {
            if let Ok((m, p)) = decode_result(buf, limits) {
                for o in OPTIONS {
                    let again = decode_result(&encode_result(&m, &p, o).into(), limits);
                    assert_eq!(again.as_ref(), Ok(&(m.clone(), p.clone())));
                }
            }
        }
        Kind::Event => {
            if let Ok((m, p)) = decode_event(buf, limits) {
                for o in OPTIONS {
                    let again = decode_event(&encode_event(&m, &p, o).into(), limits);
                    assert_eq!(again.as_ref(), Ok(&(m.clone(), p.clone())));
                }
            }
        }
        Kind::Heartbeat => {
            if let Ok(beat) = decode_heartbeat(buf) {
                let again = decode_heartbeat(&encode_heartbeat(&beat).into());
                assert_eq!(again.as_ref(), Ok(&beat));
            }
        }
        Kind::ClientBeat => {
            if let Ok(beat) = decode_client_beat(buf) {
                let again = decode_client_beat(&encode_client_beat(&beat).into());
                assert_eq!(again.as_ref(), Ok(&beat));
            }
        }
        Kind::Blob => {
            // The reference the frame claims to be, and the one its content really is.
            let claimed =
                frame::decode::<BlobHash>(Kind::Blob, buf, limits)
                    .ok()
                    .map(|(hash, p)| BlobRef {
                        hash,
                        size: p.len() as u64,
                    });
            let actual = frame::decode::<BlobHash>(Kind::Blob, buf, limits)
                .ok()
                .map(|(_, p)| BlobRef::of(&p));
            let refs = [claimed, actual, Some(BlobRef::of(b""))];
            for r in refs.into_iter().flatten() {
                if let Ok(content) = decode_blob(buf, &r, limits) {
                    assert_eq!(
                        BlobRef::of(&content),
                        r,
                        "accepted a blob that is not {r:?}"
                    );
                    for o in OPTIONS {
                        let again = decode_blob(&encode_blob(&content, o).into(), &r, limits);
                        assert_eq!(again.as_ref(), Ok(&content));
                    }
                }
            }
        }
    }
}
