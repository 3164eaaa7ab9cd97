"""End-to-end tests of the outbound queue: mail submitted for other domains is queued, handed to
other servers (Python sinks, hostile peers, a second mailstead), retried, bounced, reported on
with RFC 3464 notifications, signed with DKIM, sent through relay hosts, and administered with
`mailstead queue ...`.

Destinations are reached through DNS_STATIC_MAP: `remote.test MX 10 mx.remote.test:PORT` with
`mx.remote.test A 127.0.0.1` sends "port 25" of remote.test to a sink on 127.0.0.1:PORT. Every
peer binds port 0 (see sinks.py), every wait is bounded, so the tests run in parallel.

What the sender's own server stores (notifications, local copies) is read back with `mailstead
message list|show`; what the queue holds with `mailstead queue list|show --json`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import smtplib
import ssl
import subprocess
import time
import uuid
from email.message import Message
from pathlib import Path

import pytest

import harness
from harness import HOSTNAME, Server
from sinks import (
    HttpsServer,
    ScriptedPeer,
    Sink,
    TestCA,
    closed_port,
    context_for,
    mx_lines,
    spki_sha256,
    static_map,
)

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice-pw-Hq4Lm8Zt"
BOB = "bob@example.test"
BOB_PW = "bob-pw-Xe2Rc7Wu"

#: Settings that keep the queue quick in tests: the first retry after a second, replies that
#: take more than three seconds are a timeout, failed logins are not slowed down.
FAST = {
    "QUEUE_MIN_BACKOFF": "1s",
    "QUEUE_MAX_BACKOFF": "4s",
    "SMTP_CLIENT_TIMEOUT": "3s",
    "SMTP_CLIENT_CONNECT_TIMEOUT": "3s",
    "SMTP_CLIENT_DATA_TIMEOUT": "10s",
    "AUTH_FAILURE_DELAY": "0s",
}

#: Seconds a delivery to a willing peer may take from the 250 of submission (the queue wakes at
#: once on new mail; 5 s is its longest poll).
DELIVERY_TIMEOUT = 20.0

RECEIVED_RE = re.compile(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")
DKIM_RE = re.compile(rb"DKIM-Signature: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def setup_server(make_server, tmp_path: Path, map_lines: list[str], *, name: str = "a",
                 mailboxes: dict[str, str] | None = None, domains: tuple[str, ...] = (DOMAIN,),
                 env: dict[str, str] | None = None, start: bool = True) -> Server:
    """A server with `domains` and `mailboxes` (default alice and bob at example.test) whose
    DNS answers come from a static map of `map_lines`; started with FAST plus `env`."""
    server = make_server(name)
    for d in domains:
        server.add_domain(d)
    for address, password in (mailboxes or {ALICE: ALICE_PW, BOB: BOB_PW}).items():
        server.add_mailbox(address, password)
    map_path = static_map(tmp_path / f"{name}-dns.map", *map_lines)
    server.env["DNS_STATIC_MAP"] = str(map_path)
    server.env.update(FAST)
    server.env.update(env or {})
    if start:
        server.start()
    return server


def rewrite_map(server: Server, *lines: str) -> None:
    """Replaces the server's static map (read when it starts)."""
    static_map(Path(server.env["DNS_STATIC_MAP"]), *lines)


def client_context() -> ssl.SSLContext:
    """Submission clients do not check the server's certificate: that is not what these tests
    are about (test_smtp.py checks it)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submit(server: Server, sender: str, rcpts: list[str], msg: bytes, *, user: str = ALICE,
           password: str = ALICE_PW, options: list[str] | tuple = (),
           key: str = "SUBMISSION_PORT") -> str:
    """Submits `msg` on SUBMISSION_PORT (STARTTLS, AUTH) and returns its queue id. Every reply
    must be positive."""
    host, port = server.address(key)
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.starttls(context=client_context())
        s.login(user, password)
        return transaction(s, sender, rcpts, msg, options)


def transaction(s: smtplib.SMTP, sender: str, rcpts: list[str], msg: bytes,
                options: list[str] | tuple = ()) -> str:
    s.ehlo_or_helo_if_needed()
    code, text = s.mail(sender, list(options))
    assert code == 250, (sender, code, text)
    for r in rcpts:
        code, text = s.rcpt(r)
        assert code == 250, (r, code, text)
    code, text = s.data(msg)
    m = re.fullmatch(rb"2\.0\.0 OK: queued as ([0-9A-Za-z]+)", text)
    assert code == 250 and m, (code, text)
    return m.group(1).decode()


def message(subject: str, sender: str = ALICE, to: str = "carol@remote.test",
            body: bytes = b"Hello.\r\n", headers: bytes = b"") -> bytes:
    """An RFC 5322 message with CRLF line ends and a unique Message-ID."""
    head = (
        f"From: <{sender}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@client.test>\r\n"
        "Date: Sat, 21 Nov 2026 10:05:09 +0000\r\n"
    ).encode() + headers
    return head + b"\r\n" + body


def split_added(data: bytes) -> tuple[bytes | None, bytes, bytes]:
    """(DKIM-Signature or None, Received, rest) of a relayed message: the headers our server
    puts in front of what was submitted. Fails if they are not there."""
    dkim = None
    m = DKIM_RE.match(data)
    if m:
        dkim, data = m.group(0), data[m.end():]
    r = RECEIVED_RE.match(data)
    assert r, f"the relayed message does not start with our Received header: {data[:300]!r}"
    return dkim, r.group(0), data[r.end():]


# ---- the queue ----


def queue_list(server: Server) -> list[dict]:
    return server.admin_json("queue", "list")


def queue_entry(server: Server, qid: str) -> dict | None:
    """`queue show QID --json`, or None when the entry does not exist."""
    proc = server.admin("queue", "show", qid, "--json", check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def wait_attempts(server: Server, qid: str, n: int = 1, timeout: float = DELIVERY_TIMEOUT) -> dict:
    """Waits until every recipient of queue entry `qid` had at least `n` attempts (it must stay in
    the queue meanwhile); returns the entry."""
    deadline = time.monotonic() + timeout
    while True:
        entry = queue_entry(server, qid)
        assert entry is not None, f"queue entry {qid} is gone\n{server.log_tail()}"
        if all(r["attempts"] >= n for r in entry["rcpts"]):
            return entry
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {n} attempt(s) of {qid}: {entry}\n"
                f"{server.log_tail()}")
        time.sleep(0.2)


def wait_queue_empty(server: Server, timeout: float = DELIVERY_TIMEOUT) -> None:
    harness.wait_for(lambda: queue_list(server) == [], timeout, "an empty queue",
                     lambda: f"queue: {queue_list(server)}\n{server.log_tail()}")


def assert_deferred(entry: dict, *fragments: str) -> None:
    """Every recipient is still waiting, had an attempt, and its last error has `fragments`."""
    for r in entry["rcpts"]:
        assert r["state"] == "waiting", entry
        assert r["attempts"] >= 1, entry
        assert r["last_error"], f"no last error: {entry}"
        for f in fragments:
            assert f in r["last_error"], f"{f!r} not in the last error {r['last_error']!r}"


def delivery_logs(server: Server, qid: str | None = None) -> list[str]:
    """The "outbound delivery" log lines (of one queue id)."""
    return [l for l in server.log().splitlines()
            if "outbound delivery" in l and (qid is None or qid in l)]


# ---- what the server stored ----


def inbox(server: Server, address: str) -> list[dict]:
    return server.admin_json("message", "list", address, "--folder", "INBOX")["messages"]


def message_bytes(server: Server, address: str, uid: int) -> bytes:
    proc = subprocess.run(
        [str(harness.BIN), "--data-dir", str(server.data_dir), "message", "show", address,
         str(uid), "--folder", "INBOX"],
        stdin=subprocess.DEVNULL, capture_output=True, env=harness.environment(server.env),
        timeout=harness.COMMAND_TIMEOUT)
    assert proc.returncode == 0, f"message show {address} {uid}: {proc.stderr!r}"
    return proc.stdout


def wait_inbox(server: Server, address: str, n: int = 1, timeout: float = DELIVERY_TIMEOUT) -> list[bytes]:
    """Waits until `address` has at least `n` messages; returns them all, raw."""
    harness.wait_for(lambda: len(inbox(server, address)) >= n, timeout,
                     f"{n} message(s) in the INBOX of {address}", server.log_tail)
    return [message_bytes(server, address, m["uid"]) for m in inbox(server, address)]


# ---- delivery status notifications ----


class Dsn:
    """A parsed RFC 3464 notification: the message, its per-message fields and a list of
    per-recipient fields (dicts with lower-case names), the third part."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.msg: Message = email.message_from_bytes(raw, policy=email.policy.compat32)
        assert self.msg.get_content_type() == "multipart/report", self.msg["Content-Type"]
        assert self.msg.get_param("report-type") == "delivery-status", self.msg["Content-Type"]
        parts = self.msg.get_payload()
        assert isinstance(parts, list) and len(parts) in (2, 3), f"parts: {parts!r}"
        assert parts[0].get_content_type() == "text/plain", parts[0]["Content-Type"]
        status = parts[1]
        assert status.get_content_type() == "message/delivery-status", status["Content-Type"]
        blocks = status.get_payload()
        assert isinstance(blocks, list) and len(blocks) >= 2, f"delivery-status: {blocks!r}"
        fields = [{k.lower(): " ".join(v.split()) for k, v in b.items()} for b in blocks]
        self.per_message = fields[0]
        self.recipients = fields[1:]
        self.returned = parts[2] if len(parts) == 3 else None
        self.human = parts[0].get_payload(decode=True).decode("utf-8", "replace")

    def recipient(self, address: str) -> dict:
        for r in self.recipients:
            if r.get("final-recipient", "").split(";", 1)[-1].strip().lower() == address.lower():
                return r
        raise AssertionError(f"no recipient block for {address}: {self.recipients}")


