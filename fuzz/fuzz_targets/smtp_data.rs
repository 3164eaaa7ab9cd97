//! DATA decoding in arbitrary pieces: the same result however the input is split, only CRLF
//! line ends out, and the end found only at `<CRLF>.<CRLF>`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_smtp::data::{ChunkNormalizer, DataDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let mut whole = DataDecoder::new();
    let mut out_whole = Vec::new();
    let used_whole = whole.feed(input, &mut out_whole);
    let cut = usize::from(split).min(input.len());
    let mut parts = DataDecoder::new();
    let mut out_parts = Vec::new();
    let mut used = parts.feed(&input[..cut], &mut out_parts);
    if !parts.is_done() {
        used += parts.feed(&input[cut..], &mut out_parts);
    }
    assert_eq!(out_whole, out_parts);
    assert_eq!(used_whole, used);
    assert_eq!(whole.is_done(), parts.is_done());
    if whole.is_done() {
        let consumed = &input[..used_whole];
        assert!(consumed == b".\r\n" || consumed.ends_with(b"\r\n.\r\n"));
    }
    let mut n = ChunkNormalizer::default();
    let mut out = Vec::new();
    n.feed(&input[..cut], &mut out);
    n.feed(&input[cut..], &mut out);
    n.finish(&mut out);
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r');
        }
    }
});
