//! Property tests for every decoder of the wire format: round trips with both encode options,
//! truncation, single-bit and single-byte corruption, version and kind mismatches, trailing
//! bytes, payload limits, blob verification, and arbitrary input (which must never panic).

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use starburst_serialization::frame::{self, HEADER_LEN, Kind, MAGIC, MAX_META};
use starburst_serialization::{
    BlobHash, BlobRef, ClientBeat, EncodeOptions, Error, EventMeta, FORMAT_VERSION, Failure,
    FailureKind, Heartbeat, InboxMeta, Limits, Outcome, ResultMeta, TaskMeta, Timing,
    WorkerActivity, decode_blob, decode_client_beat, decode_event, decode_heartbeat, decode_inbox,
    decode_result, encode_blob, encode_client_beat, encode_event, encode_heartbeat, encode_inbox,
    encode_result,
};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9-]{0,24}",
        1 => "\\PC{0,12}",
    ]
}

fn blob_ref() -> impl Strategy<Value = BlobRef> {
    (any::<[u8; 32]>(), any::<u64>()).prop_map(|(h, size)| BlobRef {
        hash: BlobHash(h),
        size,
    })
}

fn task_meta() -> impl Strategy<Value = TaskMeta> {
    (
        text(),
        text(),
        any::<u32>(),
        proptest::option::of(text()),
        vec(blob_ref(), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |(session_id, task_id, attempt, label, blobs, submitted_unix_ms)| TaskMeta {
                session_id,
                task_id,
                attempt,
                label,
                blobs,
                submitted_unix_ms,
            },
        )
}

fn inbox_meta() -> impl Strategy<Value = InboxMeta> {
    prop_oneof![
        3 => task_meta().prop_map(InboxMeta::Run),
        1 => (text(), any::<u32>())
            .prop_map(|(task_id, attempt)| InboxMeta::Skip { task_id, attempt }),
        1 => text().prop_map(|reason| InboxMeta::Stop { reason }),
    ]
}

fn failure_kind() -> impl Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::EvaluatorDied),
        Just(FailureKind::BlobUnavailable),
        Just(FailureKind::Protocol),
        Just(FailureKind::Cancelled),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Value),
        (failure_kind(), text(), vec(text(), 0..4)).prop_map(|(kind, message, log_tail)| {
            Outcome::Failed(Failure {
                kind,
                message,
                log_tail,
            })
        }),
    ]
}

fn timing() -> impl Strategy<Value = Timing> {
    any::<(u64, u64, u64)>().prop_map(|(a, b, c)| Timing {
        received_unix_ms: a,
        started_unix_ms: b,
        finished_unix_ms: c,
    })
}

fn result_meta() -> impl Strategy<Value = ResultMeta> {
    (
        text(),
        text(),
        any::<u32>(),
        outcome(),
        timing(),
        any::<u32>(),
    )
        .prop_map(
            |(task_id, worker_id, attempt, outcome, timing, events)| ResultMeta {
                task_id,
                worker_id,
                attempt,
                outcome,
                timing,
                events,
            },
        )
}

fn event_meta() -> impl Strategy<Value = EventMeta> {
    (text(), any::<u32>()).prop_map(|(task_id, seq)| EventMeta { task_id, seq })
}

fn activity() -> impl Strategy<Value = WorkerActivity> {
    prop_oneof![
        Just(WorkerActivity::Starting),
        Just(WorkerActivity::Idle),
        (text(), any::<u32>(), any::<u32>()).prop_map(|(task_id, attempt, events)| {
            WorkerActivity::Busy {
                task_id,
                attempt,
                events,
            }
        }),
        Just(WorkerActivity::Exiting),
    ]
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (text(), any::<u64>(), any::<u64>(), activity(), any::<u64>()).prop_map(
        |(worker_id, seq, unix_ms, activity, tasks_done)| Heartbeat {
            worker_id,
            seq,
            unix_ms,
            activity,
            tasks_done,
        },
    )
}

