"""Peers for the outbound queue's end-to-end tests: what the server delivers to.

* `TestCA`: a certificate authority made for one test, and certificates it issues (for the
  MTA-STS web server, the MX hosts and relay hosts); the server trusts it through TLS_EXTRA_CA.
* `Sink`: an SMTP server (aiosmtpd) that records every transaction byte for byte, with scripted
  replies per recipient and per message, optional STARTTLS, AUTH and SMTPUTF8. Its settings may
  change while it runs (each connection reads them anew).
* `ScriptedPeer`: a raw TCP server whose behaviour is a coroutine: hostile peers that stall,
  babble, or hang up in the middle of a transaction.
* `HttpsServer`: serves an MTA-STS policy over HTTPS.
* `static_map()`: writes a DNS_STATIC_MAP file.

Every server binds 127.0.0.1 port 0 and runs its own event loop in a daemon thread, so tests
can run in parallel and a stuck peer never blocks the test itself. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import http.server
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd logs every session, and a deprecation warning on each AUTH: noise in test reports.
logging.getLogger("mail.log").setLevel(logging.ERROR)

#: Seconds a sink or peer gets to start and to stop.
START_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# a certificate authority for one test
# ---------------------------------------------------------------------------------------------


class TestCA:
    """A throw-away CA (ECDSA P-256) in `directory`: ca.pem is what TLS_EXTRA_CA names.

    issue(names) writes a leaf certificate for those DNS names (and IP addresses) signed by
    this CA and returns (cert.pem, key.pem); server_context(names) is an ssl server context
    with such a certificate.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "mailstead test CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = (
            x509, hashes, serialization, ec, NameOID)
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False),
                critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = self.dir / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._issued = 0

    def issue(self, names: Iterable[str]) -> tuple[Path, Path]:
        x509, hashes, ser, ec, NameOID = (
            self._x509, self._hashes, self._ser, self._ec, self._oid)
        names = list(names)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self._issued += 1
        stem = f"leaf{self._issued}-{names[0]}"
        cert_path = self.dir / f"{stem}.pem"
        key_path = self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(ser.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                               ser.NoEncryption()))
        return cert_path, key_path

    def server_context(self, names: Iterable[str]) -> ssl.SSLContext:
        return context_for(*self.issue(names))


