"""End-to-end tests of the ManageSieve service (RFC 5804) on SIEVE_PORT.

Clients are sieve-connect (Debian's package), as a user would run it, with STARTTLS and the
server's certificate really checked; and `Sieve` below, a byte-exact client over a raw socket
for everything sieve-connect hides (every command, both literal forms, the exact responses,
another source address, bad input). Each test has its own server; the RFC section a test
checks is named in its docstring."""

from __future__ import annotations

import base64
import re
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import HOSTNAME, Server, wait_for

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice-pw-Zr4Tq8Lm"
BOB = "bob@example.test"
BOB_PW = "bob-pw-Ws2Kc6Yv"
#: Keeps failed-login tests fast; the default is 2s.
FAST = {"AUTH_FAILURE_DELAY": "0s"}
TIMEOUT = 15.0
#: mailstead_sieve::script limits.
MAX_SCRIPT_SIZE = 1 << 20
MAX_SCRIPTS = 100
MAX_STORAGE = 8 << 20

GOOD = b'require ["fileinto"];\r\nif header :contains "subject" "report" {\r\n  fileinto "Reports";\r\n}\r\n'
#: Line 4 lacks its semicolon: the error is found on line 5.
BROKEN = b'require "fileinto";\r\n\r\nif true {\r\n  fileinto "x"\r\n}\r\n'


# ---------------------------------------------------------------------------------------------
# the raw client
# ---------------------------------------------------------------------------------------------


class Closed(AssertionError):
    """The server closed the connection."""


@dataclass
class Response:
    """Lines before the status line (literals decoded), and the status line's parts."""

    status: str = ""
    code: str = ""
    text: str = ""
    data: list[bytes] = field(default_factory=list)
    raw: bytes = b""

    def __repr__(self) -> str:
        return f"Response({self.raw.decode(errors='replace')[-3000:]!r})"


STATUS = re.compile(rb'^(OK|NO|BYE)(?: \((.*?)\))?(?: (.*))?\r\n$', re.S)


def unquote(s: bytes) -> bytes:
    if s.startswith(b'"') and s.endswith(b'"'):
        return re.sub(rb'\\(.)', rb'\1', s[1:-1])
    return s


def quote(s: str | bytes) -> bytes:
    if isinstance(s, str):
        s = s.encode()
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def lit(data: bytes | str, sync: bool = False) -> bytes:
    """A literal from the client: {n+} (RFC 5804 §4), or {n} which is sent the same way."""
    if isinstance(data, str):
        data = data.encode()
    return b"{%d%s}\r\n" % (len(data), b"" if sync else b"+") + data


def plain(user: str, password: str, authz: str = "") -> bytes:
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode())


