//! Host probes used by `mailstead doctor`.
//!
//! These are the checks mailcow's "prepare your system" page asks an
//! administrator to do by hand, done from inside the program:
//!
//! * which process already listens on a mail/web port ([`listeners_on`],
//!   the equivalent of `ss -tlpn`), and whether we could bind it
//!   ([`port_is_bindable`]);
//! * whether the kernel clock is disciplined by a time daemon
//!   ([`clock_status`]);
//! * free disk space where data will live ([`disk_space`]);
//! * installed and available memory ([`memory`]).
//!
//! Everything here is Linux-only and **blocking** (it reads `/proc` and makes
//! plain system calls); call it from `spawn_blocking` when inside an async
//! runtime. The `/proc` text formats are parsed by pure functions
//! ([`parse_proc_net_tcp`], [`parse_meminfo`], …) that never panic: lines
//! they do not understand are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

// ---------------------------------------------------------------------------
// TCP listeners
// ---------------------------------------------------------------------------

/// Path of the kernel's IPv4 TCP socket table.
const PROC_NET_TCP: &str = "/proc/net/tcp";
/// Path of the kernel's IPv6 TCP socket table (absent when IPv6 is disabled
/// with `ipv6.disable=1`).
const PROC_NET_TCP6: &str = "/proc/net/tcp6";

/// `TCP_LISTEN` in the kernel's `enum tcp_state`
/// (`include/net/tcp_states.h`); printed as `0A` in `/proc/net/tcp*`.
pub const TCP_STATE_LISTEN: u8 = 0x0A;

/// A process (or a socket whose process we could not identify) listening on
/// a TCP port.
///
/// When several processes share one listening socket (a pre-forking server
/// such as Postfix's `master` and its children, or nginx workers), there is
/// one `PortHolder` per process, all with the same `inode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortHolder {
    /// Local address the socket is bound to. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`, an IPv6 socket that only accepts IPv4) are reported
    /// as the plain IPv4 address; `[::]` (dual-stack or IPv6-only wildcard)
    /// stays IPv6.
    pub addr: SocketAddr,
    /// Process id, `None` if no process we may inspect holds the socket
    /// (another user's process while we are not root, `hidepid` on `/proc`,
    /// or a process in another PID namespace).
    pub pid: Option<u32>,
    /// Short process name from `/proc/[pid]/comm` (at most 15 bytes).
    pub process: Option<String>,
    /// Command line from `/proc/[pid]/cmdline`, arguments joined by spaces;
    /// `None` when empty (kernel threads, zombies) or unreadable.
    pub cmdline: Option<String>,
    /// Numeric uid owning the socket, from the socket table (known even when
    /// the process is not).
    pub uid: u32,
    /// Socket inode number (what `socket:[INODE]` links point to).
    pub inode: u64,
}

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpSocket {
    /// Local address exactly as the kernel reports it (IPv4-mapped addresses
    /// of `tcp6` rows stay IPv6 here; see [`unmap_ipv4`]).
    pub local: SocketAddr,
    /// Remote address (`0.0.0.0:0` / `[::]:0` for listening sockets).
    pub remote: SocketAddr,
    /// Kernel TCP state number ([`TCP_STATE_LISTEN`] is `0x0A`).
    pub state: u8,
    /// Numeric uid of the socket's owner.
    pub uid: u32,
    /// Socket inode number, 0 for sockets without one (e.g. `TIME_WAIT`).
    pub inode: u64,
}

/// Lists the sockets listening on TCP `port` (IPv4 and IPv6) and the
/// processes holding them, like `ss -tlpn 'sport = :PORT'`.
///
/// Reads `/proc/net/tcp` and `/proc/net/tcp6`, keeps sockets in state
/// `LISTEN` on `port`, then maps each socket inode to processes by scanning
/// the `/proc/[pid]/fd/*` symlinks for `socket:[INODE]`. Processes whose
/// file descriptors we may not read (other users' when not root, processes
/// that exit during the scan) are skipped silently; their sockets are still
/// reported with `pid: None`.
///
/// Only sockets of the caller's **network namespace** are visible. A service
/// inside a container with its own network namespace appears here only
/// through whatever holds the port on the host side (e.g. `docker-proxy`);
/// ports published purely by NAT rules do not show up at all.
///
/// The result is sorted by port, address, then pid. An empty vector means nobody
/// listens on the port.
///
/// # Errors
///
/// Fails if `/proc/net/tcp` cannot be read, or if `/proc/net/tcp6` exists but
/// cannot be read.
pub fn listeners_on(port: u16) -> io::Result<Vec<PortHolder>> {
    listeners_on_any(&[port])
}

