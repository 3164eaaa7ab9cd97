//! The 7-bit downgrade of any bytes: no panic; octets above 127 or NUL survive only on lines
//! kept from the input (header fields, which are not converted); a body under a plain header
//! comes out entirely as 7bit data; and converting the result again changes nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_queue::downgrade::to_seven_bit;

fn is_unsafe(b: u8) -> bool {
    b == 0 || b > 127
}

fn check_unsafe_lines_are_kept(input: &[u8], out: &[u8]) {
    for line in out.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().copied().any(is_unsafe) {
            assert!(
                input.windows(line.len()).any(|w| w == line),
                "an unsafe line not from the input: {:?}",
                line.escape_ascii().to_string()
            );
        }
    }
}

/// RFC 2045 §2.7: no 8-bit octets, no NUL, CR and LF only as CRLF, lines of at most 998.
fn check_seven_bit_data(out: &[u8]) {
    assert!(!out.iter().copied().any(is_unsafe));
    for line in out.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a line of {} octets", line.len());
    }
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "a lone LF"),
            b'\r' => assert!(out.get(i + 1) == Some(&b'\n'), "a lone CR"),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let message = if mode & 1 == 0 {
        input.to_vec()
    } else {
        [
            &b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"[..],
            input,
        ]
        .concat()
    };
    let Some(out) = to_seven_bit(&message) else {
        return;
    };
    check_unsafe_lines_are_kept(&message, &out);
    if mode & 1 == 1 {
        check_seven_bit_data(&out);
    }
    assert_eq!(to_seven_bit(&out), None, "converting twice");
});
