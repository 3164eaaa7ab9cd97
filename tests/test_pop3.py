"""End-to-end tests of the POP3 service: RFC 1939 with CAPA (RFC 2449), STLS (RFC 2595),
response codes (RFC 3206) and AUTH PLAIN (RFC 5034), on POP_PORT (STLS) and POPS_PORT
(implicit TLS).

Clients are Python's poplib, as a mail client would use it, a byte-exact client (`Raw`) for what
poplib hides (the exact bytes on the wire, pipelining, garbage, dropped connections, another
source address), and fetchmail as Debian ships it. Mail arrives by SMTP on SMTP_PORT; what the
POP3 session did to the mailbox is read back over IMAP. TLS clients check the server's
certificate and its name (mail.example.test) while connecting to 127.0.0.1."""

from __future__ import annotations

import base64
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import HOSTNAME, Server, wait_for

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice-pop-pw-Hq4Zr8Wd"
BOB = "bob@example.test"
BOB_PW = "bob-pop-pw-Jt6Ys2Kc"
#: Keeps failed-login tests fast; the default is 2s.
FAST = {"AUTH_FAILURE_DELAY": "0s"}
#: Seconds a client waits for one response, or a client program may run.
TIMEOUT = 15.0
CLIENT_TIMEOUT = 60
#: Another loopback address: a client there is not on the server's own address.
OTHER = "127.0.0.2"


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def users(make_server) -> Server:
    """example.test with the mailboxes alice and bob; not started."""
    server = make_server()
    server.add_domain(DOMAIN)
    server.add_mailbox(ALICE, ALICE_PW)
    server.add_mailbox(BOB, BOB_PW)
    return server


@pytest.fixture
def srv(users: Server) -> Server:
    """A running server with alice@ and bob@example.test and no delay after failed logins."""
    return users.start(env=FAST)


def message(subject: str, body: bytes | str = b"Hello.\r\n", to: str = ALICE,
            extra: str = "") -> bytes:
    """An RFC 5322 message with CRLF line ends and a Message-ID of its own."""
    if isinstance(body, str):
        body = body.encode()
    head = (f"From: Sender <sender@remote.test>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Sat, 21 Nov 2026 10:05:09 +0000\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@client.test>\r\nMIME-Version: 1.0\r\n{extra}")
    return head.encode() + b"\r\n" + body


def utf8_message(subject: str) -> bytes:
    """A text/plain body in raw 8-bit UTF-8, with lines that start with dots."""
    body = ("Grüße aus Köln! Ça va? — 日本語のテキスト ✓ 🙂\r\n"
            ".a line that starts with a dot\r\n"
            "..and one with two\r\n"
            ".\r\n"
            "Zweite Zeile: äöüß ÄÖÜ €\r\n")
    return message(subject, body.encode(),
                   extra="Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: 8bit\r\n")


def deliver(server: Server, *msgs: bytes, to: str = ALICE) -> None:
    """Delivers each message over SMTP_PORT, 8-bit ones with BODY=8BITMIME."""
    with smtplib.SMTP(*server.address("SMTP_PORT"), local_hostname="client.test",
                      timeout=TIMEOUT) as s:
        for m in msgs:
            opts = ["BODY=8BITMIME"] if any(b > 127 for b in m) else []
            refused = s.sendmail("sender@remote.test", [to], m, mail_options=opts)
            assert not refused, refused


def message_id(raw: bytes) -> str:
    m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", raw, flags=re.MULTILINE | re.IGNORECASE)
    assert m, f"no Message-ID in {raw[:300]!r}"
    return m.group(1).decode()


def subject_of(raw: bytes) -> str:
    m = re.search(rb"^Subject:[ \t]*([^\r\n]*)", raw, flags=re.MULTILINE | re.IGNORECASE)
    return m.group(1).decode() if m else ""


class Pop3(poplib.POP3):
    """poplib's client on the server's POP_PORT, calling the server by its name (so that STLS
    checks the certificate's name) while connecting to its loopback address, optionally from
    another source address."""

    def __init__(self, server: Server, key: str = "POP_PORT", source: str | None = None):
        self._address = server.address(key)
        self._source = source
        super().__init__(HOSTNAME, self._address[1], timeout=TIMEOUT)

    def _create_socket(self, timeout):
        return socket.create_connection(
            self._address, timeout, source_address=(self._source, 0) if self._source else None)


class Pop3Ssl(poplib.POP3_SSL):
    """poplib's implicit-TLS client on POPS_PORT, checking the certificate and its name."""

    def __init__(self, server: Server, context: ssl.SSLContext | None = None):
        self._address = server.address("POPS_PORT")
        super().__init__(HOSTNAME, self._address[1], timeout=TIMEOUT,
                         context=context or server.tls_context())

    def _create_socket(self, timeout):
        sock = socket.create_connection(self._address, timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)


class Closed(AssertionError):
    """The server closed the connection when a response was expected."""