def context_for(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context with this certificate and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def spki_sha256(cert: Path) -> str:
    """The hex SHA-256 of a certificate's SubjectPublicKeyInfo: the data of a `3 1 1` TLSA
    record (DANE-EE, SPKI, SHA-256)."""
    import hashlib
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    spki = c.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


# ---------------------------------------------------------------------------------------------
# an event loop in a thread
# ---------------------------------------------------------------------------------------------


class _LoopThread:
    """An asyncio event loop running in a daemon thread, with a listener on 127.0.0.1:0."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.port: int = 0
        self.transports: set = set()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Awaitable, timeout: float = START_TIMEOUT):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_listener(self, factory) -> int:
        self.thread.start()

        async def listen():
            return await self.loop.create_server(factory, "127.0.0.1", 0)

        self.server = self.call(listen())
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def stop(self):
        if not self.thread.is_alive():
            return

        async def close():
            if self.server is not None:
                self.server.close()
            for t in list(self.transports):
                try:
                    t.abort()
                except Exception:
                    pass
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.sleep(0)

        try:
            self.call(close())
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# an SMTP sink
# ---------------------------------------------------------------------------------------------


@dataclass
class Transaction:
    """One message the sink was given (DATA completed), and what it answered."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    tls: bool
    auth_user: str | None
    reply: str
    helo: str | None
    #: The MAIL and RCPT command arguments exactly as sent (aiosmtpd upper-cases its options).
    raw_mail: str = ""
    raw_rcpts: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.reply.startswith("2")


@dataclass
class AuthEvent:
    """An AUTH command the sink saw: over TLS or not, and whether it succeeded."""

    tls: bool
    arg: str
    user: str | None = None
    success: bool | None = None


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP, recording AUTH commands before it checks anything (so that AUTH in
    clear text is seen even though it is refused) and tracking its transport."""

    sink: "Sink"

    def connection_made(self, transport):
        if not getattr(self, "_counted", False):
            self._counted = True
            self.sink.connections += 1
            self.sink._lt.transports.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error):
        for t in (self._original_transport, self.transport):
            self.sink._lt.transports.discard(t)
        super().connection_lost(error)

    async def smtp_MAIL(self, arg):
        self._raw_mail = arg or ""
        self._raw_rcpts = []
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        self.__dict__.setdefault("_raw_rcpts", []).append(arg or "")
        await super().smtp_RCPT(arg)

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None and self.sink.dsn:
            # RFC 3461 parameters: accepted (and recorded in raw_mail/raw_rcpts) when DSN is on.
            for key in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(key, None)
        return result

    async def smtp_AUTH(self, arg: str) -> None:
        with self.sink.lock:
            self.sink.auth_events.append(AuthEvent(tls=self._tls_protocol is not None, arg=arg))
        await super().smtp_AUTH(arg)


class _Handler:
    def __init__(self, sink: "Sink"):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.sink.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        if self.sink.ehlo_filter is not None:
            responses = self.sink.ehlo_filter(responses)
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.rcpt_replies.get(address.lower(), "250 2.1.5 OK")
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server, session, envelope):
        sink = self.sink
        with sink.lock:
            reply = sink.data_replies.pop(0) if sink.data_replies else sink.default_data_reply
            auth = session.auth_data
            user = auth.login.decode(errors="replace") if isinstance(auth, LoginPassword) else None
            sink.transactions.append(Transaction(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content),
                mail_options=list(envelope.mail_options),
                rcpt_options=list(envelope.rcpt_options),
                tls=server._tls_protocol is not None,
                auth_user=user if session.authenticated else None,
                reply=reply,
                helo=session.host_name,
                raw_mail=getattr(server, "_raw_mail", ""),
                raw_rcpts=list(getattr(server, "_raw_rcpts", [])),
            ))
        return reply


class Sink:
    """An SMTP server on 127.0.0.1:port that records what it is sent.

    Settings read by every new connection (change them while it runs):
      hostname        the greeting's host name
      tls_context     offer STARTTLS with this server context (None: no STARTTLS)
      smtputf8        offer SMTPUTF8
      credentials     {user: password}: AUTH PLAIN/LOGIN offered (after TLS unless
                      auth_require_tls=False) and required before MAIL
      dsn             offer DSN (RFC 3461) and accept its parameters
      size_limit      the SIZE announced and enforced
      ehlo_filter     a function that edits the list of EHLO reply lines
    Replies: rcpt_replies {address: "550 5.1.1 ..."} (default 250), data_replies: a list of
    replies to the next messages in order, then default_data_reply.
    """

    def __init__(self, hostname: str = "mx.sink.test", *, tls_context: ssl.SSLContext | None = None,
                 smtputf8: bool = True, credentials: dict[str, str] | None = None,
                 auth_require_tls: bool = True, dsn: bool = False, size_limit: int = 33554432):
        self.hostname = hostname
        self.dsn = dsn
        self.size_limit = size_limit
        self.tls_context = tls_context
        self.smtputf8 = smtputf8
        self.credentials = credentials
        self.auth_require_tls = auth_require_tls
        self.ehlo_filter: Callable[[list[str]], list[str]] | None = None
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.default_data_reply = "250 2.0.0 OK: accepted"
        self.transactions: list[Transaction] = []
        self.auth_events: list[AuthEvent] = []
        self.connections = 0
        self.lock = threading.Lock()
        self._lt = _LoopThread()
        self.port = 0

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = False
        user = None
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode(errors="replace")
            password = auth_data.password.decode(errors="replace")
            ok = self.credentials is not None and self.credentials.get(user) == password
        with self.lock:
            if self.auth_events:
                self.auth_events[-1].user = user
                self.auth_events[-1].success = ok
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    def _factory(self):
        kwargs = dict(
            hostname=self.hostname,
            enable_SMTPUTF8=self.smtputf8,
            decode_data=False,
            tls_context=self.tls_context,
            timeout=60,
            ident="sink",
            data_size_limit=self.size_limit,
        )
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticator, auth_required=True,
                          auth_require_tls=self.auth_require_tls)
        else:
            # No AUTH offered at all: AUTH is only advertised when TLS is not required for it.
            kwargs.update(auth_require_tls=True)
        smtp = _SinkSMTP(_Handler(self), **kwargs)
        smtp.sink = self
        return smtp

    def start(self) -> "Sink":
        import warnings
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        self.port = self._lt.start_listener(self._factory)
        return self

    def stop(self) -> None:
        self._lt.stop()

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what it received ----

    @property
    def accepted(self) -> list[Transaction]:
        with self.lock:
            return [t for t in self.transactions if t.accepted]

    def wait_accepted(self, n: int = 1, timeout: float = 30.0, log=lambda: "") -> list[Transaction]:
        """Waits until at least `n` messages were accepted; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.accepted) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {n} message(s) at the sink "
                    f"{self.hostname}:{self.port}; it has {self.transactions}\n{log()}")
            time.sleep(0.05)
        return self.accepted

    def wait_transactions(self, n: int = 1, timeout: float = 30.0, log=lambda: "") -> list[Transaction]:
        """Waits until at least `n` messages were offered (accepted or not)."""
        deadline = time.monotonic() + timeout
        while len(self.transactions) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {n} transaction(s) at the sink "
                    f"{self.hostname}:{self.port}; it has {self.transactions}\n{log()}")
            time.sleep(0.05)
        with self.lock:
            return list(self.transactions)