def dsns(server: Server, address: str) -> list[Dsn]:
    """Every notification in the INBOX of `address`."""
    out = []
    for m in inbox(server, address):
        raw = message_bytes(server, address, m["uid"])
        if b"report-type=delivery-status" in raw.split(b"\r\n\r\n", 1)[0]:
            out.append(Dsn(raw))
    return out


def wait_dsns(server: Server, address: str, n: int = 1, timeout: float = DELIVERY_TIMEOUT) -> list[Dsn]:
    harness.wait_for(lambda: len(dsns(server, address)) >= n, timeout,
                     f"{n} notification(s) for {address}", server.log_tail)
    return dsns(server, address)


def assert_one_notice(server: Server, address: str, what: str) -> None:
    """Exactly one notification reached `address` (checked after its content, so that a test
    says what is right about the notice before it fails on a duplicate)."""
    found = dsns(server, address)
    lines = [l for l in server.log().splitlines() if f"sending a {what}" in l]
    assert len(found) == 1, (
        f"{len(found)} notifications instead of one; the log says:\n" + "\n".join(lines))


# ---- fixtures ----


@pytest.fixture
def peers():
    """Registers sinks and peers to be stopped when the test ends: peers(Sink(...)).start()."""
    started: list = []

    def add(p):
        started.append(p)
        return p

    yield add
    for p in started:
        try:
            p.stop()
        except Exception:
            pass


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


# ---------------------------------------------------------------------------------------------
# 1. delivery to a sink, byte for byte (and an alias that forwards)
# ---------------------------------------------------------------------------------------------


def test_delivery_to_a_sink_is_byte_identical(make_server, tmp_path, peers, ca):
    # The sink offers STARTTLS with a certificate nobody trusts: opportunistic TLS uses it
    # without checking it.
    sink = peers(Sink("mx.remote.test", tls_context=ca.server_context(["mx.remote.test"]))).start()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    body = (b"First line.\r\n.A line with a leading dot.\r\n..two dots\r\n.\r\n"
            b"Trailing spaces   \r\n\r\nLast line.\r\n")
    msg = message("byte for byte", to="carol@remote.test", body=body)
    rcpts = ["carol@remote.test", "Dave@Remote.Test", BOB]
    qid = submit(server, ALICE, rcpts, msg)

    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert t.mail_from == ALICE
    assert sorted(t.rcpt_tos) == sorted(["carol@remote.test", "Dave@Remote.Test"]), t
    assert t.tls, "STARTTLS was offered but not used"
    assert not t.data.startswith(b"Return-Path:"), t.data[:200]
    dkim, received, rest = split_added(t.data)
    assert dkim is None, "example.test has no DKIM key, yet the message is signed"
    assert rest == msg, f"relayed {rest!r}\n   sent {msg!r}"
    assert f"by {HOSTNAME}".encode() in received and qid.encode() in received, received

    # The local co-recipient has the same message, stored with Return-Path in front.
    [stored] = wait_inbox(server, BOB)
    assert stored.startswith(f"Return-Path: <{ALICE}>\r\n".encode()), stored[:200]
    assert stored.endswith(received + msg), stored

    wait_queue_empty(server)
    time.sleep(2)
    assert len(sink.transactions) == 1, sink.transactions
    logs = delivery_logs(server, qid)
    assert logs and "sent" in logs[-1], logs