class Raw:
    """A byte-exact POP3 client. Every read is bounded by TIMEOUT seconds."""

    def __init__(self, server: Server, key: str = "POP_PORT", source: str | None = None,
                 tls: bool | None = None):
        host, port = server.address(key)
        self.server = server
        sock = socket.create_connection((host, port), timeout=TIMEOUT,
                                        source_address=(source, 0) if source else None)
        if tls if tls is not None else key == "POPS_PORT":
            sock = server.tls_context().wrap_socket(sock, server_hostname=HOSTNAME)
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()
        assert self.greeting.startswith(b"+OK "), self.greeting

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(f"no response within {TIMEOUT}s; unread: {self.buf!r}") from None
        except (ConnectionResetError, ssl.SSLError) as e:
            raise Closed(f"connection ended ({e}); unread: {self.buf!r}") from None
        if not chunk:
            raise Closed(f"connection closed; unread: {self.buf!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One line with its CRLF."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def multi(self) -> bytes:
        """The body of a multi-line response as sent (still byte-stuffed), up to and without
        the terminating ".CRLF"."""
        out = b""
        while True:
            line = self.line()
            if line == b".\r\n":
                return out
            out += line

    def cmd(self, text: str | bytes) -> bytes:
        """Sends a command; returns the first line of the answer."""
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def login(self, user: str = ALICE, password: str = ALICE_PW) -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        r = self.cmd(f"PASS {password}")
        assert r.startswith(b"+OK"), r
        return r

    def closed(self, timeout: float = 10.0) -> bool:
        """Whether the server closes the connection within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self._fill()
        except Closed:
            return True
        except AssertionError:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)

    def drop(self) -> None:
        """Vanishes without QUIT, as a client that crashes or loses its network."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def plain(user: str, password: str, authz: str = "") -> str:
    """A SASL PLAIN response (RFC 4616), base64."""
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode()).decode()


def login(server: Server, user: str = ALICE, password: str = ALICE_PW) -> Pop3:
    """poplib, logged in from 127.0.0.1 (which may use passwords without TLS)."""
    p = Pop3(server)
    p.user(user)
    p.pass_(password)
    return p


def uidls(p: poplib.POP3) -> dict[int, str]:
    _, lines, _ = p.uidl()
    out = {}
    for line in lines:
        n, uid = line.decode().split()
        out[int(n)] = uid
    return out


def retr(p: poplib.POP3, n: int) -> bytes:
    """RETR as a client reads it: lines unstuffed, joined with CRLF."""
    _, lines, _ = p.retr(n)
    return b"".join(line + b"\r\n" for line in lines)


def imap(server: Server) -> imaplib.IMAP4:
    m = imaplib.IMAP4(*server.address("IMAP_PORT"), timeout=TIMEOUT)
    m.login(ALICE, ALICE_PW)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    return m


@dataclass
class ImapMessage:
    uid: int
    flags: set[str]
    raw: bytes


def inbox(server: Server) -> dict[str, ImapMessage]:
    """alice's INBOX over IMAP, by Message-ID, without changing any flag."""
    m = imap(server)
    try:
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        out = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, raw = item
            uid = int(re.search(rb"UID (\d+)", head).group(1))
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split())
            out[message_id(raw)] = ImapMessage(uid, flags, raw)
        return out
    finally:
        m.logout()


def uidvalidity(server: Server) -> int:
    m = imap(server)
    try:
        typ, data = m.status("INBOX", "(UIDVALIDITY)")
        assert typ == "OK", data
        return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
    finally:
        m.logout()


def login_lines(server: Server) -> list[str]:
    """The server's log lines of POP3 logins, successful or not."""
    return [line for line in server.log().splitlines()
            if re.search(r"\blogin( failed)?\b", line) and "pop3" in line]


# ---------------------------------------------------------------------------------------------
# 1. greeting, CAPA, TLS and who may send a password
# ---------------------------------------------------------------------------------------------


BASE_CAPS = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE",
             "IMPLEMENTATION"]


def test_greeting_and_capa(srv):
    """RFC 1939 §4: the greeting is +OK and names the server; it has no APOP timestamp, so
    APOP is not offered (poplib refuses it) and the command is refused. RFC 2449 §5: CAPA lists
    the extensions; from the server's own address USER and SASL PLAIN are allowed without TLS."""
    p = Pop3(srv)
    welcome = p.getwelcome()
    assert welcome.startswith(b"+OK ") and HOSTNAME.encode() in welcome, welcome
    assert b"<" not in welcome
    caps = p.capa()
    for name in BASE_CAPS + ["USER", "SASL", "STLS"]:
        assert name in caps, (name, caps)
    assert caps["SASL"] == ["PLAIN"] and caps["EXPIRE"] == ["NEVER"]
    assert caps["IMPLEMENTATION"] == ["mailstead"]
    with pytest.raises(poplib.error_proto):
        p.apop(ALICE, ALICE_PW)
    r = Raw(srv)
    assert r.cmd(f"APOP {ALICE} 0123456789abcdef0123456789abcdef").startswith(b"-ERR ")
    assert r.cmd("QUIT").startswith(b"+OK ")
    assert r.closed()
    p.quit()


