//! COMPRESS=DEFLATE (RFC 4978): raw deflate (RFC 1951, no zlib header) in both directions once
//! the client asks for it, with a sync flush after each batch of responses (§4) so the client
//! can decode everything it was sent.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;

/// Largest piece of inflated input handed on at once.
const INFLATE_CHUNK: usize = 64 * 1024;

/// The two deflate streams of one connection.
pub struct Deflate {
    deflate: Compress,
    inflate: Decompress,
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::new()
    }
}

fn data_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("COMPRESS: {e}"))
}

fn consumed(before: u64, after: u64) -> usize {
    usize::try_from(after - before).unwrap_or(usize::MAX)
}

impl Deflate {
    pub fn new() -> Deflate {
        Deflate {
            // Level 1: responses are mostly text and already small; the CPU is better spent
            // elsewhere. The ratio is close to the default level's for mail.
            deflate: Compress::new(Compression::fast(), false),
            inflate: Decompress::new(false),
        }
    }

    /// Compresses `input` and flushes, so the output decodes to all of it.
    pub fn compress(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            out.reserve(16 * 1024);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(
                    input.get(pos..).unwrap_or_default(),
                    &mut out,
                    FlushCompress::Sync,
                )
                .map_err(data_error)?;
            pos += consumed(before, self.deflate.total_in());
            // The flush is complete once all input is taken and the output did not fill up.
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Inflates what the client sent, handing the result on in pieces of at most 64 KiB, so
    /// a small input that inflates hugely never sits in memory as one piece.
    pub fn decompress(&mut self, input: &[u8], mut sink: impl FnMut(&[u8])) -> io::Result<()> {
        let mut pos = 0;
        let mut buf = Vec::with_capacity(INFLATE_CHUNK);
        loop {
            buf.clear();
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(
                    input.get(pos..).unwrap_or_default(),
                    &mut buf,
                    FlushDecompress::None,
                )
                .map_err(data_error)?;
            let used = consumed(before, self.inflate.total_in());
            pos += used;
            if !buf.is_empty() {
                sink(&buf);
            }
            if status == Status::StreamEnd {
                return Err(data_error("the client ended its deflate stream"));
            }
            let full = buf.len() == buf.capacity();
            if (pos >= input.len() && !full) || (used == 0 && buf.is_empty()) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Deflate;

    #[test]
    fn round_trip_in_pieces() {
        let mut client = Deflate::new();
        let mut server = Deflate::new();
        let mut received = Vec::new();
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("a{i} NOOP\r\n").into_bytes())
            .collect();
        let mut sent = 0;
        for piece in text.chunks(7_000) {
            sent += piece.len();
            let wire = client.compress(piece).unwrap();
            // Split the compressed bytes too, as TCP would.
            for part in wire.chunks(1_000) {
                server
                    .decompress(part, |b| received.extend_from_slice(b))
                    .unwrap();
            }
            // After each flush everything sent so far has arrived.
            assert_eq!(received.len(), sent);
        }
        assert_eq!(received, text);
    }

    #[test]
    fn a_bomb_arrives_in_bounded_pieces() {
        let mut client = Deflate::new();
        let mut server = Deflate::new();
        let wire = client.compress(&vec![b'x'; 10 << 20]).unwrap();
        assert!(wire.len() < 100_000);
        let mut largest = 0;
        let mut total = 0;
        server
            .decompress(&wire, |b| {
                largest = largest.max(b.len());
                total += b.len();
            })
            .unwrap();
        assert_eq!(total, 10 << 20);
        assert!(largest <= super::INFLATE_CHUNK);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut server = Deflate::new();
        assert!(server.decompress(&[0xff; 64], |_| {}).is_err());
    }
}
