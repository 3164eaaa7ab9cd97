//! Short unique ids for transactions and queue entries: time and randomness in base 32, like a
//! Postfix queue id, sortable by time.

/// A 13-character id.
pub fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZb";
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut n = (micros << 12) ^ (std::process::id() as u64 & 0x0f) << 8 ^ u64::from(random_u8());
    let mut out = [0u8; 13];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn random_u8() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    // A counter is enough to tell apart ids made within one microsecond.
    static COUNTER: AtomicU8 = AtomicU8::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_and_sized() {
        let ids: std::collections::HashSet<String> = (0..200).map(|_| super::new_id()).collect();
        assert_eq!(ids.len(), 200);
        assert!(ids.iter().all(|i| i.len() == 13));
    }
}
