"""Helpers of the IMAP end-to-end tests: a byte-exact IMAP client (`Imap`) that shows every
response as the server sent it, a parser of response data (parenthesised lists, strings,
literals, NIL) into Python values, and builders of test messages.

imaplib is what a mail client would use, and the tests use it where it can say what they do;
this client is for everything imaplib tidies away: the exact bytes of a response, untagged
responses in order, literal continuations, pipelining, COMPRESS, binding another source address.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
import time
import zlib
from dataclasses import dataclass, field

import harness
from harness import Server

#: Seconds a client waits for one response before the test fails.
TIMEOUT = 15.0


class Closed(AssertionError):
    """The server closed the connection when a response was expected."""


@dataclass
class Result:
    """What one command got: the untagged (and continuation) responses in order, each with its
    CRLF and literals inline, and the tagged completion."""

    tag: str
    untagged: list[bytes] = field(default_factory=list)
    tagged: bytes = b""

    @property
    def status(self) -> str:
        """OK, NO or BAD."""
        parts = self.tagged.split(b" ", 2)
        return parts[1].decode() if len(parts) > 1 else ""

    @property
    def text(self) -> str:
        """The tagged response after the status, without CRLF (response code included)."""
        parts = self.tagged.rstrip(b"\r\n").split(b" ", 2)
        return parts[2].decode(errors="replace") if len(parts) > 2 else ""

    @property
    def code(self) -> str:
        """The response code of the tagged response without brackets, or ""."""
        m = re.match(r"\[([^\]]*)\]", self.text)
        return m.group(1) if m else ""

    def named(self, name: str) -> list[bytes]:
        """Untagged responses `* NAME ...` or `* n NAME ...` (case-insensitive)."""
        pat = re.compile(rb"\* (\d+ )?" + re.escape(name.encode()) + rb"(\s|$)", re.I)
        return [r for r in self.untagged if pat.match(r)]

    def __repr__(self) -> str:
        shown = b"".join(r if len(r) < 2000 else r[:2000] + b"...\r\n" for r in self.untagged)
        return f"Result(\n{(shown + self.tagged).decode(errors='replace')})"


class Imap:
    """A byte-exact IMAP client. Every read is bounded by `timeout` seconds."""

    def __init__(self, sock: socket.socket, timeout: float = TIMEOUT):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.n = 0
        self.deflate = None
        self.inflate = None
        self.greeting = b""

    @classmethod
    def connect(cls, server: Server, key: str = "IMAP_PORT", *, source: str | None = None,
                greet: bool = True, timeout: float = TIMEOUT) -> "Imap":
        """Connects to the listener of `key` (IMAPS_PORT: with TLS), from `source` if given,
        and reads the greeting."""
        host, port = server.address(key)
        sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        if key == "IMAPS_PORT":
            sock = server.tls_context().wrap_socket(sock, server_hostname=server.hostname)
        c = cls(sock, timeout)
        if greet:
            c.greeting = c.response()
            assert c.greeting.startswith(b"* OK "), c.greeting
        return c

    # ---- bytes ----

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(
                f"no response within {self.timeout:.0f}s; unread: {self.buf[-2000:]!r}") from None
        except (ConnectionResetError, ssl.SSLError) as e:
            raise Closed(f"connection ended ({e}); unread: {self.buf[-2000:]!r}") from None
        if self.inflate is not None and chunk:
            chunk = self.inflate.decompress(chunk)
        return chunk

    def _fill(self) -> None:
        chunk = self._recv()
        if not chunk:
            raise Closed(f"connection closed; unread: {self.buf[-2000:]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One line, with its CRLF."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 2], self.buf[i + 2:]
                return line
            self._fill()

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> bytes:
        """One whole response: a line and, for each literal it announces, the literal and the
        line that goes on after it."""
        out = b""
        while True:
            line = self.line()
            out += line
            m = re.search(rb"~?\{(\d+)\}\r\n$", line)
            if not m:
                return out
            out += self.exactly(int(m.group(1)))

    def closed(self, timeout: float = 10.0) -> bool:
        """Whether the server closes the connection within `timeout` (reads what is left into
        self.buf)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self._recv()
                if not chunk:
                    return True
                self.buf += chunk
        except Closed:
            return True
        except AssertionError:  # timed out
            return False
        finally:
            self.sock.settimeout(self.timeout)

    # ---- commands ----

    def tag(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def until(self, tag: str) -> Result:
        """Reads responses up to the tagged one of `tag`."""
        r = Result(tag)
        prefix = tag.encode() + b" "
        while True:
            resp = self.response()
            if resp.startswith(prefix):
                r.tagged = resp
                return r
            r.untagged.append(resp)
            if resp.startswith(b"+"):
                raise AssertionError(f"unexpected continuation request {resp!r} in {r!r}")

    def command(self, text: str | bytes, tag: str | None = None) -> Result:
        """Sends `tag text` CRLF and reads up to its completion."""
        tag = tag or self.tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.until(tag)

    def ok(self, text: str | bytes, tag: str | None = None) -> Result:
        """A command that must succeed."""
        r = self.command(text, tag)
        assert r.status == "OK", f"{text!r} failed: {r!r}"
        return r

    def continuation(self) -> bytes:
        """Reads responses up to a continuation request; fails on a tagged response."""
        seen = []
        while True:
            resp = self.response()
            if resp.startswith(b"+"):
                return resp
            seen.append(resp)
            if not resp.startswith(b"*"):
                raise AssertionError(f"expected a continuation request, got {seen!r}")

    def with_literals(self, *pieces: bytes | str, tag: str | None = None) -> Result:
        """A command with synchronizing literals: pieces alternate text and literal bytes; each
        text before a literal gets `{n}` and the client waits for `+` before the bytes. If
        the server answers with a tagged response instead of `+`, that is the result."""
        tag = tag or self.tag()
        parts = [p.encode() if isinstance(p, str) else p for p in pieces]
        out = tag.encode() + b" "
        r = Result(tag)
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out += part
                if i + 1 < len(parts):
                    out += b"{%d}\r\n" % len(parts[i + 1])
                    self.send(out)
                    out = b""
                    while True:
                        resp = self.response()
                        if resp.startswith(b"+"):
                            break
                        if resp.startswith(tag.encode() + b" "):
                            r.tagged = resp
                            return r
                        r.untagged.append(resp)
            else:
                out += part
        self.send(out + b"\r\n")
        rest = self.until(tag)
        rest.untagged[:0] = r.untagged
        return rest

    def login(self, user: str, password: str) -> Result:
        return self.ok(f"LOGIN {quote(user)} {quote(password)}")

    def starttls(self, server: Server) -> None:
        r = self.ok("STARTTLS")
        assert r.untagged == [], r
        assert self.buf == b"", f"bytes after the OK to STARTTLS: {self.buf!r}"
        self.sock = server.tls_context().wrap_socket(self.sock, server_hostname=server.hostname)
        self.sock.settimeout(self.timeout)

    def compress(self) -> Result:
        r = self.ok("COMPRESS DEFLATE")
        assert self.buf == b"", f"bytes after the OK to COMPRESS: {self.buf!r}"
        self.deflate = zlib.compressobj(wbits=-15)
        self.inflate = zlib.decompressobj(wbits=-15)
        return r

    def append(self, data: bytes, mailbox: str = "INBOX", flags: str | None = None,
               date: str | None = None) -> int:
        """APPEND with a LITERAL+ literal; returns the UID of APPENDUID."""
        head = f"APPEND {mailbox}"
        if flags is not None:
            head += f" ({flags})"
        if date is not None:
            head += f' "{date}"'
        tag = self.tag()
        self.send(f"{tag} {head} {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
        r = self.until(tag)
        assert r.status == "OK", r
        m = re.match(r"APPENDUID \d+ (\d+)$", r.code)
        assert m, r
        return int(m.group(1))

    def select(self, mailbox: str = "INBOX", extra: str = "") -> Result:
        return self.ok(f"SELECT {mailbox}{extra}")

    def fetch(self, seqs: str, items: str, uid: bool = False) -> dict[int, dict]:
        """FETCH (or UID FETCH); the data items of each message by sequence number (items of
        several responses for one message merged). Fails unless the command succeeds."""
        r = self.ok(f"{'UID ' if uid else ''}FETCH {seqs} {items}")
        return fetch_map(r)

    def logout(self) -> None:
        try:
            self.command("LOGOUT")
        except (Closed, OSError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Imap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- response data ----

class _Parser:
    def __init__(self, data: bytes):
        self.d = data
        self.i = 0

    def peek(self) -> bytes:
        return self.d[self.i:self.i + 1]

    def values(self, end: bytes | None = None) -> list:
        out = []
        while self.i < len(self.d):
            c = self.peek()
            if c == b" ":
                self.i += 1
                continue
            if c in (b"\r", b"\n"):
                self.i += 1
                continue
            if end is not None and c == end:
                self.i += 1
                return out
            out.append(self.value())
        assert end is None, f"unclosed list in {self.d!r}"
        return out

    def value(self):
        c = self.peek()
        if c == b"(":
            self.i += 1
            return self.values(b")")
        if c == b'"':
            self.i += 1
            out = bytearray()
            while True:
                ch = self.d[self.i]
                self.i += 1
                if ch == 0x5C:  # backslash
                    out.append(self.d[self.i])
                    self.i += 1
                elif ch == 0x22:
                    return bytes(out)
                else:
                    out.append(ch)
        m = re.compile(rb"~?\{(\d+)\+?\}\r\n").match(self.d, self.i)
        if m:
            n = int(m.group(1))
            self.i = m.end() + n
            return self.d[m.end():self.i]
        start = self.i
        depth = 0
        while self.i < len(self.d):
            ch = self.d[self.i:self.i + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in (b" ", b")", b"(", b"\r", b"\n"):
                break
            self.i += 1
        atom = self.d[start:self.i].decode("utf-8", errors="replace")
        return None if atom.upper() == "NIL" else atom


def parse(data: bytes) -> list:
    """Response data as Python values: lists for parenthesised lists, bytes for strings and
    literals, str for atoms and numbers, None for NIL."""
    return _Parser(data).values()


def fetch_items(resp: bytes) -> tuple[int, dict]:
    """`* n FETCH (...)` as (n, {ITEM: value}) with item names upper-cased."""
    v = parse(resp)
    assert len(v) == 4 and v[0] == "*" and v[2].upper() == "FETCH", resp
    lst = v[3]
    assert len(lst) % 2 == 0, resp
    return int(v[1]), {str(k).upper(): val for k, val in zip(lst[::2], lst[1::2])}


def fetch_map(r: Result) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for resp in r.named("FETCH"):
        seq, items = fetch_items(resp)
        out.setdefault(seq, {}).update(items)
    return out


def flags_of(items: dict) -> set[str]:
    return {f.lower() for f in items["FLAGS"]}


def seq_set(text: str) -> list[int]:
    """`1:3,7` -> [1, 2, 3, 7]."""
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def capabilities(text: bytes | str) -> list[str]:
    """The capability names in a `[CAPABILITY ...]` code or `* CAPABILITY ...` response."""
    if isinstance(text, bytes):
        text = text.decode()
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", text) or re.match(r"\* CAPABILITY (.*)\r\n", text)
    assert m, f"no capability list in {text!r}"
    return m.group(1).split()


def mutf7(s: str) -> str:
    """A mailbox name in modified UTF-7 (RFC 3501 §5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush():
        if pending:
            b = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in s:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


# ---- messages ----

def message(subject: str = "Hello", *, sender: str = "Sender <sender@remote.test>",
            to: str = "alice@example.test", body: bytes | str = "Hello.\r\n",
            date: str = "Sat, 21 Nov 2026 10:05:09 +0000", headers: str = "",
            message_id: str | None = None) -> bytes:
    """An RFC 5322 message with CRLF line ends."""
    if isinstance(body, str):
        body = body.encode()
    mid = message_id or f"<{time.monotonic_ns()}.{id(body)}@client.test>"
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: {mid}\r\n{headers}")
    return head.encode() + b"\r\n" + body


def deliver(server: Server, to: str, data: bytes, sender: str = "sender@remote.test") -> None:
    """Delivers `data` to `to` over SMTP on SMTP_PORT (the MX role: no login for local
    recipients)."""
    host, port = server.address("SMTP_PORT")
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=TIMEOUT) as s:
        refused = s.sendmail(sender, [to], data)
        assert not refused, refused


def log_lines(server: Server, text: str) -> list[str]:
    return [l for l in server.log().splitlines() if text in l]


def wait(predicate, what: str, server: Server | None = None, timeout: float = 10.0) -> None:
    harness.wait_for(predicate, timeout, what, server.log_tail if server else (lambda: ""))