class Sieve:
    """A byte-exact ManageSieve client. Every read is bounded by TIMEOUT seconds."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buf = b""
        self.greeting = Response()

    @classmethod
    def connect(cls, server: Server, source: str | None = None) -> "Sieve":
        host, port = server.address("SIEVE_PORT")
        sock = socket.create_connection((host, port), timeout=TIMEOUT,
                                        source_address=(source, 0) if source else None)
        c = cls(sock)
        c.greeting = c.response()
        assert c.greeting.status == "OK", c.greeting
        return c

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(f"no response within {TIMEOUT:.0f}s; unread: {self.buf!r}") from None
        except (ConnectionResetError, ssl.SSLError) as e:
            raise Closed(f"connection ended ({e}); unread: {self.buf!r}") from None
        if not chunk:
            raise Closed(f"connection closed; unread: {self.buf!r}")
        self.buf += chunk

    def line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[: i + 2], self.buf[i + 2:]
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> Response:
        """Lines up to the one that starts with OK, NO or BYE."""
        r = Response()
        while True:
            line = self.line()
            r.raw += line
            m = re.match(rb"^\{(\d+)\}\r\n$", line)
            if m:
                data = self.exactly(int(m.group(1)))
                r.raw += data
                r.data.append(data)
                rest = self.line()
                r.raw += rest
                assert rest == b"\r\n", r
                continue
            m = STATUS.match(line)
            if m:
                r.status = m.group(1).decode()
                r.code = (m.group(2) or b"").decode()
                r.text = unquote(m.group(3) or b"").decode(errors="replace")
                return r
            r.data.append(line[:-2])

    def command(self, *parts: bytes | str) -> Response:
        """Sends the parts joined by spaces and CRLF; reads the response."""
        self.send(b" ".join(p.encode() if isinstance(p, str) else p for p in parts) + b"\r\n")
        return self.response()

    def ok(self, *parts: bytes | str) -> Response:
        r = self.command(*parts)
        assert r.status == "OK", f"{parts!r}: {r!r}"
        return r

    def auth(self, user: str = ALICE, password: str = ALICE_PW) -> Response:
        return self.command(b'AUTHENTICATE "PLAIN"', quote(plain(user, password)))

    def login(self, user: str = ALICE, password: str = ALICE_PW) -> None:
        r = self.auth(user, password)
        assert r.status == "OK", r

    def starttls(self, server: Server) -> Response:
        """STARTTLS with the server's certificate checked; returns the capabilities and OK
        the server sends after the handshake (§2.2)."""
        r = self.ok("STARTTLS")
        assert self.buf == b"", f"bytes after the OK to STARTTLS: {self.buf!r}"
        self.sock = server.tls_context().wrap_socket(self.sock, server_hostname=server.hostname)
        self.sock.settimeout(TIMEOUT)
        return self.response()

    def put(self, name: str, script: bytes, sync: bool = False) -> Response:
        return self.command(b"PUTSCRIPT", quote(name), lit(script, sync))

    def names(self) -> dict[str, bool]:
        """LISTSCRIPTS as {name: active}."""
        r = self.ok("LISTSCRIPTS")
        out = {}
        for line in r.data:
            m = re.match(rb'^("(?:[^"\\]|\\.)*")( ACTIVE)?$', line)
            assert m, r
            out[unquote(m.group(1)).decode()] = bool(m.group(2))
        return out

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

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def capabilities(r: Response) -> dict[str, str | None]:
    """The capability lines of a greeting or CAPABILITY response."""
    caps = {}
    for line in r.data:
        m = re.match(rb'^("(?:[^"\\]|\\.)*")(?: ("(?:[^"\\]|\\.)*"))?$', line)
        assert m, f"not a capability line: {line!r}"
        caps[unquote(m.group(1)).decode()] = (
            unquote(m.group(2)).decode() if m.group(2) is not None else None)
    return caps


def login_lines(server: Server) -> list[str]:
    return [l for l in server.log().splitlines()
            if re.search(r'\blogin protocol="?managesieve\b', l)]


def failed_lines(server: Server) -> list[str]:
    return [l for l in server.log().splitlines()
            if re.search(r'\blogin failed protocol="?managesieve\b', l)]


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
    """A running server with alice@ and bob@example.test and no pause after failed logins."""
    return users.start(env=FAST)


# ---------------------------------------------------------------------------------------------
# 1. greeting, capabilities, TLS, logging in
# ---------------------------------------------------------------------------------------------


def test_greeting_and_capability(srv):
    """RFC 5804 §1.7 and §2.4: the greeting is the capability list and OK; CAPABILITY gives
    the same list. From the server's own address PLAIN is offered before TLS."""
    c = Sieve.connect(srv)
    caps = capabilities(c.greeting)
    assert caps["IMPLEMENTATION"].startswith("mailstead "), caps
    assert caps["SASL"] == "PLAIN", caps
    sieve = caps["SIEVE"].split()
    for ext in ("fileinto", "vacation", "imap4flags", "envelope", "body", "variables",
                "enotify", "include"):
        assert ext in sieve, (ext, sieve)
    assert "regex" not in sieve
    assert caps["NOTIFY"] == "mailto" and caps["MAXREDIRECTS"] == "4", caps
    assert caps["VERSION"] == "1.0" and "STARTTLS" in caps and "UNAUTHENTICATE" in caps, caps
    assert "OWNER" not in caps
    r = c.ok("CAPABILITY")
    assert capabilities(r) == caps
    c.login()
    caps = capabilities(c.ok("capability"))
    assert caps["OWNER"] == ALICE and "STARTTLS" not in caps, caps


