//! Sieve (RFC 5228): checking scripts, and running them when mail is delivered.
//!
//! [`script`] compiles a script within this server's bounds and names the line of an error;
//! ManageSieve and the admin commands use it before storing one. The interpreter is sieve-rs.

pub mod script;

pub use script::{ScriptError, compile};