/// Like [`listeners_on`], for several ports with a single scan of `/proc`
/// (the doctor checks 25, 465, 587, 143, 993, 4190, 80, 443 … at once).
///
/// # Errors
///
/// Same as [`listeners_on`].
pub fn listeners_on_any(ports: &[u16]) -> io::Result<Vec<PortHolder>> {
    let mut sockets = parse_proc_net_tcp(&fs::read_to_string(PROC_NET_TCP)?);
    match fs::read_to_string(PROC_NET_TCP6) {
        Ok(text) => sockets.extend(parse_proc_net_tcp(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listening = select_listeners(sockets, ports);
    if listening.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: BTreeSet<u64> = listening
        .iter()
        .map(|s| s.inode)
        .filter(|&inode| inode != 0)
        .collect();
    let owners = socket_owners(&wanted);
    Ok(build_holders(&listening, &owners))
}

/// Returns `true` if a [`TcpListener`] can be bound to `addr` right now.
///
/// The listener is dropped (the port released) immediately. std sets
/// `SO_REUSEADDR` before binding, so sockets of an earlier run lingering in
/// `TIME_WAIT` do not make the port look busy, while any socket in `LISTEN`
/// on an overlapping address does. Binding `[::]:PORT` is dual-stack on a
/// default Linux (`net.ipv6.bindv6only = 0`), so it also conflicts with IPv4
/// listeners.
///
/// `false` can also mean "not allowed" rather than "in use": ports below
/// 1024 need root or `CAP_NET_BIND_SERVICE` (unless
/// `net.ipv4.ip_unprivileged_port_start` is lowered), and an address not
/// configured on this host cannot be bound. Use [`try_bind`] to tell these
/// apart.
#[must_use]
#[cfg(test)]
pub fn port_is_bindable(addr: SocketAddr) -> bool {
    try_bind(addr).is_ok()
}

/// Tries to bind a [`TcpListener`] to `addr` and releases it at once.
///
/// # Errors
///
/// The bind error: [`io::ErrorKind::AddrInUse`] when a listener already holds
/// the port, [`io::ErrorKind::PermissionDenied`] for a privileged port,
/// [`io::ErrorKind::AddrNotAvailable`] for an address this host does not
/// have.
pub fn try_bind(addr: SocketAddr) -> io::Result<()> {
    TcpListener::bind(addr).map(drop)
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6`.
///
/// The header line and any line that does not have the expected shape
/// (wrong number of fields, bad hex, addresses of the wrong length) are
/// skipped. Addresses are decoded as the kernel prints them: each 32-bit
/// word of the address in *host* byte order (so `127.0.0.1` reads
/// `0100007F` on little-endian machines), the port as a plain big-endian
/// hex number.
#[must_use]
pub fn parse_proc_net_tcp(text: &str) -> Vec<TcpSocket> {
    text.lines().filter_map(parse_tcp_line).collect()
}

/// Parses one socket row; `None` for the header and malformed rows.
///
/// Row layout (whitespace separated):
/// `sl: local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_tcp_line(line: &str) -> Option<TcpSocket> {
    let mut fields = line.split_whitespace();
    let slot = fields.next()?.strip_suffix(':')?;
    if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = parse_hex_socket_addr(fields.next()?)?;
    let remote = parse_hex_socket_addr(fields.next()?)?;
    let state = u8::try_from(parse_hex_u32(fields.next()?, 2)?).ok()?;
    let _queues = fields.next()?;
    let _timer = fields.next()?;
    let _retransmits = fields.next()?;
    let uid = parse_decimal(fields.next()?)?;
    let _timeout = fields.next()?;
    let inode = parse_decimal(fields.next()?)?;
    Some(TcpSocket {
        local,
        remote,
        state,
        uid: u32::try_from(uid).ok()?,
        inode,
    })
}

/// Decodes an address of `/proc/net/tcp*`: `0100007F:0019` (IPv4) or 32 hex
/// digits and a port (IPv6). The scope id of link-local IPv6 addresses is
/// not in the table and is left 0.
#[must_use]
pub fn parse_hex_socket_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::try_from(parse_hex_u32(port, 4)?).ok()?;
    match ip.len() {
        8 => {
            let word = parse_hex_u32(ip, 8)?;
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(word.to_ne_bytes()),
                port,
            )))
        }
        32 => {
            let mut octets = [0u8; 16];
            for (dst, chunk) in octets
                .chunks_exact_mut(4)
                .zip(ip.as_bytes().chunks_exact(8))
            {
                let word = parse_hex_u32(std::str::from_utf8(chunk).ok()?, 8)?;
                dst.copy_from_slice(&word.to_ne_bytes());
            }
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// Turns `[::ffff:a.b.c.d]:port` into `a.b.c.d:port`; other addresses are
/// returned unchanged.
#[must_use]
pub fn unmap_ipv4(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Extracts the inode from a `/proc/[pid]/fd/N` link target of the form
/// `socket:[12345]`; `None` for anything else (files, `pipe:[…]`,
/// `anon_inode:[…]`, …).
#[must_use]
pub fn socket_inode_from_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    parse_decimal(std::str::from_utf8(digits).ok()?)
}

/// Turns the NUL-separated bytes of `/proc/[pid]/cmdline` into one line,
/// arguments separated by spaces. `None` if there are no arguments.
#[must_use]
pub fn parse_cmdline(raw: &[u8]) -> Option<String> {
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if args.is_empty() {
        None
    } else {
        Some(args.join(" "))
    }
}

/// Keeps the sockets in `LISTEN` whose local port is one of `ports`.
fn select_listeners(sockets: Vec<TcpSocket>, ports: &[u16]) -> Vec<TcpSocket> {
    sockets
        .into_iter()
        .filter(|s| s.state == TCP_STATE_LISTEN && ports.contains(&s.local.port()))
        .collect()
}

/// What we learnt about one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProcessInfo {
    comm: Option<String>,
    cmdline: Option<String>,
}

/// Maps each wanted socket inode to the processes holding it, by scanning
/// `/proc/[pid]/fd`. Unreadable processes are skipped; an unreadable `/proc`
/// yields an empty map.
fn socket_owners(wanted: &BTreeSet<u64>) -> BTreeMap<u64, Vec<(u32, ProcessInfo)>> {
    let mut pids_by_inode: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    for entry in proc_dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(parse_pid) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue; // EACCES for other users' processes, ENOENT if it exited
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode_from_link(target.as_os_str().as_bytes())
                && wanted.contains(&inode)
            {
                pids_by_inode.entry(inode).or_default().insert(pid);
            }
        }
    }
    let mut info_cache: BTreeMap<u32, ProcessInfo> = BTreeMap::new();
    pids_by_inode
        .into_iter()
        .map(|(inode, pids)| {
            let procs = pids
                .into_iter()
                .map(|pid| {
                    let info = info_cache
                        .entry(pid)
                        .or_insert_with(|| process_info(pid))
                        .clone();
                    (pid, info)
                })
                .collect();
            (inode, procs)
        })
        .collect()
}

