"""Helpers of the SMTP end-to-end tests: a raw SMTP client that shows every byte, and readers
of what the server stored (`mailstead message list|show`, `mailbox show`).

They sit next to the harness rather than in it so that the SMTP tests can grow without touching
the harness; anything here another protocol's tests want can move into harness.py.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from dataclasses import dataclass, field

import harness
from harness import Server

#: Seconds a raw client waits for one reply before the test fails.
REPLY_TIMEOUT = 20.0


@dataclass
class Reply:
    """One SMTP reply: its code, the enhanced status code of its last line ("" when it has
    none, as in EHLO and 354 replies), the text of every line, and the bytes as received."""

    code: int
    status: str
    lines: list[str] = field(default_factory=list)
    raw: bytes = b""

    @property
    def text(self) -> str:
        """The text of the last line, after the status code."""
        return self.lines[-1] if self.lines else ""

    def __repr__(self) -> str:
        return f"Reply({self.raw.decode(errors='replace')!r})"


class ConnectionClosed(AssertionError):
    """The server closed the connection when a reply was expected."""


def parse_reply(raw: bytes) -> Reply:
    lines = raw.decode("utf-8", errors="replace").split("\r\n")[:-1]
    code = int(lines[-1][:3])
    texts = []
    status = ""
    for line in lines:
        text = line[4:]
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3}) (.*)$", text)
        if m:
            status = m.group(1)
            text = m.group(2)
        else:
            status = ""
        texts.append(text)
    return Reply(code, status, texts, raw)


class RawSMTP:
    """A byte-exact SMTP client: send() writes exactly what it is given, reply() reads one
    (possibly multi-line) reply. Every read is bounded by REPLY_TIMEOUT."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 server_hostname: str = harness.HOSTNAME, timeout: float = REPLY_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""
        self.timeout = timeout

    @classmethod
    def to(cls, server: Server, key: str = "SMTP_PORT", greet: bool = True, **kwargs) -> "RawSMTP":
        """Connects to the listener of `key`; with greet=True reads and checks the 220."""
        host, port = server.address(key)
        if key == "SMTPS_PORT" and "tls" not in kwargs:
            kwargs["tls"] = server.tls_context()
        c = cls(host, port, **kwargs)
        if greet:
            g = c.reply()
            assert g.code == 220 and g.raw == f"220 {server.hostname} ESMTP ready\r\n".encode(), g
        return c

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self) -> bytes:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError) as e:
            raise ConnectionClosed(f"connection ended ({e}); unread: {self.buf!r}") from None
        except socket.timeout:
            raise AssertionError(
                f"no reply within {self.timeout:.0f}s; unread: {self.buf!r}") from None
        return chunk

    def line(self) -> bytes:
        """One line of a reply, with its CRLF."""
        while b"\r\n" not in self.buf:
            chunk = self._fill()
            if not chunk:
                raise ConnectionClosed(f"connection closed; unread: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def reply(self) -> Reply:
        raw = b""
        while True:
            line = self.line()
            raw += line
            assert re.match(rb"^\d{3}[ -]", line), f"not an SMTP reply line: {line!r}"
            if line[3:4] == b" ":
                return parse_reply(raw)

    def replies(self, n: int) -> list[Reply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes) -> Reply:
        """Sends a command line (CRLF added) and reads its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def expect(self, line: str | bytes, code: int, status: str | None = None) -> Reply:
        r = self.cmd(line)
        assert r.code == code, f"{line!r}: expected {code}, got {r}"
        if status is not None:
            assert r.status == status, f"{line!r}: expected {code} {status}, got {r}"
        return r

    def ehlo(self, name: str = "client.test") -> Reply:
        return self.expect(f"EHLO {name}", 250)

    def starttls(self, context: ssl.SSLContext, server_hostname: str = harness.HOSTNAME) -> None:
        self.expect("STARTTLS", 220, "2.0.0")
        assert self.buf == b"", f"bytes after the 220 to STARTTLS: {self.buf!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def auth_plain(self, user: str, password: str) -> Reply:
        import base64
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def closed(self, timeout: float = 10.0) -> bool:
        """Whether the server has closed the connection (reads and drops what is left)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except ssl.SSLError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawSMTP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- what the server stored ----

def messages(server: Server, address: str, folder: str = "INBOX") -> list[dict]:
    """`message list ADDRESS --folder FOLDER --json`'s messages."""
    return server.admin_json("message", "list", address, "--folder", folder)["messages"]


def message_bytes(server: Server, address: str, uid: int, folder: str = "INBOX") -> bytes:
    """`message show`: the stored message, byte for byte (the harness's run() decodes text)."""
    proc = subprocess.run(
        [str(harness.BIN), "--data-dir", str(server.data_dir), "message", "show", address,
         str(uid), "--folder", folder],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=harness.environment(server.env),
        timeout=harness.COMMAND_TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"message show {address} {uid} exited with {proc.returncode}: {proc.stderr!r}")
    return proc.stdout


def stored(server: Server, address: str, folder: str = "INBOX") -> list[bytes]:
    """Every stored message of a folder, raw, in UID order."""
    return [message_bytes(server, address, m["uid"], folder)
            for m in messages(server, address, folder)]


def only_message(server: Server, address: str) -> bytes:
    """The one message in the INBOX of `address`; fails if there are none or several."""
    found = messages(server, address)
    assert len(found) == 1, f"{address} has {len(found)} messages, expected 1: {found}"
    return message_bytes(server, address, found[0]["uid"])


def mailbox(server: Server, address: str) -> dict:
    return server.admin_json("mailbox", "show", address)


@dataclass
class Trace:
    """A stored message split into the trace headers the server added and the client's bytes."""

    return_path: str
    received: str
    content: bytes


def split_trace(raw: bytes) -> Trace:
    """Splits `Return-Path: <...>CRLF` and the `Received:` header (with its folded lines) off a
    stored message. Fails if the message does not start with exactly those two headers."""
    m = re.match(rb"Return-Path: <([^\r\n>]*)>\r\n", raw)
    assert m, f"the stored message does not start with Return-Path: {raw[:200]!r}"
    rest = raw[m.end():]
    r = re.match(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", rest)
    assert r, f"no Received header after Return-Path: {rest[:300]!r}"
    return Trace(m.group(1).decode(), r.group(0).decode(), rest[r.end():])


def blob_files(server: Server) -> tuple[list[str], list[str]]:
    """(temporary files, message blob files) under DATA_DIR/blobs."""
    root = server.data_dir / "blobs"
    tmp = sorted(p.name for p in (root / "tmp").iterdir()) if (root / "tmp").is_dir() else []
    blobs = sorted(p.name for p in root.glob("??/*") if p.is_file())
    return tmp, blobs


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def log_transactions(server: Server) -> list[str]:
    """The server's "smtp transaction" log lines."""
    return [l for l in server.log().splitlines() if "smtp transaction" in l]
