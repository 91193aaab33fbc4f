//! The decoder's allocations are bounded by the bytes it actually produces, not by the sizes a
//! frame's header claims: a small frame claiming a huge (but within-limits) payload must not
//! make the reader allocate that much before finding out the claim is false.
//!
//! A counting global allocator records the largest single allocation made by each thread.
//!
//! Regression: `frame_meta` fuzzing found that a 6-byte fuzz input (a 92-byte blob frame with
//! an empty zstd payload claiming 4 GiB) made the decoder allocate 4 GiB up front (it called
//! `zstd::bulk::decompress` with the claimed size as capacity); on a host that cannot
//! overcommit that aborts the process.

// A global allocator is an `unsafe impl`; it only counts and delegates to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use starburst_serialization::frame::{self, HEADER_LEN, Kind, MAGIC};
use starburst_serialization::{
    BlobHash, BlobRef, EncodeOptions, Error, EventMeta, FORMAT_VERSION, Limits, decode_blob,
    decode_event,
};

struct Counting;

thread_local! {
    /// The largest single allocation this thread made since the last reset. Const-initialised
    /// and without a destructor, so the allocator may use it without allocating.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method delegates to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns the largest single allocation it made.
fn largest_allocation_of(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    f();
    LARGEST.with(Cell::get)
}

/// A frame with a valid checksum around `meta` and a zstd `stored` payload claiming `raw_len`.
fn zstd_frame(kind: Kind, meta: &[u8], stored: &[u8], raw_len: u64) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    f.push(kind as u8);
    f.push(1);
    f.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    f.extend_from_slice(&raw_len.to_le_bytes());
    let mut h = blake3::Hasher::new();
    h.update(&f[..28]);
    h.update(meta);
    h.update(stored);
    f.extend_from_slice(h.finalize().as_bytes());
    f.extend_from_slice(meta);
    f.extend_from_slice(stored);
    assert_eq!(f.len(), HEADER_LEN + meta.len() + stored.len());
    f
}

const MIB: usize = 1 << 20;
/// What the decoder may allocate up front on the strength of a header's claim alone.
const BUDGET: usize = 80 * MIB;

#[test]
fn claimed_sizes_do_not_drive_allocation() {
    let meta = bincode::serde::encode_to_vec(
        EventMeta {
            task_id: "t".into(),
            seq: 0,
        },
        bincode::config::standard(),
    )
    .unwrap();
    let default_limit = Limits::default().max_payload;

    // 1. Garbage "compressed" bytes claiming a payload just under the default limit (16 GiB).
    let f = Bytes::from(zstd_frame(
        Kind::Event,
        &meta,
        b"not zstd at all",
        default_limit,
    ));
    let mut result = None;
    let largest = largest_allocation_of(|| result = Some(decode_event(&f, Limits::default())));
    assert!(
        matches!(result, Some(Err(Error::Decompress(_)))),
        "{result:?}"
    );
    assert!(largest < BUDGET, "allocated {largest} bytes for garbage");

    // 2. A real (tiny) zstd stream of 1 KiB claiming 16 GiB.
    let stored = zstd::bulk::compress(&[5u8; 1024], 1).unwrap();
    let f = Bytes::from(zstd_frame(Kind::Event, &meta, &stored, default_limit));
    let mut result = None;
    let largest = largest_allocation_of(|| result = Some(decode_event(&f, Limits::default())));
    assert!(
        matches!(result, Some(Err(Error::Decompress(_)))),
        "{result:?}"
    );
    assert!(
        largest < BUDGET,
        "allocated {largest} bytes for a 1 KiB stream"
    );

    // 3. The same through decode_blob (metadata: a blob hash).
    let hash_meta =
        bincode::serde::encode_to_vec(BlobHash::of(b"x"), bincode::config::standard()).unwrap();
    let f = Bytes::from(zstd_frame(Kind::Blob, &hash_meta, &stored, default_limit));
    let r = BlobRef::of(b"x");
    let mut result = None;
    let largest = largest_allocation_of(|| result = Some(decode_blob(&f, &r, Limits::default())));
    assert!(
        matches!(result, Some(Err(Error::Decompress(_)))),
        "{result:?}"
    );
    assert!(
        largest < BUDGET,
        "allocated {largest} bytes for a 1 KiB stream"
    );

    // 4. The fuzzer's reproducer: an empty stream claiming 0xfe << 24 bytes, through decode_blob
    // and every other decoder.
    let f = Bytes::from(zstd_frame(Kind::Blob, &hash_meta, b"", 0xfe << 24));
    let mut result = None;
    let largest = largest_allocation_of(|| result = Some(decode_blob(&f, &r, Limits::default())));
    assert!(
        matches!(result, Some(Err(Error::Decompress(_)))),
        "{result:?}"
    );
    assert!(
        largest < BUDGET,
        "allocated {largest} bytes for an empty stream"
    );

    // 5. An honest compressed frame still decodes, without allocating much beyond its size.
    let payload = vec![3u8; 4 * MIB];
    let f = Bytes::from(frame::encode(
        Kind::Event,
        &EventMeta {
            task_id: "t".into(),
            seq: 1,
        },
        &payload,
        EncodeOptions::NETWORK,
    ));
    assert_eq!(f[7], 1, "compressed");
    let mut result = None;
    let largest = largest_allocation_of(|| result = Some(decode_event(&f, Limits::default())));
    let (m, p) = result.unwrap().unwrap();
    assert_eq!((m.seq, &p[..]), (1, &payload[..]));
    assert!(
        largest <= 2 * payload.len() + MIB,
        "allocated {largest} bytes for {}",
        payload.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever a compressed frame's header claims (within the limit) and whatever its stream
    /// holds, decoding allocates at most `BUDGET` beyond what the stream really produces.
    #[test]
    fn no_decoder_allocates_what_a_header_merely_claims(
        stored in prop_oneof![
            vec(any::<u8>(), 0..64),
            vec(any::<u8>(), 0..2048).prop_map(|raw| zstd::bulk::compress(&raw, 1).unwrap()),
        ],
        raw_len in prop_oneof![0u64..(1 << 20), (1u64 << 20)..=(16 << 30)],
        k in 0usize..5,
    ) {
        let kind = [Kind::Inbox, Kind::Result, Kind::Event, Kind::Heartbeat, Kind::Blob][k];
        // Metadata that decodes for the kind, so decoding reaches the payload.
        let meta = match kind {
            Kind::Blob => bincode::serde::encode_to_vec(
                BlobHash::of(b""),
                bincode::config::standard(),
            ),
            _ => bincode::serde::encode_to_vec(
                EventMeta { task_id: "t".into(), seq: 0 },
                bincode::config::standard(),
            ),
        }
        .unwrap();
        let f = Bytes::from(zstd_frame(kind, &meta, &stored, raw_len));
        let largest = largest_allocation_of(|| {
            let _ = match kind {
                Kind::Blob => decode_blob(&f, &BlobRef::of(b""), Limits::default()).map(drop),
                _ => frame::decode::<EventMeta>(kind, &f, Limits::default()).map(drop),
            };
        });
        prop_assert!(largest < BUDGET, "allocated {} bytes", largest);
    }
}