def test_starttls_resends_capabilities_and_drops_pipelined_input(srv):
    """RFC 5804 §2.2: after the handshake (the certificate checked against the server's
    name) the server sends the capabilities again, without STARTTLS, then OK. Commands sent
    in clear text behind STARTTLS are never executed."""
    c = Sieve.connect(srv)
    c.send(b"STARTTLS\r\n" + b'AUTHENTICATE "PLAIN" ' + quote(plain(ALICE, ALICE_PW))
           + b"\r\nLISTSCRIPTS\r\n")
    r = c.response()
    assert r.status == "OK", r
    assert c.buf == b"", f"clear-text bytes after the OK to STARTTLS: {c.buf!r}"
    c.sock = srv.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
    c.sock.settimeout(TIMEOUT)
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    r = c.response()
    assert r.status == "OK", r
    caps = capabilities(r)
    assert "STARTTLS" not in caps and caps["SASL"] == "PLAIN", caps
    # Not logged in: the pipelined AUTHENTICATE was dropped.
    r = c.command("LISTSCRIPTS")
    assert r.status == "NO", r
    assert login_lines(srv) == []
    r = c.command("STARTTLS")
    assert r.status == "NO", r
    c.login()
    wait_for(lambda: any("tls=true" in l for l in login_lines(srv)), 10,
             "a login line with tls=true", srv.log_tail)


def test_plaintext_authenticate_refused_from_another_address(srv):
    """RFC 5804 §2.1 and §1.3 ENCRYPT-NEEDED: a client that is not on the server's own address
    gets an empty SASL list before TLS, and AUTHENTICATE PLAIN is refused; after STARTTLS it
    works."""
    c = Sieve.connect(srv, source="127.0.0.2")
    caps = capabilities(c.greeting)
    assert caps["SASL"] == "" and "STARTTLS" in caps, caps
    r = c.auth()
    assert (r.status, r.code) == ("NO", "ENCRYPT-NEEDED"), r
    caps = capabilities(c.starttls(srv))
    assert caps["SASL"] == "PLAIN", caps
    c.login()
    c.ok("LISTSCRIPTS")
    lines = login_lines(srv)
    assert len(lines) == 1 and "client=127.0.0.2" in lines[0] and "tls=true" in lines[0], lines


def test_authenticate_with_continuation_and_cancel(srv):
    """RFC 5804 §2.1: without an initial response the server sends an empty challenge (a
    string); the client answers with a string (quoted or a literal), or "*" to cancel, which
    is answered NO."""
    c = Sieve.connect(srv)
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""\r\n'
    r = c.command(b'"*"')
    assert r.status == "NO", r
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""\r\n'
    r = c.command(lit(plain(ALICE, ALICE_PW)))
    assert r.status == "OK", r
    c.ok("LISTSCRIPTS")
    # An authorization identity equal to the user is fine, another one is not.
    c2 = Sieve.connect(srv)
    r = c2.command(b'AUTHENTICATE "PLAIN"', quote(plain(BOB, BOB_PW, authz=ALICE)))
    assert r.status == "NO", r
    r = c2.command(b'AUTHENTICATE "PLAIN"', lit(plain(BOB, BOB_PW, authz=BOB), sync=True))
    assert r.status == "OK", r
    r = c2.command(b'AUTHENTICATE "PLAIN"', quote(plain(BOB, BOB_PW)))
    assert r.status == "NO", r


def test_wrong_password_then_too_many(users):
    """A wrong password, or an unknown user, gets NO after the configured pause; the log has a
    "login failed" line without the password. The third failure closes the connection."""
    users.start(env={"AUTH_FAILURE_DELAY": "1s"})
    c = Sieve.connect(users)
    r = c.auth(ALICE, "wrong-Password-8Xq")
    assert r.status == "NO", r
    r = c.auth("nobody@example.test", "wrong-Password-8Xq")
    assert r.status == "NO", r
    r = c.command(b'AUTHENTICATE "DIGEST-MD5"')
    assert r.status == "NO", r
    r = c.auth(ALICE, "wrong-Password-8Xq")
    assert r.status == "BYE", r
    assert c.closed()
    failed = failed_lines(users)
    assert len(failed) == 3 and ALICE in failed[0] and "client=127.0.0.1" in failed[0], failed
    log = users.log()
    assert "wrong-Password-8Xq" not in log
    assert plain(ALICE, "wrong-Password-8Xq").decode() not in log
    c = Sieve.connect(users)
    c.login()
    assert len(login_lines(users)) == 1


