//! The summary cached for every stored message: any bytes, offsets always inside the message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_store::summary::{Part, summarize};

fn check(p: &Part, len: u64) {
    assert!(p.header_start <= p.body_start && p.body_start <= p.body_end && p.body_end <= len);
    for c in &p.parts {
        check(c, len);
    }
    if let Some(n) = &p.message
        && !n.decoded
    {
        check(&n.body, len);
    }
}

fuzz_target!(|data: &[u8]| {
    let s = summarize(data);
    check(&s.body, data.len() as u64);
});
