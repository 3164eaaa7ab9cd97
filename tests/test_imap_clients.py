"""End-to-end tests of the IMAP service with real mail clients: mbsync (isync), offlineimap3,
fetchmail and mutt, as Debian 12 ships them.

Each test fills alice's mailbox the way mail arrives (SMTP to SMTP_PORT) or the way other
clients file it (APPEND with Python's imaplib), runs a client against it, and checks what a user
would see on both sides: the same messages with the same bytes and the same flags in the
client's Maildir (or files) and on the server. The server side is always read back with imaplib
(BODY.PEEK[], FLAGS) in a session of its own.

Clients verify the server's self-signed certificate (DATA_DIR/tls/cert.pem) and, where they can,
its name (mail.example.test) while connecting to 127.0.0.1:

* mbsync: CertificateFile holds the server's certificate itself, which mbsync then trusts
  exactly (a pinned "host" certificate, see mbsync(1)); any other certificate is refused,
  which test_mbsync_refuses_another_certificate checks;
* offlineimap: remotehost is mail.example.test, resolved to 127.0.0.1 by the configuration's
  pythonfile; over IMAPS sslcacertfile checks the chain and offlineimap the name (on STARTTLS
  offlineimap 8.0.0 checks nothing, see OFFLINEIMAP_STARTTLS_OPENSSL_CONF);
* fetchmail: sslcertck with sslcertfile, and sslcommonname mail.example.test for the name;
* mutt: certificate_file holds the certificate and a "#H 127.0.0.1 <MD5 fingerprint>" line,
  mutt's own record of an accepted name for exactly that certificate.

Every client gets a HOME of its own, no terminal (but mutt, which gets a pseudo-terminal
of its own) and at most CLIENT_TIMEOUT seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import imaplib
import os
import random
import re
import shutil
import smtplib
import signal
import ssl
import struct
import subprocess
import termios
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import HOSTNAME, Server

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice-imap-pw-Vx7Kq2Lm9"
REMOTE_SENDER = "sender@remote.test"
#: Keeps failed logins fast; the default is 2s.
FAST = {"AUTH_FAILURE_DELAY": "0s"}
#: Seconds any one client run may take.
CLIENT_TIMEOUT = 60

#: Maildir info letters (the part after ":2,") and the IMAP flags they stand for.
MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                 "T": "\\Deleted"}
#: The flags a Maildir can hold, and so the ones compared between the two sides.
SYNCED_FLAGS = frozenset(MAILDIR_FLAGS.values()) - {"\\Deleted"}


# ---------------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------------


def _headers(subject: str, to: str = ALICE, sender: str = REMOTE_SENDER,
             extra: str = "") -> str:
    return (
        f"From: Sender <{sender}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@client.test>\r\n"
        "Date: Sat, 21 Nov 2026 10:05:09 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        f"{extra}"
    )


def plain_message(subject: str, lines: int = 5, **kwargs) -> bytes:
    body = "".join(f"Line {i} of {subject}, some text to make it longer.\r\n"
                   for i in range(lines))
    return (_headers(subject, extra="Content-Type: text/plain; charset=us-ascii\r\n", **kwargs)
            + "\r\n" + body).encode()


def utf8_message(subject: str, **kwargs) -> bytes:
    """A text/plain body in raw 8-bit UTF-8 (sent with BODY=8BITMIME)."""
    body = ("Grüße aus Köln! Ça va? Ünïcödé — 日本語のテキスト ✓ 🙂\r\n"
            "Zweite Zeile: äöüß ÄÖÜ €\r\n")
    head = _headers(subject, extra="Content-Type: text/plain; charset=utf-8\r\n"
                                   "Content-Transfer-Encoding: 8bit\r\n", **kwargs)
    return head.encode() + b"\r\n" + body.encode()


def attachment_message(subject: str, size: int, seed: int, **kwargs) -> bytes:
    """multipart/mixed: a text part and `size` random bytes as a base64 attachment."""
    import base64

    data = random.Random(seed).randbytes(size)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    boundary = f"b-{uuid.uuid4().hex}"
    head = _headers(subject, extra=f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n',
                    **kwargs)
    return (
        head.encode() + b"\r\n"
        + f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n".encode()
        + f"See the attachment of {subject}.\r\n".encode()
        + f"--{boundary}\r\nContent-Type: application/octet-stream\r\n".encode()
        + f'Content-Disposition: attachment; filename="data-{seed}.bin"\r\n'.encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + f"--{boundary}--\r\n".encode()
    )


def message_id(raw: bytes) -> str:
    m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", raw, flags=re.MULTILINE | re.IGNORECASE)
    assert m, f"no Message-ID in {raw[:300]!r}"
    return m.group(1).decode()


def subject_of(raw: bytes) -> str:
    m = re.search(rb"^Subject:[ \t]*([^\r\n]*)", raw, flags=re.MULTILINE | re.IGNORECASE)
    return m.group(1).decode() if m else ""


def lf(raw: bytes) -> bytes:
    """Unix line ends, as every client here stores messages locally."""
    return raw.replace(b"\r\n", b"\n")


def crlf(raw: bytes) -> bytes:
    """Network line ends, as a client sends a local message to the server."""
    return lf(raw).replace(b"\n", b"\r\n")


def deliver(server: Server, *msgs: bytes) -> None:
    """Delivers each message to alice over SMTP_PORT (8-bit ones with BODY=8BITMIME)."""
    with smtplib.SMTP(*server.address("SMTP_PORT"), local_hostname="client.test",
                      timeout=30) as s:
        for msg in msgs:
            options = ["BODY=8BITMIME"] if any(b > 127 for b in msg) else []
            refused = s.sendmail(REMOTE_SENDER, [ALICE], msg, mail_options=options)
            assert not refused, refused


# ---------------------------------------------------------------------------------------------
# the server side, read with imaplib
# ---------------------------------------------------------------------------------------------


class _IMAPS(imaplib.IMAP4_SSL):
    """IMAP4_SSL that checks the certificate's name (HOSTNAME) while connecting to 127.0.0.1."""

    def _create_socket(self, timeout):
        sock = imaplib.IMAP4._create_socket(self, timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=HOSTNAME)


def imap_login(server: Server, user: str = ALICE, password: str = ALICE_PW) -> imaplib.IMAP4:
    host, port = server.address("IMAPS_PORT")
    c = _IMAPS(host, port, ssl_context=server.tls_context(), timeout=30)
    c.login(user, password)
    return c


