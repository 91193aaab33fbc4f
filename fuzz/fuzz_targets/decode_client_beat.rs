//! decode_client_beat on arbitrary bytes: as given, and with the checksum recomputed over them
//! (so the fuzzer also reaches the length and metadata checks behind the BLAKE3 check). Must
//! never panic; whatever it accepts must round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use starburst_serialization::frame::Kind;

fuzz_target!(|data: &[u8]| {
    starburst_fuzz::check_raw(Kind::ClientBeat, data);
});