def test_alias_to_a_remote_address_is_forwarded(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    server.add_alias("fwd@example.test", "ext@remote.test", BOB)
    msg = message("forwarded", sender="someone@elsewhere.test", to="fwd@example.test")
    host, port = server.address("SMTP_PORT")
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        transaction(s, "someone@elsewhere.test", ["fwd@example.test"], msg)
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["ext@remote.test"], t
    _, _, rest = split_added(t.data)
    assert rest == msg
    [stored] = wait_inbox(server, BOB)
    assert stored.endswith(msg)
    wait_queue_empty(server)


# ---------------------------------------------------------------------------------------------
# delivery details: MX order, DSN parameters, 8BITMIME, SIZE
# ---------------------------------------------------------------------------------------------


def test_falls_back_to_the_next_mx_and_to_the_address(make_server, tmp_path, peers):
    backup = peers(Sink("mx2.remote.test")).start()
    direct = peers(Sink("nomx.test")).start()
    server = setup_server(make_server, tmp_path, [
        f"remote.test MX 10 mx1.remote.test:{closed_port()}",
        f"remote.test MX 20 mx2.remote.test:{backup.port}",
        "mx1.remote.test A 127.0.0.1",
        "mx2.remote.test A 127.0.0.1",
        # No MX: the domain's own address is its mail server (RFC 5321 §5.1).
        f"nomx.test A 127.0.0.1:{direct.port}",
    ])
    msg = message("to the backup MX")
    qid = submit(server, ALICE, ["carol@remote.test", "dora@nomx.test"], msg)
    [t] = backup.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["carol@remote.test"]
    [u] = direct.wait_accepted(1, log=server.log_tail)
    assert u.rcpt_tos == ["dora@nomx.test"]
    wait_queue_empty(server)
    # The unreachable first MX cost no retry: both went out on the first attempt.
    assert not any("deferred" in l for l in delivery_logs(server, qid)), delivery_logs(server, qid)


def test_dsn_parameters_are_passed_on_and_honoured(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test", dsn=True)).start()
    sink.rcpt_replies = {
        "gone@remote.test": "550 5.1.1 gone",
        "quiet@remote.test": "550 5.1.1 quiet",
    }
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    msg = message("with DSN parameters", body=b"Body text that RET=HDRS leaves out.\r\n")
    host, port = server.address("SUBMISSION_PORT")
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.starttls(context=client_context())
        s.login(ALICE, ALICE_PW)
        s.ehlo()
        assert s.has_extn("dsn"), "submission does not offer DSN"
        code, text = s.mail(ALICE, ["RET=HDRS", "ENVID=env+2Bid-42"])
        assert code == 250, text
        for rcpt, params in [
            ("carol@remote.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Carol@Remote.Test"]),
            ("gone@remote.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;gone+2Bx@remote.test"]),
            ("quiet@remote.test", ["NOTIFY=NEVER"]),
        ]:
            code, text = s.rcpt(rcpt, params)
            assert code == 250, (rcpt, code, text)
        code, text = s.data(msg)
        assert code == 250, text

    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["carol@remote.test"]
    mail_params = t.raw_mail.split()[1:]
    assert "RET=HDRS" in mail_params and "ENVID=env+2Bid-42" in mail_params, t.raw_mail
    carol = next(a for a in t.raw_rcpts if "carol@" in a)
    assert "NOTIFY=SUCCESS,FAILURE" in carol and "ORCPT=rfc822;Carol@Remote.Test" in carol, carol
    quiet = next(a for a in t.raw_rcpts if "quiet@" in a)
    assert "NOTIFY=NEVER" in quiet, quiet

    dsn = wait_dsns(server, ALICE)[0]
    assert dsn.per_message.get("original-envelope-id") == "env+id-42", dsn.per_message
    assert [r["final-recipient"] for r in dsn.recipients] == ["rfc822; gone@remote.test"], (
        "NOTIFY=NEVER must keep quiet@ out of the bounce: " + repr(dsn.recipients))
    r = dsn.recipients[0]
    assert r.get("original-recipient") == "rfc822; gone+x@remote.test", r
    assert r["status"] == "5.1.1", r
    # RET=HDRS: the headers come back, the body does not.
    assert dsn.returned is not None
    assert dsn.returned.get_content_type() == "text/rfc822-headers", dsn.returned.get_content_type()
    assert b"Subject: with DSN parameters" in dsn.raw
    assert b"RET=HDRS leaves out" not in dsn.raw
    wait_queue_empty(server)
    time.sleep(2)
    assert_one_notice(server, ALICE, "bounce")


def test_eight_bit_body_is_not_sent_as_is_to_a_peer_without_8bitmime(make_server, tmp_path, peers):
    # RFC 6152 §3: to a server without 8BITMIME an 8-bit message must be converted to 7 bits
    # or returned, never sent as it is.
    sink = peers(Sink("mx.remote.test")).start()
    sink.ehlo_filter = lambda lines: [l for l in lines if "8BITMIME" not in l]
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    msg = message("eight bits", headers=b"MIME-Version: 1.0\r\n"
                  b"Content-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Transfer-Encoding: 8bit\r\n",
                  body="Grüße aus Köln.\r\n".encode())
    submit(server, ALICE, ["carol@remote.test"], msg, options=["BODY=8BITMIME"])
    harness.wait_for(lambda: sink.transactions or dsns(server, ALICE), DELIVERY_TIMEOUT,
                     "a delivery or a bounce", server.log_tail)
    for t in sink.transactions:
        eight_bit = [line for line in t.data.splitlines() if any(c >= 0x80 for c in line)]
        assert not eight_bit, f"8-bit data went to a peer without 8BITMIME: {eight_bit}"


