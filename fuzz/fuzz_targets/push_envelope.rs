//! Fuzzes `parse_envelope`: whatever bytes reach a worker's push endpoint. It must answer
//! `Ok` or `Err`, never panic, and never hand on more data than a message may carry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use saga::wire::message::MAX_MESSAGE_BYTES;
use saga::wire::envelope::parse_envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = parse_envelope(data) {
        assert!(push.data.len() <= MAX_MESSAGE_BYTES);
    }
});
