//! Sieve (RFC 5228): checking scripts, and running them when mail is delivered.
//!
//! [`script`] compiles a script within this server's bounds and names the line of an error;
//! ManageSieve and the admin commands use it before storing one. [`filter`] runs a mailbox's
//! scripts over a delivery and says what to do; the SMTP service applies it. [`generate`]
//! writes the scripts behind the vacation and forwarding commands. The interpreter is sieve-rs.

pub mod filter;
pub mod generate;
pub mod script;

pub use filter::{Action, Filter, Outcome, Plan, Request};
pub use script::{ScriptError, compile};
