//! The listener with a small line service: greeting, echo, STARTTLS, limits, idle timeout and
//! both ends of a shutdown.

use super::*;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct LineService;

impl Service for LineService {
    fn serve(self: Arc<Self>, mut conn: Connection) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if conn.stream.write_all(b"hello\r\n").await.is_err() {
                return;
            }
            loop {
                let mut line = String::new();
                let read = {
                    let mut reader = BufReader::new(&mut conn.stream);
                    tokio::select! {
                        r = reader.read_line(&mut line) => r,
                        _ = conn.shutdown.cancelled() => {
                            let _ = conn.stream.write_all(b"shutting down\r\n").await;
                            return;
                        }
                    }
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                match line.trim_end() {
                    "QUIT" => {
                        let _ = conn.stream.write_all(b"bye\r\n").await;
                        return;
                    }
                    "STARTTLS" => {
                        let _ = conn.stream.write_all(b"go\r\n").await;
                        let version = match conn.start_tls().await {
                            Ok(info) => info.version.clone(),
                            Err(_) => return,
                        };
                        let _ = conn
                            .stream
                            .write_all(format!("tls {version}\r\n").as_bytes())
                            .await;
                    }
                    "HANG" => {
                        // Ignores the shutdown request: only the hard stop ends it.
                        std::future::pending::<()>().await;
                    }
                    other => {
                        let tls = if conn.tls_info().is_some() {
                            "secure "
                        } else {
                            ""
                        };
                        let reply = format!("{tls}echo {other}\r\n");
                        if conn.stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    }

    fn refusal(&self, reason: Refusal) -> Option<Vec<u8>> {
        match reason {
            Refusal::TooManyFromAddress => Some(b"421 too many\r\n".to_vec()),
        }
    }
}

struct Cert {
    identity: TlsIdentity,
    client: Arc<rustls::ClientConfig>,
}

fn cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let identity = TlsIdentity::load(&cert_path, &key_path).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Cert {
        identity,
        client: Arc::new(client),
    }
}

fn spec(name: &'static str, implicit_tls: bool, idle: Duration) -> Spec {
    Spec {
        name,
        key: "TEST_PORT",
        bind: Bind {
            ip: Some("127.0.0.1".parse().unwrap()),
            port: 0,
        },
        implicit_tls,
        idle_timeout: idle,
    }
}

fn start(limits: Limits, tls: Option<TlsIdentity>, spec: Spec) -> (Listeners, SocketAddr) {
    let listeners = Listeners::new(limits, tls, false);
    let bound = listeners.bind(spec).unwrap();
    let addr = bound.local_addr;
    listeners.serve(bound, Arc::new(LineService));
    (listeners, addr)
}

const LIMITS: Limits = Limits {
    max_connections: 100,
    max_per_address: 50,
};

async fn line<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> String {
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l))
        .await
        .unwrap()
        .unwrap();
    l
}

async fn say<S: AsyncRead + AsyncWrite + Unpin>(r: &mut BufReader<S>, what: &str) -> String {
    r.get_mut()
        .write_all(format!("{what}\r\n").as_bytes())
        .await
        .unwrap();
    line(r).await
}

#[tokio::test]
async fn greets_and_echoes() {
    let (_l, addr) = start(LIMITS, None, spec("plain", false, Duration::from_secs(30)));
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "hello\r\n");
    assert_eq!(say(&mut c, "ping").await, "echo ping\r\n");
    assert_eq!(say(&mut c, "QUIT").await, "bye\r\n");
}