def ok(result: tuple) -> list:
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


@dataclass
class ServerMessage:
    uid: int
    flags: frozenset[str]
    raw: bytes

    @property
    def mid(self) -> str:
        return message_id(self.raw)


def parse_list(lines: list[bytes]) -> list[tuple[set[str], str]]:
    """LIST responses -> [(attributes, name)]; names are quoted strings or atoms here."""
    out = []
    for line in lines:
        m = re.fullmatch(rb'\((.*?)\) (?:"[^"]*"|NIL) (?:"((?:[^"\\]|\\.)*)"|(\S+))', line)
        assert m, line
        name = (m.group(2) if m.group(2) is not None else m.group(3)).decode()
        out.append((set(m.group(1).decode().split()), name.replace('\\"', '"')))
    return out


def server_folders(c: imaplib.IMAP4) -> list[str]:
    return sorted(name for attrs, name in parse_list(ok(c.list('""', "*")))
                  if "\\Noselect" not in attrs and "\\NonExistent" not in attrs)


def server_messages(c: imaplib.IMAP4, folder: str) -> list[ServerMessage]:
    """Every message of `folder` (EXAMINE, so nothing changes): UID, FLAGS and BODY[]."""
    ok(c.select(_quote(folder), readonly=True))
    data = ok(c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])"))
    msgs: list[ServerMessage] = []
    head, literal = b"", None
    items: list[tuple[bytes, bytes]] = []
    for part in data:
        if isinstance(part, tuple):
            if literal is not None:
                items.append((head, literal))
            head, literal = part[0], part[1]
        elif part is not None and literal is not None:
            head += b" " + part
    if literal is not None:
        items.append((head, literal))
    for head, literal in items:
        uid = re.search(rb"UID (\d+)", head)
        flags = re.search(rb"FLAGS \(([^)]*)\)", head)
        assert uid and flags, head
        msgs.append(ServerMessage(int(uid.group(1)),
                                  frozenset(flags.group(1).decode().split()), literal))
    c.unselect() if "UNSELECT" in c.capabilities else c.close()
    return msgs


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_snapshot(server: Server) -> dict[str, list[ServerMessage]]:
    """{folder: messages} of alice's whole mailbox."""
    c = imap_login(server)
    try:
        return {f: server_messages(c, f) for f in server_folders(c)}
    finally:
        c.logout()


def append(c: imaplib.IMAP4, folder: str, raw: bytes, flags: str = "") -> None:
    ok(c.append(_quote(folder), f"({flags})" if flags else None, None, raw))


def store(server: Server, folder: str, mids: dict[str, str]) -> None:
    """Sets flags on the server: {Message-ID: "+FLAGS (\\Seen)"}."""
    c = imap_login(server)
    try:
        by_mid = {m.mid: m.uid for m in server_messages(c, folder)}
        ok(c.select(_quote(folder)))
        for mid, change in mids.items():
            op, flags = change.split(" ", 1)
            ok(c.uid("STORE", str(by_mid[mid]), op, flags))
        c.close()
    finally:
        c.logout()


def expunge_on_server(server: Server, folder: str, mid: str) -> None:
    c = imap_login(server)
    try:
        uid = {m.mid: m.uid for m in server_messages(c, folder)}[mid]
        ok(c.select(_quote(folder)))
        ok(c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)"))
        ok(c.expunge())
        c.close()
    finally:
        c.logout()


# ---------------------------------------------------------------------------------------------
# the local side: Maildirs
# ---------------------------------------------------------------------------------------------


@dataclass
class LocalMessage:
    path: Path
    flags: frozenset[str]
    raw: bytes

    @property
    def mid(self) -> str:
        return message_id(self.raw)


def maildir_messages(folder: Path) -> list[LocalMessage]:
    out = []
    for sub in ("new", "cur"):
        d = folder / sub
        if not d.is_dir():
            continue
        for path in sorted(d.iterdir()):
            info = path.name.rsplit(":2,", 1)[1] if ":2," in path.name else ""
            flags = frozenset(MAILDIR_FLAGS[ch] for ch in info if ch in MAILDIR_FLAGS)
            out.append(LocalMessage(path, flags, path.read_bytes()))
    return out


def write_maildir_message(folder: Path, raw: bytes, info: str | None = None) -> Path:
    """Files `raw` (LF line ends) into a Maildir the way an MUA does: tmp/, then new/ or cur/."""
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    name = f"{int(time.time())}.M{random.randrange(10**6)}P{os.getpid()}.client"
    tmp = folder / "tmp" / name
    tmp.write_bytes(lf(raw))
    if info is None:
        dest = folder / "new" / name
    else:
        dest = folder / "cur" / f"{name}:2,{info}"
    tmp.rename(dest)
    return dest


def set_maildir_flags(msg: LocalMessage, letters: str) -> None:
    """Adds flag letters to a local message, moving it to cur/ as an MUA does."""
    name = msg.path.name
    base, info = (name.rsplit(":2,", 1) + [""])[:2] if ":2," in name else (name, "")
    info = "".join(sorted(set(info) | set(letters)))
    msg.path.rename(msg.path.parent.parent / "cur" / f"{base}:2,{info}")


def assert_same_folder(where: str, server_msgs: list[ServerMessage],
                       local_msgs: list[LocalMessage]) -> None:
    """The same messages (by Message-ID), bytes (up to line ends) and flags on both sides."""
    remote = {m.mid: m for m in server_msgs}
    local = {m.mid: m for m in local_msgs}
    assert len(remote) == len(server_msgs), f"{where}: duplicate Message-IDs on the server"
    assert len(local) == len(local_msgs), f"{where}: duplicate Message-IDs locally"
    only_server = sorted(subject_of(remote[m].raw) for m in remote.keys() - local.keys())
    only_local = sorted(subject_of(local[m].raw) for m in local.keys() - remote.keys())
    assert not only_server and not only_local, (
        f"{where}: only on the server: {only_server}; only locally: {only_local}")
    for mid, r in remote.items():
        l = local[mid]
        if lf(l.raw) != lf(r.raw):
            raise AssertionError(
                f"{where}: {subject_of(r.raw)!r} differs: server {len(r.raw)} bytes "
                f"(sha1 {hashlib.sha1(lf(r.raw)).hexdigest()}), local {len(l.raw)} bytes "
                f"(sha1 {hashlib.sha1(lf(l.raw)).hexdigest()}) at {l.path}\n"
                f"{_first_difference(lf(r.raw), lf(l.raw))}")
        assert r.flags & SYNCED_FLAGS == l.flags, (
            f"{where}: {subject_of(r.raw)!r}: server flags {sorted(r.flags)}, "
            f"local {sorted(l.flags)} ({l.path.name})")