def test_sieve_access_flag_is_honoured(users):
    """mailcow's sieve_access: `mailbox add --sieve n` and `mailbox edit --sieve n|y`. A
    mailbox without it cannot log in to ManageSieve; given it again, it can."""
    users.add_mailbox("carol@example.test", "carol-pw-6Gh", sieve=False)
    users.start(env=FAST)
    c = Sieve.connect(users)
    r = c.auth("carol@example.test", "carol-pw-6Gh")
    assert r.status == "NO", r
    users.admin("mailbox", "edit", ALICE, "--sieve", "n")
    r = c.auth()
    assert r.status in ("NO", "BYE"), r
    users.admin("mailbox", "edit", ALICE, "--sieve", "y")
    c = Sieve.connect(users)
    c.login()
    c.ok("LISTSCRIPTS")


def test_log_has_one_line_per_login_without_secrets(srv):
    """Each login is logged once with the protocol, the user, the client's address and
    whether TLS was on; no password or SASL response ever reaches the log."""
    a = Sieve.connect(srv)
    a.login()
    b = Sieve.connect(srv)
    b.login(BOB, BOB_PW)
    lines = login_lines(srv)
    assert len(lines) == 2, lines
    assert f"user={ALICE}" in lines[0] and "client=127.0.0.1" in lines[0], lines
    assert "tls=false" in lines[0] and re.search(r'result="?ok\b', lines[0]), lines
    assert f"user={BOB}" in lines[1], lines
    log = srv.log()
    for secret in (ALICE_PW, BOB_PW, plain(ALICE, ALICE_PW).decode(), plain(BOB, BOB_PW).decode()):
        assert secret not in log


# ---------------------------------------------------------------------------------------------
# 2. scripts
# ---------------------------------------------------------------------------------------------


def test_every_script_command(srv):
    """RFC 5804 §2.5-§2.14 in one session: PUTSCRIPT with both literal forms, LISTSCRIPTS with
    the ACTIVE mark, SETACTIVE, GETSCRIPT as a literal, HAVESPACE, CHECKSCRIPT, RENAMESCRIPT,
    DELETESCRIPT, NOOP with its tag, UNAUTHENTICATE and LOGOUT."""
    c = Sieve.connect(srv)
    r = c.command("LISTSCRIPTS")
    assert r.status == "NO", "script commands need a login"
    c.login()
    assert c.names() == {}
    c.ok("HAVESPACE", quote("main"), str(len(GOOD)))
    assert c.put("main", GOOD).status == "OK"
    assert c.put("other", b"keep;\r\n", sync=True).status == "OK"
    assert c.names() == {"main": False, "other": False}
    c.ok("SETACTIVE", quote("main"))
    assert c.names() == {"main": True, "other": False}
    r = c.ok("GETSCRIPT", quote("main"))
    assert r.data == [GOOD], r
    r = c.command("GETSCRIPT", quote("nope"))
    assert (r.status, r.code) == ("NO", "NONEXISTENT"), r
    # Replacing the active script keeps it active.
    assert c.put("main", b"stop;\r\n").status == "OK"
    assert c.names() == {"main": True, "other": False}
    assert c.ok("GETSCRIPT", quote("main")).data == [b"stop;\r\n"]
    c.ok("CHECKSCRIPT", lit(GOOD))
    r = c.command("DELETESCRIPT", quote("main"))
    assert (r.status, r.code) == ("NO", "ACTIVE"), r
    r = c.command("RENAMESCRIPT", quote("main"), quote("other"))
    assert (r.status, r.code) == ("NO", "ALREADYEXISTS"), r
    r = c.command("RENAMESCRIPT", quote("nope"), quote("x"))
    assert (r.status, r.code) == ("NO", "NONEXISTENT"), r
    c.ok("RENAMESCRIPT", quote("main"), quote("renamed"))
    assert c.names() == {"renamed": True, "other": False}
    r = c.command("SETACTIVE", quote("nope"))
    assert (r.status, r.code) == ("NO", "NONEXISTENT"), r
    c.ok("SETACTIVE", quote("other"))
    assert c.names() == {"renamed": False, "other": True}
    c.ok("SETACTIVE", b'""')
    assert c.names() == {"renamed": False, "other": False}
    c.ok("DELETESCRIPT", quote("renamed"))
    r = c.command("DELETESCRIPT", quote("renamed"))
    assert (r.status, r.code) == ("NO", "NONEXISTENT"), r
    r = c.ok("NOOP", quote("STARTTLS-SYNC-42"))
    assert r.code == 'TAG "STARTTLS-SYNC-42"', r
    c.ok("UNAUTHENTICATE")
    assert c.command("LISTSCRIPTS").status == "NO"
    c.login(BOB, BOB_PW)
    assert c.names() == {}, "scripts belong to their user"
    c.ok("LOGOUT")
    assert c.closed()