/// Reads `comm` and `cmdline` of `pid`; missing pieces are `None`.
fn process_info(pid: u32) -> ProcessInfo {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let comm = fs::read(base.join("comm")).ok().and_then(|raw| {
        let name = String::from_utf8_lossy(&raw)
            .trim_end_matches('\n')
            .to_owned();
        (!name.is_empty()).then_some(name)
    });
    let cmdline = fs::read(base.join("cmdline"))
        .ok()
        .and_then(|raw| parse_cmdline(&raw));
    ProcessInfo { comm, cmdline }
}

/// Combines listening sockets with their owners into sorted `PortHolder`s.
fn build_holders(
    listening: &[TcpSocket],
    owners: &BTreeMap<u64, Vec<(u32, ProcessInfo)>>,
) -> Vec<PortHolder> {
    let mut holders = Vec::new();
    for socket in listening {
        let addr = unmap_ipv4(socket.local);
        match owners.get(&socket.inode).filter(|procs| !procs.is_empty()) {
            Some(procs) => {
                for (pid, info) in procs {
                    holders.push(PortHolder {
                        addr,
                        pid: Some(*pid),
                        process: info.comm.clone(),
                        cmdline: info.cmdline.clone(),
                        uid: socket.uid,
                        inode: socket.inode,
                    });
                }
            }
            None => holders.push(PortHolder {
                addr,
                pid: None,
                process: None,
                cmdline: None,
                uid: socket.uid,
                inode: socket.inode,
            }),
        }
    }
    holders.sort_by(|a, b| {
        (a.addr.port(), a.addr, a.pid, a.inode).cmp(&(b.addr.port(), b.addr, b.pid, b.inode))
    });
    holders
}

/// Parses a process directory name of `/proc`.
fn parse_pid(name: &str) -> Option<u32> {
    parse_decimal(name).and_then(|n| u32::try_from(n).ok())
}

/// Parses unsigned decimal digits only (no sign, no spaces).
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses 1..=`max_digits` hex digits only (no sign, no `0x`).
fn parse_hex_u32(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

// ---------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------

/// The kernel's view of clock synchronisation, read with `adjtimex(2)` in
/// read-only mode (`modes = 0`, no privilege needed, nothing is changed).
///
/// **Synchronised** means a time daemon — systemd-timesyncd, chrony or ntpd —
/// is disciplining the kernel clock against NTP servers and has told the
/// kernel so by clearing the `STA_UNSYNC` status flag. Without a daemon the
/// flag stays set (it is set at boot), and the kernel also sets it again by
/// itself when the daemon stops updating it: the maximum error grows by
/// 500 µs every second and once it passes 16 s the clock is declared
/// unsynchronised. While `STA_UNSYNC` is set, `adjtimex` returns
/// `TIME_ERROR` (the test `systemd-time-wait-sync` uses).
///
/// Caveats for the doctor's wording:
///
/// * chrony on Linux clears `STA_UNSYNC` only when its `rtcsync` directive is
///   enabled (it is in the default configuration of Debian, Ubuntu, Fedora
///   and RHEL). Without `rtcsync` the clock can be well disciplined while
///   [`synchronized`](Self::synchronized) is `false`; chrony still keeps the
///   maximum error small, which is why `timedatectl` ("System clock
///   synchronized") ignores the flag and only checks that the maximum error
///   is below 16 s — see
///   [`max_error_within_limit`](Self::max_error_within_limit). A doctor can
///   pass on `synchronized`, warn when only `max_error_within_limit` holds,
///   and fail when neither does.
/// * A daemon that stopped is noticed late: starting from a small error it
///   takes hours for the maximum error to reach 16 s.
///
/// Mail needs a correct clock: TOTP two-factor codes are only valid for a
/// 30-second window, and DKIM signatures, TLS certificate validity and
/// message `Date:` headers all depend on the time.
///
/// Inside a container this is the host kernel's clock, so the host must run
/// the time daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockStatus {
    /// `STA_UNSYNC` is clear and the clock state is not `TIME_ERROR`.
    pub synchronized: bool,
    /// The kernel's maximum error is below its 16 s limit: `timedatectl`'s
    /// notion of "synchronized", also true under chrony without `rtcsync`.
    pub max_error_within_limit: bool,
    /// Return value of `adjtimex`: the clock state, `TIME_OK` (0), `TIME_INS`
    /// (1), `TIME_DEL` (2), `TIME_OOP` (3), `TIME_WAIT` (4) or `TIME_ERROR`
    /// (5). See [`ClockStatus::state_name`].
    pub state: i32,
    /// Raw `STA_*` status bits. See [`ClockStatus::status_flags`].
    pub status: i32,
    /// Maximum error in microseconds (16 000 000 when unsynchronised).
    pub max_error_us: i64,
    /// Estimated error in microseconds.
    pub est_error_us: i64,
    /// Current offset being corrected by the daemon, in nanoseconds.
    pub offset_ns: i64,
}