fn client_beat() -> impl Strategy<Value = ClientBeat> {
    (
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<Option<u64>>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(session_id, seq, unix_ms, deadline_after_ms, closed, orphan_timeout_ms)| ClientBeat {
                session_id,
                seq,
                unix_ms,
                deadline_after_ms,
                closed,
                orphan_timeout_ms,
            },
        )
}

/// Metadata of an arbitrary serde type, for `frame::decode` used generically.
type Generic = (u64, String, Vec<u8>, Option<i64>, bool, char);

fn generic() -> impl Strategy<Value = Generic> {
    (
        any::<u64>(),
        text(),
        vec(any::<u8>(), 0..40),
        any::<Option<i64>>(),
        any::<bool>(),
        any::<char>(),
    )
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Inbox),
        Just(Kind::Result),
        Just(Kind::Event),
        Just(Kind::Heartbeat),
        Just(Kind::ClientBeat),
        Just(Kind::Blob),
    ]
}

/// A deterministic pseudo-random (incompressible) byte string, cheap to make in debug builds.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// NETWORK compresses from 64 KiB on.
const BIG: usize = 64 * 1024;

/// Payloads: small arbitrary ones, large compressible ones (which NETWORK compresses) and
/// large incompressible ones (which NETWORK tries to compress and then stores plain).
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..300),
        1 => (vec(any::<u8>(), 1..16), BIG..BIG + 40_000).prop_map(|(pattern, len)| {
            pattern.iter().copied().cycle().take(len).collect()
        }),
        1 => (any::<u64>(), BIG..BIG + 20_000).prop_map(|(seed, len)| noise(seed, len)),
    ]
}

fn small_payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..48)
}

// ---------------------------------------------------------------------------------------------
// One "case" per decoder, so every property runs against all of them
// ---------------------------------------------------------------------------------------------

/// The metadata of a frame, tagged with the decoder that reads it.
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Inbox(InboxMeta),
    Result(ResultMeta),
    Event(EventMeta),
    Heartbeat(Heartbeat),
    ClientBeat(ClientBeat),
    /// Metadata is the content hash; decoded with `decode_blob`.
    Blob,
    /// Decoded with `frame::decode` directly.
    Generic(Kind, Generic),
}

#[derive(Debug, Clone)]
struct Case {
    msg: Msg,
    /// Always empty for heartbeats (they carry no payload).
    payload: Vec<u8>,
}

impl Case {
    /// Heartbeats carry no payload (their decoders allow none).
    fn payloadless(&self) -> bool {
        matches!(self.msg, Msg::Heartbeat(_) | Msg::ClientBeat(_))
    }

    fn kind(&self) -> Kind {
        match &self.msg {
            Msg::Inbox(_) => Kind::Inbox,
            Msg::Result(_) => Kind::Result,
            Msg::Event(_) => Kind::Event,
            Msg::Heartbeat(_) => Kind::Heartbeat,
            Msg::ClientBeat(_) => Kind::ClientBeat,
            Msg::Blob => Kind::Blob,
            Msg::Generic(k, _) => *k,
        }
    }

    fn encode(&self, opts: EncodeOptions) -> Vec<u8> {
        let p = &self.payload[..];
        match &self.msg {
            Msg::Inbox(m) => encode_inbox(m, p, opts),
            Msg::Result(m) => encode_result(m, p, opts),
            Msg::Event(m) => encode_event(m, p, opts),
            Msg::Heartbeat(m) => {
                assert!(p.is_empty());
                encode_heartbeat(m)
            }
            Msg::ClientBeat(m) => {
                assert!(p.is_empty());
                encode_client_beat(m)
            }
            Msg::Blob => encode_blob(p, opts),
            Msg::Generic(k, m) => frame::encode(*k, m, p, opts),
        }
    }