def _first_difference(a: bytes, b: bytes) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"first difference at byte {i}: server {a[max(0, i - 60):i + 60]!r}\n" \
           f"                           local  {b[max(0, i - 60):i + 60]!r}"


# ---------------------------------------------------------------------------------------------
# the mailbox the sync tests start from
# ---------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    inbox: list[bytes]
    sent: list[bytes]
    archive: list[bytes]
    archive_2025: list[bytes]
    #: {Message-ID: flags set on the server before the first sync}
    flagged: dict[str, str]


def fill_mailbox(server: Server) -> Corpus:
    """50 messages in INBOX by SMTP (one with 8-bit UTF-8, one of 2 MB, five more with
    attachments), some of them flagged; Sent, Archive and Archive/2025 filled with APPEND."""
    inbox = [utf8_message("UTF-8 body"), attachment_message("Big attachment", 1_500_000, 1)]
    inbox += [attachment_message(f"Attachment {i}", 3000 + 9000 * i, 10 + i) for i in range(5)]
    inbox += [plain_message(f"Inbox message {i}", lines=1 + i % 40) for i in range(43)]
    assert len(inbox) == 50
    assert 2_000_000 <= len(inbox[1]) <= 2_200_000
    deliver(server, *inbox)
    sent = [plain_message(f"Sent message {i}", sender=ALICE, to=REMOTE_SENDER)
            for i in range(4)]
    sent.append(attachment_message("Sent with attachment", 40_000, 99, sender=ALICE,
                                   to=REMOTE_SENDER))
    archive = [plain_message(f"Archived {i}") for i in range(3)]
    archive.append(attachment_message("Archived attachment", 70_000, 98))
    archive_2025 = [plain_message(f"Archived in 2025 {i}") for i in range(2)]
    c = imap_login(server)
    try:
        for raw in sent:
            append(c, "Sent", raw, "\\Seen")
        append(c, "Archive", archive[0], "\\Seen \\Flagged")
        for raw in archive[1:]:
            append(c, "Archive", raw, "\\Seen")
        ok(c.create("Archive/2025"))
        for raw in archive_2025:
            append(c, "Archive/2025", raw)
        status = ok(c.status("INBOX", "(MESSAGES)"))
        assert b"MESSAGES 50" in status[0], status
    finally:
        c.logout()
    flagged = {message_id(inbox[i]): "+FLAGS (\\Seen)" for i in range(10, 20)}
    flagged[message_id(inbox[20])] = "+FLAGS (\\Flagged)"
    flagged[message_id(inbox[21])] = "+FLAGS (\\Answered \\Seen)"
    flagged[message_id(inbox[22])] = "+FLAGS (\\Seen \\Flagged)"
    store(server, "INBOX", flagged)
    return Corpus(inbox, sent, archive, archive_2025, flagged)


# ---------------------------------------------------------------------------------------------
# fixtures and client plumbing
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mail(make_server) -> Server:
    """A running server with alice@example.test."""
    server = make_server()
    server.add_domain(DOMAIN)
    server.add_mailbox(ALICE, ALICE_PW)
    return server.start(env=FAST)