/// The kernel's `NTP_PHASE_LIMIT`: maximum error (µs) at which it declares
/// the clock unsynchronised.
const MAX_ERROR_LIMIT_US: i64 = 16_000_000;

/// Names of the `STA_*` status bits, in bit order.
const STATUS_FLAG_NAMES: &[(i32, &str)] = &[
    (libc::STA_PLL, "PLL"),
    (libc::STA_PPSFREQ, "PPSFREQ"),
    (libc::STA_PPSTIME, "PPSTIME"),
    (libc::STA_FLL, "FLL"),
    (libc::STA_INS, "INS"),
    (libc::STA_DEL, "DEL"),
    (libc::STA_UNSYNC, "UNSYNC"),
    (libc::STA_FREQHOLD, "FREQHOLD"),
    (libc::STA_PPSSIGNAL, "PPSSIGNAL"),
    (libc::STA_PPSJITTER, "PPSJITTER"),
    (libc::STA_PPSWANDER, "PPSWANDER"),
    (libc::STA_PPSERROR, "PPSERROR"),
    (libc::STA_CLOCKERR, "CLOCKERR"),
    (libc::STA_NANO, "NANO"),
    (libc::STA_MODE, "MODE"),
    (libc::STA_CLK, "CLK"),
];

impl ClockStatus {
    /// Builds a status from the raw `adjtimex` results. `offset` is in
    /// nanoseconds if `STA_NANO` is set in `status`, else in microseconds.
    #[must_use]
    pub fn from_raw(
        state: i32,
        status: i32,
        max_error_us: i64,
        est_error_us: i64,
        offset: i64,
    ) -> Self {
        let offset_ns = if status & libc::STA_NANO != 0 {
            offset
        } else {
            offset.saturating_mul(1000)
        };
        Self {
            synchronized: state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0,
            max_error_within_limit: (0..MAX_ERROR_LIMIT_US).contains(&max_error_us),
            state,
            status,
            max_error_us,
            est_error_us,
            offset_ns,
        }
    }

    /// Name of the clock state (`"OK"`, `"ERROR"`, …; `"UNKNOWN"` otherwise).
    #[must_use]
    pub fn state_name(&self) -> &'static str {
        match self.state {
            libc::TIME_OK => "OK",
            libc::TIME_INS => "INS",
            libc::TIME_DEL => "DEL",
            libc::TIME_OOP => "OOP",
            libc::TIME_WAIT => "WAIT",
            libc::TIME_ERROR => "ERROR",
            _ => "UNKNOWN",
        }
    }

    /// Names of the `STA_*` bits set in [`ClockStatus::status`], e.g.
    /// `["PLL", "NANO"]` for a clock disciplined by chrony.
    #[must_use]
    pub fn status_flags(&self) -> Vec<&'static str> {
        STATUS_FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.status & bit != 0)
            .map(|&(_, name)| name)
            .collect()
    }
}

/// Reads the kernel clock's synchronisation status; see [`ClockStatus`].
///
/// # Errors
///
/// Only if the `adjtimex` system call itself fails (e.g. a seccomp filter
/// forbids it).
#[allow(
    clippy::useless_conversion,
    reason = "timex fields are c_long, which is i32 on 32-bit targets"
)]
pub fn clock_status() -> io::Result<ClockStatus> {
    let (state, tx) = adjtimex_read()?;
    Ok(ClockStatus::from_raw(
        state,
        tx.status,
        i64::from(tx.maxerror),
        i64::from(tx.esterror),
        i64::from(tx.offset),
    ))
}

/// Calls `adjtimex(2)` with `modes = 0`, which only reads.
#[allow(unsafe_code)]
fn adjtimex_read() -> io::Result<(i32, libc::timex)> {
    // SAFETY: `libc::timex` is a C struct made only of integers and a
    // `timeval` (also integers); all-zero bytes are a valid value of it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed `timex` for the whole
    // call. With `modes == 0` the kernel only fills it in and changes no
    // clock state.
    let state = unsafe { libc::adjtimex(&raw mut tx) };
    if state == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((state, tx))
}

// ---------------------------------------------------------------------------
// Disk
// ---------------------------------------------------------------------------

