//! Bytes in and out of a connection: command lines with a length limit, DATA through the
//! decoder, BDAT chunks by count, and replies batched as PIPELINING allows (RFC 2920 §3.1:
//! replies may wait until the server would otherwise block reading).

use crate::data::{ChunkNormalizer, DataDecoder};
use crate::delivery::MessageSink;
use crate::reply::Reply;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

const READ_SIZE: usize = 64 * 1024;

/// What reading a command line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Complete(Vec<u8>),
    /// The line was longer than the limit; its bytes were thrown away up to its end.
    TooLong,
    Eof,
    TimedOut,
}

#[derive(Default)]
pub struct Wire {
    input: Vec<u8>,
    start: usize,
    output: Vec<u8>,
}

impl Wire {
    pub fn reply(&mut self, r: &Reply) {
        self.output.extend_from_slice(r.to_wire().as_bytes());
    }

    pub async fn flush<S: AsyncWrite + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        if !self.output.is_empty() {
            s.write_all(&self.output).await?;
            s.flush().await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Bytes received and not yet used.
    pub fn buffered(&self) -> &[u8] {
        &self.input[self.start..]
    }

    /// Drops buffered input (after STARTTLS: it arrived in clear text).
    pub fn discard_input(&mut self) -> usize {
        let n = self.input.len() - self.start;
        self.input.clear();
        self.start = 0;
        n
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        } else if self.start > READ_SIZE {
            self.input.drain(..self.start);
            self.start = 0;
        }
    }

    /// Reads more input; 0 at end of stream.
    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        deadline: Instant,
    ) -> io::Result<usize> {
        let old = self.input.len();
        self.input.resize(old + READ_SIZE, 0);
        let r = tokio::time::timeout_at(deadline, s.read(&mut self.input[old..])).await;
        let n = match r {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                self.input.truncate(old);
                return Err(e);
            }
            Err(_) => {
                self.input.truncate(old);
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
            }
        };
        self.input.truncate(old + n);
        Ok(n)
    }

    /// Whether a whole line is already buffered (then replies can wait: PIPELINING).
    pub fn has_line(&self) -> bool {
        memchr::memchr(b'\n', self.buffered()).is_some()
    }

    /// Reads one line (up to and including LF) of at most `limit` bytes, to be complete by
    /// `deadline`. Replies queued so far are sent first if the read would wait.
    pub async fn line<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        limit: usize,
        deadline: Instant,
    ) -> io::Result<Line> {
        let mut discarding = false;
        loop {
            if let Some(pos) = memchr::memchr(b'\n', self.buffered()) {
                if discarding {
                    self.consume(pos + 1);
                    return Ok(Line::TooLong);
                }
                if pos + 1 > limit {
                    self.consume(pos + 1);
                    return Ok(Line::TooLong);
                }
                let line = self.buffered()[..=pos].to_vec();
                self.consume(pos + 1);
                return Ok(Line::Complete(line));
            }
            if self.buffered().len() > limit {
                // Keep memory bounded: drop what we have and skip to the line's end.
                discarding = true;
                let n = self.buffered().len();
                self.consume(n);
            }
            self.flush(s).await?;
            match self.fill(s, deadline).await {
                Ok(0) => return Ok(Line::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Line::TimedOut),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads DATA to its end, handing decoded bytes to `sink` in pieces. Returns false if the
    /// client went away or the deadline passed first.
    pub async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        deadline: Instant,
        sink: &mut MessageSink,
    ) -> io::Result<Result<u64, Line>> {
        self.flush(s).await?;
        let mut decoder = DataDecoder::new();
        let mut out = Vec::with_capacity(READ_SIZE);
        loop {
            if !self.buffered().is_empty() {
                out.clear();
                let used = decoder.feed(&self.input[self.start..], &mut out);
                self.consume(used);
                sink.push(&out);
                if decoder.is_done() {
                    return Ok(Ok(decoder.size()));
                }
            }
            match self.fill(s, deadline).await {
                Ok(0) => return Ok(Err(Line::Eof)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Err(Line::TimedOut)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads exactly `size` bytes of a BDAT chunk into `sink` (normalised), or throws them away.
    pub async fn chunk<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        size: usize,
        deadline: Instant,
        normalizer: &mut ChunkNormalizer,
        mut sink: Option<&mut MessageSink>,
    ) -> io::Result<Result<(), Line>> {
        let mut left = size;
        let mut out = Vec::new();
        loop {
            let take = left.min(self.buffered().len());
            if take > 0 {
                if let Some(sink) = sink.as_mut() {
                    out.clear();
                    normalizer.feed(&self.input[self.start..self.start + take], &mut out);
                    sink.push(&out);
                }
                self.consume(take);
                left -= take;
            }
            if left == 0 {
                return Ok(Ok(()));
            }
            match self.fill(s, deadline).await {
                Ok(0) => return Ok(Err(Line::Eof)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Err(Line::TimedOut)),
                Err(e) => return Err(e),
            }
        }
    }
}