def test_stls_on_pop_port_checks_the_certificate(srv):
    """RFC 2595 §4 and §2.3: a client that is not on the server's own address sees STLS but
    neither USER nor SASL; USER, PASS and AUTH are refused with [AUTH] naming STLS (RFC 3206).
    After STLS, with the certificate and its name checked, CAPA offers USER and SASL PLAIN and
    no more STLS, and the login works."""
    p = Pop3(srv, source=OTHER)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
    for send in (lambda: p.user(ALICE), lambda: p._shortcmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW)}")):
        with pytest.raises(poplib.error_proto) as e:
            send()
        assert str(e.value).startswith("b'-ERR [AUTH]") and "STLS" in str(e.value), e.value
    assert p.stls(context=srv.tls_context()).startswith(b"+OK")
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"], caps
    p.user(ALICE)
    assert p.pass_(ALICE_PW).startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()
    lines = login_lines(srv)
    assert len(lines) == 1 and "tls=true" in lines[0] and f"client={OTHER}" in lines[0], lines


def test_stls_refuses_a_certificate_the_client_does_not_trust(srv):
    """A client with only the system's CAs refuses the self-signed certificate: the check is
    real, and the session never logged in."""
    p = Pop3(srv)
    with pytest.raises(ssl.SSLCertVerificationError):
        p.stls(context=ssl.create_default_context())
    assert login_lines(srv) == []


def test_implicit_tls_on_pops_port(srv):
    """POPS_PORT speaks TLS from the first byte (RFC 8314); the certificate and the name are
    checked; STLS is neither offered nor accepted; passwords are allowed."""
    deliver(srv, message("over TLS"))
    p = Pop3Ssl(srv)
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps, caps
    with pytest.raises(poplib.error_proto):
        p._shortcmd("STLS")
    p.user(ALICE)
    p.pass_(ALICE_PW)
    assert p.stat()[0] == 1
    assert subject_of(retr(p, 1)) == "over TLS"
    p.quit()
    lines = login_lines(srv)
    assert len(lines) == 1 and "tls=true" in lines[0], lines
    with pytest.raises(ssl.SSLCertVerificationError):
        Pop3Ssl(srv, context=ssl.create_default_context())


def test_stls_drops_commands_pipelined_after_it(srv):
    """RFC 2595 §4 and the 2011 STARTTLS command injection: what a client sent in clear text
    after STLS is not run as commands of the TLS session."""
    r = Raw(srv, source=OTHER)
    r.send(f"STLS\r\nUSER {ALICE}\r\nPASS {ALICE_PW}\r\n")
    assert r.line().startswith(b"+OK")
    assert r.buf == b""
    r.sock = srv.tls_context().wrap_socket(r.sock, server_hostname=HOSTNAME)
    assert r.cmd("STAT") == b"-ERR log in first\r\n"
    assert r.cmd(f"PASS {ALICE_PW}") == b"-ERR send USER first\r\n"
    r.login()
    assert login_lines(srv)[0].count("tls=true") == 1


def test_plaintext_refused_from_another_address_unless_allowed(users):
    """Without TLS a client on another address may not send a password (RFC 2595 §2.3);
    ALLOW_PLAINTEXT_AUTH=y lets it, and the log says tls=false."""
    users.start(env=FAST)
    r = Raw(users, source=OTHER)
    for cmd in (f"USER {ALICE}", f"PASS {ALICE_PW}", f"AUTH PLAIN {plain(ALICE, ALICE_PW)}",
                "AUTH PLAIN"):
        reply = r.cmd(cmd)
        assert reply.startswith(b"-ERR [AUTH] ") and b"STLS" in reply, (cmd, reply)
    assert login_lines(users) == []
    users.restart(env={**FAST, "ALLOW_PLAINTEXT_AUTH": "y"})
    p = Pop3(users, source=OTHER)
    caps = p.capa()
    assert "USER" in caps and caps["SASL"] == ["PLAIN"] and "STLS" in caps, caps
    p.user(ALICE)
    p.pass_(ALICE_PW)
    p.quit()
    lines = login_lines(users)
    assert len(lines) == 1 and "tls=false" in lines[0] and f"client={OTHER}" in lines[0], lines


# ---------------------------------------------------------------------------------------------
# 2. logging in
# ---------------------------------------------------------------------------------------------