/// Space on the file system holding a path, from `statvfs(3)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskSpace {
    /// The path actually measured: the requested path, or its nearest
    /// existing ancestor if it does not exist yet.
    pub measured_path: PathBuf,
    /// Size of the file system (`f_blocks * f_frsize`).
    pub total_bytes: u64,
    /// Space available to unprivileged users (`f_bavail * f_frsize`), i.e.
    /// without the blocks reserved for root.
    pub available_bytes: u64,
    /// Total inodes; 0 on file systems that do not report them (btrfs).
    pub total_inodes: u64,
    /// Inodes available to unprivileged users (each stored message is a file).
    pub available_inodes: u64,
    /// The file system is mounted read-only.
    pub read_only: bool,
}

/// Measures free space on the file system that holds (or will hold) `path`.
///
/// If `path` does not exist yet (a data directory not created so far), its
/// nearest existing ancestor is measured instead; see
/// [`DiskSpace::measured_path`]. A relative path is resolved against the
/// current directory.
///
/// # Errors
///
/// Any `statvfs` error other than "not found" (e.g. permission denied on
/// a parent directory, or "not a directory" when a file is in the way), or
/// `InvalidInput` if the path contains a NUL byte.
#[allow(
    clippy::useless_conversion,
    reason = "statvfs fields are 32-bit on some 32-bit targets"
)]
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    for candidate in path.ancestors() {
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        let c_path = CString::new(candidate.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        match statvfs_retrying(&c_path) {
            Ok(st) => {
                let frsize = if st.f_frsize == 0 {
                    u64::from(st.f_bsize)
                } else {
                    u64::from(st.f_frsize)
                };
                return Ok(DiskSpace {
                    measured_path: candidate.to_path_buf(),
                    total_bytes: u64::from(st.f_blocks).saturating_mul(frsize),
                    available_bytes: u64::from(st.f_bavail).saturating_mul(frsize),
                    total_inodes: u64::from(st.f_files),
                    available_inodes: u64::from(st.f_favail),
                    read_only: st.f_flag & libc::ST_RDONLY != 0,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no existing ancestor of {}", path.display()),
    ))
}

/// `statvfs`, retried on `EINTR` (possible on network file systems).
fn statvfs_retrying(path: &CStr) -> io::Result<libc::statvfs> {
    loop {
        match statvfs(path) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Safe wrapper around `statvfs(3)`.
#[allow(unsafe_code)]
fn statvfs(path: &CStr) -> io::Result<libc::statvfs> {
    let mut buf = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `buf` points to
    // writable memory of the size and alignment of `libc::statvfs`; both
    // outlive the call.
    let ret = unsafe { libc::statvfs(path.as_ptr(), buf.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `statvfs` returned 0, so it has filled in the whole struct.
    Ok(unsafe { buf.assume_init() })
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// `MemTotal`: usable RAM (installed RAM minus what firmware and the
    /// kernel image reserve, so slightly below the nominal size).
    pub total_bytes: u64,
    /// `MemAvailable`: the kernel's estimate of memory available for new
    /// programs without swapping. On kernels older than 3.14, which lack it,
    /// `MemFree + Buffers + Cached`.
    pub available_bytes: u64,
    /// `SwapTotal` (0 if absent).
    pub swap_total_bytes: u64,
    /// `SwapFree` (0 if absent).
    pub swap_free_bytes: u64,
}

/// Reads [`Memory`] from `/proc/meminfo`.
///
/// # Errors
///
/// If `/proc/meminfo` cannot be read, or lacks `MemTotal` or any way to
/// compute the available memory (`InvalidData`).
pub fn memory() -> io::Result<Memory> {
    let text = fs::read_to_string("/proc/meminfo")?;
    parse_meminfo(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/meminfo lacks MemTotal or MemAvailable",
        )
    })
}

/// Parses the text of `/proc/meminfo` (`Key:   value kB` lines; `kB` means
/// KiB). Malformed lines are skipped; the first occurrence of a key wins.
/// `None` if `MemTotal` is missing, or `MemAvailable` and its fallback are.
#[must_use]
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let mut total = None;
    let mut available = None;
    let mut free = None;
    let mut buffers = None;
    let mut cached = None;
    let mut swap_total = None;
    let mut swap_free = None;
    for line in text.lines() {
        let Some((key, value)) = parse_meminfo_line(line) else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            "Buffers" => &mut buffers,
            "Cached" => &mut cached,
            "SwapTotal" => &mut swap_total,
            "SwapFree" => &mut swap_free,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    let available = match available {
        Some(bytes) => bytes,
        None => free?
            .saturating_add(buffers.unwrap_or(0))
            .saturating_add(cached.unwrap_or(0)),
    };
    Some(Memory {
        total_bytes: total?,
        available_bytes: available,
        swap_total_bytes: swap_total.unwrap_or(0),
        swap_free_bytes: swap_free.unwrap_or(0),
    })
}

/// One `/proc/meminfo` line as (key, bytes); counts without a unit (such as
/// `HugePages_Total`) are returned as is.
fn parse_meminfo_line(line: &str) -> Option<(&str, u64)> {
    let (key, rest) = line.split_once(':')?;
    let key = key.trim();
    let mut parts = rest.split_whitespace();
    let value = parse_decimal(parts.next()?)?;
    let bytes = match (parts.next(), parts.next()) {
        (None, None) => value,
        (Some("kB"), None) => value.saturating_mul(1024),
        _ => return None,
    };
    Some((key, bytes))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    // Real layout of /proc/net/tcp (kernel 6.x), little-endian host.
    // Row 0: 127.0.0.1:25 LISTEN; row 1: 0.0.0.0:443 LISTEN uid 33;
    // row 2: 10.0.2.15:22 <- 10.0.2.2:54321 ESTABLISHED.
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0
   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 23457 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:D431 01 00000000:00000000 02:0009D4B1 00000000     0        0 34567 4 0000000000000000 20 4 30 10 -1
";

    // /proc/net/tcp6: [::]:25, [::1]:587, [::ffff:127.0.0.1]:993,
    // [2001:db8::1]:25, and a TIME_WAIT row with inode 0.
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 45678 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:024B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 45679 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:03E1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 45680 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 45681 1 0000000000000000 100 0 0 10 0
   4: 00000000000000000000000001000000:0019 00000000000000000000000001000000:C350 06 00000000:00000000 03:00000C1C 00000000     0        0 0 3 0000000000000000
";

    const MALFORMED: &str = "\
garbage
   5: ZZZZZZZZ:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   6: 0100007F:0019 00000000:0000 0A
   7: 0100007F00:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   8: +100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   9: 0100007\u{e9}:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1
  10: 0100007F:019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1
  11: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000    -1        0 6 1
  12: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 x7 1
  13: 0000000000000000FFFF0000010000\u{e9}:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 8 1
  14: 0100007F:0019 00000000:0000 10A 00000000:00000000 00:00000000 00000000     0        0 9 1
x15: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 10 1

";

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((a, port))
    }

    fn v6(s: &str, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), port, 0, 0))
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_proc_net_tcp() {
        let rows = parse_proc_net_tcp(TCP);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            TcpSocket {
                local: v4([127, 0, 0, 1], 25),
                remote: v4([0, 0, 0, 0], 0),
                state: TCP_STATE_LISTEN,
                uid: 0,
                inode: 23456,
            }
        );
        assert_eq!(rows[1].local, v4([0, 0, 0, 0], 443));
        assert_eq!(rows[1].uid, 33);
        assert_eq!(rows[2].local, v4([10, 0, 2, 15], 22));
        assert_eq!(rows[2].remote, v4([10, 0, 2, 2], 54321));
        assert_eq!(rows[2].state, 1);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_proc_net_tcp6_including_ipv4_mapped() {
        let rows = parse_proc_net_tcp(TCP6);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].local, v6("::", 25));
        assert_eq!(rows[1].local, v6("::1", 587));
        assert_eq!(rows[1].uid, 999);
        assert_eq!(rows[2].local, v6("::ffff:127.0.0.1", 993));
        assert_eq!(unmap_ipv4(rows[2].local), v4([127, 0, 0, 1], 993));
        assert_eq!(rows[3].local, v6("2001:db8::1", 25));
        assert_eq!(rows[4].state, 6);
        assert_eq!(rows[4].inode, 0);
        assert_eq!(rows[4].remote, v6("::1", 50000));
        // Unmapping leaves real IPv6 addresses alone.
        assert_eq!(unmap_ipv4(rows[0].local), v6("::", 25));
        assert_eq!(unmap_ipv4(rows[1].local), v6("::1", 587));
    }

    #[test]
    fn skips_malformed_lines() {
        assert!(parse_proc_net_tcp(MALFORMED).is_empty());
        assert!(parse_proc_net_tcp("").is_empty());
        // Good rows survive among bad ones.
        let mixed = format!("{MALFORMED}{TCP}{MALFORMED}");
        assert_eq!(parse_proc_net_tcp(&mixed).len(), 3);
        assert_eq!(parse_hex_socket_addr("0100007F"), None);
        assert_eq!(parse_hex_socket_addr(":0019"), None);
        assert_eq!(parse_hex_socket_addr("0100007F:"), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn selects_listeners_and_builds_holders() {
        let mut all = parse_proc_net_tcp(TCP);
        all.extend(parse_proc_net_tcp(TCP6));
        let listening = select_listeners(all, &[25, 993]);
        let ports: Vec<u16> = listening.iter().map(|s| s.local.port()).collect();
        // TIME_WAIT row on :25 and the :443/:587/:22 rows are dropped.
        assert_eq!(ports, [25, 25, 993, 25]);

        let mut owners = BTreeMap::new();
        let master = ProcessInfo {
            comm: Some("master".into()),
            cmdline: Some("/usr/lib/postfix/sbin/master -w".into()),
        };
        owners.insert(
            23456,
            vec![(100, master.clone()), (200, ProcessInfo::default())],
        );
        owners.insert(45678, vec![(100, master)]);
        let holders = build_holders(&listening, &owners);
        let summary: Vec<(SocketAddr, Option<u32>, Option<&str>)> = holders
            .iter()
            .map(|h| (h.addr, h.pid, h.process.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (v4([127, 0, 0, 1], 25), Some(100), Some("master")),
                (v4([127, 0, 0, 1], 25), Some(200), None),
                (v6("::", 25), Some(100), Some("master")),
                (v6("2001:db8::1", 25), None, None),
                (v4([127, 0, 0, 1], 993), None, None), // unmapped from ::ffff:
            ]
        );
        assert_eq!(
            holders[0].cmdline.as_deref(),
            Some("/usr/lib/postfix/sbin/master -w")
        );
        assert_eq!(holders[0].inode, 23456);
    }

    #[test]
    fn decodes_socket_links_and_cmdlines() {
        assert_eq!(socket_inode_from_link(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode_from_link(b"pipe:[12345]"), None);
        assert_eq!(socket_inode_from_link(b"anon_inode:[eventpoll]"), None);
        assert_eq!(socket_inode_from_link(b"socket:[]"), None);
        assert_eq!(socket_inode_from_link(b"socket:[12a]"), None);
        assert_eq!(socket_inode_from_link(b"socket:[-1]"), None);
        assert_eq!(socket_inode_from_link(b"/var/log/mail.log"), None);

        assert_eq!(
            parse_cmdline(b"/usr/sbin/nginx\0-g\0daemon off;\0").as_deref(),
            Some("/usr/sbin/nginx -g daemon off;")
        );
        assert_eq!(
            parse_cmdline(b"nginx: master process\0").as_deref(),
            Some("nginx: master process")
        );
        assert_eq!(parse_cmdline(b""), None);
        assert_eq!(parse_cmdline(b"\0\0"), None);
        assert_eq!(parse_cmdline(b"a\xffb\0").as_deref(), Some("a\u{fffd}b"));
        assert_eq!(parse_pid("1234"), Some(1234));
        assert_eq!(parse_pid("self"), None);
        assert_eq!(parse_pid("99999999999"), None);
    }

    #[test]
    fn parses_meminfo() {
        let text = "\
MemTotal:       24684092 kB
MemFree:        23824072 kB
MemAvailable:   24365340 kB
Buffers:            4640 kB
Cached:           737316 kB
SwapTotal:       1048572 kB
SwapFree:        1048000 kB
HugePages_Total:       0
bogus line
MemTotal: 1 kB
Weird:    12 MB
";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total_bytes, 24_684_092 * 1024);
        assert_eq!(m.available_bytes, 24_365_340 * 1024);
        assert_eq!(m.swap_total_bytes, 1_048_572 * 1024);
        assert_eq!(m.swap_free_bytes, 1_048_000 * 1024);

        // Old kernel without MemAvailable, no swap lines.
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n";
        let m = parse_meminfo(old).unwrap();
        assert_eq!(m.available_bytes, 420 * 1024);
        assert_eq!(m.swap_total_bytes, 0);

        assert_eq!(parse_meminfo(""), None);
        assert_eq!(parse_meminfo("MemFree: 1 kB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: -5 kB\nMemAvailable: 1 kB\n"), None);
        // Absurd values saturate instead of overflowing.
        let huge = format!("MemTotal: {} kB\nMemAvailable: 1 kB\n", u64::MAX);
        assert_eq!(parse_meminfo(&huge).unwrap().total_bytes, u64::MAX);
    }

    #[test]
    fn clock_status_from_raw_values() {
        // Disciplined by chrony: PLL | NANO, TIME_OK.
        let synced = ClockStatus::from_raw(libc::TIME_OK, 0x2001, 12_000, 300, 1_500);
        assert!(synced.synchronized);
        assert!(synced.max_error_within_limit);
        assert_eq!(synced.offset_ns, 1_500);
        assert_eq!(synced.status_flags(), ["PLL", "NANO"]);
        assert_eq!(synced.state_name(), "OK");
        // No daemon: UNSYNC, TIME_ERROR, max error 16 s.
        let free = ClockStatus::from_raw(libc::TIME_ERROR, 0x40, 16_000_000, 16_000_000, 3);
        assert!(!free.synchronized);
        assert!(!free.max_error_within_limit);
        // chrony without rtcsync: UNSYNC kept set, but small max error.
        let chrony = ClockStatus::from_raw(libc::TIME_ERROR, 0x2041, 25_000, 400, 0);
        assert!(!chrony.synchronized);
        assert!(chrony.max_error_within_limit);
        assert_eq!(free.offset_ns, 3_000);
        assert_eq!(free.status_flags(), ["UNSYNC"]);
        assert_eq!(free.state_name(), "ERROR");
        // Either signal alone means unsynchronised.
        assert!(!ClockStatus::from_raw(libc::TIME_OK, 0x41, 0, 0, 0).synchronized);
        assert!(!ClockStatus::from_raw(libc::TIME_ERROR, 0x1, 0, 0, 0).synchronized);
        // Leap second pending is still synchronised.
        assert!(ClockStatus::from_raw(libc::TIME_INS, 0x11, 0, 0, 0).synchronized);
        assert_eq!(
            ClockStatus::from_raw(42, 0, 0, 0, 0).state_name(),
            "UNKNOWN"
        );
    }

    // ---- live tests against this machine ----

    /// `comm` the kernel gives this test binary: file name, at most 15 bytes.
    fn own_comm() -> String {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().as_bytes();
        String::from_utf8_lossy(&name[..name.len().min(15)]).into_owned()
    }

    fn assert_we_hold(listener: &TcpListener, expected_addr: SocketAddr) {
        let port = listener.local_addr().unwrap().port();
        let holders = listeners_on(port).unwrap();
        let ours: Vec<&PortHolder> = holders
            .iter()
            .filter(|h| h.pid == Some(std::process::id()))
            .collect();
        assert!(!ours.is_empty(), "own pid not among {holders:#?}");
        for h in ours {
            assert_eq!(h.addr, expected_addr);
            assert_eq!(h.process.as_deref(), Some(own_comm().as_str()));
            assert!(h.cmdline.is_some());
            assert_ne!(h.inode, 0);
        }
    }

    #[test]
    fn finds_own_ipv4_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_we_hold(&listener, addr);
        assert_eq!(
            listeners_on_any(&[addr.port(), 1]).unwrap().len(),
            listeners_on(addr.port()).unwrap().len()
        );
    }

    #[test]
    fn finds_own_ipv6_listener() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: IPv6 loopback unavailable");
            return;
        };
        let addr = listener.local_addr().unwrap();
        assert_we_hold(&listener, addr);
    }

    #[test]
    fn finds_own_ipv4_mapped_listener() {
        // An IPv6 socket bound to ::ffff:127.0.0.1 appears in /proc/net/tcp6
        // in mapped form and is reported as plain IPv4.
        let Ok(listener) = TcpListener::bind("[::ffff:127.0.0.1]:0") else {
            eprintln!("skipped: cannot bind an IPv4-mapped address");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        assert_we_hold(&listener, v4([127, 0, 0, 1], port));
    }

    /// Kills and reaps the child even if an assertion fails.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn finds_other_process_listener() {
        let script = "import socket,time\n\
                      s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n\
                      print(s.getsockname()[1], flush=True); time.sleep(30)";
        let child = match Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipped: cannot run python3: {e}");
                return;
            }
        };
        let mut child = KillOnDrop(child);
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let pid = child.0.id();

        let holders = listeners_on(port).unwrap();
        let theirs = holders
            .iter()
            .find(|h| h.pid == Some(pid))
            .unwrap_or_else(|| panic!("pid {pid} not among {holders:#?}"));
        assert_eq!(theirs.addr, v4([127, 0, 0, 1], port));
        assert!(
            theirs
                .process
                .as_deref()
                .is_some_and(|p| p.starts_with("python3")),
            "{theirs:?}"
        );
        assert!(
            theirs
                .cmdline
                .as_deref()
                .is_some_and(|c| c.contains("import socket")),
            "{theirs:?}"
        );
        assert!(!port_is_bindable(v4([127, 0, 0, 1], port)));

        drop(child);
        assert!(
            listeners_on(port)
                .unwrap()
                .iter()
                .all(|h| h.pid != Some(pid))
        );
    }

    #[test]
    fn bindable_only_after_release() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(!port_is_bindable(addr));
        // The wildcard address overlaps 127.0.0.1, so it is busy too.
        assert!(!port_is_bindable(v4([0, 0, 0, 0], addr.port())));
        assert_eq!(try_bind(addr).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(listener);
        // Another test may be spawning python3 at this moment: between fork
        // and exec the child shares our descriptors (CLOEXEC closes them only
        // at exec), keeping the socket alive a little longer. Allow for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !port_is_bindable(addr) {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} still busy after release"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn live_clock_status_is_plausible() {
        let clock = clock_status().unwrap();
        eprintln!(
            "clock: {clock:?} state={} flags={:?}",
            clock.state_name(),
            clock.status_flags()
        );
        assert!((0..=5).contains(&clock.state));
        assert!(clock.max_error_us >= 0);
        assert!(clock.est_error_us >= 0);
        assert_eq!(
            clock.max_error_within_limit,
            clock.max_error_us < MAX_ERROR_LIMIT_US
        );
        assert_eq!(
            clock.synchronized,
            clock.status & libc::STA_UNSYNC == 0 && clock.state != libc::TIME_ERROR
        );
    }

    #[test]
    fn live_disk_space_is_plausible() {
        let tmp = disk_space(Path::new("/tmp")).unwrap();
        eprintln!("disk: {tmp:?}");
        assert_eq!(tmp.measured_path, Path::new("/tmp"));
        assert!(tmp.total_bytes > 0);
        assert!(tmp.available_bytes <= tmp.total_bytes);

        let missing = disk_space(Path::new("/tmp/hostprobe-does-not-exist/a/b")).unwrap();
        assert_eq!(missing.measured_path, Path::new("/tmp"));
        assert_eq!(missing.total_bytes, tmp.total_bytes);

        let relative = disk_space(Path::new("no-such-dir-hostprobe/x")).unwrap();
        assert_eq!(relative.measured_path, Path::new("."));

        let nul = disk_space(Path::new("/tmp/a\0b")).unwrap_err();
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn live_memory_is_plausible() {
        let m = memory().unwrap();
        eprintln!("memory: {m:?}");
        assert!(m.total_bytes > 0);
        assert!(m.available_bytes <= m.total_bytes);
        assert!(m.swap_free_bytes <= m.swap_total_bytes);
    }
}