def need(program: str, package: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (apt-get install {package})")


def client_env(home: Path) -> dict[str, str]:
    """A bare environment: nothing of the runner's own mail set-up leaks into a client."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}


@dataclass
class Run:
    args: list[str]
    returncode: int
    output: str
    #: The server's login lines logged while the client ran.
    logins: list[str]

    def __str__(self) -> str:
        return (f"`{' '.join(self.args)}` exited with {self.returncode}\n{self.output[-8000:]}"
                + "\n--- its logins ---\n" + "\n".join(self.logins))


def login_lines(server: Server) -> list[str]:
    """The server's log lines of IMAP logins, successful or not."""
    return [line for line in server.log().splitlines()
            if re.search(r"\blogin( failed)?\b", line) and "imap" in line]


def run_client(server: Server, args: list[str], home: Path, env: dict[str, str] | None = None,
               timeout: float = CLIENT_TIMEOUT) -> Run:
    """Runs a client with no terminal and a bounded time; stdout and stderr together. Nothing
    else logs in while it runs, so the login lines the server logs meanwhile are its own."""
    before = len(login_lines(server))
    try:
        proc = subprocess.run(args, env={**client_env(home), **(env or {})},
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, cwd=home)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        raise AssertionError(f"`{' '.join(args)}` still ran after {timeout}s\n{out[-8000:]}"
                             f"\n{server.log_tail()}") from None
    return Run(args, proc.returncode, proc.stdout.decode(errors="replace"),
               login_lines(server)[before:])


def run_on_terminal(server: Server, args: list[str], home: Path,
                    env: dict[str, str] | None = None, timeout: float = CLIENT_TIMEOUT,
                    size: tuple[int, int] = (40, 120)) -> Run:
    """Runs an interactive client on a pseudo-terminal of `size` (lines, columns) of its own, as
    a user would in a terminal: the terminal is its standard input and output and its
    controlling terminal, in a session of its own. A thread reads everything the client draws,
    so it never blocks on a full terminal; the client gets at most `timeout` seconds, after
    which its session is killed and the test fails with what it drew. Nothing is ever typed:
    what the client does comes from its command line."""
    before = len(login_lines(server))
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    drawn: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last process holding the terminal has gone
                return
            if not chunk:
                return
            drawn.append(chunk)

    try:
        proc = subprocess.Popen(
            args, env={**client_env(home), "TERM": "vt100", **(env or {})},
            stdin=slave, stdout=slave, stderr=slave, cwd=home, start_new_session=True,
            # After setsid(): the terminal becomes the session's controlling terminal.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    finally:
        os.close(slave)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(5)
        os.close(master)
        raise AssertionError(f"`{' '.join(args)}` still ran after {timeout}s\n"
                             f"{_screen_text(b''.join(drawn))[-8000:]}\n{server.log_tail()}"
                             ) from None
    reader.join(5)
    os.close(master)
    return Run(args, proc.returncode, _screen_text(b"".join(drawn)),
               login_lines(server)[before:])


def _screen_text(drawn: bytes) -> str:
    """What a client drew on its terminal, without the escape sequences, for messages."""
    text = re.sub(rb"\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78M])", b" ", drawn)
    return re.sub(r"[ \t]+", " ", text.decode(errors="replace").replace("\r", "\n"))


def assert_logins(server: Server, run: Run, count: int, tls: bool) -> None:
    """The client logged in `count` times, each logged on one line naming alice and whether
    TLS was on, and the password is nowhere in the server log."""
    assert len(run.logins) == count, f"expected {count} login line(s)\n{run}"
    for line in run.logins:
        assert ALICE in line and "failed" not in line, line
        assert re.search(rf"\btls={'true' if tls else 'false'}\b", line), line
    assert ALICE_PW not in server.log(), "the password is in the server log"


# ---------------------------------------------------------------------------------------------
# 1. mbsync
# ---------------------------------------------------------------------------------------------


def mbsync_config(server: Server, home: Path, maildir: Path, *, ssl_type: str = "IMAPS",
                  cert: Path | None = None, password: str = ALICE_PW) -> Path:
    key = "IMAPS_PORT" if ssl_type == "IMAPS" else "IMAP_PORT"
    host, port = server.address(key)
    rc = home / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount alice\n"
        f"Host {host}\n"
        f"Port {port}\n"
        f"User {ALICE}\n"
        f'Pass "{password}"\n'
        f"SSLType {ssl_type}\n"
        + (f"CertificateFile {cert or server.cert_path}\nSystemCertificates no\n"
           if ssl_type != "None" else "")
        + "Timeout 30\n"
        "\n"
        "IMAPStore remote\n"
        "Account alice\n"
        "\n"
        "MaildirStore local\n"
        f"Path {maildir}/\n"
        f"Inbox {maildir}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel alice\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns *\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n"
        "Sync All\n"
    )
    return rc


def mbsync(server: Server, rc: Path, home: Path) -> Run:
    return run_client(server, ["mbsync", "-V", "-c", str(rc), "-a"], home)


def mbsync_ok(server: Server, rc: Path, home: Path, tls: bool = True) -> Run:
    """A successful sync, with one login."""
    r = mbsync(server, rc, home)
    assert r.returncode == 0, str(r)
    assert_logins(server, r, 1, tls)
    return r


def without_tuid(raw: bytes) -> bytes:
    """A message without the header mbsync adds: mbsync 1.4 puts "X-TUID: <12 characters>"
    as the last header of every message it copies, either way (to find it again should the
    sync be interrupted). That line is mbsync's, not the server's."""
    end = re.search(rb"\r?\n\r?\n", raw)
    if not end:
        return raw
    head = re.sub(rb"\r?\nX-TUID: [^\r\n]{12}$", b"", raw[:end.start()])
    return head + raw[end.start():]


def mbsync_messages(folder: Path) -> list[LocalMessage]:
    return [LocalMessage(m.path, m.flags, without_tuid(m.raw)) for m in maildir_messages(folder)]


def assert_mbsync_mirror(server: Server, maildir: Path) -> dict[str, list[ServerMessage]]:
    """Every server folder has a Maildir with the same messages, bytes and flags, and no
    Maildir lacks its server folder."""
    snapshot = server_snapshot(server)
    for folder, msgs in snapshot.items():
        msgs = [ServerMessage(m.uid, m.flags, without_tuid(m.raw)) for m in msgs]
        assert_same_folder(f"mbsync {folder}", msgs, mbsync_messages(maildir / folder))
    local = sorted(str(p.parent.relative_to(maildir)) for p in maildir.rglob("cur"))
    assert local == sorted(snapshot), f"local folders {local}, server folders {sorted(snapshot)}"
    return snapshot


def test_mbsync_two_way_sync(mail: Server, tmp_path: Path):
    """mbsync over IMAPS: the initial sync, then new mail, deletions and flags both ways, an
    upload and a folder made locally."""
    need("mbsync", "isync")
    corpus = fill_mailbox(mail)
    home, maildir = tmp_path / "mbsync-home", tmp_path / "mbsync-home" / "Mail"
    maildir.mkdir(parents=True)
    rc = mbsync_config(mail, home, maildir)

    # The first sync: every folder with every message.
    mbsync_ok(mail, rc, home)
    snapshot = assert_mbsync_mirror(mail, maildir)
    assert sorted(snapshot) == ["Archive", "Archive/2025", "Drafts", "INBOX", "Junk", "Sent",
                                "Trash"]
    assert len(snapshot["INBOX"]) == 50 and len(snapshot["Sent"]) == 5
    assert len(snapshot["Archive"]) == 4 and len(snapshot["Archive/2025"]) == 2
    # What was sent is what the server has (after its trace headers) and what mbsync stored.
    local_inbox = {m.mid: m for m in mbsync_messages(maildir / "INBOX")}
    for raw in corpus.inbox:
        assert lf(local_inbox[message_id(raw)].raw).endswith(lf(raw)), subject_of(raw)
    local_sent = {m.mid: m for m in mbsync_messages(maildir / "Sent")}
    for raw in corpus.sent:
        assert local_sent[message_id(raw)].raw == lf(raw), subject_of(raw)
        assert local_sent[message_id(raw)].flags == {"\\Seen"}
    big = local_inbox[message_id(corpus.inbox[1])]
    assert len(big.raw) > 2_000_000
    utf8 = local_inbox[message_id(corpus.inbox[0])]
    assert "Grüße aus Köln".encode() in utf8.raw and "日本語".encode() in utf8.raw
    assert local_inbox[message_id(corpus.inbox[22])].flags == {"\\Seen", "\\Flagged"}

    # New mail on the server arrives at the next sync; so do flags set and messages expunged
    # there.
    fresh = [plain_message("New after the first sync"), utf8_message("New UTF-8 body")]
    deliver(mail, *fresh)
    store(mail, "INBOX", {message_id(corpus.inbox[40]): "+FLAGS (\\Seen \\Answered)",
                          message_id(corpus.inbox[12]): "-FLAGS (\\Seen)"})
    expunge_on_server(mail, "INBOX", message_id(corpus.inbox[41]))
    mbsync_ok(mail, rc, home)
    snapshot = assert_mbsync_mirror(mail, maildir)
    local_inbox = {m.mid: m for m in mbsync_messages(maildir / "INBOX")}
    for raw in fresh:
        assert lf(local_inbox[message_id(raw)].raw).endswith(lf(raw))
    assert message_id(corpus.inbox[41]) not in local_inbox
    assert local_inbox[message_id(corpus.inbox[40])].flags == {"\\Seen", "\\Answered"}
    assert local_inbox[message_id(corpus.inbox[12])].flags == set()

    # Local changes: a deletion, flags, a new message in INBOX and in Archive/2025, and a new
    # folder with a message.
    local_inbox[message_id(corpus.inbox[30])].path.unlink()
    set_maildir_flags(local_inbox[message_id(corpus.inbox[31])], "SF")
    set_maildir_flags(local_inbox[message_id(corpus.inbox[32])], "F")
    set_maildir_flags(local_inbox[message_id(corpus.inbox[1])], "S")
    uploaded = [
        (maildir / "INBOX", attachment_message("Written locally", 25_000, 7, sender=ALICE), "S"),
        (maildir / "Archive/2025", utf8_message("Archived locally, UTF-8"), None),
        (maildir / "Projects", plain_message("In a new local folder"), "F"),
    ]
    for folder, raw, info in uploaded:
        write_maildir_message(folder, raw, info)
    mbsync_ok(mail, rc, home)

    c = imap_login(mail)
    try:
        inbox = {m.mid: m for m in server_messages(c, "INBOX")}
        assert message_id(corpus.inbox[30]) not in inbox, "the local deletion was not expunged"
        assert inbox[message_id(corpus.inbox[31])].flags >= {"\\Seen", "\\Flagged"}
        assert inbox[message_id(corpus.inbox[32])].flags & SYNCED_FLAGS == {"\\Flagged"}
        assert "\\Seen" in inbox[message_id(corpus.inbox[1])].flags
        assert "Projects" in server_folders(c), "the folder made locally is not on the server"
        for folder, raw, info in uploaded:
            name = str(folder.relative_to(maildir))
            on_server = {m.mid: m for m in server_messages(c, name)}[message_id(raw)]
            # The uploaded bytes exactly, with the CRLF line ends of the protocol.
            assert without_tuid(on_server.raw) == crlf(raw), (
                f"{name}: {subject_of(raw)!r} changed on upload\n"
                f"{_first_difference(crlf(raw), without_tuid(on_server.raw))}")
            assert on_server.flags & SYNCED_FLAGS == {MAILDIR_FLAGS[ch] for ch in info or ""}
        assert len(inbox) == 50 + 2 - 1 - 1 + 1
    finally:
        c.logout()

    # A sync with nothing to do changes nothing, and both sides are the same.
    mbsync_ok(mail, rc, home)
    snapshot = assert_mbsync_mirror(mail, maildir)
    assert "Projects" in snapshot and len(snapshot["Archive/2025"]) == 3


@pytest.mark.parametrize("ssl_type", ["STARTTLS", "None"])
def test_mbsync_port_143(mail: Server, tmp_path: Path, ssl_type: str):
    """mbsync on IMAP_PORT with STARTTLS, and in plain text (allowed from the server's own
    address): download, flags and an upload."""
    need("mbsync", "isync")
    msgs = [plain_message("On port 143"), attachment_message("Attached on 143", 30_000, 3),
            utf8_message("UTF-8 on 143")]
    deliver(mail, *msgs)
    home, maildir = tmp_path / "home", tmp_path / "home" / "Mail"
    maildir.mkdir(parents=True)
    rc = mbsync_config(mail, home, maildir, ssl_type=ssl_type)
    mbsync_ok(mail, rc, home, tls=ssl_type != "None")
    assert_mbsync_mirror(mail, maildir)

    local = {m.mid: m for m in mbsync_messages(maildir / "INBOX")}
    set_maildir_flags(local[message_id(msgs[0])], "S")
    mine = plain_message("Uploaded on 143", sender=ALICE)
    write_maildir_message(maildir / "Drafts", mine, "D")
    mbsync_ok(mail, rc, home, tls=ssl_type != "None")
    snapshot = assert_mbsync_mirror(mail, maildir)
    assert [without_tuid(m.raw) for m in snapshot["Drafts"]] == [crlf(mine)]
    assert "\\Draft" in snapshot["Drafts"][0].flags


def test_mbsync_refuses_another_certificate(mail: Server, make_server, tmp_path: Path):
    """With another server's certificate in CertificateFile mbsync does not log in: the
    certificate checks of these tests are real."""
    need("mbsync", "isync")
    other = make_server("other")
    home, maildir = tmp_path / "home", tmp_path / "home" / "Mail"
    maildir.mkdir(parents=True)
    rc = mbsync_config(mail, home, maildir, cert=other.cert_path)
    r = mbsync(mail, rc, home)
    assert r.returncode != 0, str(r)
    assert re.search(r"certificate|SSL", r.output, re.IGNORECASE), str(r)
    assert r.logins == []


# ---------------------------------------------------------------------------------------------
# 2. offlineimap3
# ---------------------------------------------------------------------------------------------


#: offlineimap 8.0.0 hangs now and then on STARTTLS with TLS 1.3, against any server that sends
#: session tickets. After the server's "OK begin TLS", imaplib2 shakes hands, starts its reader thread again and at once
#: has its writer thread send CAPABILITY. A TLS 1.3 server sends NewSessionTicket records once
#: it has the client's Finished (RFC 8446 section 4.6.1: this server one, Dovecot 2.3 two), so
#: the reader is in SSL_read taking them in while the writer is in SSL_write on the same
#: OpenSSL connection, which OpenSSL does not allow. Sometimes the CAPABILITY record never
#: reaches the socket, and offlineimap waits for its answer until the server drops the
#: connection. Recorded on the wire, it happens in the same way with Dovecot. IMAPS is not
#: affected: there the client waits for the greeting, so it writes nothing while the tickets
#: are read. offlineimap's own settings cannot help, because it calls imaplib2's starttls()
#: without arguments: ssl_version, tls_level and sslcacertfile do nothing on STARTTLS (and so
#: offlineimap does not check the certificate there at all). What a user can do is cap
#: offlineimap's OpenSSL at TLS 1.2 with OPENSSL_CONF. In TLS 1.2 the handshake ends with the
#: server's Finished, and the server sends nothing until the client's first command.
OFFLINEIMAP_STARTTLS_OPENSSL_CONF = """\
openssl_conf = offlineimap
[offlineimap]
ssl_conf = offlineimap_ssl
[offlineimap_ssl]
system_default = offlineimap_tls
[offlineimap_tls]
MaxProtocol = TLSv1.2
CipherString = DEFAULT:@SECLEVEL=2
"""


def offlineimap_config(server: Server, home: Path, maildir: Path, mode: str) -> Path:
    """mode: "imaps" (ssl = yes on IMAPS_PORT), "starttls" or "plain" (on IMAP_PORT). For
    "starttls" it also writes HOME/openssl.cnf, which offlineimap() then uses."""
    key = "IMAPS_PORT" if mode == "imaps" else "IMAP_PORT"
    _, port = server.address(key)
    resolver = home / "resolve.py"
    # The certificate names mail.example.test, which no resolver knows: offlineimap's
    # pythonfile maps that one name to 127.0.0.1, so that offlineimap checks the real name.
    resolver.write_text(
        "import socket\n"
        "_getaddrinfo = socket.getaddrinfo\n"
        "def _resolve(host, *args, **kwargs):\n"
        f"    if host == {HOSTNAME!r}:\n"
        "        host = '127.0.0.1'\n"
        "    return _getaddrinfo(host, *args, **kwargs)\n"
        "socket.getaddrinfo = _resolve\n"
    )
    rc = home / "offlineimaprc"
    rc.write_text(
        "[general]\n"
        "accounts = alice\n"
        f"metadata = {home}/.offlineimap\n"
        f"pythonfile = {resolver}\n"
        "ui = basic\n"
        "fsync = false\n"
        "\n"
        "[Account alice]\n"
        "localrepository = local\n"
        "remoterepository = remote\n"
        "\n"
        "[Repository local]\n"
        "type = Maildir\n"
        f"localfolders = {maildir}\n"
        "\n"
        "[Repository remote]\n"
        "type = IMAP\n"
        f"remotehost = {HOSTNAME}\n"
        f"remoteport = {port}\n"
        f"remoteuser = {ALICE}\n"
        f"remotepass = {ALICE_PW}\n"
        f"ssl = {'yes' if mode == 'imaps' else 'no'}\n"
        f"starttls = {'yes' if mode == 'starttls' else 'no'}\n"
        f"sslcacertfile = {server.cert_path}\n"
        "maxconnections = 1\n"
        "holdconnectionopen = no\n"
        "expunge = yes\n"
    )
    if mode == "starttls":
        (home / "openssl.cnf").write_text(OFFLINEIMAP_STARTTLS_OPENSSL_CONF)
    return rc


def offlineimap(server: Server, rc: Path, home: Path, tls: bool = True) -> Run:
    """A successful one-shot sync; with maxconnections = 1, one login. With HOME/openssl.cnf
    (see OFFLINEIMAP_STARTTLS_OPENSSL_CONF) offlineimap's OpenSSL reads it."""
    openssl_conf = home / "openssl.cnf"
    env = {"OPENSSL_CONF": str(openssl_conf)} if openssl_conf.is_file() else None
    r = run_client(server, ["offlineimap", "-c", str(rc), "-o", "-u", "basic"], home, env)
    assert r.returncode == 0 and "ERROR" not in r.output, str(r)
    assert_logins(server, r, 1, tls)
    return r


def offlineimap_local_folder(maildir: Path, folder: str) -> Path:
    """offlineimap's default Maildir name of a server folder: the separator becomes '.'."""
    return maildir / folder.replace("/", ".")


def assert_offlineimap_mirror(server: Server, maildir: Path) -> dict[str, list[ServerMessage]]:
    snapshot = server_snapshot(server)
    for folder, msgs in snapshot.items():
        assert_same_folder(f"offlineimap {folder}", msgs,
                           maildir_messages(offlineimap_local_folder(maildir, folder)))
    local = sorted(p.parent.name for p in maildir.rglob("cur"))
    expected = sorted(offlineimap_local_folder(maildir, f).name for f in snapshot)
    assert local == expected, f"local folders {local}, server folders {sorted(snapshot)}"
    return snapshot


def test_offlineimap_sync(mail: Server, tmp_path: Path):
    """offlineimap over IMAPS: every folder byte for byte, flags both ways, a local deletion
    and a local message reach the server."""
    need("offlineimap", "offlineimap3")
    corpus = fill_mailbox(mail)
    home, maildir = tmp_path / "oi-home", tmp_path / "oi-home" / "Mail"
    maildir.mkdir(parents=True)
    rc = offlineimap_config(mail, home, maildir, "imaps")

    offlineimap(mail, rc, home)
    snapshot = assert_offlineimap_mirror(mail, maildir)
    assert len(snapshot["INBOX"]) == 50 and len(snapshot["Archive/2025"]) == 2
    local = {m.mid: m for m in maildir_messages(maildir / "INBOX")}
    assert len(local[message_id(corpus.inbox[1])].raw) > 2_000_000
    assert "日本語".encode() in local[message_id(corpus.inbox[0])].raw

    # Local: flags on two messages, one deleted, one written; server: a flag, a new message.
    set_maildir_flags(local[message_id(corpus.inbox[5])], "FS")
    set_maildir_flags(local[message_id(corpus.inbox[6])], "R")
    local[message_id(corpus.inbox[7])].path.unlink()
    mine = attachment_message("Written in offlineimap's Maildir", 20_000, 5, sender=ALICE)
    write_maildir_message(maildir / "Sent", mine, "S")
    store(mail, "INBOX", {message_id(corpus.inbox[8]): "+FLAGS (\\Flagged)"})
    fresh = utf8_message("New UTF-8 for offlineimap")
    deliver(mail, fresh)
    offlineimap(mail, rc, home)

    c = imap_login(mail)
    try:
        inbox = {m.mid: m for m in server_messages(c, "INBOX")}
        assert message_id(corpus.inbox[7]) not in inbox, "the local deletion was not expunged"
        assert inbox[message_id(corpus.inbox[5])].flags & SYNCED_FLAGS == {"\\Flagged",
                                                                            "\\Seen"}
        assert inbox[message_id(corpus.inbox[6])].flags & SYNCED_FLAGS == {"\\Answered"}
        sent = {m.mid: m for m in server_messages(c, "Sent")}
        assert sent[message_id(mine)].raw == crlf(mine), "the upload changed the message"
        assert sent[message_id(mine)].flags & SYNCED_FLAGS == {"\\Seen"}
    finally:
        c.logout()
    snapshot = assert_offlineimap_mirror(mail, maildir)
    local = {m.mid: m for m in maildir_messages(maildir / "INBOX")}
    assert local[message_id(corpus.inbox[8])].flags == {"\\Flagged"}
    assert lf(local[message_id(fresh)].raw).endswith(lf(fresh))
    assert len(snapshot["INBOX"]) == 50


@pytest.mark.parametrize("mode", ["starttls", "plain"])
def test_offlineimap_port_143(mail: Server, tmp_path: Path, mode: str):
    """offlineimap on IMAP_PORT, with STARTTLS and in plain text."""
    need("offlineimap", "offlineimap3")
    msgs = [plain_message("offlineimap on 143"), utf8_message("UTF-8 for offlineimap")]
    deliver(mail, *msgs)
    home, maildir = tmp_path / "home", tmp_path / "home" / "Mail"
    maildir.mkdir(parents=True)
    rc = offlineimap_config(mail, home, maildir, mode)
    offlineimap(mail, rc, home, tls=mode == "starttls")
    assert_offlineimap_mirror(mail, maildir)
    local = {m.mid: m for m in maildir_messages(maildir / "INBOX")}
    set_maildir_flags(local[message_id(msgs[1])], "S")
    offlineimap(mail, rc, home, tls=mode == "starttls")
    snapshot = assert_offlineimap_mirror(mail, maildir)
    assert {m.mid: m.flags for m in snapshot["INBOX"]}[message_id(msgs[1])] >= {"\\Seen"}


# ---------------------------------------------------------------------------------------------
# 3. fetchmail
# ---------------------------------------------------------------------------------------------


def fetchmail_setup(server: Server, home: Path, mode: str) -> tuple[Path, Path]:
    """A fetchmailrc for alice and an MDA that writes each message to a file of its own.
    mode: "imaps" (ssl on IMAPS_PORT), "starttls" or "plain" (on IMAP_PORT)."""
    key = "IMAPS_PORT" if mode == "imaps" else "IMAP_PORT"
    _, port = server.address(key)
    out = home / "delivered"
    out.mkdir(parents=True)
    mda = home / "mda.sh"
    mda.write_text(f'#!/bin/sh\nexec cat > "$(mktemp {out}/msg.XXXXXXXX)"\n')
    mda.chmod(0o755)
    tls = {
        "imaps": f"ssl sslcertck sslcertfile {server.cert_path} sslcommonname {HOSTNAME}",
        "starttls": f"sslproto 'tls1.2+' sslcertck sslcertfile {server.cert_path} "
                    f"sslcommonname {HOSTNAME}",
        "plain": "sslproto ''",
    }[mode]
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 port {port} protocol IMAP timeout 30\n"
        f'  user "{ALICE}" there with password "{ALICE_PW}"\n'
        f"  {tls}\n"
        "  folder INBOX\n"
        f'  mda "{mda}"\n'
        "  no rewrite\n"
    )
    rc.chmod(0o600)
    return rc, out