def test_names_with_quotes_and_utf8(srv):
    """RFC 5804 §1.6: a name is UTF-8 without control characters; quotes and backslashes are
    escaped in quoted strings; a name may also come as a literal. Forbidden names are
    refused."""
    c = Sieve.connect(srv)
    c.login()
    name = 'Urlaub "Sommer" \\ ü €'
    assert c.put(name, b"keep;").status == "OK"
    assert c.command(b"PUTSCRIPT", lit("als literal"), lit(b"keep;")).status == "OK"
    assert c.names() == {name: False, "als literal": False}
    assert c.ok("GETSCRIPT", lit(name)).data == [b"keep;"]
    for bad in (b'"a\x01b"', b'""', quote("x" * 600), lit(b"a\r\nb"), b'"\xff\xfe"'):
        r = c.command(b"PUTSCRIPT", bad, lit(b"keep;"))
        assert r.status == "NO", (bad, r)
    assert len(c.names()) == 2


def test_broken_script_is_refused_with_its_line(srv):
    """RFC 5804 §2.6 and §2.12: PUTSCRIPT and CHECKSCRIPT of a broken script answer NO with
    the line and the reason, as Pigeonhole does ("line N: ..."); nothing is stored. An
    extension the server does not run is refused the same way."""
    c = Sieve.connect(srv)
    c.login()
    r = c.put("broken", BROKEN)
    assert r.status == "NO" and r.text.startswith("line 5: "), r
    r = c.command("CHECKSCRIPT", lit(BROKEN))
    assert r.status == "NO" and r.text.startswith("line 5: "), r
    r = c.put("regex", b'keep;\r\nrequire "regex";\r\n')
    assert r.status == "NO" and r.text.startswith("line 2: ") and "regex" in r.text, r
    r = c.put("binary", b"keep;\r\n\xff\xfe\r\n")
    assert r.status == "NO" and "line 2" in r.text, r
    deep = b"if true {" * 60 + b"keep;" + b"}" * 60
    r = c.put("deep", deep)
    assert r.status == "NO", r
    assert c.names() == {}