def test_auth_plain_with_and_without_initial_response(srv):
    """RFC 5034 §4: AUTH PLAIN with an initial response, and without one after the "+ "
    challenge; "*" cancels; AUTH alone lists the mechanisms; other mechanisms are refused;
    another authorization identity is refused."""
    r = Raw(srv)
    assert r.cmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW)}").startswith(b"+OK maildrop has 0 ")
    r = Raw(srv)
    assert r.cmd("AUTH PLAIN") == b"+ \r\n"
    assert r.cmd(plain(BOB, BOB_PW)).startswith(b"+OK ")
    r = Raw(srv)
    assert r.cmd("AUTH") == b"+OK mechanisms follow\r\n" and r.multi() == b"PLAIN\r\n"
    assert r.cmd("AUTH PLAIN") == b"+ \r\n"
    assert r.cmd("*") == b"-ERR authentication cancelled\r\n"
    assert r.cmd("AUTH CRAM-MD5").startswith(b"-ERR ")
    assert r.cmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW, authz=BOB)}").startswith(b"-ERR [AUTH]")
    assert r.cmd(f"AUTH PLAIN {plain(ALICE, 'wrong')}") == b"-ERR [AUTH] authentication failed\r\n"
    assert r.cmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW, authz=ALICE)}").startswith(b"+OK ")
    # poplib's own USER/PASS works the same.
    p = login(srv, BOB, BOB_PW)
    p.quit()


def test_wrong_passwords(srv):
    """A wrong password or an unknown user get the same -ERR [AUTH] (RFC 3206 §4, and
    AUTH-RESP-CODE); after three failures the connection is closed. No password reaches the
    log."""
    p = Pop3(srv)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong-" + ALICE_PW)
    assert str(e.value) == "b'-ERR [AUTH] authentication failed'", e.value
    r = Raw(srv)
    assert r.cmd("USER nobody@example.test").startswith(b"+OK")
    assert r.cmd("PASS whatever") == b"-ERR [AUTH] authentication failed\r\n"
    assert r.cmd("USER nobody@example.test").startswith(b"+OK")
    assert r.cmd("PASS whatever") == b"-ERR [AUTH] authentication failed\r\n"
    assert r.cmd(f"USER {ALICE}").startswith(b"+OK")
    reply = r.cmd("PASS another-wrong-one")
    assert reply.startswith(b"-ERR [AUTH] authentication failed") and b"closing" in reply
    assert r.closed()
    lines = login_lines(srv)
    assert len(lines) == 4 and all("login failed" in l for l in lines), lines
    assert "wrong-" not in srv.log() and "another-wrong-one" not in srv.log()


def test_pop3_access_flag_is_honoured(users):
    """`mailbox add --pop3 n` and `mailbox edit --pop3 n|y`: a mailbox without POP3 access
    cannot log in, by USER/PASS or AUTH; the refusal is [SYS/PERM] (RFC 3206 §3), which a
    client shows rather than asking for the password again. Given access again it can."""
    users.add_mailbox("carol@example.test", "carol-pw-5Fh", pop3=False)
    users.start(env=FAST)
    r = Raw(users)
    r.cmd("USER carol@example.test")
    assert r.cmd("PASS carol-pw-5Fh").startswith(b"-ERR [SYS/PERM] ")
    assert r.cmd(f"AUTH PLAIN {plain('carol@example.test', 'carol-pw-5Fh')}").startswith(
        b"-ERR [SYS/PERM] ")
    users.admin("mailbox", "edit", ALICE, "--pop3", "n")
    with pytest.raises(poplib.error_proto) as e:
        login(users)
    assert "[SYS/PERM]" in str(e.value)
    users.admin("mailbox", "edit", ALICE, "--pop3", "y")
    login(users).quit()


def test_one_log_line_per_login_without_secrets(srv):
    """Each login attempt is one line with protocol, user, client, tls and result; the
    password, in clear or as a PLAIN response, is never logged."""
    login(srv).quit()
    r = Raw(srv)
    r.cmd(f"AUTH PLAIN {plain(BOB, BOB_PW)}")
    r = Raw(srv)
    r.cmd(f"USER {ALICE}")
    r.cmd("PASS not-the-password")
    lines = login_lines(srv)
    assert len(lines) == 3, lines
    for line, user, result in zip(lines, (ALICE, BOB, ALICE), ("ok", "ok", "BadCredentials")):
        assert "protocol=" in line and "pop3" in line
        assert user in line and "client=127.0.0.1" in line and "tls=false" in line, line
        assert result in line, line
    log = srv.log()
    for secret in (ALICE_PW, BOB_PW, plain(BOB, BOB_PW), "not-the-password"):
        assert secret not in log


# ---------------------------------------------------------------------------------------------
# 3. the commands
# ---------------------------------------------------------------------------------------------