def fetchmail(server: Server, rc: Path, home: Path, *args: str, tls: bool = True) -> Run:
    """One fetchmail run, with one login; exit 0 is "mail fetched", 1 "no mail". Its lock
    file is its own: run as root, fetchmail would otherwise use /var/run/fetchmail.pid whatever
    FETCHMAILHOME says, and refuse to run beside another test's fetchmail."""
    r = run_client(server, ["fetchmail", "-f", str(rc), "-v", "--nodetach",
                            "--pidfile", str(home / "fetchmail.pid"), *args], home,
                   env={"FETCHMAILHOME": str(home)})
    assert r.returncode in (0, 1), str(r)
    assert_logins(server, r, 1, tls)
    return r


def fetched(out: Path, seen: set[Path]) -> list[bytes]:
    """The messages the MDA wrote since `seen` (which is updated)."""
    new = sorted(set(out.iterdir()) - seen)
    seen.update(new)
    return [p.read_bytes() for p in new]


def assert_fetched(got: list[bytes], on_server: dict[str, bytes], what: Run) -> None:
    """Each fetched message is a server message, complete, as fetchmail hands it to its MDA:
    fetchmail takes the envelope sender from the server's first line, "Return-Path: <...>",
    drops that line and writes its own "Return-Path:" with the same address, then its own
    "Received:" header (from 127.0.0.1 ... with IMAP (fetchmail-...)), then every other byte
    of the server's message with LF line ends."""
    by_mid = {}
    for raw in got:
        mid = message_id(raw)
        assert mid in on_server, f"fetched a message the server never had: {mid}\n{what}"
        server = lf(on_server[mid])
        return_path = re.match(rb"Return-Path: (<[^>\n]*>)\n", server)
        assert return_path, f"the server's copy does not start with Return-Path: {server[:200]!r}"
        rest = server[return_path.end():]
        assert raw.endswith(rest), (
            f"{subject_of(raw)!r}: fetched {len(raw)} bytes, the server has {len(rest)} after "
            f"its Return-Path line\n{_first_difference(rest, raw[max(0, len(raw) - len(rest)):])}")
        prefix = raw[:len(raw) - len(rest)]
        fetchmail_headers = re.fullmatch(
            rb"Return-Path: (<[^>\n]*>)\n"
            rb"Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n"
            rb"\tby \S+ with IMAP \(fetchmail-[\d.]+\)\n"
            rb"(\t[^\n]*\n)+", prefix)
        assert fetchmail_headers, f"{subject_of(raw)!r}: not fetchmail's headers: {prefix!r}"
        assert fetchmail_headers.group(1) == return_path.group(1), (
            f"{subject_of(raw)!r}: fetchmail's Return-Path {fetchmail_headers.group(1)!r}, the "
            f"server's {return_path.group(1)!r}")
        by_mid[mid] = raw
    assert len(by_mid) == len(got), "a message was delivered twice"