def test_message_larger_than_the_peer_takes_bounces(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test", size_limit=10_000)).start()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    msg = message("too large", body=(b"y" * 76 + b"\r\n") * 200)
    submit(server, ALICE, ["carol@remote.test"], msg)
    dsn = wait_dsns(server, ALICE)[0]
    r = dsn.recipient("carol@remote.test")
    assert r["action"] == "failed" and r["status"] == "5.3.4", r
    assert sink.transactions == [], "a message over the announced SIZE was sent anyway"
    wait_queue_empty(server)


# ---------------------------------------------------------------------------------------------
# 2. delivery to a second mailstead
# ---------------------------------------------------------------------------------------------


def test_delivery_to_a_second_mailstead(make_server, tmp_path):
    b = make_server("b", hostname="mx.remote.test")
    b.add_domain("remote.test")
    b.add_mailbox("carol@remote.test", "carol-pw-Ty6Ng3Vb")
    b.start()
    a = setup_server(make_server, tmp_path,
                     mx_lines("remote.test", b.port("SMTP_PORT"), host="mx.remote.test"))
    msg = message("from a to b", to="carol@remote.test",
                  body=b"Across two servers.\r\n.dot line\r\n" + b"x" * 5000 + b"\r\n")
    qid = submit(a, ALICE, ["carol@remote.test"], msg)

    [stored] = wait_inbox(b, "carol@remote.test", 1)
    # B adds its own trace headers in front of A's Received header and the message.
    assert stored.startswith(f"Return-Path: <{ALICE}>\r\n".encode()), stored[:300]
    assert stored.endswith(msg), stored[-300:]
    assert stored.count(b"Received: ") == 2, stored[:600]
    a_received = RECEIVED_RE.search(stored, stored.index(b"Received: ") + 10)
    assert a_received and f"by {HOSTNAME}".encode() in a_received.group(0), stored[:600]
    wait_queue_empty(a)
    # B saw one transaction, over TLS (B offers STARTTLS).
    b_tx = [l for l in b.log().splitlines() if "smtp transaction" in l and "carol@remote.test" in l]
    assert len(b_tx) == 1, b_tx
    assert "tls=true" in b_tx[0].replace(" ", "").lower() or '"tls":true' in b_tx[0], b_tx
    logs = delivery_logs(a, qid)
    assert logs and "TLS" in logs[-1], logs


# ---------------------------------------------------------------------------------------------
# 3. a temporary failure, then success
# ---------------------------------------------------------------------------------------------


def test_temporary_failure_is_retried_once_delivered(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    sink.data_replies = ["451 4.3.0 try again later"]
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    msg = message("retried")
    qid = submit(server, ALICE, ["carol@remote.test"], msg)

    accepted = sink.wait_accepted(1, timeout=30, log=server.log_tail)
    assert len(sink.transactions) == 2, sink.transactions
    assert split_added(accepted[0].data)[2] == msg
    wait_queue_empty(server)
    time.sleep(3)
    assert len(sink.accepted) == 1 and len(sink.transactions) == 2, sink.transactions
    logs = delivery_logs(server, qid)
    assert any("deferred" in l and "451" in l for l in logs), logs
    assert "sent" in logs[-1], logs
    # No notice for a delivered message (and no delay notice: QUEUE_DELAY_WARNING is 4h).
    assert inbox(server, ALICE) == []


# ---------------------------------------------------------------------------------------------
# 4. one recipient refused: a bounce for it, delivery for the other
# ---------------------------------------------------------------------------------------------


def test_permanent_failure_for_one_recipient_bounces(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    sink.rcpt_replies = {"nobody@remote.test": "550 5.1.1 <nobody@remote.test>: no such user"}
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    msg = message("half bounced", to="carol@remote.test")
    qid = submit(server, ALICE, ["carol@remote.test", "nobody@remote.test"], msg)

    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["carol@remote.test"], t
    dsn = wait_dsns(server, ALICE)[0]
    assert dsn.msg["To"].strip("<> ") == ALICE, dsn.msg["To"]
    assert "MAILER-DAEMON" in dsn.msg["From"], dsn.msg["From"]
    assert dsn.per_message["reporting-mta"] == f"dns; {HOSTNAME}", dsn.per_message
    assert len(dsn.recipients) == 1, f"only the refused recipient is reported: {dsn.recipients}"
    r = dsn.recipient("nobody@remote.test")
    assert r["final-recipient"] == "rfc822; nobody@remote.test", r
    assert r["action"] == "failed", r
    assert r["status"] == "5.1.1", r
    assert r["diagnostic-code"].startswith("smtp; 550 5.1.1 "), r
    assert "no such user" in r["diagnostic-code"], r
    assert r["remote-mta"] == "dns; mx.remote.test", r
    assert dsn.returned is not None, "the original is not returned"
    assert dsn.returned.get_content_type() == "message/rfc822", dsn.returned.get_content_type()
    assert b"Subject: half bounced" in dsn.raw and b"Hello." in dsn.raw, "original not returned"

    wait_queue_empty(server)
    time.sleep(3)
    assert len(sink.accepted) == 1
    assert any("sending a bounce" in l and qid in l for l in server.log().splitlines())
    assert_one_notice(server, ALICE, "bounce")


def test_bounce_to_a_remote_sender_has_a_null_sender_and_is_never_bounced(make_server, tmp_path, peers):
    remote = peers(Sink("mx.remote.test")).start()
    remote.rcpt_replies = {"ext@remote.test": "550 5.1.1 <ext@remote.test>: no such user"}
    origin = peers(Sink("mx.elsewhere.test")).start()
    server = setup_server(make_server, tmp_path, [*mx_lines("remote.test", remote.port),
                                                  *mx_lines("elsewhere.test", origin.port)])
    server.add_alias("fwd@example.test", "ext@remote.test")
    host, port = server.address("SMTP_PORT")

    def send_in(subject: str) -> str:
        msg = message(subject, sender="someone@elsewhere.test", to="fwd@example.test")
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
            return transaction(s, "someone@elsewhere.test", ["fwd@example.test"], msg)

    first = send_in("forwarded, then refused")
    t = origin.wait_accepted(1, log=server.log_tail)[0]
    assert t.mail_from == "<>", f"a bounce must have the null sender, not {t.mail_from!r}"
    assert t.rcpt_tos == ["someone@elsewhere.test"], t
    dsn = Dsn(t.data)
    assert dsn.recipient("ext@remote.test")["status"] == "5.1.1"
    wait_queue_empty(server)
    time.sleep(1)
    bounces_of_first = len(origin.transactions)

    # The sender's server refuses the bounce as well: that is the end of it (no bounce of a
    # bounce, nothing left in the queue, no loop).
    origin.default_data_reply = "550 5.7.1 go away"
    second = send_in("forwarded, refused, bounce refused")
    origin.wait_transactions(len(origin.transactions) + 1, log=server.log_tail)
    wait_queue_empty(server)
    time.sleep(3)
    bounced_qids = {m.group(1) for m in re.finditer(r"sending a bounce qid=(\S+)", server.log())}
    assert bounced_qids <= {first, second}, (
        f"a bounce was sent about a bounce: bounces for {bounced_qids}, originals {first}, {second}")
    assert all(t.mail_from == "<>" for t in origin.transactions), origin.transactions
    assert bounces_of_first == 1, f"{bounces_of_first} bounces for one refused recipient"


# ---------------------------------------------------------------------------------------------
# 5. the queue survives restarts and crashes
# ---------------------------------------------------------------------------------------------


def test_queued_mail_is_delivered_after_a_restart(make_server, tmp_path, peers):
    down = closed_port()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", down))
    msg = message("survives a restart")
    qid = submit(server, ALICE, ["carol@remote.test"], msg)
    entry = wait_attempts(server, qid, 1)
    assert_deferred(entry)
    assert server.stop() == 0, server.log_tail()

    sink = peers(Sink("mx.remote.test")).start()
    rewrite_map(server, *mx_lines("remote.test", sink.port))
    assert [m["qid"] for m in queue_list(server)] == [qid]
    server.start()
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert split_added(t.data)[2] == msg
    wait_queue_empty(server)
    time.sleep(3)
    assert len(sink.transactions) == 1, sink.transactions
    assert inbox(server, ALICE) == []


def test_queued_mail_survives_sigkill(make_server, tmp_path, peers):
    down = closed_port()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", down))
    msgs = [message(f"survives a crash {i}") for i in range(3)]
    qids = [submit(server, ALICE, ["carol@remote.test"], m) for m in msgs]
    # Killed at once: some of the messages may be in their first attempt.
    server.kill()
    assert sorted(m["qid"] for m in queue_list(server)) == sorted(qids)

    sink = peers(Sink("mx.remote.test")).start()
    rewrite_map(server, *mx_lines("remote.test", sink.port))
    server.start()
    got = sink.wait_accepted(3, log=server.log_tail)
    assert sorted(split_added(t.data)[2] for t in got) == sorted(msgs)
    wait_queue_empty(server)
    time.sleep(3)
    assert len(sink.transactions) == 3, sink.transactions


# ---------------------------------------------------------------------------------------------
# 6. TLS: clear text when allowed, held when MTA-STS enforces TLS
# ---------------------------------------------------------------------------------------------


def test_peer_without_starttls_gets_mail_in_clear_text(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port))
    qid = submit(server, ALICE, ["carol@remote.test"], message("clear text"))
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert not t.tls
    wait_queue_empty(server)
    logs = delivery_logs(server, qid)
    assert logs and "sent" in logs[-1], logs


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_opportunistic_tls_that_fails_falls_back_to_clear_text(make_server, tmp_path, peers, ca):
    # The peer offers STARTTLS but cannot complete a handshake we accept (TLS 1.1 at most):
    # with opportunistic TLS the mail still goes, in clear text, as Postfix does at level may.
    broken = ca.server_context(["mx.remote.test"])
    broken.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    broken.maximum_version = ssl.TLSVersion.TLSv1_1
    sink = peers(Sink("mx.remote.test", tls_context=broken)).start()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port),
                          env={"TLS_EXTRA_CA": str(ca.ca_path)})
    qid = submit(server, ALICE, ["carol@remote.test"], message("TLS is broken"))
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert not t.tls
    wait_queue_empty(server)
    assert "retrying in plain text" in server.log(), server.log_tail()
    logs = delivery_logs(server, qid)
    assert logs and "sent" in logs[-1], logs


def sts_setup(make_server, tmp_path, peers, ca, sink: Sink, mode: str = "enforce") -> tuple[Server, HttpsServer]:
    policy = f"version: STSv1\r\nmode: {mode}\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n".encode()
    https = peers(HttpsServer(ca.server_context(["mta-sts.sts.test"]),
                              {"/.well-known/mta-sts.txt": (200, "text/plain", policy)})).start()
    server = setup_server(make_server, tmp_path, [
        *mx_lines("sts.test", sink.port, host="mx.sts.test"),
        '_mta-sts.sts.test TXT "v=STSv1; id=20260101"',
        f"mta-sts.sts.test A 127.0.0.1:{https.port}",
    ], env={"TLS_EXTRA_CA": str(ca.ca_path)})
    return server, https


