//! The IMAP wire format without I/O: command types, the parser, the framer that collects
//! literals, modified UTF-7, and the encoding of responses.

pub mod encode;
pub mod framer;
pub mod parse;
pub mod types;
pub mod utf7;