def inbox_bytes(server: Server) -> dict[str, ServerMessage]:
    c = imap_login(server)
    try:
        return {m.mid: m for m in server_messages(c, "INBOX")}
    finally:
        c.logout()


@pytest.mark.parametrize("mode", ["imaps", "plain"])
def test_fetchmail_nokeep(mail: Server, tmp_path: Path, mode: str):
    """fetchmail --nokeep fetches every message complete and leaves the INBOX empty."""
    need("fetchmail", "fetchmail")
    msgs = [plain_message(f"Fetch me {i}") for i in range(3)]
    msgs += [utf8_message("UTF-8 for fetchmail"),
             attachment_message("Fetch the attachment", 300_000, 4)]
    deliver(mail, *msgs)
    on_server = {mid: m.raw for mid, m in inbox_bytes(mail).items()}
    home = tmp_path / "fm-home"
    rc, out = fetchmail_setup(mail, home, mode)
    r = fetchmail(mail, rc, home, "--nokeep", tls=mode != "plain")
    got = fetched(out, set())
    assert sorted(message_id(m) for m in got) == sorted(message_id(m) for m in msgs), str(r)
    assert_fetched(got, on_server, r)
    assert inbox_bytes(mail) == {}, "fetchmail --nokeep left messages on the server"

    # Nothing left: a second run fetches nothing.
    r = fetchmail(mail, rc, home, "--nokeep", tls=mode != "plain")
    assert r.returncode == 1, str(r)
    assert len(list(out.iterdir())) == 5