def test_every_command(srv):
    """RFC 1939 §5 and §7: STAT, LIST, UIDL, TOP, RETR, DELE, RSET, NOOP and QUIT, with poplib."""
    msgs = [message(f"Message {i}", "".join(f"body line {j}\r\n" for j in range(5)))
            for i in range(3)]
    deliver(srv, *msgs)
    p = login(srv)
    sizes = [len(m.raw) for m in inbox(srv).values()]
    count, octets = p.stat()
    assert count == 3 and octets == sum(sizes), (count, octets, sizes)
    _, listing, _ = p.list()
    assert [int(l.split()[1]) for l in listing] == sizes
    assert p.list(2).split() == [b"+OK", b"2", str(sizes[1]).encode()]
    ids = uidls(p)
    assert sorted(ids) == [1, 2, 3] and all(re.fullmatch(r"[0-9A-F]{16}", u) for u in ids.values())
    assert p.uidl(3).split()[2].decode() == ids[3]
    _, top, _ = p.top(1, 2)
    assert top[-3:] == [b"", b"body line 0", b"body line 1"] and b"Subject: Message 0" in top
    for n in (1, 2, 3):
        assert retr(p, n) == list(inbox(srv).values())[n - 1].raw
    assert p.dele(2).startswith(b"+OK")
    assert p.stat() == (2, sizes[0] + sizes[2])
    for cmd in (lambda: p.list(2), lambda: p.retr(2), lambda: p.dele(2), lambda: p.uidl(2)):
        with pytest.raises(poplib.error_proto):
            cmd()
    with pytest.raises(poplib.error_proto):
        p.retr(4)
    assert p.rset().startswith(b"+OK")
    assert p.stat() == (3, sum(sizes))
    assert p.noop().startswith(b"+OK")
    bye = p.quit()
    assert bye.startswith(b"+OK ") and b"0 messages deleted" in bye, bye
    assert len(inbox(srv)) == 3


def test_pipelined_commands_are_answered_in_order(srv):
    """RFC 2449 §6 PIPELINING: commands sent together are answered one after another."""
    deliver(srv, message("piped"))
    r = Raw(srv)
    r.send(f"USER {ALICE}\r\nPASS {ALICE_PW}\r\nSTAT\r\nLIST\r\nUIDL\r\nNOOP\r\nTOP 1 0\r\n"
           "RETR 1\r\nQUIT\r\n")
    assert r.line() == b"+OK send PASS\r\n"
    assert r.line().startswith(b"+OK maildrop has 1 messages")
    assert re.fullmatch(rb"\+OK 1 \d+\r\n", r.line())
    assert r.line().startswith(b"+OK 1 messages") and re.fullmatch(rb"1 \d+\r\n", r.multi())
    assert r.line().startswith(b"+OK") and re.fullmatch(rb"1 [0-9A-F]{16}\r\n", r.multi())
    assert r.line() == b"+OK\r\n"
    assert r.line().startswith(b"+OK") and b"Subject: piped" in r.multi()
    assert r.line().startswith(b"+OK") and b"Hello." in r.multi()
    assert r.line().startswith(b"+OK ")
    assert r.closed()


def test_message_bytes_are_exact(srv):
    """RFC 1939 §3: RETR sends the stored bytes in CRLF lines with lines that start with "."
    byte-stuffed; the announced and listed sizes are the octets before stuffing; 8-bit UTF-8
    passes unchanged. poplib, undoing the stuffing, gets exactly what IMAP serves."""
    deliver(srv, utf8_message("Grüße"), message("plain ascii"))
    stored = list(inbox(srv).values())
    r = Raw(srv)
    r.login()
    wires = []
    for n, m in enumerate(stored, start=1):
        assert r.cmd(f"LIST {n}") == f"+OK {n} {len(m.raw)}\r\n".encode()
        assert r.cmd(f"RETR {n}") == f"+OK {len(m.raw)} octets\r\n".encode()
        wire = r.multi()
        stuffed = b"".join(b"." + l if l.startswith(b".") else l
                           for l in m.raw.splitlines(keepends=True))
        assert wire == stuffed
        wires.append(wire)
    assert (b"\r\n..a line that starts with a dot\r\n...and one with two\r\n..\r\n"
            in wires[0]), wires[0]
    r.cmd("QUIT")
    p = login(srv)
    assert retr(p, 1) == stored[0].raw
    assert "Grüße aus Köln".encode() in retr(p, 1)
    _, top, _ = p.top(1, 3)
    assert top[-3:] == ["Grüße aus Köln! Ça va? — 日本語のテキスト ✓ 🙂".encode(),
                        b".a line that starts with a dot", b"..and one with two"]
    p.quit()


def test_a_message_without_a_final_line_end_is_sent_in_crlf_lines(srv):
    """A message filed by an IMAP client with bare LFs and no line end after its last line is
    sent in CRLF lines with a CRLF added at the end; STAT, LIST and RETR's size all count the
    octets sent."""
    m = imap(srv)
    raw = b"Subject: bare LF\nMessage-ID: <lf@client.test>\n\nline one\n.dotted\nlast line"
    typ, data = m.append("INBOX", None, None, raw)
    assert typ == "OK", data
    m.logout()
    assert inbox(srv)["<lf@client.test>"].raw.endswith(b"\nlast line")
    sent = raw.replace(b"\n", b"\r\n") + b"\r\n"
    r = Raw(srv)
    r.login()
    assert r.cmd("STAT") == f"+OK 1 {len(sent)}\r\n".encode()
    assert r.cmd("LIST 1") == f"+OK 1 {len(sent)}\r\n".encode()
    assert r.cmd("RETR 1") == f"+OK {len(sent)} octets\r\n".encode()
    assert r.multi() == sent.replace(b"\r\n.dotted", b"\r\n..dotted")
    r.cmd("QUIT")