#[tokio::test]
async fn too_many_from_one_address_get_the_services_refusal() {
    let limits = Limits {
        max_connections: 100,
        max_per_address: 2,
    };
    let (_l, addr) = start(limits, None, spec("plain", false, Duration::from_secs(30)));
    let mut a = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut b = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut a).await, "hello\r\n");
    assert_eq!(line(&mut b).await, "hello\r\n");
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "421 too many\r\n");
    assert_eq!(line(&mut c).await, "", "refused connection is closed");
    assert_eq!(say(&mut a, "QUIT").await, "bye\r\n");
    drop(a);
    // The freed place is available again.
    let mut d = None;
    for _ in 0..50 {
        let mut s = BufReader::new(TcpStream::connect(addr).await.unwrap());
        if line(&mut s).await == "hello\r\n" {
            d = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(d.is_some());
}

#[tokio::test]
async fn silent_client_is_cut_off_after_the_idle_timeout() {
    let (_l, addr) = start(
        LIMITS,
        None,
        spec("plain", false, Duration::from_millis(300)),
    );
    let started = Instant::now();
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "hello\r\n");
    assert_eq!(
        line(&mut c).await,
        "",
        "server closed the silent connection"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

async fn tls_connect(
    client: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client);
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn implicit_tls() {
    let cert = cert();
    let (_l, addr) = start(
        LIMITS,
        Some(cert.identity),
        spec("tls", true, Duration::from_secs(30)),
    );
    let tls = tls_connect(cert.client, TcpStream::connect(addr).await.unwrap()).await;
    let mut c = BufReader::new(tls);
    assert_eq!(line(&mut c).await, "hello\r\n");
    assert_eq!(say(&mut c, "ping").await, "secure echo ping\r\n");
}

#[tokio::test]
async fn starttls_upgrade() {
    let cert = cert();
    let (_l, addr) = start(
        LIMITS,
        Some(cert.identity),
        spec("plain", false, Duration::from_secs(30)),
    );
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "hello\r\n");
    assert_eq!(say(&mut c, "ping").await, "echo ping\r\n");
    assert_eq!(say(&mut c, "STARTTLS").await, "go\r\n");
    let tls = tls_connect(cert.client, c.into_inner()).await;
    let mut c = BufReader::new(tls);
    assert_eq!(line(&mut c).await, "tls TLSv1.3\r\n");
    assert_eq!(say(&mut c, "ping").await, "secure echo ping\r\n");
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_costs_nothing() {
    let cert = cert();
    let (l, addr) = start(
        LIMITS,
        Some(cert.identity),
        spec("tls", true, Duration::from_secs(30)),
    );
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"EHLO not tls\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut buf).await;
    // The server hung up; the listener still serves others.
    let tls = tls_connect(cert.client, TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(line(&mut BufReader::new(tls)).await, "hello\r\n");
    assert_eq!(l.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn graceful_shutdown_lets_sessions_say_goodbye() {
    let (l, addr) = start(LIMITS, None, spec("plain", false, Duration::from_secs(30)));
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "hello\r\n");
    let (cut, goodbye) = tokio::join!(l.shutdown(Duration::from_secs(5)), line(&mut c));
    assert_eq!(cut, 0);
    assert_eq!(goodbye, "shutting down\r\n");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn sessions_that_ignore_shutdown_are_cut_after_the_grace_time() {
    let (l, addr) = start(LIMITS, None, spec("plain", false, Duration::from_secs(30)));
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut c).await, "hello\r\n");
    c.get_mut().write_all(b"HANG\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(l.open_connections(), 1);
    assert_eq!(l.shutdown(Duration::from_millis(200)).await, 1);
    assert_eq!(line(&mut c).await, "", "connection dropped");
}

#[tokio::test]
async fn bind_errors_name_the_key_and_address() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let listeners = Listeners::new(LIMITS, None, false);
    let mut s = spec("smtp", false, Duration::from_secs(1));
    s.key = "SMTP_PORT";
    s.bind.port = port;
    let err = listeners.bind(s).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!(
            "SMTP_PORT (smtp): cannot listen on 127.0.0.1:{port}:"
        )),
        "{err}"
    );
    let mut s = spec("smtps", true, Duration::from_secs(1));
    s.key = "SMTPS_PORT";
    let err = listeners.bind(s).err().unwrap().to_string();
    assert_eq!(err, "SMTPS_PORT (smtps) needs a TLS certificate");
}

#[test]
fn ipv6_clients_are_counted_by_prefix() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    assert_eq!(client_key(a), client_key(b));
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
}

#[tokio::test]
async fn dual_stack_any_address() {
    let listeners = Listeners::new(LIMITS, None, true);
    let mut s = spec("any", false, Duration::from_secs(5));
    s.bind.ip = None;
    let bound = listeners.bind(s).unwrap();
    let port = bound.local_addr.port();
    listeners.serve(bound, Arc::new(LineService));
    let mut v4 = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    assert_eq!(line(&mut v4).await, "hello\r\n");
    if let Ok(tcp) = TcpStream::connect(("::1", port)).await {
        assert_eq!(line(&mut BufReader::new(tcp)).await, "hello\r\n");
    }
}
