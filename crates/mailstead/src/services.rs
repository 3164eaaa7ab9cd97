//! The protocol services `serve` runs, each with the listeners the configuration gives it.
//! A service crate provides a `Service`; this is the one place that wires them to the keys.

use mailstead_core::config::Config;
use mailstead_directory::Directory;
use mailstead_imap::{ImapConfig, ImapService};
use mailstead_listener::{Service, Spec, TlsIdentity};
use mailstead_managesieve::{ManageSieveConfig, ManageSieveService};
use mailstead_pop3::{Pop3Config, Pop3Service};
use mailstead_smtp::{Limits, Mode, SmtpConfig, SmtpService};
use mailstead_store::Store;
use std::sync::Arc;

/// What every service is built from.
#[derive(Clone)]
pub struct ServerContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub directory: Directory,
    #[allow(
        dead_code,
        reason = "read by the services that reload certificates themselves"
    )]
    pub tls: TlsIdentity,
}

fn smtp(ctx: &ServerContext) -> Vec<(Spec, Arc<dyn Service>)> {
    let c = &ctx.config;
    let cfg = SmtpConfig {
        hostname: Arc::from(c.hostname.as_str()),
        limits: Limits {
            max_message_size: c.message_size_limit,
            max_recipients: c.smtp_max_recipients as usize,
            max_errors: u32::try_from(c.smtp_max_errors).unwrap_or(u32::MAX),
            line_limit: c.smtp_line_limit as usize,
        },
        command_timeout: c.smtp_command_timeout,
        data_timeout: c.smtp_data_timeout,
        auth_failure_delay: c.auth_failure_delay,
    };
    SmtpService::services(cfg, ctx.directory.clone(), ctx.store.clone())
        .into_iter()
        .map(|(mode, service)| {
            let (name, key, bind, implicit_tls) = match mode {
                Mode::Mx => ("smtp", "SMTP_PORT", c.smtp_port, false),
                Mode::Submission => ("submission", "SUBMISSION_PORT", c.submission_port, false),
                Mode::Submissions => ("submissions", "SMTPS_PORT", c.smtps_port, true),
            };
            let spec = Spec {
                name,
                key,
                bind,
                implicit_tls,
                idle_timeout: c.smtp_command_timeout,
            };
            (spec, service as Arc<dyn Service>)
        })
        .collect()
}

/// Dovecot's mail_max_userip_connections as mailcow sets it for IMAP.
const IMAP_MAX_USERIP_CONNECTIONS: u32 = 500;

async fn imap(ctx: &ServerContext) -> anyhow::Result<Vec<(Spec, Arc<dyn Service>)>> {
    let c = &ctx.config;
    let cfg = ImapConfig {
        hostname: c.hostname.clone(),
        append_limit: c.message_size_limit,
        max_user_connections: IMAP_MAX_USERIP_CONNECTIONS,
        auth_failure_delay: c.auth_failure_delay,
        allow_plaintext_auth: c.allow_plaintext_auth,
    };
    let service: Arc<dyn Service> = Arc::new(
        ImapService::new(cfg, ctx.directory.clone(), ctx.store.clone())
            .await
            .map_err(|e| anyhow::anyhow!("the IMAP service cannot start: {e}"))?,
    );
    // The session sets its own timeouts (login, autologout); this one covers the greeting.
    let idle_timeout = std::time::Duration::from_secs(180);
    Ok(vec![
        (
            Spec {
                name: "imap",
                key: "IMAP_PORT",
                bind: c.imap_port,
                implicit_tls: false,
                idle_timeout,
            },
            service.clone(),
        ),
        (
            Spec {
                name: "imaps",
                key: "IMAPS_PORT",
                bind: c.imaps_port,
                implicit_tls: true,
                idle_timeout,
            },
            service,
        ),
    ])
}

fn pop3(ctx: &ServerContext) -> Vec<(Spec, Arc<dyn Service>)> {
    let c = &ctx.config;
    let cfg = Pop3Config {
        hostname: c.hostname.clone(),
        auth_failure_delay: c.auth_failure_delay,
        allow_plaintext_auth: c.allow_plaintext_auth,
    };
    // One service for both listeners, so that its mailbox locks cover both.
    let service: Arc<dyn Service> = Arc::new(Pop3Service::new(
        cfg,
        ctx.directory.clone(),
        ctx.store.clone(),
    ));
    // The session sets its own timeouts (login, autologout); this one covers the greeting.
    let idle_timeout = std::time::Duration::from_secs(180);
    vec![
        (
            Spec {
                name: "pop3",
                key: "POP_PORT",
                bind: c.pop_port,
                implicit_tls: false,
                idle_timeout,
            },
            service.clone(),
        ),
        (
            Spec {
                name: "pop3s",
                key: "POPS_PORT",
                bind: c.pops_port,
                implicit_tls: true,
                idle_timeout,
            },
            service,
        ),
    ]
}

fn managesieve(ctx: &ServerContext) -> Vec<(Spec, Arc<dyn Service>)> {
    let c = &ctx.config;
    let cfg = ManageSieveConfig {
        hostname: c.hostname.clone(),
        auth_failure_delay: c.auth_failure_delay,
        allow_plaintext_auth: c.allow_plaintext_auth,
    };
    let service: Arc<dyn Service> = Arc::new(ManageSieveService::new(
        cfg,
        ctx.directory.clone(),
        ctx.store.clone(),
    ));
    vec![(
        Spec {
            name: "managesieve",
            key: "SIEVE_PORT",
            bind: c.sieve_port,
            implicit_tls: false,
            // The session sets its own timeouts (login, autologout); this one covers the
            // greeting.
            idle_timeout: std::time::Duration::from_secs(180),
        },
        service,
    )]
}

/// The outbound queue runner.
pub fn queue(ctx: &ServerContext) -> Result<Arc<mailstead_queue::Queue>, String> {
    let c = &ctx.config;
    let cfg = mailstead_queue::QueueConfig {
        hostname: c.hostname.clone(),
        min_backoff: c.queue_min_backoff,
        max_backoff: c.queue_max_backoff,
        lifetime: c.queue_lifetime,
        delay_warning: c.queue_delay_warning,
        concurrency: c.queue_concurrency as usize,
        per_destination: c.queue_destination_concurrency as usize,
        timeouts: mailstead_queue::client::Timeouts {
            connect: c.smtp_client_connect_timeout,
            command: c.smtp_client_timeout,
            data: c.smtp_client_data_timeout,
        },
        static_map: c.dns_static_map.clone(),
        extra_ca: c.tls_extra_ca.clone(),
    };
    mailstead_queue::Queue::new(cfg, ctx.store.clone(), ctx.directory.clone())
}

/// The enabled services and their listeners, in start order.
pub async fn build(ctx: &ServerContext) -> anyhow::Result<Vec<(Spec, Arc<dyn Service>)>> {
    let mut services = smtp(ctx);
    services.extend(imap(ctx).await?);
    services.extend(pop3(ctx));
    services.extend(managesieve(ctx));
    Ok(services)
}