    /// Decodes `buf` with this case's decoder.
    fn decode(&self, buf: &Bytes, limits: Limits) -> Result<(Msg, Bytes), Error> {
        Ok(match &self.msg {
            Msg::Inbox(_) => {
                let (m, p) = decode_inbox(buf, limits)?;
                (Msg::Inbox(m), p)
            }
            Msg::Result(_) => {
                let (m, p) = decode_result(buf, limits)?;
                (Msg::Result(m), p)
            }
            Msg::Event(_) => {
                let (m, p) = decode_event(buf, limits)?;
                (Msg::Event(m), p)
            }
            Msg::Heartbeat(_) => (Msg::Heartbeat(decode_heartbeat(buf)?), Bytes::new()),
            Msg::ClientBeat(_) => (Msg::ClientBeat(decode_client_beat(buf)?), Bytes::new()),
            Msg::Blob => {
                let p = decode_blob(buf, &BlobRef::of(&self.payload), limits)?;
                (Msg::Blob, p)
            }
            Msg::Generic(k, _) => {
                let (m, p) = frame::decode::<Generic>(*k, buf, limits)?;
                (Msg::Generic(*k, m), p)
            }
        })
    }
}

fn case_with(payload: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Case> {
    prop_oneof![
        (inbox_meta(), payload.clone()).prop_map(|(m, payload)| Case {
            msg: Msg::Inbox(m),
            payload
        }),
        (result_meta(), payload.clone()).prop_map(|(m, payload)| Case {
            msg: Msg::Result(m),
            payload
        }),
        (event_meta(), payload.clone()).prop_map(|(m, payload)| Case {
            msg: Msg::Event(m),
            payload
        }),
        heartbeat().prop_map(|m| Case {
            msg: Msg::Heartbeat(m),
            payload: Vec::new()
        }),
        client_beat().prop_map(|m| Case {
            msg: Msg::ClientBeat(m),
            payload: Vec::new()
        }),
        payload.clone().prop_map(|payload| Case {
            msg: Msg::Blob,
            payload
        }),
        (kind(), generic(), payload).prop_map(|(k, m, payload)| Case {
            msg: Msg::Generic(k, m),
            payload
        }),
    ]
}

fn any_case() -> impl Strategy<Value = Case> {
    case_with(payload().boxed())
}

fn small_case() -> impl Strategy<Value = Case> {
    case_with(small_payload().boxed())
}

fn opts() -> impl Strategy<Value = EncodeOptions> {
    prop_oneof![Just(EncodeOptions::PLAIN), Just(EncodeOptions::NETWORK)]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Inbox => "inbox",
        Kind::Result => "result",
        Kind::Event => "event",
        Kind::Heartbeat => "heartbeat",
        Kind::Blob => "blob",
        Kind::ClientBeat => "client beat",
    }
}

fn all_kinds() -> [Kind; 6] {
    [
        Kind::Inbox,
        Kind::Result,
        Kind::Event,
        Kind::Heartbeat,
        Kind::Blob,
        Kind::ClientBeat,
    ]
}

/// Recomputes the checksum of a (possibly edited) frame so that it passes the BLAKE3 check.
fn reseal(f: &mut [u8]) {
    let mut h = blake3::Hasher::new();
    h.update(&f[..28]);
    h.update(&f[HEADER_LEN..]);
    let sum = *h.finalize().as_bytes();
    f[28..HEADER_LEN].copy_from_slice(&sum);
}

/// Builds a frame around arbitrary metadata and stored bytes with a valid checksum.
fn raw_frame(kind: u8, codec: u8, meta: &[u8], stored: &[u8], raw_len: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + meta.len() + stored.len());
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    f.push(kind);
    f.push(codec);
    f.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    f.extend_from_slice(&raw_len.to_le_bytes());
    f.extend_from_slice(&[0; 32]);
    f.extend_from_slice(meta);
    f.extend_from_slice(stored);
    reseal(&mut f);
    f
}

fn codec_of(f: &[u8]) -> u8 {
    f[7]
}