def test_mta_sts_enforce_holds_mail_until_the_peer_offers_tls(make_server, tmp_path, peers, ca):
    sink = peers(Sink("mx.sts.test")).start()  # no STARTTLS
    server, https = sts_setup(make_server, tmp_path, peers, ca, sink)
    msg = message("needs TLS", to="carol@sts.test")
    qid = submit(server, ALICE, ["carol@sts.test"], msg)
    entry = wait_attempts(server, qid, 2)
    assert_deferred(entry)
    error = entry["rcpts"][0]["last_error"]
    assert "TLS" in error or "4.7.5" in error, f"not a TLS reason: {error!r}"
    assert sink.transactions == [], "mail went to a peer without TLS despite MTA-STS enforce"
    assert ("mta-sts.sts.test", "/.well-known/mta-sts.txt") in [
        (h.split(":")[0], p) for h, p in https.requests], https.requests

    # The peer now offers STARTTLS with a certificate for its name from a trusted CA.
    sink.tls_context = ca.server_context(["mx.sts.test"])
    server.admin("queue", "flush")
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert t.tls
    assert split_added(t.data)[2] == msg
    wait_queue_empty(server)
    assert inbox(server, ALICE) == [], "a notice was sent for a held message"


def test_mta_sts_enforce_refuses_an_untrusted_certificate(make_server, tmp_path, peers, ca):
    stranger = TestCA(tmp_path / "other-ca", name="untrusted CA")
    sink = peers(Sink("mx.sts.test", tls_context=stranger.server_context(["mx.sts.test"]))).start()
    server, _ = sts_setup(make_server, tmp_path, peers, ca, sink)
    qid = submit(server, ALICE, ["carol@sts.test"], message("untrusted certificate",
                                                                to="carol@sts.test"))
    entry = wait_attempts(server, qid, 2)
    assert_deferred(entry)
    assert sink.transactions == [], "mail went to a peer whose certificate is not trusted"
    # With a certificate the policy accepts, it goes.
    sink.tls_context = ca.server_context(["mx.sts.test"])
    server.admin("queue", "flush")
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert t.tls


def test_mta_sts_testing_mode_delivers_without_tls(make_server, tmp_path, peers, ca):
    sink = peers(Sink("mx.sts.test")).start()
    server, https = sts_setup(make_server, tmp_path, peers, ca, sink, mode="testing")
    submit(server, ALICE, ["carol@sts.test"], message("testing mode", to="carol@sts.test"))
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert not t.tls


@pytest.mark.parametrize("policy, offer, trusted, delivered", [
    ("encrypt", False, False, False),   # TLS required, none offered: held
    ("encrypt", True, False, True),     # TLS required, any certificate will do
    ("verify", True, False, False),     # a certificate nobody trusts: held
    ("verify", True, True, True),
    ("none", True, True, True),         # TLS offered but not used
])
def test_tls_policy_map(make_server, tmp_path, peers, ca, policy, offer, trusted, delivered):
    issuer = ca if trusted else TestCA(tmp_path / "other-ca", name="untrusted CA")
    sink = peers(Sink("mx.remote.test",
                      tls_context=issuer.server_context(["mx.remote.test"]) if offer else None)).start()
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port),
                          env={"TLS_EXTRA_CA": str(ca.ca_path)}, start=False)
    server.admin("tls-policy", "set", "remote.test", policy)
    assert any(p["dest"] == "remote.test" and p["policy"] == policy
               for p in server.admin_json("tls-policy", "list"))
    server.start()
    qid = submit(server, ALICE, ["carol@remote.test"], message(f"policy {policy}"))
    if delivered:
        [t] = sink.wait_accepted(1, log=server.log_tail)
        assert t.tls == (policy != "none"), t
        wait_queue_empty(server)
    else:
        assert_deferred(wait_attempts(server, qid, 2))
        assert sink.transactions == [], f"policy {policy}: mail went out without the TLS it needs"
        assert inbox(server, ALICE) == []


def test_dane_tlsa_records_are_enforced(make_server, tmp_path, peers, ca):
    # A self-signed-like certificate (from a CA nobody trusts) that the TLSA record pins.
    stranger = TestCA(tmp_path / "other-ca", name="untrusted CA")
    cert, key = stranger.issue(["mx.dane.test"])
    good = peers(Sink("mx.dane.test", tls_context=context_for(cert, key))).start()
    other_cert, other_key = stranger.issue(["mx.pinned.test"])
    wrong = peers(Sink("mx.pinned.test", tls_context=context_for(other_cert, other_key))).start()
    server = setup_server(make_server, tmp_path, [
        *mx_lines("dane.test", good.port),
        f"_25._tcp.mx.dane.test TLSA 3 1 1 {spki_sha256(cert)}",
        *mx_lines("pinned.test", wrong.port),
        # Pins a key the peer does not have.
        f"_25._tcp.mx.pinned.test TLSA 3 1 1 {spki_sha256(cert)}",
    ])
    ok = submit(server, ALICE, ["x@dane.test"], message("DANE ok", to="x@dane.test"))
    bad = submit(server, ALICE, ["x@pinned.test"], message("DANE mismatch", to="x@pinned.test"))
    [t] = good.wait_accepted(1, log=server.log_tail)
    assert t.tls
    assert any("dane" in l for l in delivery_logs(server, ok)), delivery_logs(server, ok)
    assert_deferred(wait_attempts(server, bad, 2))
    assert wrong.transactions == [], "mail went to a peer whose key does not match its TLSA record"


# ---------------------------------------------------------------------------------------------
# 7. SMTPUTF8
# ---------------------------------------------------------------------------------------------


def test_smtputf8_message_to_a_peer_without_smtputf8_bounces(make_server, tmp_path, peers):
    without = peers(Sink("mx.ascii.test", smtputf8=False)).start()
    with_ = peers(Sink("mx.utf8.test", smtputf8=True)).start()
    server = setup_server(make_server, tmp_path, [*mx_lines("ascii.test", without.port),
                                                  *mx_lines("utf8.test", with_.port)])
    msg = ("From: <alice@example.test>\r\nTo: <jörg@ascii.test>, <zoë@utf8.test>\r\n"
           "Subject: Grüße\r\nMessage-ID: <utf8-1@client.test>\r\n\r\nGrüße!\r\n").encode()
    submit(server, ALICE, ["jörg@ascii.test", "zoë@utf8.test"], msg,
           options=["SMTPUTF8", "BODY=8BITMIME"])

    [t] = with_.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["zoë@utf8.test"], t
    assert "SMTPUTF8" in [o.upper() for o in t.mail_options], t.mail_options
    assert "BODY=8BITMIME" in [o.upper() for o in t.mail_options], t.mail_options
    assert split_added(t.data)[2] == msg
    dsn = wait_dsns(server, ALICE)[0]
    assert len(dsn.recipients) == 1, dsn.recipients
    r = dsn.recipients[0]
    assert "ascii.test" in r["final-recipient"], r
    assert r["action"] == "failed", r
    assert r["status"] == "5.6.7", r
    assert "5.6.7" in r.get("diagnostic-code", ""), r
    assert without.transactions == [], "the message was offered to a peer without SMTPUTF8"
    wait_queue_empty(server)
    time.sleep(2)
    assert_one_notice(server, ALICE, "bounce")


