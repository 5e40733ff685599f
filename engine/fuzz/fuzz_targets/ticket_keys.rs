//! The ticket-key file parser (`tls::tickets::parse`) and the ticket
//! decryption every resuming client reaches, on arbitrary input.
//!
//! Input: key-file text, a NUL byte, then a "ticket". Checks: no panic;
//! a parse error never repeats a line's content (key material stays out of
//! logs); with parsed keys, an arbitrary ticket never panics `decrypt_at`,
//! sealing then opening round-trips, and a flipped byte is rejected.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::time::Duration;
use uringtls::__private::tickets::{parse, TicketKeys};

fuzz_target!(|data: &[u8]| {
    let (text, ticket) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let keys = match parse(Path::new("fuzz.keys"), text) {
        Ok(keys) => keys,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            for line in text.lines().map(str::trim) {
                let secret_like = line.len() >= 12 && line.bytes().all(|b| b.is_ascii_hexdigit());
                assert!(
                    !(secret_like && msg.contains(line)),
                    "error repeats a key line: {msg}"
                );
            }
            return;
        }
    };
    assert!(!keys.is_empty(), "Ok with no keys");
    let now = 1_700_000_000;
    let set = TicketKeys::from_keys(keys, Duration::from_secs(3600));
    let _ = set.decrypt_at(now, ticket);
    let sealed = set.encrypt_at(now, ticket).expect("seal");
    assert_eq!(set.decrypt_at(now, &sealed).as_deref(), Some(ticket));
    let mut bad = sealed.clone();
    let i = ticket.len() % bad.len();
    bad[i] ^= 0x01;
    assert_eq!(set.decrypt_at(now, &bad), None, "tampered ticket accepted");
});