fn meta_len(f: &[u8]) -> usize {
    u32::from_le_bytes(f[8..12].try_into().unwrap()) as usize
}

/// Whether `p` is a pattern of at most 16 bytes repeated.
fn is_periodic(p: &[u8]) -> bool {
    (1..=16).any(|k| p.len() > k && p[k..] == p[..p.len() - k])
}

/// Cut points for truncation: every length for small frames; for large ones every length
/// through the header and metadata, the last 64, and an even spread in between.
fn cut_points(len: usize) -> Vec<usize> {
    if len <= 4096 {
        return (0..len).collect();
    }
    let mut v: Vec<usize> = (0..HEADER_LEN + 512).collect();
    v.extend((1..=64).map(|k| len - k));
    let step = len / 97;
    v.extend((1..97).map(|k| k * step));
    v.sort_unstable();
    v.dedup();
    v.retain(|&c| c < len);
    v
}

/// Runs every decoder (and `frame::decode` for every kind) on `buf`; they must not panic.
/// Returns whether any of them accepted it.
fn decode_everything(buf: &Bytes, limits: Limits) -> bool {
    let any_ref = BlobRef::of(b"");
    let mut ok = false;
    ok |= decode_inbox(buf, limits).is_ok();
    ok |= decode_result(buf, limits).is_ok();
    ok |= decode_event(buf, limits).is_ok();
    ok |= decode_heartbeat(buf).is_ok();
    ok |= decode_client_beat(buf).is_ok();
    ok |= decode_blob(buf, &any_ref, limits).is_ok();
    for k in all_kinds() {
        ok |= frame::decode::<Generic>(k, buf, limits).is_ok();
        ok |= frame::decode::<()>(k, buf, limits).is_ok();
        ok |= frame::decode::<Vec<String>>(k, buf, limits).is_ok();
    }
    ok
}

