//! Arbitrary mailstead.conf text: errors and warnings, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_core::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::from_text(text, Path::new("fuzz.conf"), Path::new("/data"), &|_| None);
});
