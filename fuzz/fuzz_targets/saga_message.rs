//! Fuzzes `SagaMessage::parse`: whatever bytes any producer publishes to a saga topic.
//! It must answer `Ok` or `Err`, never panic, and a message it accepts must read back the
//! same once a step re-serialises it, since that is what the next step receives.

#![no_main]

use libfuzzer_sys::fuzz_target;
use saga::wire::message::SagaMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = SagaMessage::parse(data) {
        let again = SagaMessage::parse(&msg.to_bytes());
        assert_eq!(again.as_ref(), Ok(&msg), "{}", msg.to_json());
    }
});