# ---------------------------------------------------------------------------------------------
# 8. null MX
# ---------------------------------------------------------------------------------------------


def test_null_mx_bounces_at_once(make_server, tmp_path):
    # The default backoff (5 minutes): a bounce within the test's wait is an immediate one.
    server = setup_server(make_server, tmp_path, ["null.test MX 0 ."],
                          env={"QUEUE_MIN_BACKOFF": "5m"})
    start = time.monotonic()
    qid = submit(server, ALICE, ["someone@null.test"], message("to a null MX", to="someone@null.test"))
    dsn = wait_dsns(server, ALICE, timeout=15)[0]
    assert time.monotonic() - start < 15
    r = dsn.recipient("someone@null.test")
    assert r["action"] == "failed", r
    assert r["status"] == "5.1.10", r
    assert "556 5.1.10" in r.get("diagnostic-code", ""), r
    assert "remote-mta" not in r, f"no server was involved: {r}"
    wait_queue_empty(server)
    assert qid in " ".join(delivery_logs(server, qid))
    time.sleep(2)
    assert_one_notice(server, ALICE, "bounce")


# ---------------------------------------------------------------------------------------------
# 9. DKIM
# ---------------------------------------------------------------------------------------------


def dkim_record(server: Server, domain: str) -> tuple[str, str]:
    shown = server.admin_json("dkim", "show", domain)
    assert shown["type"] == "TXT", shown
    return shown["name"], shown["value"]


def dkim_verify(data: bytes, records: dict[str, str]) -> bool:
    import dkim

    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        value = records.get(key.rstrip(".").lower())
        return value.encode() if value is not None else None

    return dkim.verify(data, dnsfunc=dnsfunc)


def test_dkim_signatures_verify(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    carol, dave = "carol@other.test", "dave@plain.test"
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port),
                          domains=(DOMAIN, "other.test", "plain.test"),
                          mailboxes={ALICE: ALICE_PW, carol: "carol-pw-Mv5Gs2Kp",
                                     dave: "dave-pw-Lb8Dq4Wn"}, start=False)
    out = server.admin("dkim", "add", DOMAIN).stdout
    server.admin("dkim", "add", "other.test", "--selector", "ed", "--algorithm", "ed25519")
    records = dict([dkim_record(server, DOMAIN), dkim_record(server, "other.test")])
    assert set(records) == {"dkim._domainkey.example.test", "ed._domainkey.other.test"}, records
    assert records["dkim._domainkey.example.test"].startswith("v=DKIM1; k=rsa; p=")
    assert records["ed._domainkey.other.test"].startswith("v=DKIM1; k=ed25519; p=")
    # The zone file line `dkim add` printed is the same record, in strings of at most 255.
    line = next(l for l in out.splitlines() if " IN TXT " in l)
    assert line.startswith("dkim._domainkey.example.test. IN TXT "), line
    strings = re.findall(r'"([^"]*)"', line)
    assert all(len(s) <= 255 for s in strings) and "".join(strings) == records[
        "dkim._domainkey.example.test"], line
    server.start()

    sent = {
        "rsa": (ALICE, ALICE_PW, message("signed with RSA", sender=ALICE)),
        "ed25519": (carol, "carol-pw-Mv5Gs2Kp", message("signed with Ed25519", sender=carol)),
        "none": (dave, "dave-pw-Lb8Dq4Wn", message("not signed", sender=dave)),
    }
    for user, pw, msg in sent.values():
        submit(server, user, ["x@remote.test"], msg, user=user, password=pw)
    got = sink.wait_accepted(3, log=server.log_tail)
    by_from = {t.mail_from: t for t in got}

    for kind, (user, _, msg) in sent.items():
        data = by_from[user].data
        sig, _, rest = split_added(data)
        assert rest == msg, f"{kind}: the message was changed"
        if kind == "none":
            assert sig is None and b"DKIM-Signature" not in data, "plain.test has no key"
            assert not dkim_verify(data, records)
            continue
        assert sig is not None, f"{kind}: no DKIM-Signature in front of the message"
        tags = dict(t.strip().split("=", 1) for t in re.sub(rb"\s+", b"", sig[len(b"DKIM-Signature:"):])
                    .decode().split(";") if t.strip())
        want = {"rsa": ("rsa-sha256", "example.test", "dkim"),
                "ed25519": ("ed25519-sha256", "other.test", "ed")}[kind]
        assert (tags["a"], tags["d"], tags["s"]) == want, tags
        assert dkim_verify(data, records), f"{kind}: the signature does not verify: {sig!r}"
        tampered = data.replace(b"Hello.", b"Hullo.")
        assert not dkim_verify(tampered, records), f"{kind}: a changed body still verifies"


# ---------------------------------------------------------------------------------------------
# 10. relay hosts
# ---------------------------------------------------------------------------------------------

RELAY_USER = "relay-user"
RELAY_PW = "relay-pw-Fz9Kc3Rq"


def relay_server(make_server, tmp_path, peers, direct_port: int, ca: TestCA | None = None) -> Server:
    """A server whose map knows relay.test (127.0.0.1) and far.test (an MX that must never get
    mail while a relay host is set); other recipient domains are not in the map at all."""
    env = {"TLS_EXTRA_CA": str(ca.ca_path)} if ca else {}
    return setup_server(make_server, tmp_path,
                        ["relay.test A 127.0.0.1", *mx_lines("far.test", direct_port)], env=env)


def add_relayhost(server: Server, port: int, user: str | None, password: str | None) -> int:
    args = ["relayhost", "add", f"relay.test:{port}", "--default"]
    if user:
        args += ["--username", user, "--password-stdin"]
    server.admin(*args, input=(password + "\n") if password else None)
    listed = server.admin_json("relayhost", "list")
    default = listed["default"]
    assert default is not None and any(r["id"] == default for r in listed["relayhosts"]), listed
    return default


def test_relayhost_with_auth_carries_all_remote_mail(make_server, tmp_path, peers, ca):
    relay = peers(Sink("relay.test", tls_context=ca.server_context(["relay.test"]),
                       credentials={RELAY_USER: RELAY_PW})).start()
    direct = peers(Sink("mx.far.test")).start()
    server = relay_server(make_server, tmp_path, peers, direct.port, ca)
    add_relayhost(server, relay.port, RELAY_USER, RELAY_PW)
    msg = message("through the relay", to="x@far.test")
    rcpts = ["x@far.test", "y@unlisted-domain.test"]
    submit(server, ALICE, rcpts, msg)
    got = relay.wait_accepted(1, log=server.log_tail)
    time.sleep(1)
    got = relay.accepted
    assert sorted(r for t in got for r in t.rcpt_tos) == sorted(rcpts), got
    for t in got:
        assert t.tls and t.auth_user == RELAY_USER, t
        assert t.mail_from == ALICE
        assert split_added(t.data)[2] == msg
    assert relay.auth_events and all(e.tls for e in relay.auth_events), relay.auth_events
    assert direct.transactions == [], "mail went directly to the MX despite the relay host"
    wait_queue_empty(server)