def test_quota_refusals_and_havespace(srv):
    """RFC 5804 §1.5, §2.5, §2.6: QUOTA/MAXSIZE for a script over 1 MiB or for scripts over
    8 MiB together, QUOTA/MAXSCRIPTS past 100 scripts; HAVESPACE answers by the same rules;
    replacing a script counts it once."""
    c = Sieve.connect(srv)
    c.login()
    r = c.command("HAVESPACE", quote("big"), str(MAX_SCRIPT_SIZE + 1))
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSIZE"), r
    big = b"#" * (MAX_SCRIPT_SIZE - 7) + b"\nkeep;\n"
    assert len(big) == MAX_SCRIPT_SIZE
    for i in range(MAX_STORAGE // MAX_SCRIPT_SIZE):
        r = c.put(f"big{i}", big)
        assert r.status == "OK", (i, r)
    r = c.command("HAVESPACE", quote("small"), "1")
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSIZE"), r
    r = c.put("small", b"keep;")
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSIZE"), r
    c.ok("HAVESPACE", quote("big0"), str(MAX_SCRIPT_SIZE))
    assert c.put("big0", b"keep;").status == "OK"
    for i in range(1, MAX_STORAGE // MAX_SCRIPT_SIZE):
        c.ok("DELETESCRIPT", quote(f"big{i}"))
    for i in range(1, MAX_SCRIPTS):
        r = c.put(f"s{i:03}", b"keep;")
        assert r.status == "OK", (i, r)
    assert len(c.names()) == MAX_SCRIPTS
    r = c.command("HAVESPACE", quote("one-more"), "5")
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSCRIPTS"), r
    r = c.put("one-more", b"keep;")
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSCRIPTS"), r
    assert c.put("s001", b"stop;").status == "OK"


def test_scripts_survive_a_restart(srv):
    """What got OK is on disk: scripts and the active one are there after a restart."""
    c = Sieve.connect(srv)
    c.login()
    assert c.put("main", GOOD).status == "OK"
    c.ok("SETACTIVE", quote("main"))
    c.close()
    srv.restart(env=FAST)
    c = Sieve.connect(srv)
    c.login()
    assert c.names() == {"main": True}
    assert c.ok("GETSCRIPT", quote("main")).data == [GOOD]


# ---------------------------------------------------------------------------------------------
# 3. bad input
# ---------------------------------------------------------------------------------------------


def test_oversized_literal_is_refused_and_skipped(srv):
    """A literal over the script size limit is answered NO (QUOTA/MAXSIZE); its bytes are read
    and dropped and the session goes on. One far beyond is answered BYE at once."""
    c = Sieve.connect(srv)
    c.login()
    script = b"#" * (MAX_SCRIPT_SIZE + 100)
    c.send(b'PUTSCRIPT "big" ' + lit(script) + b"\r\nNOOP\r\n")
    r = c.response()
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSIZE"), r
    assert c.response().status == "OK"
    assert c.names() == {}
    c.send(b'PUTSCRIPT "big" {4000000000+}\r\n' + b"#" * 1000)
    r = c.response()
    assert r.status == "BYE", r
    assert c.closed()
    # Before login the limit is small.
    c = Sieve.connect(srv)
    c.send(b'AUTHENTICATE "PLAIN" ' + lit(b"A" * 20000) + b"\r\n")
    r = c.response()
    assert r.status == "NO", r
    c.login()


def test_long_lines_unknown_commands_and_garbage(srv):
    """Over-long lines and unknown commands get NO and the session goes on; a stream of
    garbage ends with BYE; the server serves the next client."""
    c = Sieve.connect(srv)
    r = c.command(b"NOOP " + quote("x" * 20000))
    assert r.status == "NO" and "line" in r.text, r
    r = c.command(b'NOOP "' + b"y" * 2000 + b'"')
    assert r.status == "NO", "quoted strings are at most 1024 octets"
    r = c.command("FROBNICATE")
    assert r.status == "NO" and "FROBNICATE" in r.text, r
    c.ok("NOOP")
    # Ten invalid commands in a row end the session.
    c.send(b"\x00\xff\xfe garbage \x1b[0m\r\n" * 10)
    statuses = []
    while True:
        try:
            statuses.append(c.response().status)
        except Closed:
            break
    assert statuses[-1] == "BYE" and set(statuses[:-1]) == {"NO"}, statuses
    c = Sieve.connect(srv)
    c.login()
    c.ok("LISTSCRIPTS")


def test_clients_vanishing_mid_command_leave_nothing_behind(srv):
    """A client that goes away in the middle of a literal, a SASL exchange or a line stores
    nothing and leaves the server serving everyone else."""
    c = Sieve.connect(srv)
    c.login()
    c.send(b'PUTSCRIPT "half" {1000+}\r\n' + b"#" * 400)
    c.close()
    c = Sieve.connect(srv)
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""\r\n'
    c.send(b"{100+}\r\nAGFs")
    c.close()
    c = Sieve.connect(srv)
    c.send(b"LISTSCR")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed()
    c = Sieve.connect(srv)
    c.login()
    assert c.names() == {}
    assert c.put("whole", b"keep;").status == "OK"
    assert c.names() == {"whole": False}


# ---------------------------------------------------------------------------------------------
# 4. sieve-connect
# ---------------------------------------------------------------------------------------------


SIEVE_CONNECT = shutil.which("sieve-connect")
needs_sieve_connect = pytest.mark.skipif(
    SIEVE_CONNECT is None, reason="sieve-connect is not installed (scripts/test.sh installs it)")


def sieve_connect(server: Server, *args: str, user: str = ALICE, password: str = ALICE_PW,
                  tlshostname: str = HOSTNAME) -> subprocess.CompletedProcess[str]:
    """sieve-connect with STARTTLS, the server's certificate as the only trust anchor and
    the server's name checked (no --notlsverify); the password on standard input."""
    host, port = server.address("SIEVE_PORT")
    return subprocess.run(
        [SIEVE_CONNECT, "--nosrv", "--server", host, "--port", str(port),
         "--tlscafile", str(server.cert_path), "--tlshostname", tlshostname,
         "--noclearchan", "--user", user, "--authmech", "PLAIN", "--passwordfd", "0", *args],
        input=password + "\n", capture_output=True, text=True, timeout=60,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"sieve-connect exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}"
        f"--- stderr ---\n{proc.stderr}")
    return proc.stdout


@needs_sieve_connect
def test_sieve_connect_round_trip(srv, tmp_path: Path):
    """sieve-connect, as a user runs it: STARTTLS with the certificate verified, then upload,
    check, list, activate, download, deactivate and delete. (It has no rename; the raw client
    covers RENAMESCRIPT.)"""
    good = tmp_path / "vacation.sieve"
    good.write_bytes(GOOD)
    broken = tmp_path / "broken.sieve"
    broken.write_bytes(BROKEN)
    ok(sieve_connect(srv, "--upload", "--localsieve", str(good), "--remotesieve", "vacation"))
    ok(sieve_connect(srv, "--checkscript", "--localsieve", str(good)))
    proc = sieve_connect(srv, "--checkscript", "--localsieve", str(broken))
    assert proc.returncode != 0 and "line 5" in proc.stdout + proc.stderr, proc
    proc = sieve_connect(srv, "--upload", "--localsieve", str(broken), "--remotesieve", "broken")
    assert proc.returncode != 0 and "line 5" in proc.stdout + proc.stderr, proc
    assert ok(sieve_connect(srv, "--list")).split() == ['"vacation"']
    ok(sieve_connect(srv, "--activate", "--remotesieve", "vacation"))
    assert ok(sieve_connect(srv, "--list")).split() == ['"vacation"', "ACTIVE"]
    out = tmp_path / "downloaded.sieve"
    ok(sieve_connect(srv, "--download", "--remotesieve", "vacation", "--localsieve", str(out)))
    assert out.read_bytes() == GOOD
    proc = sieve_connect(srv, "--delete", "--remotesieve", "vacation")
    assert proc.returncode != 0, "the active script cannot be deleted"
    ok(sieve_connect(srv, "--deactivate"))
    ok(sieve_connect(srv, "--delete", "--remotesieve", "vacation"))
    assert ok(sieve_connect(srv, "--list")).split() == []
    # Every session was over TLS.
    lines = login_lines(srv)
    assert lines and all("tls=true" in l for l in lines), lines


@needs_sieve_connect
def test_sieve_connect_checks_the_certificate_and_the_password(users):
    """sieve-connect refuses a server whose certificate does not name the host it expects,
    and the server refuses a wrong password or a mailbox without sieve access."""
    users.add_mailbox("carol@example.test", "carol-pw-6Gh", sieve=False)
    users.start(env=FAST)
    proc = sieve_connect(users, "--list", tlshostname="other.example.test")
    assert proc.returncode != 0, proc
    assert login_lines(users) == [] and failed_lines(users) == []
    proc = sieve_connect(users, "--list", password="wrong-Password-3Vb")
    assert proc.returncode != 0, proc
    proc = sieve_connect(users, "--list", user="carol@example.test", password="carol-pw-6Gh")
    assert proc.returncode != 0, proc
    assert len(failed_lines(users)) == 2
    ok(sieve_connect(users, "--list"))