def test_maildrop_is_fixed_at_login(srv):
    """RFC 1939 §4: the session's maildrop is the INBOX at login; mail arriving meanwhile
    shows in the next session."""
    deliver(srv, message("before"))
    p = login(srv)
    deliver(srv, message("during"))
    assert p.stat()[0] == 1
    assert len(uidls(p)) == 1
    p.quit()
    p = login(srv)
    assert p.stat()[0] == 2
    p.quit()


# ---------------------------------------------------------------------------------------------
# 4. UIDLs, the lock, and when mail is deleted
# ---------------------------------------------------------------------------------------------


def test_uidls_are_stable_across_sessions_and_deletions(srv):
    """RFC 1939 §7 UIDL: a message keeps its unique-id across sessions, also after other
    messages are deleted and the numbers shift. The form is mailcow's Dovecot
    pop3_uidl_format %08Xu%08Xv: the IMAP UID and UIDVALIDITY in 8 upper-case hex digits."""
    msgs = [message(f"uidl {i}") for i in range(4)]
    deliver(srv, *msgs)
    p = login(srv)
    first = uidls(p)
    p.quit()
    p = login(srv)
    assert uidls(p) == first
    assert p.dele(2).startswith(b"+OK")
    p.quit()
    p = login(srv)
    after = uidls(p)
    assert list(after.values()) == [first[1], first[3], first[4]]
    deliver(srv, message("uidl new"))
    p.quit()
    p = login(srv)
    latest = uidls(p)
    assert list(latest.values())[:3] == list(after.values()) and latest[4] not in first.values()
    by_mid = inbox(srv)
    validity = uidvalidity(srv)
    for n, uid in latest.items():
        assert uid == f"{by_mid[message_id(retr(p, n))].uid:08X}{validity:08X}"
    p.quit()


def test_second_session_gets_in_use(srv):
    """RFC 1939 §4 and RFC 2449 §8.1: one session per mailbox; a second login, on either
    port, gets -ERR [IN-USE]; other mailboxes are not affected; the lock goes with the first
    session, by QUIT or by a dropped connection."""
    first = login(srv)
    r = Raw(srv)
    r.cmd(f"USER {ALICE}")
    assert r.cmd(f"PASS {ALICE_PW}").startswith(b"-ERR [IN-USE] ")
    p = Pop3Ssl(srv)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_(ALICE_PW)
    assert "[IN-USE]" in str(e.value)
    login(srv, BOB, BOB_PW).quit()
    first.quit()
    # The refused connection may log in now.
    assert r.cmd(f"AUTH PLAIN {plain(ALICE, ALICE_PW)}").startswith(b"+OK ")
    r.drop()
    wait_for(lambda: _can_log_in(srv), 10, "the lock of a dropped session to be released",
             srv.log_tail)


def _can_log_in(server: Server) -> bool:
    r = Raw(server)
    r.cmd(f"USER {ALICE}")
    ok = r.cmd(f"PASS {ALICE_PW}").startswith(b"+OK")
    r.cmd("QUIT")
    return ok


def test_dele_and_quit_delete_and_imap_agrees(srv):
    """RFC 1939 §6: DELE only marks; QUIT removes, says how many, and the messages are gone
    for IMAP too. RETR marks the messages it sent \\Seen at QUIT (as Dovecot does); TOP does
    not."""
    msgs = [message(f"m{i}") for i in range(4)]
    deliver(srv, *msgs)
    p = login(srv)
    p.dele(1)
    p.dele(3)
    retr(p, 2)
    p.top(4, 1)
    before = inbox(srv)
    assert len(before) == 4 and not any("\\Seen" in m.flags or "\\Deleted" in m.flags
                                        for m in before.values())
    bye = p.quit()
    assert b"2 messages deleted" in bye, bye
    after = inbox(srv)
    assert set(after) == {message_id(msgs[1]), message_id(msgs[3])}
    assert "\\Seen" in after[message_id(msgs[1])].flags
    assert "\\Seen" not in after[message_id(msgs[3])].flags
    p = login(srv)
    assert p.stat()[0] == 2
    p.quit()


