//! Binding listening sockets the way mailcow's port keys mean them: `PORT` listens on every
//! address (IPv6 dual-stack when available, else IPv4), `IP:PORT` on one address.

use mailstead_core::config::kinds::Bind;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Queue of connections the kernel accepts for us while we are busy.
const BACKLOG: i32 = 1024;

fn listen_on(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Binds one listener. An error names the address, which is what the user has to change.
pub fn bind(bind: Bind, enable_ipv6: bool) -> io::Result<tokio::net::TcpListener> {
    let std_listener = match bind.ip {
        Some(ip) => listen_on(SocketAddr::new(ip, bind.port), false).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", SocketAddr::new(ip, bind.port)))
        })?,
        None if enable_ipv6 => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), bind.port);
            match listen_on(v6, true) {
                Ok(l) => l,
                // No IPv6 on this host: fall back to IPv4 only.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                    ) =>
                {
                    tracing::info!(
                        port = bind.port,
                        "IPv6 is not available; listening on IPv4 only"
                    );
                    listen_v4(bind.port)?
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{v6}: {e}"))),
            }
        }
        None => listen_v4(bind.port)?,
    };
    tokio::net::TcpListener::from_std(std_listener)
}

fn listen_v4(port: u16) -> io::Result<std::net::TcpListener> {
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    listen_on(v4, false).map_err(|e| io::Error::new(e.kind(), format!("{v4}: {e}")))
}
