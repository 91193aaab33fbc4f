//! Builds a well-formed, correctly checksummed frame around the fuzz input (see
//! `starburst_fuzz::build_frame`), so that every input gets past the magic, version, length and
//! BLAKE3 checks and exercises the bincode metadata decoding of each envelope type and the
//! zstd decompression path. The first byte chooses the decoder. Must never panic; whatever is
//! accepted must round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = starburst_fuzz::KINDS[usize::from(selector) % starburst_fuzz::KINDS.len()];
    let frame = starburst_fuzz::build_frame(kind, rest);
    starburst_fuzz::check(kind, &frame.into());
});