/// What flipping `pos` may yield. The region tells: magic, version and kind bytes are checked
/// first and give their own errors; the checksum, metadata and payload give `Corrupted`; the
/// codec and length fields give a length or codec error or `Corrupted`.
fn check_flip(case: &Case, original: &[u8], pos: usize, err: &Error) {
    let what = kind_name(case.kind());
    let new = original[pos];
    match pos {
        0..4 => assert_eq!(err, &Error::BadMagic, "flip at {pos}"),
        4..6 => {
            let found = u16::from_le_bytes([original[4], original[5]]);
            assert_eq!(
                err,
                &Error::UnsupportedVersion {
                    found,
                    supported: FORMAT_VERSION
                },
                "flip at {pos}"
            );
        }
        6 => assert_eq!(
            err,
            &Error::WrongKind {
                expected: what,
                found: new
            },
            "flip at {pos}"
        ),
        7 => {
            if new > 1 {
                assert_eq!(err, &Error::UnknownCodec(new), "flip at {pos}");
            } else {
                assert_eq!(err, &Error::Corrupted { what }, "flip at {pos}");
            }
        }
        8..28 => assert!(
            matches!(
                err,
                Error::Oversized { .. }
                    | Error::Truncated { .. }
                    | Error::TrailingBytes { .. }
                    | Error::Corrupted { .. }
            ),
            "flip at {pos}: {err:?}"
        ),
        // Checksum, metadata and payload.
        _ => assert_eq!(err, &Error::Corrupted { what }, "flip at {pos}"),
    }
}

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(160))]

    /// (a) Every decoder returns exactly what was encoded, with either option, and NETWORK
    /// compresses exactly when it helps.
    #[test]
    fn round_trip(case in any_case(), opts in opts()) {
        let f = case.encode(opts);
        let len = case.payload.len();
        match codec_of(&f) {
            0 => prop_assert_eq!(f.len(), HEADER_LEN + meta_len(&f) + len),
            1 => {
                prop_assert_eq!(opts, EncodeOptions::NETWORK);
                prop_assert!(len >= BIG);
                prop_assert!(f.len() < HEADER_LEN + (1 << 20) + len);
            }
            c => prop_assert!(false, "unexpected codec {}", c),
        }
        if opts == EncodeOptions::PLAIN || len < BIG {
            prop_assert_eq!(codec_of(&f), 0);
        }
        // A large payload that is a short pattern repeated always shrinks.
        if opts == EncodeOptions::NETWORK && len >= BIG && is_periodic(&case.payload) {
            prop_assert_eq!(codec_of(&f), 1);
        }
        let buf = Bytes::from(f);
        let (msg, payload) = case.decode(&buf, Limits::default()).unwrap();
        prop_assert_eq!(&msg, &case.msg);
        prop_assert_eq!(&payload[..], &case.payload[..]);
        // Uncompressed payloads are zero-copy slices of the frame.
        if codec_of(&buf) == 0 && !payload.is_empty() {
            let range = buf.as_ptr_range();
            prop_assert!(range.contains(&payload.as_ptr()));
        }
        // Limits equal to the payload size are enough.
        if !case.payloadless() {
            let exact = Limits { max_payload: len as u64 };
            prop_assert!(case.decode(&buf, exact).is_ok());
        }
    }

    /// (b) Every proper prefix of a frame is `Truncated`, never `Ok`, never a panic.
    #[test]
    fn truncation_is_detected(case in any_case(), opts in opts()) {
        let f = Bytes::from(case.encode(opts));
        for cut in cut_points(f.len()) {
            let err = case.decode(&f.slice(..cut), Limits::default()).unwrap_err();
            let expected = if cut < HEADER_LEN {
                Error::Truncated { what: "header", need: HEADER_LEN as u64, have: cut as u64 }
            } else {
                Error::Truncated { what: kind_name(case.kind()), need: f.len() as u64, have: cut as u64 }
            };
            prop_assert_eq!(err, expected, "cut at {} of {}", cut, f.len());
        }
    }

    /// (c) Any single flipped bit anywhere is an error, of the kind its region implies.
    #[test]
    fn any_flipped_bit_is_an_error(case in any_case(), opts in opts(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut f = case.encode(opts);
        let pos = pos.index(f.len());
        f[pos] ^= 1 << bit;
        let err = case.decode(&Bytes::from(f.clone()), Limits::default()).unwrap_err();
        check_flip(&case, &f, pos, &err);
    }

    /// (c) Any single replaced byte anywhere is an error; in the checksum, metadata or payload
    /// it is `Corrupted`.
    #[test]
    fn any_replaced_byte_is_an_error(case in any_case(), opts in opts(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut f = case.encode(opts);
        let pos = pos.index(f.len());
        f[pos] ^= x;
        let err = case.decode(&Bytes::from(f.clone()), Limits::default()).unwrap_err();
        check_flip(&case, &f, pos, &err);
    }

    /// (c) Exhaustively: every bit of small frames, flipped one at a time.
    #[test]
    fn every_bit_of_small_frames(case in small_case()) {
        let f = case.encode(EncodeOptions::PLAIN);
        for pos in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[pos] ^= 1 << bit;
                match case.decode(&Bytes::from(g.clone()), Limits::default()) {
                    Ok(_) => prop_assert!(false, "flip of bit {} at {} accepted", bit, pos),
                    Err(err) => check_flip(&case, &g, pos, &err),
                }
            }
        }
    }

    /// (c) A flip in the metadata or payload is `Corrupted` even in a compressed frame.
    #[test]
    fn body_flip_in_compressed_frame_is_corrupted(
        case in case_with((vec(any::<u8>(), 1..8), BIG..BIG + 5000)
            .prop_map(|(p, len)| p.iter().copied().cycle().take(len).collect::<Vec<u8>>()).boxed()),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut f = case.encode(EncodeOptions::NETWORK);
        if !case.payloadless() {
            prop_assert_eq!(codec_of(&f), 1);
        }
        let pos = HEADER_LEN + pos.index(f.len() - HEADER_LEN);
        f[pos] ^= 1 << bit;
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::Corrupted { what: kind_name(case.kind()) });
    }

    /// (d) A valid frame of another format version is `UnsupportedVersion`, whatever else.
    #[test]
    fn other_version_is_unsupported(case in small_case(), opts in opts(), version in any::<u16>()) {
        prop_assume!(version != FORMAT_VERSION);
        let mut f = case.encode(opts);
        f[4..6].copy_from_slice(&version.to_le_bytes());
        reseal(&mut f);
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }

    /// (d) A valid frame of another kind is `WrongKind` for every other decoder.
    #[test]
    fn other_kind_is_wrong_kind(case in small_case(), opts in opts(), other in small_case()) {
        prop_assume!(case.kind() != other.kind());
        let f = Bytes::from(other.encode(opts));
        let err = case.decode(&f, Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::WrongKind { expected: kind_name(case.kind()), found: other.kind() as u8 });
    }

    /// (d) Unknown kind bytes are `WrongKind` too, even with a valid checksum. Kinds 1..=6 are
    /// known (`Kind`); a new kind moves the lower bound.
    #[test]
    fn unknown_kind_byte_is_wrong_kind(case in small_case(), k in prop_oneof![Just(0u8), 7u8..=255]) {
        let mut f = case.encode(EncodeOptions::PLAIN);
        f[6] = k;
        reseal(&mut f);
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::WrongKind { expected: kind_name(case.kind()), found: k });
    }

    /// Unknown codec bytes are `UnknownCodec`, even with a valid checksum.
    #[test]
    fn unknown_codec_is_rejected(case in small_case(), c in 2u8..=255) {
        let mut f = case.encode(EncodeOptions::PLAIN);
        f[7] = c;
        reseal(&mut f);
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::UnknownCodec(c));
    }

    /// (e) Bytes after the frame are `TrailingBytes`.
    #[test]
    fn trailing_bytes_are_rejected(case in any_case(), opts in opts(), extra in vec(any::<u8>(), 1..64)) {
        let mut f = case.encode(opts);
        f.extend_from_slice(&extra);
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::TrailingBytes { extra: extra.len() as u64 });
    }

    /// (f) A payload above `Limits::max_payload` is `Oversized`.
    #[test]
    fn oversized_payload_is_rejected(case in any_case(), opts in opts(), below in any::<prop::sample::Index>()) {
        prop_assume!(!case.payload.is_empty());
        let limit = below.index(case.payload.len()) as u64;
        let f = Bytes::from(case.encode(opts));
        let err = case.decode(&f, Limits { max_payload: limit }).unwrap_err();
        prop_assert_eq!(err, Error::Oversized { what: "payload", size: case.payload.len() as u64, limit });
    }

    /// (f) The limit is checked from the header alone, before the frame's length, checksum or
    /// payload are looked at: a 60-byte header claiming a huge payload is `Oversized` (had
    /// the decoder allocated first, this would abort the process).
    #[test]
    fn oversized_is_decided_from_the_header(case in small_case(), codec in 0u8..2, claim in (1u64 << 40)..u64::MAX) {
        let mut f = case.encode(EncodeOptions::PLAIN);
        f[7] = codec;
        f[12..20].copy_from_slice(&claim.to_le_bytes());
        f[20..28].copy_from_slice(&claim.to_le_bytes());
        f.truncate(HEADER_LEN);
        let limits = Limits { max_payload: 1 << 40 };
        let err = case.decode(&Bytes::from(f), limits).unwrap_err();
        if case.payloadless() {
            prop_assert_eq!(err, Error::Oversized { what: "payload", size: claim, limit: 0 });
        } else {
            prop_assert_eq!(err, Error::Oversized { what: "payload", size: claim, limit: 1 << 40 });
        }
    }

    /// Metadata beyond `MAX_META` is `Oversized` from the header alone.
    #[test]
    fn oversized_metadata_is_rejected(case in small_case(), meta_len in (MAX_META as u32 + 1)..=u32::MAX) {
        let mut f = case.encode(EncodeOptions::PLAIN);
        f[8..12].copy_from_slice(&meta_len.to_le_bytes());
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert_eq!(err, Error::Oversized { what: "metadata", size: u64::from(meta_len), limit: MAX_META });
    }

    /// (g) `decode_blob` rejects a blob whose hash or size differs from the reference.
    #[test]
    fn blob_must_match_its_reference(content in payload(), opts in opts(), other in blob_ref(), flip in any::<prop::sample::Index>()) {
        let f = Bytes::from(encode_blob(&content, opts));
        let good = BlobRef::of(&content);
        prop_assert_eq!(&decode_blob(&f, &good, Limits::default()).unwrap()[..], &content[..]);

        // Another hash, same size.
        let mut wrong_hash = good;
        wrong_hash.hash.0[flip.index(32)] ^= 0x01;
        prop_assert_eq!(decode_blob(&f, &wrong_hash, Limits::default()).unwrap_err(), Error::Corrupted { what: "blob" });
        // Same hash, another size.
        for size in [good.size.wrapping_add(1), good.size.wrapping_sub(1), other.size] {
            if size != good.size {
                let r = BlobRef { hash: good.hash, size };
                prop_assert_eq!(decode_blob(&f, &r, Limits::default()).unwrap_err(), Error::Corrupted { what: "blob" });
            }
        }
        // An arbitrary other reference.
        if other != good {
            prop_assert_eq!(decode_blob(&f, &other, Limits::default()).unwrap_err(), Error::Corrupted { what: "blob" });
        }
    }

    /// (g) A well-formed blob frame whose metadata names the expected hash but whose content is
    /// another blob's (of the same size) is rejected.
    #[test]
    fn blob_content_is_verified_not_just_its_label(a in vec(any::<u8>(), 1..200), pos in any::<prop::sample::Index>(), opts in opts()) {
        let mut b = a.clone();
        b[pos.index(a.len())] ^= 0x80;
        let lying = Bytes::from(frame::encode(Kind::Blob, &BlobHash::of(&a), &b, opts));
        prop_assert_eq!(decode_blob(&lying, &BlobRef::of(&a), Limits::default()), Err(Error::Corrupted { what: "blob" }));
        // And one whose metadata names another hash than its content's and the reference's.
        let mislabelled = Bytes::from(frame::encode(Kind::Blob, &BlobHash::of(&b), &a, opts));
        prop_assert_eq!(decode_blob(&mislabelled, &BlobRef::of(&a), Limits::default()), Err(Error::Corrupted { what: "blob" }));
    }

    /// (h) Arbitrary bytes never panic any decoder.
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        decode_everything(&Bytes::from(bytes), Limits::default());
    }

    /// (h) Random bytes after a valid magic and version (so decoding gets past the first checks)
    /// never panic, and never decode.
    #[test]
    fn random_bytes_after_magic_never_panic(k in 0u8..7, rest in vec(any::<u8>(), 0..400)) {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        f.push(k);
        f.extend_from_slice(&rest);
        prop_assert!(!decode_everything(&Bytes::from(f), Limits::default()));
    }

    /// (h) Arbitrary metadata and payload bytes inside a well-formed, correctly checksummed
    /// frame (what the `frame_meta` fuzz target does): the bincode and zstd paths get garbage
    /// and must return errors, never panic.
    #[test]
    fn garbage_inside_a_valid_frame_never_panics(
        k in 1u8..6,
        codec in 0u8..2,
        meta in vec(any::<u8>(), 0..200),
        stored in vec(any::<u8>(), 0..200),
        raw_delta in -4i64..1000,
    ) {
        let raw_len = if codec == 0 { stored.len() as u64 } else { (stored.len() as i64 + raw_delta).max(0) as u64 };
        let f = Bytes::from(raw_frame(k, codec, &meta, &stored, raw_len));
        decode_everything(&f, Limits::default());
    }

    /// A real zstd stream whose header claims another raw length is a `Decompress` error.
    #[test]
    fn wrong_raw_length_of_compressed_payload(case in case_with(Just(vec![7u8; BIG]).boxed()), raw_len in 0u64..(4 * BIG as u64)) {
        prop_assume!(raw_len != BIG as u64 && !case.payloadless());
        let mut f = case.encode(EncodeOptions::NETWORK);
        prop_assert_eq!(codec_of(&f), 1);
        f[20..28].copy_from_slice(&raw_len.to_le_bytes());
        reseal(&mut f);
        let err = case.decode(&Bytes::from(f), Limits::default()).unwrap_err();
        prop_assert!(matches!(err, Error::Decompress(_)), "{:?}", err);
    }

    /// Metadata followed by extra bytes inside its section is a `Meta` error.
    #[test]
    fn unread_metadata_is_rejected(m in event_meta(), extra in vec(any::<u8>(), 1..16), payload in small_payload()) {
        let f = encode_event(&m, &payload, EncodeOptions::PLAIN);
        let mut meta = f[HEADER_LEN..HEADER_LEN + meta_len(&f)].to_vec();
        meta.extend_from_slice(&extra);
        let g = raw_frame(Kind::Event as u8, 0, &meta, &payload, payload.len() as u64);
        let err = decode_event(&Bytes::from(g), Limits::default()).unwrap_err();
        prop_assert!(matches!(err, Error::Meta(_)), "{:?}", err);
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic edge cases
// ---------------------------------------------------------------------------------------------

#[test]
fn heartbeat_with_a_payload_is_oversized() {
    let beat = Heartbeat {
        worker_id: "w".into(),
        seq: 1,
        unix_ms: 2,
        activity: WorkerActivity::Idle,
        tasks_done: 3,
    };
    let f = frame::encode(Kind::Heartbeat, &beat, b"x", EncodeOptions::PLAIN);
    assert_eq!(
        decode_heartbeat(&Bytes::from(f)),
        Err(Error::Oversized {
            what: "payload",
            size: 1,
            limit: 0
        })
    );
}

#[test]
fn empty_and_tiny_inputs() {
    for n in 0..HEADER_LEN {
        let zeros = Bytes::from(vec![0u8; n]);
        let want = if n >= 4 {
            Error::BadMagic
        } else {
            Error::Truncated {
                what: "header",
                need: HEADER_LEN as u64,
                have: n as u64,
            }
        };
        assert_eq!(decode_heartbeat(&zeros).unwrap_err(), want);
        assert_eq!(decode_inbox(&zeros, Limits::default()).unwrap_err(), want);
    }
}

/// A compressed frame whose zstd stream is garbage: `Decompress`, not a panic.
#[test]
fn garbage_zstd_stream_is_a_decompress_error() {
    let meta = bincode::serde::encode_to_vec(
        EventMeta {
            task_id: "t".into(),
            seq: 0,
        },
        bincode::config::standard(),
    )
    .unwrap();
    for stored in [
        &b""[..],
        b"\x28\xb5\x2f\xfd",
        b"garbage garbage",
        &[0xff; 64],
    ] {
        for raw_len in [0u64, 1, 100, 1 << 20] {
            let f = Bytes::from(raw_frame(Kind::Event as u8, 1, &meta, stored, raw_len));
            match decode_event(&f, Limits::default()) {
                Err(Error::Decompress(_)) => {}
                // An empty stream that claims no bytes is a (degenerate) empty payload.
                Ok((_, p)) => assert!(stored.is_empty() && raw_len == 0 && p.is_empty()),
                Err(e) => panic!("stored {stored:?}, raw {raw_len}: {e:?}"),
            }
        }
    }
}