def test_a_dropped_connection_deletes_nothing(srv):
    """RFC 1939 §6: a session that ends without QUIT does not enter the UPDATE state: DELE
    marks are forgotten and no \\Seen is set, whether the client vanishes between commands,
    in the middle of one, or in the middle of QUIT."""
    deliver(srv, *(message(f"keep {i}") for i in range(3)))
    for tail in (b"", b"RETR 2", b"QU"):
        r = Raw(srv)
        r.login()
        assert r.cmd("DELE 1").startswith(b"+OK")
        assert r.cmd("DELE 3").startswith(b"+OK")
        assert r.cmd("RETR 2").startswith(b"+OK")
        r.multi()
        r.send(tail)
        r.drop()
        wait_for(lambda: _can_log_in(srv), 10, "the dropped session to end", srv.log_tail)
        kept = inbox(srv)
        assert len(kept) == 3, tail
        assert not any(m.flags & {"\\Seen", "\\Deleted"} for m in kept.values()), kept


# ---------------------------------------------------------------------------------------------
# 5. bad input
# ---------------------------------------------------------------------------------------------


def test_over_long_lines_garbage_and_unknown_commands(srv):
    """RFC 2449 §4: a command of more than 255 octets gets -ERR; a line of megabytes gets one
    -ERR and is not kept; NUL and other control bytes, invalid UTF-8 and unknown commands get
    -ERR; the session goes on working after all of them."""
    r = Raw(srv)
    assert r.cmd("USER " + "a" * 300).startswith(b"-ERR ")
    big = b"X" * (4 << 20)
    r.send(big)
    r.send(b"\r\n")
    assert r.line().startswith(b"-ERR ")
    assert r.cmd(b"\x00\x01\x02\xff\xfe") .startswith(b"-ERR ")
    assert r.cmd(b"USER \xc3\x28") .startswith(b"-ERR ")
    assert r.cmd(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03").startswith(b"-ERR ")
    assert r.cmd("XYZZY") == b"-ERR unknown command\r\n"
    assert r.cmd("RETR one").startswith(b"-ERR ")
    assert r.cmd("STAT") == b"-ERR log in first\r\n"
    assert r.cmd("NOOP") .startswith(b"-ERR ")
    r.login()
    assert r.cmd("STAT") == b"+OK 0 0\r\n"
    assert r.cmd("RETR 99999999999999999999") == b"-ERR no such message\r\n"
    assert r.cmd("TOP 1 -1").startswith(b"-ERR ")
    r.cmd("QUIT")
    assert r.closed()


def test_too_many_bad_commands_close_the_connection(srv):
    """Bad commands cost a bounded amount: after 20 the server closes the connection."""
    r = Raw(srv)
    replies = []
    for _ in range(40):
        try:
            replies.append(r.cmd("BOGUS"))
        except Closed:
            break
    assert len(replies) == 20 and b"closing" in replies[-1], replies[-3:]
    assert r.closed()


def test_a_client_that_vanishes_mid_line_costs_nothing(srv):
    """A client that sends half a command (or half an AUTH exchange) and goes leaves no lock
    and no half-done work behind; the server goes on serving."""
    deliver(srv, message("still here"))
    r = Raw(srv)
    r.send(b"USER " + ALICE.encode())
    r.drop()
    r = Raw(srv)
    r.cmd("AUTH PLAIN")
    r.send(b"AGFsaWNl")
    r.drop()
    p = login(srv)
    assert p.stat()[0] == 1
    p.quit()


# ---------------------------------------------------------------------------------------------
# 6. fetchmail
# ---------------------------------------------------------------------------------------------


def need(program: str, package: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (apt-get install {package})")


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def fetchmail_setup(server: Server, home: Path, mode: str) -> tuple[Path, Path]:
    """A fetchmailrc for alice over POP3 with UIDLs and an MDA that writes each message to a
    file of its own. mode: "pop3s" (ssl on POPS_PORT) or "stls" (on POP_PORT); the
    certificate is checked against the server's own and the name mail.example.test."""
    key = "POPS_PORT" if mode == "pop3s" else "POP_PORT"
    _, port = server.address(key)
    out = home / "delivered"
    out.mkdir(parents=True)
    mda = home / "mda.sh"
    mda.write_text(f'#!/bin/sh\nexec cat > "$(mktemp {out}/msg.XXXXXXXX)"\n')
    mda.chmod(0o755)
    tls = {
        "pop3s": f"ssl sslcertck sslcertfile {server.cert_path} sslcommonname {HOSTNAME}",
        "stls": f"sslproto 'tls1.2+' sslcertck sslcertfile {server.cert_path} "
                f"sslcommonname {HOSTNAME}",
    }[mode]
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 port {port} protocol POP3 uidl timeout 30\n"
        f'  user "{ALICE}" there with password "{ALICE_PW}"\n'
        f"  {tls}\n"
        f'  mda "{mda}"\n'
        "  no rewrite\n"
    )
    rc.chmod(0o600)
    return rc, out


def fetchmail(server: Server, rc: Path, home: Path, *args: str) -> tuple[int, str]:
    """One fetchmail run; exit 0 is "mail fetched", 1 "no mail". It logs in once, over TLS."""
    before = len(login_lines(server))
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "FETCHMAILHOME": str(home)}
    # A lock file of its own: as root fetchmail would share one with every other run.
    args_ = ["fetchmail", "-f", str(rc), "--pidfile", str(home / "fetchmail.pid"), "-v",
             "--nodetach", *args]
    try:
        proc = subprocess.run(args_, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=CLIENT_TIMEOUT, cwd=home)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"fetchmail still ran after {CLIENT_TIMEOUT}s\n"
                             f"{(e.output or b'').decode(errors='replace')[-8000:]}") from None
    output = proc.stdout.decode(errors="replace")
    assert proc.returncode in (0, 1), f"fetchmail exited with {proc.returncode}\n{output[-8000:]}"
    logins = login_lines(server)[before:]
    assert len(logins) == 1 and "tls=true" in logins[0] and "failed" not in logins[0], (
        logins, output[-4000:])
    assert ALICE_PW not in server.log()
    return proc.returncode, output


