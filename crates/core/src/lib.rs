//! Shared types of mailstead: the configuration table, e-mail addresses and the in-process
//! event bus. This crate holds types, not behaviour: services live in their own crates and
//! meet through these types and the store. It must never grow I/O beyond reading the config.

pub mod address;
pub mod config;
pub mod event;
pub mod id;
