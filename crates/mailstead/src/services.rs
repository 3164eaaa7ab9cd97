//! The protocol services `serve` runs, each with the listeners the configuration gives it.
//! A service crate provides a `Service`; this is the one place that wires them to the keys.

use mailstead_core::config::Config;
use mailstead_directory::Directory;
use mailstead_listener::{Service, Spec, TlsIdentity};
use mailstead_store::Store;
use std::sync::Arc;

/// What every service is built from.
#[derive(Clone)]
#[allow(dead_code, reason = "read by the protocol services as they are added")]
pub struct ServerContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub directory: Directory,
    pub tls: TlsIdentity,
}

/// The enabled services and their listeners, in start order.
pub fn build(_ctx: &ServerContext) -> Vec<(Spec, Arc<dyn Service>)> {
    Vec::new()
}