def test_fetchmail_keep_fetches_only_unseen(mail: Server, tmp_path: Path):
    """fetchmail --keep over STARTTLS, without --fetchall: unseen messages only, which it then
    marks seen and leaves on the server; --fetchall takes them all."""
    need("fetchmail", "fetchmail")
    first = [plain_message("Keep A"), attachment_message("Keep B", 50_000, 6),
             plain_message("Keep C, read before")]
    deliver(mail, *first)
    store(mail, "INBOX", {message_id(first[2]): "+FLAGS (\\Seen)"})
    home = tmp_path / "fm-home"
    rc, out = fetchmail_setup(mail, home, "starttls")
    seen: set[Path] = set()

    r = fetchmail(mail, rc, home, "--keep")
    got = fetched(out, seen)
    assert sorted(subject_of(m) for m in got) == ["Keep A", "Keep B"], str(r)
    server = inbox_bytes(mail)
    assert_fetched(got, {mid: m.raw for mid, m in server.items()}, r)
    assert len(server) == 3, "fetchmail --keep removed messages"
    assert all("\\Seen" in m.flags for m in server.values()), {
        subject_of(m.raw): sorted(m.flags) for m in server.values()}

    later = plain_message("Keep D, new")
    deliver(mail, later)
    r = fetchmail(mail, rc, home, "--keep")
    got = fetched(out, seen)
    assert [subject_of(m) for m in got] == ["Keep D, new"], str(r)

    r = fetchmail(mail, rc, home, "--keep")
    assert r.returncode == 1 and fetched(out, seen) == [], str(r)

    r = fetchmail(mail, rc, home, "--keep", "--fetchall")
    got = fetched(out, seen)
    assert sorted(subject_of(m) for m in got) == ["Keep A", "Keep B", "Keep C, read before",
                                                   "Keep D, new"], str(r)
    server = inbox_bytes(mail)
    assert_fetched(got, {mid: m.raw for mid, m in server.items()}, r)
    assert len(server) == 4