# ---------------------------------------------------------------------------------------------
# scripted (hostile) peers
# ---------------------------------------------------------------------------------------------

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "ScriptedPeer"], Awaitable[None]]


class ScriptedPeer:
    """A TCP server on 127.0.0.1:port; each connection runs `behaviour(reader, writer, peer)`.
    `connections` counts connections, `received` collects every byte clients sent."""

    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour
        self.connections = 0
        self.received = bytearray()
        self.lock = threading.Lock()
        self._lt = _LoopThread()
        self.port = 0
        self.closed_at: list[float] = []
        self.opened_at: list[float] = []

    async def _serve(self, reader, writer):
        self.connections += 1
        self.opened_at.append(time.monotonic())
        self._lt.transports.add(writer.transport)
        try:
            await self.behaviour(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError,
                asyncio.CancelledError):
            pass
        finally:
            self.closed_at.append(time.monotonic())
            self._lt.transports.discard(writer.transport)
            try:
                writer.close()
            except Exception:
                pass

    def start(self) -> "ScriptedPeer":
        def factory():
            reader = asyncio.StreamReader(limit=1 << 20)
            return asyncio.StreamReaderProtocol(reader, self._serve)

        self.port = self._lt.start_listener(factory)
        return self

    def stop(self) -> None:
        self._lt.stop()

    def __enter__(self) -> "ScriptedPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def read_line(self, reader: asyncio.StreamReader, timeout: float = 60.0) -> bytes:
        line = await asyncio.wait_for(reader.readline(), timeout)
        with self.lock:
            self.received += line
        if not line:
            raise ConnectionError("the client closed the connection")
        return line


# ---------------------------------------------------------------------------------------------
# an HTTPS server for MTA-STS policies
# ---------------------------------------------------------------------------------------------


class HttpsServer:
    """Serves `routes` {path: (status, content type, body)} over HTTPS on 127.0.0.1:port;
    `requests` lists the (Host header, path) of each request."""

    def __init__(self, context: ssl.SSLContext, routes: dict[str, tuple[int, str, bytes]]):
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.headers.get("Host", ""), self.path))
                status, ctype, body = outer.routes.get(self.path, (404, "text/plain", b"no"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)

    def start(self) -> "HttpsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(START_TIMEOUT)

    def __enter__(self) -> "HttpsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# DNS_STATIC_MAP
# ---------------------------------------------------------------------------------------------


def static_map(path: Path, *lines: str) -> Path:
    """Writes a DNS_STATIC_MAP file of `lines` ("NAME TYPE DATA") and returns its path."""
    path.write_text("# static DNS answers of an end-to-end test\n" + "\n".join(lines) + "\n")
    return path


def mx_lines(domain: str, port: int, host: str | None = None) -> list[str]:
    """Static-map lines that send mail for `domain` to 127.0.0.1:port through an MX host."""
    host = host or f"mx.{domain}"
    return [f"{domain} MX 10 {host}:{port}", f"{host} A 127.0.0.1"]


def closed_port() -> int:
    """A port nothing listens on (bound, then closed: connections are refused)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
