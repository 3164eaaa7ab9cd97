//! Any bytes as a Sieve script get an answer, never a panic; any text quoted into a generated
//! vacation script compiles.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_sieve::generate::{Vacation, vacation};

fuzz_target!(|data: &[u8]| {
    let _ = mailstead_sieve::compile(data);
    let text = String::from_utf8_lossy(data);
    let (subject, message) = text.split_once('\n').unwrap_or((&text, ""));
    let script = vacation(&Vacation {
        subject: subject.to_string(),
        message: message.to_string(),
        days: 1,
        from: None,
        until: None,
    });
    assert!(mailstead_sieve::compile(script.as_bytes()).is_ok(), "{script}");
});
