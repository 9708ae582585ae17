//! Fuzzes `Order::parse_request`: whatever bytes a client POSTs to the frontend's `/order`.
//! It must answer `Ok` or `Err`, never panic, and what it accepts must obey the contract.

#![no_main]

use libfuzzer_sys::fuzz_target;
use saga::domain::{MAX_NAME_CHARS, MAX_QUANTITY, Order};
use saga::wire::message::RESERVED_FIELDS;

fuzz_target!(|data: &[u8]| {
    match Order::parse_request(data) {
        Ok((order, extra)) => {
            assert!((1..=MAX_QUANTITY).contains(&order.quantity.get()));
            for name in [order.user.as_str(), order.item.as_str()] {
                // Names become Firestore document ids.
                assert!(!name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS);
                assert!(!name.contains('/') && name != "." && name != "..");
                assert!(!(name.starts_with("__") && name.ends_with("__")));
            }
            for key in RESERVED_FIELDS.iter().chain(&["item", "quantity", "user"]) {
                assert!(!extra.contains_key(*key), "{key} kept as an extra field");
            }
        }
        // A refusal is shown to the client: it must say what is wrong.
        Err(e) => assert!(e.field().is_none_or(|f| e.to_string().contains(f))),
    }
});