def fetched(out: Path, seen: set[Path]) -> list[bytes]:
    new = sorted(set(out.iterdir()) - seen)
    seen.update(new)
    return [p.read_bytes() for p in new]


def assert_fetched(got: list[bytes], on_server: dict[str, bytes], output: str) -> None:
    """Each fetched message is a server message, complete: fetchmail's Received header on top
    of the server's bytes with LF line ends. fetchmail moves the Return-Path line above its
    Received header, so that line is compared on its own."""
    for raw in got:
        mid = message_id(raw)
        assert mid in on_server, f"fetched a message the server never had: {mid}\n{output}"
        expected = lf(on_server[mid])
        return_path = re.match(rb"Return-Path: [^\n]*\n", expected)
        if return_path:
            assert raw.startswith(return_path.group(0)), raw[:300]
            raw = raw[return_path.end():]
            expected = expected[return_path.end():]
        assert raw.endswith(expected), (subject_of(raw), len(raw), len(expected))
        prefix = raw[:len(raw) - len(expected)]
        assert re.fullmatch(rb"(Received: [^\n]*\n([ \t][^\n]*\n)*)?", prefix), prefix
    assert len({message_id(m) for m in got}) == len(got), "a message was delivered twice"


@pytest.mark.parametrize("mode", ["pop3s", "stls"])
def test_fetchmail_nokeep(srv, tmp_path: Path, mode: str):
    """fetchmail --nokeep over POP3 fetches every message complete (8-bit and dotted lines
    included) and leaves the INBOX empty, also for IMAP."""
    need("fetchmail", "fetchmail")
    msgs = [message(f"Fetch me {i}") for i in range(3)]
    msgs += [utf8_message("UTF-8 for fetchmail"),
             message("big", "".join(f"line {i} " + "x" * 70 + "\r\n" for i in range(4000)))]
    deliver(srv, *msgs)
    on_server = {mid: m.raw for mid, m in inbox(srv).items()}
    home = tmp_path / "fm-home"
    rc, out = fetchmail_setup(srv, home, mode)
    code, output = fetchmail(srv, rc, home, "--nokeep")
    assert code == 0, output
    got = fetched(out, set())
    assert sorted(message_id(m) for m in got) == sorted(message_id(m) for m in msgs), output
    assert_fetched(got, on_server, output)
    assert inbox(srv) == {}, "fetchmail --nokeep left messages on the server"
    code, output = fetchmail(srv, rc, home, "--nokeep")
    assert code == 1, output


def test_fetchmail_keep_with_uidl(srv, tmp_path: Path):
    """fetchmail --keep with `uidl`: it remembers the UIDLs it fetched, so a second run fetches
    nothing and a later one only the new message; the server keeps everything. With keep,
    fetchmail reads by TOP (n 99999999) rather than RETR, so the messages stay unseen."""
    need("fetchmail", "fetchmail")
    first = [message("Keep A"), utf8_message("Keep B"), message("Keep C")]
    deliver(srv, *first)
    home = tmp_path / "fm-home"
    rc, out = fetchmail_setup(srv, home, "stls")
    seen: set[Path] = set()
    code, output = fetchmail(srv, rc, home, "--keep")
    got = fetched(out, seen)
    assert code == 0 and sorted(subject_of(m) for m in got) == ["Keep A", "Keep B", "Keep C"], \
        output
    server = inbox(srv)
    assert_fetched(got, {mid: m.raw for mid, m in server.items()}, output)
    assert len(server) == 3 and not any("\\Seen" in m.flags for m in server.values()), output

    code, output = fetchmail(srv, rc, home, "--keep")
    assert code == 1 and fetched(out, seen) == [], output

    deliver(srv, message("Keep D, new"))
    code, output = fetchmail(srv, rc, home, "--keep")
    got = fetched(out, seen)
    assert code == 0 and [subject_of(m) for m in got] == ["Keep D, new"], output
    assert len(inbox(srv)) == 4
    ids = (home / ".fetchids").read_text()
    validity = uidvalidity(srv)
    for m in inbox(srv).values():
        assert f"{m.uid:08X}{validity:08X}" in ids, ids
