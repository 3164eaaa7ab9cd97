//! Address parsing: never a panic, and a parsed address parses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_core::address::Address;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = Address::parse(text) {
        assert_eq!(Address::parse(&a.to_string()), Ok(a.clone()));
        let _ = a.without_detail();
    }
});