def test_relayhost_wrong_password_keeps_mail_queued(make_server, tmp_path, peers, ca):
    relay = peers(Sink("relay.test", tls_context=ca.server_context(["relay.test"]),
                       credentials={RELAY_USER: RELAY_PW})).start()
    direct = peers(Sink("mx.far.test")).start()
    server = relay_server(make_server, tmp_path, peers, direct.port, ca)
    wrong = add_relayhost(server, relay.port, RELAY_USER, "not-the-password")
    msg = message("wrong password", to="x@far.test")
    qid = submit(server, ALICE, ["x@far.test"], msg)
    entry = wait_attempts(server, qid, 2)
    assert_deferred(entry)
    assert "535" in entry["rcpts"][0]["last_error"] or "AUTH" in entry["rcpts"][0]["last_error"], entry
    assert relay.accepted == [] and direct.transactions == []
    assert relay.auth_events, "the relay host never saw AUTH"
    assert all(e.tls for e in relay.auth_events), f"AUTH in clear text: {relay.auth_events}"
    assert all(e.success is False for e in relay.auth_events), relay.auth_events
    assert inbox(server, ALICE) == [], "a failed login is temporary: no bounce"

    # With the right password (a new relay host replaces the old as the default) it goes.
    server.admin("relayhost", "remove", str(wrong))
    add_relayhost(server, relay.port, RELAY_USER, RELAY_PW)
    server.admin("queue", "flush")
    [t] = relay.wait_accepted(1, log=server.log_tail)
    assert t.auth_user == RELAY_USER and t.tls
    wait_queue_empty(server)


def test_relayhost_credentials_never_travel_in_clear_text(make_server, tmp_path, peers):
    # A relay host that offers AUTH but no STARTTLS.
    relay = peers(Sink("relay.test", credentials={RELAY_USER: RELAY_PW},
                       auth_require_tls=False)).start()
    direct = peers(Sink("mx.far.test")).start()
    server = relay_server(make_server, tmp_path, peers, direct.port)
    add_relayhost(server, relay.port, RELAY_USER, RELAY_PW)
    qid = submit(server, ALICE, ["x@far.test"], message("no TLS at the relay", to="x@far.test"))
    entry = wait_attempts(server, qid, 2)
    assert_deferred(entry)
    assert relay.auth_events == [], f"credentials sent without TLS: {relay.auth_events}"
    assert relay.transactions == [] and direct.transactions == []

    # Not even when a TLS policy for the relay host says `none`.
    server.admin("tls-policy", "set", "relay.test", "none")
    server.admin("queue", "flush")
    wait_attempts(server, qid, entry["rcpts"][0]["attempts"] + 1)
    assert relay.auth_events == [], f"credentials sent without TLS: {relay.auth_events}"
    assert relay.transactions == []


def test_relayhost_certificate_is_checked_unless_policy_encrypt(make_server, tmp_path, peers, ca):
    stranger = TestCA(tmp_path / "other-ca", name="untrusted CA")
    relay = peers(Sink("relay.test", tls_context=stranger.server_context(["relay.test"]),
                       credentials={RELAY_USER: RELAY_PW})).start()
    direct = peers(Sink("mx.far.test")).start()
    server = relay_server(make_server, tmp_path, peers, direct.port, ca)
    add_relayhost(server, relay.port, RELAY_USER, RELAY_PW)
    qid = submit(server, ALICE, ["x@far.test"], message("untrusted relay", to="x@far.test"))
    entry = wait_attempts(server, qid, 2)
    assert_deferred(entry)
    assert relay.auth_events == [], f"credentials sent to an unverified relay: {relay.auth_events}"
    assert relay.transactions == []

    server.admin("tls-policy", "set", "relay.test", "encrypt")
    server.admin("queue", "flush")
    [t] = relay.wait_accepted(1, log=server.log_tail)
    assert t.tls and t.auth_user == RELAY_USER
    wait_queue_empty(server)


def test_relayhost_per_domain_and_default(make_server, tmp_path, peers, ca):
    relay = peers(Sink("relay.test", tls_context=ca.server_context(["relay.test"]))).start()
    direct = peers(Sink("mx.remote.test")).start()
    carol, carol_pw = "carol@other.test", "carol-pw-Mv5Gs2Kp"
    server = setup_server(make_server, tmp_path,
                          ["relay.test A 127.0.0.1", *mx_lines("remote.test", direct.port)],
                          domains=(DOMAIN, "other.test"),
                          mailboxes={ALICE: ALICE_PW, carol: carol_pw},
                          env={"TLS_EXTRA_CA": str(ca.ca_path)})
    server.admin("relayhost", "add", f"relay.test:{relay.port}")
    [rh] = server.admin_json("relayhost", "list")["relayhosts"]
    assert (rh["hostname"], rh["port"]) == ("relay.test", relay.port), rh
    server.admin("relayhost", "use", DOMAIN, str(rh["id"]))

    submit(server, ALICE, ["x@remote.test"], message("alice via relay"))
    submit(server, carol, ["x@remote.test"], message("carol direct", sender=carol),
           user=carol, password=carol_pw)
    [t] = relay.wait_accepted(1, log=server.log_tail)
    assert t.mail_from == ALICE and t.tls and t.auth_user is None, t
    [u] = direct.wait_accepted(1, log=server.log_tail)
    assert u.mail_from == carol, u

    # The relay host becomes the default, and example.test is told to send directly.
    server.admin("relayhost", "default", str(rh["id"]))
    out = server.admin("relayhost", "use", DOMAIN, "none").stdout
    assert "directly" in out, out
    submit(server, ALICE, ["y@remote.test"], message("alice now direct"))
    submit(server, carol, ["y@remote.test"], message("carol now via default", sender=carol),
           user=carol, password=carol_pw)
    harness.wait_for(lambda: len(relay.accepted) + len(direct.accepted) >= 4, DELIVERY_TIMEOUT,
                     "four deliveries", server.log_tail)
    wait_queue_empty(server)
    time.sleep(1)
    routes = {"relay": [t.mail_from for t in relay.accepted],
              "direct": [t.mail_from for t in direct.accepted]}
    assert routes == {"relay": [ALICE, carol], "direct": [carol, ALICE]}, (
        "after `relayhost default ID` and `relayhost use example.test none` (which says that "
        f"mail from example.test is sent directly): {routes}")


# ---------------------------------------------------------------------------------------------
# 11. hostile peers
# ---------------------------------------------------------------------------------------------


async def stall(reader, writer, peer):
    """Accepts and says nothing; waits for the client to give up."""
    await asyncio.wait_for(reader.read(), 120)


async def garbage(reader, writer, peer):
    writer.write(b"\x00\xff\xfeHELLO THIS IS NOT SMTP\r\n<html>\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.read(), 120)


async def endless_continuation(reader, writer, peer):
    writer.write(b"220 mx.hostile.test ESMTP\r\n")
    await writer.drain()
    await peer.read_line(reader)
    lines = b"250-mx.hostile.test and more\r\n" * 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the client hangs up
        writer.write(lines)
        await writer.drain()


async def endless_line(reader, writer, peer):
    writer.write(b"220 mx.hostile.test ESMTP\r\n")
    await writer.drain()
    await peer.read_line(reader)
    deadline = time.monotonic() + 60
    writer.write(b"250-")
    while time.monotonic() < deadline:
        writer.write(b"x" * 65536)
        await writer.drain()


async def drop_in_data(reader, writer, peer):
    writer.write(b"220 mx.hostile.test ESMTP\r\n")
    await writer.drain()
    while True:
        line = await peer.read_line(reader)
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-mx.hostile.test\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            await peer.read_line(reader)  # a line of the message, then hang up
            writer.transport.abort()
            return
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"250 2.0.0 ok\r\n")
        await writer.drain()