# ---------------------------------------------------------------------------------------------
# 4. mutt
# ---------------------------------------------------------------------------------------------


def mutt_certificate_file(server: Server, home: Path) -> Path:
    """The server's certificate, and mutt's record that it may be used for 127.0.0.1."""
    pem = server.cert_path.read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    md5 = hashlib.md5(der).hexdigest().upper()
    fingerprint = " ".join(md5[i:i + 4] for i in range(0, 32, 4))
    path = home / "certificates"
    path.write_text(pem.rstrip("\n") + f"\n#H 127.0.0.1 {fingerprint}\n")
    return path


def test_mutt_reads_over_imaps(mail: Server, tmp_path: Path):
    """mutt lists INBOX over imaps (every subject, in order) and saves one message to a file
    byte for byte."""
    need("mutt", "mutt")
    msgs = [plain_message(f"Mutt message {i}") for i in range(3)]
    msgs.insert(1, utf8_message("UTF-8 for mutt"))
    deliver(mail, *msgs)
    home = tmp_path / "mutt-home"
    home.mkdir()
    host, port = mail.address("IMAPS_PORT")
    certs = mutt_certificate_file(mail, home)
    listing, saved = home / "listing.txt", home / "saved.eml"
    rc = home / "muttrc"
    rc.write_text(
        f'set certificate_file="{certs}"\n'
        "set ssl_verify_host=yes\n"
        "set ssl_verify_dates=yes\n"
        "set ssl_force_tls=yes\n"
        f'set imap_user="{ALICE}"\n'
        f'set imap_pass="{ALICE_PW}"\n'
        f'set folder="imaps://{host}:{port}/"\n'
        'set spoolfile="+INBOX"\n'
        "set sort=mailbox-order\n"
        "set move=no\n"
        "set quit=yes\n"
        "set wait_key=no\n"
        "set pipe_split=yes\n"
        "set pipe_decode=no\n"
        "set confirmappend=no\n"
        "set mail_check=60\n"
        "set timeout=30\n"
        "unset header_cache\n"
        "unset message_cachedir\n"
    )
    # The commands mutt pipes messages to are scripts: in a push string "^S" would be a
    # control key, and a command that fails makes mutt wait for a key.
    list_subject, save = home / "list-subject.sh", home / "save.sh"
    list_subject.write_text(f"#!/bin/sh\nsed -n '/^$/q; /^Subject:/Ip' >> '{listing}'\n")
    save.write_text(f"#!/bin/sh\ncat > '{saved}'\n")
    for script in (list_subject, save):
        script.chmod(0o755)
    keys = (
        # List: every message's Subject, in index order, one message at a time (pipe_split).
        f"<tag-pattern>~A<enter><tag-prefix><pipe-message>{list_subject}<enter>"
        "<untag-pattern>~A<enter>"
        # Read: the second message, raw, into a file.
        f"<first-entry><next-entry><pipe-message>{save}<enter>"
        "<quit>"
    )
    # mutt is a terminal program: without a terminal it sends mail instead ("No recipients
    # specified."), so it runs on one, and the keys come from the command line.
    r = run_on_terminal(mail, ["mutt", "-n", "-F", str(rc), "-f", "=INBOX",
                               "-e", f'push "{keys}"'], home)
    assert r.returncode == 0, str(r)
    assert listing.is_file(), f"mutt listed nothing\n{r}"
    subjects = [line.split(":", 1)[1].strip() for line in listing.read_text().splitlines()]
    assert subjects == [subject_of(m) for m in msgs], str(r)
    server = inbox_bytes(mail)
    assert saved.is_file(), f"mutt saved nothing\n{r}"
    got = saved.read_bytes()
    assert got == lf(server[message_id(msgs[1])].raw), _first_difference(
        lf(server[message_id(msgs[1])].raw), got)
    assert_logins(mail, r, 1, tls=True)