HOSTILE = {
    "stall": stall,
    "garbage": garbage,
    "endless-continuation": endless_continuation,
    "endless-line": endless_line,
    "drop-in-data": drop_in_data,
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_peer_costs_bounded_time_and_leads_to_a_retry(make_server, tmp_path, peers, kind):
    hostile = peers(ScriptedPeer(HOSTILE[kind])).start()
    good = peers(Sink("mx.good.test")).start()
    server = setup_server(make_server, tmp_path, [*mx_lines("hostile.test", hostile.port),
                                                  *mx_lines("good.test", good.port)])
    start = time.monotonic()
    qid = submit(server, ALICE, ["victim@hostile.test"], message(f"to a {kind} peer",
                                                                   to="victim@hostile.test"))
    # SMTP_CLIENT_TIMEOUT is 3s: one attempt must end within a few of those.
    entry = wait_attempts(server, qid, 1, timeout=25)
    first_attempt = time.monotonic() - start
    assert_deferred(entry)
    # Generous for a loaded machine, and still far below the 5-minute default timeout.
    assert first_attempt < 15, f"the first attempt took {first_attempt:.1f}s"
    # It is tried again, and each connection is dropped by us within a bounded time.
    wait_attempts(server, qid, 2, timeout=20)
    assert hostile.connections >= 2
    harness.wait_for(lambda: len(hostile.closed_at) >= 1, 10, "the first connection to end")
    held = hostile.closed_at[0] - hostile.opened_at[0]
    assert held < 12, f"the first connection was held {held:.1f}s"

    # The server is still healthy: other mail goes out meanwhile.
    msg = message("after the hostile peer", to="friend@good.test")
    good_qid = submit(server, ALICE, ["friend@good.test"], msg)
    [t] = good.wait_accepted(1, log=server.log_tail)
    assert split_added(t.data)[2] == msg
    harness.wait_for(lambda: queue_entry(server, good_qid) is None, 10, "the good message to leave")
    # And there is exactly one queue entry: the hostile peer's, still waiting, never duplicated.
    listed = queue_list(server)
    assert [m["qid"] for m in listed] == [qid], listed
    assert [r["state"] for r in listed[0]["rcpts"]] == ["waiting"], listed
    assert inbox(server, ALICE) == [], "a temporary failure produced a notice"
    assert server.running
    assert server.stop(timeout=20) == 0, server.log_tail()


# ---------------------------------------------------------------------------------------------
# 12. queue administration
# ---------------------------------------------------------------------------------------------


def test_queue_list_hold_release_delete(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    sink.default_data_reply = "451 4.3.0 busy, come back later"
    # A long backoff: after the first attempt nothing happens unless asked.
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port),
                          env={"QUEUE_MIN_BACKOFF": "10m", "QUEUE_MAX_BACKOFF": "1h"})
    msg = message("held and released")
    qid = submit(server, ALICE, ["carol@remote.test"], msg)
    wait_attempts(server, qid, 1)
    [listed] = queue_list(server)
    assert listed["qid"] == qid and listed["sender"] == ALICE and not listed["held"], listed
    [r] = listed["rcpts"]
    assert r["address"] == "carol@remote.test" and r["state"] == "waiting", r
    assert "451 4.3.0" in r["last_error"], r
    assert qid in server.admin("queue", "list").stdout

    server.admin("queue", "hold", qid)
    assert queue_entry(server, qid)["held"] is True
    sink.default_data_reply = "250 2.0.0 OK"
    offered = len(sink.transactions)
    server.admin("queue", "flush")
    server.admin("queue", "retry", qid)
    time.sleep(8)  # longer than the runner's 5-second poll
    assert len(sink.transactions) == offered, "a held message was tried"
    assert sink.accepted == []

    server.admin("queue", "release", qid)
    server.admin("queue", "flush")
    [t] = sink.wait_accepted(1, log=server.log_tail)
    assert split_added(t.data)[2] == msg
    wait_queue_empty(server)

    # delete: gone at once, never delivered, no notice.
    sink.default_data_reply = "451 4.3.0 busy, come back later"
    qid2 = submit(server, ALICE, ["carol@remote.test"], message("deleted"))
    wait_attempts(server, qid2, 1)
    server.admin("queue", "delete", qid2)
    assert queue_entry(server, qid2) is None
    assert queue_list(server) == []
    sink.default_data_reply = "250 2.0.0 OK"
    offered = len(sink.transactions)
    server.admin("queue", "flush")
    time.sleep(7)
    assert len(sink.transactions) == offered, "a deleted message was tried"
    assert inbox(server, ALICE) == [], "deleting a message sent a notice"
    proc = server.admin("queue", "show", qid2, check=False)
    assert proc.returncode != 0


# ---------------------------------------------------------------------------------------------
# 13. delay notices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domains", [1, 2])
def test_delay_notice_is_sent_once(make_server, tmp_path, peers, domains):
    sink = peers(Sink("mx.remote.test")).start()
    sink.default_data_reply = "451 4.3.0 busy, come back later"
    names = ["remote.test", "remote2.test"][:domains]
    rcpts = [f"carol@{d}" for d in names]
    server = setup_server(make_server, tmp_path,
                          [l for d in names for l in mx_lines(d, sink.port)],
                          env={"QUEUE_DELAY_WARNING": "2s", "QUEUE_MAX_BACKOFF": "2s"})
    qid = submit(server, ALICE, rcpts, message("delayed"))
    dsn = wait_dsns(server, ALICE, timeout=30)[0]
    r = dsn.recipient("carol@remote.test")
    assert r["action"] == "delayed", r
    assert r["status"] == "4.3.0", r
    assert r["diagnostic-code"].startswith("smtp; 451 4.3.0"), r
    assert "will-retry-until" in r, r
    assert "delay" in (dsn.msg["Subject"] or "").lower(), dsn.msg["Subject"]
    # More attempts, still one notice, and the message is still queued.
    n = queue_entry(server, qid)["rcpts"][0]["attempts"]
    wait_attempts(server, qid, n + 3, timeout=30)
    time.sleep(1)
    assert_deferred(queue_entry(server, qid))
    assert_one_notice(server, ALICE, "delay notice")


# ---------------------------------------------------------------------------------------------
# the queue lifetime
# ---------------------------------------------------------------------------------------------


def test_message_expires_after_the_queue_lifetime(make_server, tmp_path, peers):
    sink = peers(Sink("mx.remote.test")).start()
    sink.default_data_reply = "451 4.3.0 busy, come back later"
    # 60s is the shortest lifetime there is.
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port),
                          env={"QUEUE_LIFETIME": "60s", "QUEUE_MAX_BACKOFF": "5s"})
    start = time.monotonic()
    qid = submit(server, ALICE, ["carol@remote.test"], message("expires"))
    dsn = wait_dsns(server, ALICE, timeout=100)[0]
    left = queue_entry(server, qid)
    assert left is None or all(r["state"] == "expired" for r in left["rcpts"]), left
    assert time.monotonic() - start >= 55, "bounced before the lifetime was over"
    r = dsn.recipient("carol@remote.test")
    assert r["action"] == "failed", r
    assert "451 4.3.0" in r.get("diagnostic-code", ""), r
    wait_queue_empty(server)
    assert sink.accepted == []
    time.sleep(2)
    assert_one_notice(server, ALICE, "bounce")
