"""End-to-end tests of the inbound SMTP service: MX on SMTP_PORT, submission with STARTTLS on
SUBMISSION_PORT and with implicit TLS on SMTPS_PORT, and delivery into local mailboxes.

Clients are Python's smtplib, swaks, and a raw socket client (smtp_helpers.RawSMTP) for what
the other two would tidy up. What the server stored is read back with `mailstead message
list|show`: after the Return-Path and Received headers the server adds, a stored message must be
the client's bytes exactly (with DATA's dot-stuffing undone and bare CR/LF made CRLF)."""

from __future__ import annotations

import base64
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

import harness
from harness import HOSTNAME, LOOPBACK_ENV, Server
from smtp_helpers import (
    RawSMTP,
    blob_files,
    log_transactions,
    mailbox,
    message_bytes,
    messages,
    only_message,
    rss_kib,
    split_trace,
    stored,
)

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice-pw-Qz7sV9xK2"
BOB = "bob@example.test"
BOB_PW = "bob-pw-Mn3W8tR5y"
#: A sender on the internet, as MX clients give.
REMOTE_SENDER = "sender@remote.test"
#: Keeps failed-login tests fast; the default is 2s.
FAST = {"AUTH_FAILURE_DELAY": "0s"}
DEFAULT_SIZE_LIMIT = 100 * 1024 * 1024

MX_CAPABILITIES = [HOSTNAME, "PIPELINING", f"SIZE {DEFAULT_SIZE_LIMIT}", "8BITMIME", "SMTPUTF8",
                   "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
RECEIVED_DATE = (r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                 r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000")
#: What the server says when it closes a session, by reason.
TIMEOUT_BYE = f"421 4.4.2 {HOSTNAME} timeout exceeded, closing connection\r\n".encode()
ERRORS_BYE = f"421 4.7.0 {HOSTNAME} too many errors, closing connection\r\n".encode()
SHUTDOWN_BYE = f"421 4.3.2 {HOSTNAME} service shutting down, try again later\r\n".encode()


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


def launch(server: Server, **env: str) -> Server:
    """Starts `server` with fast failed logins and the given configuration keys."""
    return server.start(env={**FAST, **env})


@pytest.fixture
def users(stopped_server: Server) -> Server:
    """example.test with the mailboxes alice and bob; not started."""
    stopped_server.add_mailbox(ALICE, ALICE_PW)
    stopped_server.add_mailbox(BOB, BOB_PW)
    return stopped_server


@pytest.fixture
def mail(users: Server) -> Server:
    """A running server with alice@ and bob@example.test."""
    return launch(users)


def client_context(server: Server) -> ssl.SSLContext:
    """Trusts the server's certificate. smtplib checks the name it connected to (127.0.0.1),
    which the certificate does not name, so only the chain is checked here; RawSMTP checks the
    host name too."""
    ctx = server.tls_context()
    ctx.check_hostname = False
    return ctx


def smtp(server: Server, key: str = "SMTP_PORT") -> smtplib.SMTP:
    host, port = server.address(key)
    if key == "SMTPS_PORT":
        return smtplib.SMTP_SSL(host, port, local_hostname="client.test", timeout=30,
                                context=client_context(server))
    return smtplib.SMTP(host, port, local_hostname="client.test", timeout=30)


def submission(server: Server, key: str = "SUBMISSION_PORT", user: str = ALICE,
               password: str = ALICE_PW) -> smtplib.SMTP:
    """A logged-in submission client on SUBMISSION_PORT (after STARTTLS) or SMTPS_PORT."""
    s = smtp(server, key)
    if key == "SUBMISSION_PORT":
        s.starttls(context=client_context(server))
    s.login(user, password)
    return s


def raw_submission(server: Server, key: str = "SUBMISSION_PORT", user: str = ALICE,
                   password: str = ALICE_PW) -> RawSMTP:
    """A logged-in raw client on SUBMISSION_PORT (after STARTTLS) or SMTPS_PORT."""
    c = RawSMTP.to(server, key)
    if key == "SUBMISSION_PORT":
        c.ehlo()
        c.starttls(server.tls_context())
    c.ehlo()
    r = c.auth_plain(user, password)
    assert (r.code, r.status) == (235, "2.7.0"), r
    return c


def message(subject: str, sender: str = REMOTE_SENDER, to: str = ALICE,
            body: bytes = b"Hello.\r\n", headers: bytes = b"") -> bytes:
    """An RFC 5322 message with CRLF line ends, ending in CRLF, with a unique Message-ID."""
    head = (
        f"From: <{sender}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@client.test>\r\n"
        "Date: Sat, 21 Nov 2026 10:05:09 +0000\r\n"
    ).encode() + headers
    return head + b"\r\n" + body


def transaction(s: smtplib.SMTP, sender: str, rcpts: list[str], msg: bytes,
                options: list[str] | tuple = ()) -> str:
    """MAIL, RCPT..., DATA with smtplib; every reply must be positive. Returns the queue id of
    the final "250 2.0.0 OK: queued as ID"."""
    s.ehlo_or_helo_if_needed()
    code, text = s.mail(sender, list(options))
    assert code == 250, (code, text)
    for r in rcpts:
        code, text = s.rcpt(r)
        assert (code, text) == (250, b"2.1.5 recipient OK"), (r, code, text)
    code, text = s.data(msg)
    m = re.fullmatch(rb"2\.0\.0 OK: queued as ([0-9A-Za-z]{13})", text)
    assert code == 250 and m, (code, text)
    return m.group(1).decode()


def received_pattern(*, helo: str = "client.test", tls: bool, proto: str, rcpt: str | None,
                     qid: str | None = None, cipher: tuple | None = None) -> str:
    """The Received header the server writes. With `cipher` (ssl's SSLSocket.cipher() of the
    client), the TLS version must be the one negotiated; the cipher's name is checked by
    test_received_names_the_cipher_as_iana_does."""
    pat = rf"Received: from {re.escape(helo)} \(\[127\.0\.0\.1\]\)\r\n"
    if tls:
        version = re.escape(cipher[1]) if cipher else r"TLSv1\.[23]"
        pat += rf"\t\(using {version} with cipher [A-Z0-9_]+\)\r\n"
    pat += rf"\tby {re.escape(HOSTNAME)} with {proto} id {qid or '[0-9A-Za-z]{13}'}"
    if rcpt:
        pat += rf"\r\n\tfor <{re.escape(rcpt)}>"
    pat += rf"; {RECEIVED_DATE}\r\n"
    return pat


def assert_stored(server: Server, address: str, sent: bytes, *, sender: str, proto: str,
                  tls: bool, rcpt: str | None, qid: str | None = None, helo: str = "client.test",
                  cipher: tuple | None = None) -> None:
    """`address` holds exactly one message: Return-Path, Received, then `sent` byte for byte."""
    raw = only_message(server, address)
    t = split_trace(raw)
    assert t.content == sent, f"stored {t.content!r}\n  sent {sent!r}"
    assert t.return_path == sender
    pat = received_pattern(helo=helo, tls=tls, proto=proto, rcpt=rcpt, qid=qid, cipher=cipher)
    assert re.fullmatch(pat, t.received), f"{t.received!r} does not match {pat!r}"
    listed = messages(server, address)[0]
    assert listed["size"] == len(raw), listed
    usage = mailbox(server, address)
    assert (usage["used_bytes"], usage["used_messages"]) == (len(raw), 1), usage


def nothing_stored(server: Server, *addresses: str) -> None:
    for a in addresses:
        assert messages(server, a) == [], f"{a} has messages"
        usage = mailbox(server, a)
        assert (usage["used_bytes"], usage["used_messages"]) == (0, 0), usage


def no_blob_files(server: Server) -> None:
    """Nothing is left in the blob directory: no temporary file, no message file. (A session
    may log its end a moment before it drops its half-written file, hence the short wait.)"""
    harness.wait_for(lambda: blob_files(server) == ([], []), 5,
                     f"an empty blob directory, not {blob_files(server)}")


def message_id(listed: dict) -> str:
    return listed["message_id"].strip("<>")


# ---------------------------------------------------------------------------------------------
# 1. the core flows with smtplib and a raw client
# ---------------------------------------------------------------------------------------------


def test_mx_delivers_to_a_local_mailbox(mail):
    # Lines that start with a dot are stuffed by smtplib and must come back unstuffed.
    body = b"First line.\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
    sent = message("plain delivery", body=body)
    with smtp(mail) as s:
        s.ehlo()
        assert "starttls" in s.esmtp_features and "auth" not in s.esmtp_features
        qid = transaction(s, REMOTE_SENDER, [ALICE], sent)
    assert_stored(mail, ALICE, sent, sender=REMOTE_SENDER, proto="ESMTP", tls=False,
                  rcpt=ALICE, qid=qid)
    listed = messages(mail, ALICE)[0]
    assert listed["subject"] == "plain delivery"
    assert listed["from"] == REMOTE_SENDER
    assert listed["flags"] == [] and listed["keywords"] == []
    nothing_stored(mail, BOB)


def test_mx_sendmail_and_helo(mail):
    """sendmail() as most scripts use it (with SIZE=), and a HELO client (protocol SMTP)."""
    sent = message("sendmail")
    with smtp(mail) as s:
        assert s.sendmail(REMOTE_SENDER, [BOB], sent) == {}
    assert_stored(mail, BOB, sent, sender=REMOTE_SENDER, proto="ESMTP", tls=False, rcpt=BOB)
    sent2 = message("helo", to=ALICE)
    with smtp(mail) as s:
        code, _ = s.helo("old.client.test")
        assert code == 250
        assert s.sendmail(REMOTE_SENDER, [ALICE], sent2) == {}
    assert_stored(mail, ALICE, sent2, sender=REMOTE_SENDER, proto="SMTP", tls=False,
                  rcpt=ALICE, helo="old.client.test")


def test_mx_null_sender(mail):
    sent = message("bounce", sender="MAILER-DAEMON@remote.test")
    with smtp(mail) as s:
        transaction(s, "", [ALICE], sent)
    assert_stored(mail, ALICE, sent, sender="", proto="ESMTP", tls=False, rcpt=ALICE)


def test_mx_starttls(mail):
    sent = message("over starttls")
    with smtp(mail) as s:
        s.ehlo()
        code, text = s.starttls(context=client_context(mail))
        assert (code, text) == (220, b"2.0.0 ready to start TLS")
        cipher = s.sock.cipher()
        s.ehlo()
        assert "starttls" not in s.esmtp_features, s.esmtp_features
        assert "auth" not in s.esmtp_features, s.esmtp_features
        qid = transaction(s, REMOTE_SENDER, [ALICE], sent)
    assert_stored(mail, ALICE, sent, sender=REMOTE_SENDER, proto="ESMTPS", tls=True, rcpt=ALICE,
                  qid=qid, cipher=cipher)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_auth_after_starttls(mail, mechanism):
    sent = message("submitted", sender=ALICE, to=BOB)
    with smtp(mail, "SUBMISSION_PORT") as s:
        s.ehlo()
        assert "auth" not in s.esmtp_features, "AUTH offered before TLS"
        assert "starttls" in s.esmtp_features
        token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
        code, text = s.docmd("AUTH", f"PLAIN {token}")
        assert (code, text) == (538, b"5.7.11 encryption required: use STARTTLS first")
        code, text = s.docmd("MAIL FROM:<alice@example.test>")
        assert (code, text) == (530, b"5.7.0 authentication required")
        s.starttls(context=client_context(mail))
        cipher = s.sock.cipher()
        s.ehlo()
        assert s.esmtp_features.get("auth", "").strip() == "PLAIN LOGIN", s.esmtp_features
        assert "starttls" not in s.esmtp_features
        code, text = s.docmd("MAIL FROM:<alice@example.test>")
        assert (code, text) == (530, b"5.7.0 authentication required")
        s.user, s.password = ALICE, ALICE_PW  # what smtplib's auth objects read
        auth = s.auth_plain if mechanism == "PLAIN" else s.auth_login
        code, text = s.auth(mechanism, auth)
        assert (code, text) == (235, b"2.7.0 authentication successful")
        qid = transaction(s, ALICE, [BOB], sent)
        # An authenticated user may send to remote domains: accepted at RCPT (there is no
        # outbound queue yet, so the transaction is reset rather than completed).
        assert s.mail(ALICE) == (250, b"2.1.0 sender OK")
        assert s.rcpt("friend@remote.test") == (250, b"2.1.5 recipient OK")
        assert s.rset() == (250, b"2.0.0 reset")
    assert_stored(mail, BOB, sent, sender=ALICE, proto="ESMTPSA", tls=True, rcpt=BOB, qid=qid,
                  cipher=cipher)


def test_smtps_implicit_tls(mail):
    sent = message("over implicit tls", sender=BOB, to=ALICE)
    with smtp(mail, "SMTPS_PORT") as s:
        cipher = s.sock.cipher()
        s.ehlo()
        assert s.esmtp_features.get("auth", "").strip() == "PLAIN LOGIN", s.esmtp_features
        assert "starttls" not in s.esmtp_features
        code, text = s.docmd("MAIL FROM:<bob@example.test>")
        assert (code, text) == (530, b"5.7.0 authentication required")
        s.login(BOB, BOB_PW)
        qid = transaction(s, BOB, [ALICE], sent)
    assert_stored(mail, ALICE, sent, sender=BOB, proto="ESMTPSA", tls=True, rcpt=ALICE, qid=qid,
                  cipher=cipher)


def test_received_names_the_cipher_as_iana_does(mail):
    """The Received header names the negotiated cipher suite by its IANA name (as the client's
    TLS library, Postfix and the TlsInfo documentation do: TLS_AES_256_GCM_SHA384)."""
    with smtp(mail, "SMTPS_PORT") as s:
        name, version, _ = s.sock.cipher()
        s.login(ALICE, ALICE_PW)
        s.sendmail(ALICE, [BOB], message("cipher", sender=ALICE, to=BOB))
    received = split_trace(only_message(mail, BOB)).received
    assert f"\t(using {version} with cipher {name})\r\n" in received, received


def test_smtps_certificate_names_the_host(mail):
    """The implicit-TLS listener presents the certificate of MAILCOW_HOSTNAME (checked by name)."""
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.ehlo()
        assert c.cmd("QUIT").code == 221


def test_pipelined_transaction(mail):
    sent = message("pipelined", to=BOB)
    with RawSMTP.to(mail) as c:
        c.send(
            "EHLO client.test\r\n"
            f"MAIL FROM:<{REMOTE_SENDER}> SIZE={len(sent)}\r\n"
            f"RCPT TO:<{ALICE}>\r\n"
            "RCPT TO:<nobody@example.test>\r\n"
            f"RCPT TO:<{BOB}>\r\n"
            "DATA\r\n"
        )
        ehlo, mail_r, r1, r2, r3, data = c.replies(6)
        assert ehlo.code == 250 and "PIPELINING" in ehlo.lines
        assert mail_r.raw == b"250 2.1.0 sender OK\r\n"
        assert r1.raw == b"250 2.1.5 recipient OK\r\n"
        assert r2.raw == (b"550 5.1.1 <nobody@example.test>: recipient address rejected: "
                          b"user unknown\r\n")
        assert r3.raw == b"250 2.1.5 recipient OK\r\n"
        assert data.raw == b"354 end data with <CR><LF>.<CR><LF>\r\n"
        # The message, its end, and the next transaction and QUIT in one write.
        sent2 = message("second of the pipeline", to=ALICE)
        c.send(sent + b".\r\n"
               + f"MAIL FROM:<{REMOTE_SENDER}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n".encode())
        done, m2, rc2, d2 = c.replies(4)
        assert re.fullmatch(rb"250 2\.0\.0 OK: queued as [0-9A-Za-z]{13}\r\n", done.raw), done
        assert (m2.code, rc2.code, d2.code) == (250, 250, 354)
        c.send(sent2 + b".\r\nQUIT\r\n")
        done2, bye = c.replies(2)
        assert done2.code == 250, done2
        assert bye.raw == f"221 2.0.0 {HOSTNAME} closing connection\r\n".encode()
        assert c.closed()
    # Two recipients: the Received header names neither (a Bcc stays private).
    assert_stored(mail, BOB, sent, sender=REMOTE_SENDER, proto="ESMTP", tls=False, rcpt=None)
    got = [split_trace(m).content for m in stored(mail, ALICE)]
    assert got == [sent, sent2]


def test_bdat_chunks(mail):
    c1 = (b"From: <sender@remote.test>\r\nTo: <alice@example.test>\r\nSubject: chunked\r\n"
          b"Message-ID: <bdat-1@client.test>\r\n\r\nline one ends across chunks\r")
    # BDAT has no dot-stuffing: a lone dot and a double dot are content.
    c2 = b"\n.\r\n..two dots\r\n"
    c3 = b"last line\r\n"
    with RawSMTP.to(mail) as c:
        ehlo = c.ehlo()
        assert "CHUNKING" in ehlo.lines
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250, "2.1.0")
        c.expect(f"RCPT TO:<{ALICE}>", 250, "2.1.5")
        c.send(f"BDAT {len(c1)}\r\n".encode() + c1)
        assert c.reply().raw == f"250 2.0.0 {len(c1)} octets received\r\n".encode()
        c.send(f"BDAT {len(c2)}\r\n".encode() + c2)
        assert c.reply().raw == f"250 2.0.0 {len(c2)} octets received\r\n".encode()
        c.expect("DATA", 503, "5.5.1")
        c.send(f"BDAT {len(c3)} LAST\r\n".encode() + c3)
        last = c.reply()
        assert last.code == 250 and last.text.startswith("OK: queued as "), last
        qid = last.text.removeprefix("OK: queued as ")
        # A whole chunked transaction in one write: MAIL, RCPT, BDAT LAST.
        one = message("bdat in one write", to=BOB)
        c.send(f"MAIL FROM:<{REMOTE_SENDER}>\r\nRCPT TO:<{BOB}>\r\nBDAT {len(one)} LAST\r\n"
               .encode() + one)
        m, r, d = c.replies(3)
        assert (m.code, r.code, d.code) == (250, 250, 250), (m, r, d)
        c.expect("QUIT", 221)
    assert_stored(mail, ALICE, c1 + c2 + c3, sender=REMOTE_SENDER, proto="ESMTP", tls=False,
                  rcpt=ALICE, qid=qid)
    assert_stored(mail, BOB, one, sender=REMOTE_SENDER, proto="ESMTP", tls=False, rcpt=BOB)


def test_bdat_out_of_sequence_chunk_is_read_and_thrown_away(mail):
    """RFC 3030 §4: the bytes of a refused chunk are still read, never taken as commands."""
    inside = b"RSET\r\nQUIT\r\n"
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.send(f"BDAT {len(inside)}\r\n".encode() + inside)
        r = c.reply()
        assert r.raw == b"503 5.5.1 need MAIL and RCPT before BDAT\r\n", r
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.send(f"BDAT {len(inside)} LAST\r\n".encode() + inside)
        assert c.reply().raw == b"554 5.5.1 no valid recipients\r\n"
        assert c.cmd("NOOP").raw == b"250 2.0.0 OK\r\n"
    nothing_stored(mail, ALICE, BOB)


def test_bare_cr_and_lf_are_stored_as_crlf(mail):
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: bare\r\n\r\nlf\nmiddle\rcrlf\r\n..dot\r\n.\r\n")
        assert c.reply().code == 250
    t = split_trace(only_message(mail, ALICE))
    assert t.content == b"Subject: bare\r\n\r\nlf\r\nmiddle\r\ncrlf\r\n.dot\r\n"


def test_smtputf8_address_and_headers(stopped_server):
    server = stopped_server
    jorg = "jörg@example.test"
    server.add_mailbox(jorg, "joerg-password-1")
    launch(server)
    sender = "dörte@absender.test"
    sent = (
        "From: Dörte <dörte@absender.test>\r\n"
        "To: Jörg <jörg@example.test>\r\n"
        "Subject: Grüße aus Köln\r\n"
        "Message-ID: <utf8-1@absender.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Schöne Grüße, 東京\r\n"
    ).encode()
    with smtp(server) as s:
        s.ehlo()
        assert "smtputf8" in s.esmtp_features
        refused = s.sendmail(sender, [jorg], sent, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    assert_stored(server, jorg, sent, sender=sender, proto="UTF8SMTP", tls=False, rcpt=jorg)
    listed = messages(server, jorg)[0]
    assert listed["subject"] == "Grüße aus Köln"
    assert listed["from"] == "dörte@absender.test"


def test_non_ascii_address_needs_smtputf8(stopped_server):
    server = stopped_server
    server.add_mailbox("jörg@example.test", "joerg-password-1")
    launch(server)
    with RawSMTP.to(server) as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<dörte@absender.test>")
        assert r.raw == (
            "553 5.6.7 <dörte@absender.test>: non-ASCII address without SMTPUTF8\r\n".encode())
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        r = c.cmd("RCPT TO:<jörg@example.test>")
        assert r.raw == (
            "553 5.6.7 <jörg@example.test>: non-ASCII address without SMTPUTF8\r\n".encode())
        c.expect("RSET", 250)
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}> SMTPUTF8", 250)
        c.expect("RCPT TO:<jörg@example.test>", 250, "2.1.5")


def test_8bit_body(mail):
    body = ("Grüße in UTF-8\r\n".encode() + b"caf\xe9 in Latin-1\r\n"
            + bytes(range(0x80, 0x100)) + b"\r\n")
    sent = message("8 bit", headers=b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n",
                   body=body)
    with smtp(mail) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], sent, mail_options=["BODY=8BITMIME"]) == {}
    assert_stored(mail, ALICE, sent, sender=REMOTE_SENDER, proto="ESMTP", tls=False, rcpt=ALICE)


def test_large_message_is_stored_exactly(mail):
    """A message above the 1 MiB the server keeps in memory goes through a blob file."""
    rng = random.Random(7)
    lines = [("".join(rng.choice("abcdefghij .") for _ in range(rng.randint(0, 900)))).encode()
             for _ in range(3000)]
    sent = message("large", body=b"\r\n".join(lines) + b"\r\n")
    assert len(sent) > 1_200_000
    with smtp(mail) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], sent) == {}
    assert_stored(mail, ALICE, sent, sender=REMOTE_SENDER, proto="ESMTP", tls=False, rcpt=ALICE)


# ---------------------------------------------------------------------------------------------
# 2. swaks
# ---------------------------------------------------------------------------------------------


def swaks(server: Server, key: str, *args: str) -> subprocess.CompletedProcess:
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (apt-get install swaks libio-socket-ssl-perl)")
    host, port = server.address(key)
    return subprocess.run(
        ["swaks", "--server", host, "--port", str(port), "--helo", "client.test",
         "--timeout", "30", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )


def swaks_tls(server: Server, key: str, *args: str) -> subprocess.CompletedProcess:
    if shutil.which("swaks"):
        support = subprocess.run(["swaks", "--support"], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=30)
        if "TLS supported" not in support.stdout + support.stderr:
            pytest.skip("swaks has no TLS support (apt-get install libio-socket-ssl-perl)")
    return swaks(server, key, *args)


def swaks_data(transcript: str) -> bytes:
    """The message swaks sent, from its transcript: the lines it sent (" -> ", or " ~> " over
    TLS) after the DATA command up to the lone dot. With --pipeline the 354 is printed later, so
    the DATA command, not the reply, marks the start."""
    lines = transcript.splitlines()
    start = next(i for i, l in enumerate(lines) if l[4:] == "DATA" and l[:4] in (" -> ", " ~> "))
    end = next(i for i in range(start + 1, len(lines)) if lines[i][4:] == ".")
    sent = [l for l in lines[start + 1:end] if l[:4] in (" -> ", " ~> ")]
    return "".join(l[4:] + "\r\n" for l in sent).encode()


def ok(proc: subprocess.CompletedProcess, code: int = 0) -> str:
    assert proc.returncode == code, (
        f"swaks exited with {proc.returncode}, expected {code}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def test_swaks_plain_mx(mail):
    out = ok(swaks(mail, "SMTP_PORT", "--from", REMOTE_SENDER, "--to", ALICE,
                   "--header", "Subject: swaks plain", "--body", "swaks body"))
    assert re.search(r"^<-  250 2\.0\.0 OK: queued as \w{13}$", out, re.M), out
    [m] = messages(mail, ALICE)
    assert m["subject"] == "swaks plain"
    content = split_trace(only_message(mail, ALICE)).content
    assert content == swaks_data(out), content
    assert b"\r\n\r\nswaks body\r\n" in content


def test_swaks_pipelining(mail):
    out = ok(swaks(mail, "SMTP_PORT", "--pipeline", "--from", REMOTE_SENDER,
                   "--to", f"{ALICE},{BOB}", "--header", "Subject: swaks pipelined"))
    assert "250 2.0.0 OK: queued as" in out
    assert messages(mail, ALICE)[0]["subject"] == "swaks pipelined"
    assert messages(mail, BOB)[0]["subject"] == "swaks pipelined"
    for address in (ALICE, BOB):
        assert split_trace(only_message(mail, address)).content == swaks_data(out)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_submission_starttls_auth(mail, mechanism):
    out = ok(swaks_tls(mail, "SUBMISSION_PORT", "--tls", "--auth", mechanism,
                       "--auth-user", ALICE, "--auth-password", ALICE_PW, "--from", ALICE,
                       "--to", BOB, "--header", f"From: <{ALICE}>",
                       "--header", f"Subject: swaks {mechanism}"))
    assert "235 2.7.0 authentication successful" in out
    assert messages(mail, BOB)[0]["subject"] == f"swaks {mechanism}"
    assert split_trace(only_message(mail, BOB)).content == swaks_data(out)
    received = split_trace(only_message(mail, BOB)).received
    assert "with ESMTPSA id" in received and "(using TLSv1." in received, received


def test_swaks_smtps(mail):
    out = ok(swaks_tls(mail, "SMTPS_PORT", "--tls-on-connect", "--auth", "PLAIN",
                 "--auth-user", BOB, "--auth-password", BOB_PW, "--from", BOB, "--to", ALICE,
                 "--header", f"From: <{BOB}>", "--header", "Subject: swaks smtps"))
    assert messages(mail, ALICE)[0]["subject"] == "swaks smtps"
    assert split_trace(only_message(mail, ALICE)).content == swaks_data(out)


def test_swaks_failures(mail):
    # A refused recipient: "no RCPTs accepted" is exit code 24.
    out = ok(swaks(mail, "SMTP_PORT", "--from", REMOTE_SENDER, "--to", "nobody@example.test"), 24)
    assert "550 5.1.1" in out
    out = ok(swaks(mail, "SMTP_PORT", "--from", REMOTE_SENDER, "--to", "someone@remote.test"), 24)
    assert "554 5.7.1 <someone@remote.test>: relay access denied" in out
    # A wrong password: exit code 28 (error in AUTH).
    out = ok(swaks_tls(mail, "SUBMISSION_PORT", "--tls", "--auth", "PLAIN", "--auth-user", ALICE,
                       "--auth-password", "wrong-password", "--from", ALICE, "--to", BOB), 28)
    assert "535 5.7.8 authentication credentials invalid" in out
    # Without AUTH on submission: MAIL is refused, exit code 23.
    out = ok(swaks_tls(mail, "SUBMISSION_PORT", "--tls", "--from", ALICE, "--to", BOB), 23)
    assert "530 5.7.0 authentication required" in out
    # Another user's sender address: 553 at MAIL.
    out = ok(swaks_tls(mail, "SMTPS_PORT", "--tls-on-connect", "--auth", "LOGIN",
                       "--auth-user", ALICE, "--auth-password", ALICE_PW, "--from", BOB,
                       "--to", BOB), 23)
    assert "553 5.7.1 <bob@example.test>: sender address rejected: not owned by user " \
           "alice@example.test" in out
    nothing_stored(mail, ALICE, BOB)


# ---------------------------------------------------------------------------------------------
# 3. replies
# ---------------------------------------------------------------------------------------------


def test_capabilities_of_each_listener(mail):
    with RawSMTP.to(mail, "SMTP_PORT") as c:
        assert c.ehlo().lines == MX_CAPABILITIES + ["STARTTLS"]
        assert c.cmd("HELO client.test").raw == f"250 {HOSTNAME}\r\n".encode()
        c.starttls(mail.tls_context())
        assert c.ehlo().lines == MX_CAPABILITIES
    with RawSMTP.to(mail, "SUBMISSION_PORT") as c:
        assert c.ehlo().lines == MX_CAPABILITIES + ["STARTTLS"]
        c.starttls(mail.tls_context())
        assert c.ehlo().lines == MX_CAPABILITIES + ["AUTH PLAIN LOGIN"]
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        assert c.ehlo().lines == MX_CAPABILITIES + ["AUTH PLAIN LOGIN"]


def test_size_limit_is_announced_and_enforced(users):
    server = launch(users, MESSAGE_SIZE_LIMIT="2048")
    with RawSMTP.to(server) as c:
        assert "SIZE 2048" in c.ehlo().lines
        r = c.cmd(f"MAIL FROM:<{REMOTE_SENDER}> SIZE=2049")
        assert r.raw == b"552 5.3.4 message size exceeds the limit of 2048 bytes\r\n"
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}> SIZE=2048", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        # No SIZE= lie helps: the body itself is measured.
        c.send(b"Subject: big\r\n\r\n" + b"x" * 2100 + b"\r\n.\r\n")
        assert c.reply().raw == b"552 5.3.4 message size exceeds the limit of 2048 bytes\r\n"
        # The transaction is over; the session goes on.
        c.expect(f"RCPT TO:<{ALICE}>", 503, "5.5.1")
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.send(b"BDAT 1500\r\n" + b"y" * 1500)
        assert c.reply().code == 250
        c.send(b"BDAT 1000 LAST\r\n" + b"z" * 1000)
        assert c.reply().raw == b"552 5.3.4 message size exceeds the limit of 2048 bytes\r\n"
        nothing_stored(server, ALICE)
        no_blob_files(server)
        # Exactly the limit is accepted.
        exact = b"Subject: exact\r\n\r\n" + b"e" * (2048 - 18 - 2) + b"\r\n"
        assert len(exact) == 2048
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(exact + b".\r\n")
        assert c.reply().code == 250
    assert split_trace(only_message(server, ALICE)).content == exact


def test_recipient_replies(users):
    server = users
    server.add_alias("sales@example.test", ALICE)
    server.admin("alias-domain", "add", "alias.test", DOMAIN)
    server.add_domain("catch.test")
    server.add_alias("@catch.test", BOB)
    server.add_mailbox("inactive@example.test", "inactive-password", inactive=True, quota="10M")
    server.add_mailbox("gone@example.test", "gone-password-1", quota="10M")
    server.admin("mailbox", "edit", "gone@example.test", "--active", "n")
    server.add_alias("fwd@example.test", "friend@remote.test")
    server.add_alias("mixed@example.test", ALICE, "friend@remote.test")
    launch(server)
    expected = [
        (ALICE, 250, "2.1.5"),
        ("Alice@EXAMPLE.test", 250, "2.1.5"),
        ("alice+tag@example.test", 250, "2.1.5"),
        ("sales@example.test", 250, "2.1.5"),
        ("alice@alias.test", 250, "2.1.5"),
        ("sales+x@alias.test", 250, "2.1.5"),
        ("anything@catch.test", 250, "2.1.5"),
        ("nobody@example.test", 550, "5.1.1"),
        ("nobody@alias.test", 550, "5.1.1"),
        ("inactive@example.test", 550, "5.2.1"),
        ("gone@example.test", 550, "5.2.1"),
        # Aliases that forward to remote addresses queue a forward (tests/test_outbound.py).
        ("fwd@example.test", 250, "2.1.5"),
        ("mixed@example.test", 250, "2.1.5"),
        ("someone@remote.test", 554, "5.7.1"),
    ]
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250, "2.1.0")
        for address, code, status in expected:
            r = c.cmd(f"RCPT TO:<{address}>")
            assert (r.code, r.status) == (code, status), (address, r)
        r = c.cmd("RCPT TO:<nobody@example.test>")
        assert r.text == "<nobody@example.test>: recipient address rejected: user unknown"
        r = c.cmd("RCPT TO:<inactive@example.test>")
        assert r.text == "<inactive@example.test>: mailbox disabled, not accepting messages"
        r = c.cmd("RCPT TO:<fwd@example.test>")
        assert r.text == "recipient OK"
        r = c.cmd("RCPT TO:<someone@remote.test>")
        assert r.text == "<someone@remote.test>: relay access denied"
        c.expect("DATA", 354)
        sent = message("to many")
        c.send(sent + b".\r\n")
        assert c.reply().code == 250
    # Every accepted address of alice's gave one copy.
    assert split_trace(only_message(server, ALICE)).content == sent
    assert split_trace(only_message(server, BOB)).content == sent
    nothing_stored(server, "inactive@example.test", "gone@example.test")


def test_postmaster_without_domain(stopped_server):
    """RFC 5321 §4.5.1: RCPT TO:<Postmaster> (no domain) must be accepted; the server's own host
    name is a mail domain here, with a postmaster mailbox."""
    server = stopped_server
    server.add_domain(HOSTNAME)
    server.add_mailbox(f"postmaster@{HOSTNAME}", "postmaster-password")
    launch(server)
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect("RCPT TO:<Postmaster>", 250, "2.1.5")
        c.expect("DATA", 354)
        sent = message("to the postmaster", to="postmaster")
        c.send(sent + b".\r\n")
        assert c.reply().code == 250
    assert split_trace(only_message(server, f"postmaster@{HOSTNAME}")).content == sent


def test_postmaster_without_domain_is_not_a_syntax_error(mail):
    """Whatever the server does with <postmaster> when no domain has one, the command is valid."""
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        r = c.cmd("RCPT TO:<postmaster>")
        assert r.code not in (500, 501, 555), r


def test_too_many_recipients(users):
    server = launch(users, SMTP_MAX_RECIPIENTS="3")
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        for i in range(3):
            c.expect(f"RCPT TO:<alice+{i}@example.test>", 250, "2.1.5")
        r = c.cmd(f"RCPT TO:<{BOB}>")
        assert r.raw == b"452 4.5.3 too many recipients (at most 3)\r\n"
        c.expect("DATA", 354)
        c.send(message("three") + b".\r\n")
        assert c.reply().code == 250
    assert len(messages(server, ALICE)) == 1
    nothing_stored(server, BOB)


def test_recipients_over_the_limit_do_not_end_the_session_later(users):
    """The 452s for recipients over SMTP_MAX_RECIPIENTS are not failures of the client (RFC 5321
    §4.5.3.1.10 expects it to send the rest later): the session is not closed for them, so it
    must not be closed either at the first ordinary error after them."""
    server = launch(users, SMTP_MAX_RECIPIENTS="2")
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.send("".join(f"RCPT TO:<alice+{i}@example.test>\r\n" for i in range(30)))
        codes = [r.code for r in c.replies(30)]
        assert codes == [250, 250] + [452] * 28
        c.expect("DATA", 354)
        c.send(message("first two") + b".\r\n")
        assert c.reply().code == 250
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.send(b"RCPT TO:<typo@example.test>\r\n")
        assert c.reply().code == 550
        r = c.cmd("NOOP")
        assert r.raw == b"250 2.0.0 OK\r\n", f"one unknown recipient closed the session: {r}"


def test_dsn_parameters_and_an_empty_message(mail):
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}> RET=HDRS ENVID=QQ314159", 250, "2.1.0")
        c.expect(f"RCPT TO:<{ALICE}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{ALICE}", 250, "2.1.5")
        c.expect(f"RCPT TO:<{BOB}> NOTIFY=NEVER", 250, "2.1.5")
        c.expect("DATA", 354)
        c.send(b".\r\n")
        assert c.reply().code == 250
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.send(b"BDAT 0 LAST\r\n")
        assert c.reply().code == 250
    assert split_trace(only_message(mail, ALICE)).content == b""
    assert [split_trace(m).content for m in stored(mail, BOB)] == [b"", b""]


@pytest.mark.parametrize("helo,shown", [
    ("a(b);c", "a_b__c"),
    ("[192.0.2.1]", "[192.0.2.1]"),
    ("x" * 63 + "." + "y" * 63 + ".test", "x" * 63 + "." + "y" * 63 + ".test"),
])
def test_received_header_keeps_the_helo_name_harmless(mail, helo, shown):
    with RawSMTP.to(mail) as c:
        c.ehlo(helo)
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        sent = message("helo")
        c.send(sent + b".\r\n")
        assert c.reply().code == 250
    assert_stored(mail, ALICE, sent, sender=REMOTE_SENDER, proto="ESMTP", tls=False, rcpt=ALICE,
                  helo=shown)


def test_quota(stopped_server):
    server = stopped_server
    server.add_mailbox("small@example.test", "small-password", quota="4000")
    launch(server)
    big = message("fills most", to="small@example.test", body=b"x" * 3000 + b"\r\n")
    with smtp(server) as s:
        transaction(s, REMOTE_SENDER, ["small@example.test"], big)
    used = mailbox(server, "small@example.test")["used_bytes"]
    assert 3000 < used < 4000, used
    with RawSMTP.to(server) as c:
        c.ehlo()
        # The SIZE= hint would take the mailbox past its quota and the 10% grace: 452 at RCPT.
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}> SIZE={4400 - used + 1}", 250)
        r = c.cmd("RCPT TO:<small@example.test>")
        assert r.raw == (b"452 4.2.2 <small@example.test>: mailbox small@example.test is full, "
                         b"try again later\r\n"), r
        c.expect("RSET", 250)
        # Without a hint the recipient is accepted and the body is measured at the end.
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect("RCPT TO:<small@example.test>", 250)
        c.expect("DATA", 354)
        c.send(message("too much", body=b"y" * 2000 + b"\r\n") + b".\r\n")
        r = c.reply()
        assert (r.code, r.status) == (452, "4.2.2"), r
        assert len(messages(server, "small@example.test")) == 1
        # A last message that goes over the quota within the 10% grace is taken...
        trace = used - len(big)
        last = message("last one", body=b"")
        last += b"z" * (4200 - used - trace - len(last)) + b"\r\n"
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect("RCPT TO:<small@example.test>", 250)
        c.expect("DATA", 354)
        c.send(last + b".\r\n")
        assert c.reply().code == 250
        # ... and then the mailbox is full: 452 at RCPT.
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        r = c.cmd("RCPT TO:<small@example.test>")
        assert (r.code, r.status) == (452, "4.2.2"), r
    usage = mailbox(server, "small@example.test")
    assert 4000 <= usage["used_bytes"] <= 4400 and usage["used_messages"] == 2, usage
    # The refused message left no blob behind.
    assert len(blob_files(server)[1]) == 2


def test_sequence_and_command_replies(mail):
    with RawSMTP.to(mail) as c:
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").raw == b"503 5.5.1 send EHLO first\r\n"
        c.ehlo()
        assert c.cmd(f"RCPT TO:<{ALICE}>").raw == b"503 5.5.1 need MAIL before RCPT\r\n"
        assert c.cmd("DATA").raw == b"503 5.5.1 need MAIL and RCPT before DATA\r\n"
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").raw == b"503 5.5.1 nested MAIL command\r\n"
        assert c.cmd("DATA").raw == b"554 5.5.1 no valid recipients\r\n"
        assert c.cmd("FOO bar").raw == b"500 5.5.1 command not recognised\r\n"
        assert c.cmd("NOOP").raw == b"250 2.0.0 OK\r\n"
        assert c.cmd("VRFY alice").raw == (
            b"252 2.5.2 cannot VRFY user, but will accept message and attempt delivery\r\n")
        assert c.cmd("EXPN staff").raw == b"502 5.5.1 EXPN is not available\r\n"
        assert c.cmd("HELP").code == 214
        assert c.cmd("AUTH PLAIN").raw == (
            b"502 5.5.1 AUTH is not available on this port; use port 587 or 465\r\n")
        assert c.cmd("RSET").raw == b"250 2.0.0 reset\r\n"
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 503
        assert c.cmd("MAIL FROM:<nodomain>").code == 501
        assert c.cmd("MAIL FROM:<a@b.test> FOOBAR=1").code in (501, 555)
        assert c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME").code == 555
        c.starttls(mail.tls_context())
        # STARTTLS forgets the EHLO (RFC 3207 §4.2).
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").raw == b"503 5.5.1 send EHLO first\r\n"
        c.ehlo()
        assert c.cmd("STARTTLS").raw == b"503 5.5.1 TLS is already active\r\n"
        assert c.cmd("QUIT").raw == f"221 2.0.0 {HOSTNAME} closing connection\r\n".encode()
        assert c.closed()


def test_auth_replies(mail):
    with RawSMTP.to(mail, "SUBMISSION_PORT") as c:
        c.ehlo()
        assert c.cmd("AUTH LOGIN").raw == b"538 5.7.11 encryption required: use STARTTLS first\r\n"
        c.starttls(mail.tls_context())
        c.ehlo()
        assert c.cmd("AUTH CRAM-MD5").raw == (
            b"504 5.5.4 unsupported authentication mechanism; use PLAIN or LOGIN\r\n")
        r = c.auth_plain(ALICE, "wrong-password")
        assert r.raw == b"535 5.7.8 authentication credentials invalid\r\n"
        # PLAIN without an initial response, then cancelled.
        assert c.cmd("AUTH PLAIN").raw == b"334 \r\n"
        assert c.cmd("*").raw == b"501 5.0.0 authentication cancelled\r\n"
        # Acting for another user is refused.
        token = base64.b64encode(f"{BOB}\0{ALICE}\0{ALICE_PW}".encode()).decode()
        assert c.cmd(f"AUTH PLAIN {token}").raw == (
            b"535 5.7.8 authentication credentials invalid\r\n")
        # LOGIN, step by step.
        assert c.cmd("AUTH LOGIN").raw == b"334 VXNlcm5hbWU6\r\n"
        assert c.cmd(base64.b64encode(ALICE.encode())).raw == b"334 UGFzc3dvcmQ6\r\n"
        assert c.cmd(base64.b64encode(ALICE_PW.encode())).raw == (
            b"235 2.7.0 authentication successful\r\n")
        assert c.auth_plain(ALICE, ALICE_PW).raw == b"503 5.5.1 already authenticated\r\n"
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
    # PLAIN with the response on its own line, on 465.
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN").raw == b"334 \r\n"
        r = c.cmd(base64.b64encode(f"\0{BOB}\0{BOB_PW}".encode()))
        assert r.raw == b"235 2.7.0 authentication successful\r\n"
    # A login of an inactive mailbox fails like a wrong password.
    mail.admin("mailbox", "edit", BOB, "--active", "n")
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        c.ehlo()
        assert c.auth_plain(BOB, BOB_PW).code == 535


def test_auth_failure_delay(users):
    """AUTH_FAILURE_DELAY slows every failed login down, and only failed ones."""
    server = users.start(env={"AUTH_FAILURE_DELAY": "2s"})
    with RawSMTP.to(server, "SMTPS_PORT") as c:
        c.ehlo()
        t0 = time.monotonic()
        assert c.auth_plain(ALICE, "wrong-password").code == 535
        failed = time.monotonic() - t0
        t0 = time.monotonic()
        assert c.auth_plain(ALICE, ALICE_PW).code == 235
        succeeded = time.monotonic() - t0
    # Both check a password hash; only the failure waits the 2s on top.
    assert failed >= 2.0, failed
    assert succeeded < failed - 1.0, (succeeded, failed)


# Relay tricks on port 25, with a mailbox user@example.test that a careless parser might take
# as the "local" part of a routed address. (address in RCPT TO, expected code, status)
RELAY_TRICKS = [
    ("<user%remote.test@example.test>", 550, "5.1.1"),
    ("<@example.test:user@remote.test>", 554, "5.7.1"),
    ("<@example.test,@mx.remote.test:user@remote.test>", 554, "5.7.1"),
    ("<remote.test!user@example.test>", 550, "5.1.1"),
    ("<user@remote.test@example.test>", 501, "5.1.3"),
    ("<user@example.test@remote.test>", 501, "5.1.3"),
    ('<"user@remote.test"@example.test>', 550, "5.1.1"),
    ('<"user@example.test"@remote.test>', 554, "5.7.1"),
    ("<user@remote.test.>", 554, "5.7.1"),
    ("<user@remote.test%example.test>", 554, "5.7.1"),
    ("<user@[127.0.0.1]>", 554, "5.7.1"),
    ("<user@[IPv6:::1]>", 554, "5.7.1"),
    ("<USER@REMOTE.TEST>", 554, "5.7.1"),
    ("<user@Example.Test.Remote.Test>", 554, "5.7.1"),
    ("<user@localhost>", 554, "5.7.1"),
    (f"<user@{HOSTNAME}>", 554, "5.7.1"),
]


@pytest.mark.parametrize("path,code,status", RELAY_TRICKS, ids=[t[0] for t in RELAY_TRICKS])
def test_relay_tricks_are_refused(stopped_server, path, code, status):
    server = stopped_server
    server.add_mailbox("user@example.test", "user-password-1")
    launch(server)
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        r = c.cmd(f"RCPT TO:{path}")
        assert (r.code, r.status) == (code, status), r
        assert c.cmd("DATA").raw == b"554 5.5.1 no valid recipients\r\n"
        # The control: the local mailbox itself is fine.
        c.expect("RCPT TO:<user@example.test>", 250)
    nothing_stored(server, "user@example.test")


@pytest.mark.parametrize("line", [
    "RCPT TO: <user@remote.test>",
    "RCPT TO:<user@remote.test >",
    "RCPT TO:<user@remote.test> ",
    "RCPT TO:\t<user@remote.test>",
    "RCPT TO:<user@remote.test>\tNOTIFY=NEVER",
    "RCPT  TO:<user@remote.test>",
    "rcpt to:<user@remote.test>",
    "RCPT TO:user@remote.test",
])
def test_relay_with_odd_whitespace_is_refused(mail, line):
    """However the parser takes the spacing, a remote address is refused: with a syntax error
    (501) or as relaying (554 5.7.1), never 250."""
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        r = c.cmd(line)
        assert (r.code, r.status) in ((501, "5.5.4"), (501, "5.1.3"), (554, "5.7.1")), r
        assert c.cmd("DATA").code == 554


def test_relay_refused_after_starttls_without_auth(mail):
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.starttls(mail.tls_context())
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        r = c.cmd("RCPT TO:<user@remote.test>")
        assert r.raw == b"554 5.7.1 <user@remote.test>: relay access denied\r\n"
        # An authenticated-looking sender does not help either.
        c.expect("RSET", 250)
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        assert c.cmd("RCPT TO:<user@remote.test>").code == 554
    with RawSMTP.to(mail, "SUBMISSION_PORT") as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{ALICE}>").raw == b"530 5.7.0 authentication required\r\n"
        c.starttls(mail.tls_context())
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{ALICE}>").raw == b"530 5.7.0 authentication required\r\n"
        assert c.cmd("RCPT TO:<user@remote.test>").code == 503
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{ALICE}>").raw == b"530 5.7.0 authentication required\r\n"
        assert c.cmd("MAIL FROM:<>").raw == b"530 5.7.0 authentication required\r\n"


def test_starttls_discards_commands_sent_in_clear_text(mail):
    """The 2011 STARTTLS injection: commands sent with STARTTLS before the handshake must not
    run inside the encrypted session."""
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.send(f"STARTTLS\r\nEHLO injected.test\r\nMAIL FROM:<{REMOTE_SENDER}>\r\n")
        assert c.reply().raw == b"220 2.0.0 ready to start TLS\r\n"
        c.sock = mail.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        # Had the injected EHLO and MAIL run, this would be a nested MAIL (503) after 250s.
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").raw == b"503 5.5.1 send EHLO first\r\n"
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
    mail.wait_log("discarded input sent in clear text after STARTTLS")


# ---------------------------------------------------------------------------------------------
# 4. submission: who may send as whom
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def senders(users: Server) -> Server:
    server = users
    server.add_alias("sales@example.test", ALICE)
    server.add_alias("team@example.test", ALICE, BOB)
    server.add_alias("bobs@example.test", BOB)
    server.admin("alias-domain", "add", "alias.test", DOMAIN)
    server.add_domain("other.test")
    server.add_alias("info@other.test", ALICE)
    server.add_alias("@example.test", ALICE)  # a catch-all gives no sender rights
    return launch(server)


OWN_SENDERS = [
    ALICE,
    "Alice@Example.TEST",
    "alice+news@example.test",
    "sales@example.test",
    "sales+x@example.test",
    "team@example.test",
    "alice@alias.test",
    "sales@alias.test",
    "alice+y@alias.test",
    "info@other.test",
]
FOREIGN_SENDERS = [
    BOB,
    "bob+x@example.test",
    "bobs@example.test",
    "bob@alias.test",
    "whoever@example.test",
    "alice@remote.test",
    "someone@remote.test",
    "alice@other.test",
]


@pytest.mark.parametrize("key", ["SUBMISSION_PORT", "SMTPS_PORT"])
def test_sender_must_be_owned(senders, key):
    wrong = []
    with raw_submission(senders, key) as c:
        for address in OWN_SENDERS:
            r = c.cmd(f"MAIL FROM:<{address}>")
            if r.raw != b"250 2.1.0 sender OK\r\n":
                wrong.append((address, r))
            c.expect("RSET", 250)
        for address in FOREIGN_SENDERS:
            r = c.cmd(f"MAIL FROM:<{address}>")
            if r.raw != (f"553 5.7.1 <{address}>: sender address rejected: not owned by "
                         f"user {ALICE}\r\n").encode():
                wrong.append((address, r))
                c.expect("RSET", 250)
    assert wrong == []


@pytest.mark.parametrize("key", ["SUBMISSION_PORT", "SMTPS_PORT"])
def test_owned_senders_deliver(senders, key):
    with submission(senders, key) as s:
        for sender in ("sales@example.test", "alice+news@alias.test"):
            sent = message(f"from {sender}", sender=sender, to=BOB)
            transaction(s, sender, [BOB], sent)
    got = [split_trace(m) for m in stored(senders, BOB)]
    assert [t.return_path for t in got] == ["sales@example.test", "alice+news@alias.test"]


SPOOFED_FROM = [
    b"From: Bob <bob@example.test>\r\n",
    b"From: someone@remote.test\r\n",
    b"From: <alice@example.test>, <bob@example.test>\r\n",
    b"From: Alice <alice@example.test>\r\nFrom: Bob <bob@example.test>\r\n",
    b"From: Bob <bob@example.test>\r\nFrom: Alice <alice@example.test>\r\n",
    b"From: =?utf-8?q?Alice?= <bob@example.test>\r\n",
    b"From: \"alice@example.test\" <bob@example.test>\r\n",
    b"From: Bob\r\n <bob@example.test>\r\n",
    b"FROM: bob@example.test\r\n",
    b"From: friends: bob@example.test;\r\n",
    b"From: bob@example.test (Alice <alice@example.test>)\r\n",
    # A From header past the first 256 KiB of headers must be checked all the same.
    b"".join(b"X-Padding-%d: %s\r\n" % (i, b"p" * 900) for i in range(320))
    + b"From: Bob <bob@example.test>\r\n",
]


@pytest.mark.parametrize("key", ["SUBMISSION_PORT", "SMTPS_PORT"])
@pytest.mark.parametrize("from_header", SPOOFED_FROM, ids=range(len(SPOOFED_FROM)))
def test_from_header_spoofing_is_refused(senders, key, from_header):
    sent = (from_header + b"To: <bob@example.test>\r\nSubject: spoof\r\n"
            b"Message-ID: <spoof@client.test>\r\n\r\nI am Bob, honestly.\r\n")
    with raw_submission(senders, key) as c:
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(sent + b".\r\n")
        r = c.reply()
        assert (r.code, r.status) == (553, "5.7.1"), r
        assert r.text.startswith("From header address <") and r.text.endswith(
            f"> is not owned by user {ALICE}"), r
        # The session goes on; a proper message then goes through.
        ok_msg = message("honest", sender=ALICE, to=BOB)
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(ok_msg + b".\r\n")
        assert c.reply().code == 250
    assert split_trace(only_message(senders, BOB)).content == ok_msg


def test_from_header_spoofing_reply_text(senders):
    with raw_submission(senders) as c:
        c.expect("MAIL FROM:<>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(b"From: Bob <bob@example.test>\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
        assert c.reply().raw == (b"553 5.7.1 From header address <bob@example.test> is not "
                                 b"owned by user alice@example.test\r\n")
    nothing_stored(senders, ALICE, BOB)
    no_blob_files(senders)


@pytest.mark.parametrize("header", [
    b"From: Alice <alice@example.test>\r\n",
    b"From: Sales <sales@example.test>\r\n",
    b"From: alice+list@alias.test\r\n",
    b"From: \"Bob, not really\" <ALICE@EXAMPLE.TEST>\r\n",
])
def test_owned_from_headers_are_accepted(senders, header):
    sent = header + b"To: <bob@example.test>\r\nSubject: mine\r\n\r\nbody\r\n"
    with submission(senders) as s:
        transaction(s, ALICE, [BOB], sent)
    assert split_trace(only_message(senders, BOB)).content == sent


def test_mx_does_not_check_from_headers(mail):
    """Port 25 takes mail from anyone; From is not the MX's business (DMARC is, later)."""
    sent = b"From: Alice <alice@example.test>\r\nSubject: from outside\r\n\r\nhi\r\n"
    with smtp(mail) as s:
        transaction(s, REMOTE_SENDER, [BOB], sent)
    assert split_trace(only_message(mail, BOB)).content == sent


# ---------------------------------------------------------------------------------------------
# 5. abuse
# ---------------------------------------------------------------------------------------------


def test_one_megabyte_command_line(mail):
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<" + b"a" * (1 << 20) + b"@remote.test>\r\n")
        assert c.reply().raw == b"500 5.5.2 line too long (more than 2048 bytes)\r\n"
        assert c.cmd("NOOP").raw == b"250 2.0.0 OK\r\n"
        # The longest line allowed, with its CRLF, is fine.
        line = b"NOOP " + b"x" * (2048 - 7)
        assert len(line + b"\r\n") == 2048
        assert c.cmd(line).code == 250
        assert c.cmd(line + b"x").raw == b"500 5.5.2 line too long (more than 2048 bytes)\r\n"
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
    assert mail.running


def test_line_limit_is_configurable(users):
    server = launch(users, SMTP_LINE_LIMIT="512")
    with RawSMTP.to(server) as c:
        c.ehlo()
        assert c.cmd(b"NOOP " + b"x" * 600).raw == (
            b"500 5.5.2 line too long (more than 512 bytes)\r\n")
        assert c.cmd("NOOP").code == 250


@pytest.mark.parametrize("line", [
    b"EHLO client\0.test",
    b"MAIL FROM:<a\0b@remote.test>",
    b"\0\0\0\0",
    b"NOOP\0",
])
def test_nul_bytes_in_commands(mail, line):
    with RawSMTP.to(mail) as c:
        assert c.cmd(line).raw == b"501 5.5.4 NUL characters are not allowed in commands\r\n"
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)


@pytest.mark.timeout(240)
def test_ten_thousand_recipients(mail):
    total, limit, batch = 10_000, 1000, 250
    rss_before = rss_kib(mail.pid)
    t0 = time.monotonic()
    codes: list[tuple[int, str]] = []
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        for start in range(0, total, batch):
            n = min(batch, total - start)
            c.send("".join(f"RCPT TO:<alice+{i}@example.test>\r\n"
                           for i in range(start, start + n)))
            codes += [(r.code, r.status) for r in c.replies(n)]
        c.expect("DATA", 354)
        sent = message("ten thousand")
        c.send(sent + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
    elapsed = time.monotonic() - t0
    assert codes[:limit] == [(250, "2.1.5")] * limit
    assert codes[limit:] == [(452, "4.5.3")] * (total - limit)
    assert elapsed < 120, f"10,000 RCPTs took {elapsed:.0f}s"
    # One mailbox, one copy, however many of its addresses were named.
    assert split_trace(only_message(mail, ALICE)).content == sent
    grown = rss_kib(mail.pid) - rss_before
    assert grown < 64 * 1024, f"the server grew by {grown} KiB"
    # The server still serves others at once.
    t0 = time.monotonic()
    with smtp(mail) as s:
        transaction(s, REMOTE_SENDER, [BOB], message("after", to=BOB))
    assert time.monotonic() - t0 < 10


def trickle(c: RawSMTP, data: bytes, interval: float, limit: float) -> tuple[bytes, float]:
    """Sends `data` one byte every `interval` seconds until the server says something or closes;
    returns what it said and after how many seconds."""
    t0 = time.monotonic()
    c.sock.settimeout(interval)
    got = b""
    i = 0
    while time.monotonic() - t0 < limit:
        try:
            chunk = c.sock.recv(4096)
            got += chunk
            if not chunk or got.endswith(b"\r\n"):
                break
        except socket.timeout:
            pass
        if i < len(data):
            try:
                c.sock.sendall(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            i += 1
    return got, time.monotonic() - t0


def test_slow_client_is_cut_off(users):
    server = launch(users, SMTP_COMMAND_TIMEOUT="3s")
    with RawSMTP.to(server) as c:
        c.ehlo()
        got, elapsed = trickle(c, b"MAIL FROM:<" + b"s" * 100 + b"@remote.test>\r\n", 1.0, 30)
        assert got == TIMEOUT_BYE
        assert 2.5 <= elapsed < 8, elapsed
        assert c.closed()


def test_idle_client_is_cut_off(users):
    server = launch(users, SMTP_COMMAND_TIMEOUT="2s")
    with RawSMTP.to(server) as c:
        t0 = time.monotonic()
        c.sock.settimeout(15)
        assert c.reply().raw == TIMEOUT_BYE
        assert 1.5 <= time.monotonic() - t0 < 8
        assert c.closed()


def test_slow_message_is_cut_off_and_not_stored(users):
    server = launch(users, SMTP_DATA_TIMEOUT="3s", SMTP_COMMAND_TIMEOUT="60s")
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        got, elapsed = trickle(c, b"Subject: slow\r\n\r\n" + b"x" * 200, 0.5, 30)
        assert got == TIMEOUT_BYE
        assert 2.5 <= elapsed < 8, elapsed
        assert c.closed()
    server.wait_log("aborted: connection ended before the message was complete")
    nothing_stored(server, ALICE)
    no_blob_files(server)


@pytest.mark.parametrize("size", [2_000, 3_000_000], ids=["small", "spilled-to-disk"])
def test_disconnect_in_the_middle_of_data(mail, size):
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * (size // 14))
    mail.wait_log("aborted: connection ended before the message was complete")
    nothing_stored(mail, ALICE, BOB)
    # The same in the middle of a BDAT chunk.
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.send(b"BDAT 100\r\n" + b"z" * 100)
        assert c.reply().code == 250
        c.send(f"BDAT {size} LAST\r\n".encode() + b"z" * (size // 2))
    harness.wait_for(lambda: mail.log().count("aborted: connection ended") >= 2, 10,
                     "the second abort in the log", mail.log_tail)
    nothing_stored(mail, ALICE, BOB)
    no_blob_files(mail)
    assert mail.running


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]


@pytest.mark.parametrize("end", SMUGGLING, ids=[repr(e)[2:-1] for e in SMUGGLING])
def test_smtp_smuggling(mail, end):
    """An end-of-data that is not <CRLF>.<CRLF> is content: the commands after it are part of
    the one message, and the smuggled recipient gets nothing."""
    smuggled = (f"MAIL FROM:<admin@example.test>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"
                "From: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n").encode()
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: carrier\r\n\r\nhello" + end + smuggled + b".\r\n")
        r = c.reply()
        assert r.code == 250 and r.status == "2.0.0", r
        # Nothing more was answered: the smuggled commands were never commands.
        assert c.cmd("NOOP").raw == b"250 2.0.0 OK\r\n"
        c.send(b"QUIT\r\n")
        assert c.reply().code == 221
        assert c.closed() and c.buf == b""
    content = split_trace(only_message(mail, ALICE)).content
    # Bare CR and LF became CRLF, the dot at the start of the loose line was taken as stuffing.
    assert content == b"Subject: carrier\r\n\r\nhello\r\n\r\n" + smuggled, content
    assert b"\r\n.\r\n" not in content
    nothing_stored(mail, BOB)


def test_too_many_errors(mail):
    with RawSMTP.to(mail) as c:
        for _ in range(19):
            assert c.cmd("BOGUS").raw == b"500 5.5.1 command not recognised\r\n"
        c.send(b"BOGUS\r\n")
        assert c.reply().raw == b"500 5.5.1 command not recognised\r\n"
        assert c.reply().raw == ERRORS_BYE
        assert c.closed()


def test_too_many_errors_counts_refused_recipients(users):
    server = launch(users, SMTP_MAX_ERRORS="3")
    with RawSMTP.to(server) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        assert c.cmd("RCPT TO:<a@example.test>").code == 550
        assert c.cmd("RCPT TO:<b@example.test>").code == 550
        c.send(b"RCPT TO:<c@example.test>\r\n")
        assert c.reply().code == 550
        assert c.reply().raw == ERRORS_BYE
        assert c.closed()


def test_connections_per_address(users):
    server = launch(users, MAX_CONNECTIONS_PER_IP="2")
    a = RawSMTP.to(server)
    b = RawSMTP.to(server)
    try:
        third = RawSMTP.to(server, greet=False)
        assert third.reply().raw == (f"421 4.7.0 {HOSTNAME} too many connections from your "
                                     "address, try again later\r\n").encode()
        assert third.closed()
        third.close()
        # The limit is per listener: submission still takes this address.
        with RawSMTP.to(server, "SUBMISSION_PORT") as sub:
            sub.ehlo()
        # The two held connections work.
        a.ehlo()
        b.ehlo()
    finally:
        a.close()
    # A freed place can be taken again.
    deadline = time.monotonic() + 10
    while True:
        c = RawSMTP.to(server, greet=False)
        first = c.reply()
        if first.code == 220:
            c.ehlo()
            c.close()
            break
        c.close()
        assert time.monotonic() < deadline, "the closed connection's place was never freed"
        time.sleep(0.2)
    b.close()


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb\r\n",
    b"GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n",
    bytes(range(1, 10)) + bytes(range(11, 256)) + b"\r\n",
    b"\r\n\r\n\r\n",
    b"\xff\xfe\xfd",
])
def test_garbage_before_ehlo(mail, garbage):
    with RawSMTP.to(mail) as c:
        c.send(garbage)
        lines = garbage.count(b"\n")
        for r in c.replies(lines):
            assert r.code in (500, 501), r
        if not garbage.endswith(b"\n"):
            c.send(b"\r\n")
            assert c.reply().code in (500, 501)
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        sent = message("after garbage")
        c.send(sent + b".\r\n")
        assert c.reply().code == 250
    assert split_trace(only_message(mail, ALICE)).content == sent


# ---------------------------------------------------------------------------------------------
# 6. the directory changes while the server runs
# ---------------------------------------------------------------------------------------------


def test_new_mailbox_and_alias_receive_at_once(mail):
    carol = "carol@example.test"
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{carol}>", 550, "5.1.1")
        mail.add_mailbox(carol, "carol-password-1", quota="10M")
        # Same session, same transaction: the next lookup sees her.
        c.expect(f"RCPT TO:<{carol}>", 250, "2.1.5")
        c.expect("RCPT TO:<helpdesk@example.test>", 550, "5.1.1")
        mail.add_alias("helpdesk@example.test", carol, BOB)
        c.expect("RCPT TO:<helpdesk@example.test>", 250, "2.1.5")
        mail.add_domain("new.test")
        mail.add_mailbox("dave@new.test", "dave-password-1")
        c.expect("RCPT TO:<dave@new.test>", 250, "2.1.5")
        c.expect("DATA", 354)
        sent = message("welcome", to=carol)
        c.send(sent + b".\r\n")
        assert c.reply().code == 250
    for a in (carol, BOB, "dave@new.test"):
        assert split_trace(only_message(mail, a)).content == sent
    # Disabling and removing take effect at once too.
    mail.admin("mailbox", "edit", carol, "--active", "n")
    mail.admin("alias", "remove", "helpdesk@example.test")
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{carol}>", 550, "5.2.1")
        c.expect("RCPT TO:<helpdesk@example.test>", 550, "5.1.1")
    # A new password works at once on submission; the old one no longer does.
    mail.admin("mailbox", "passwd", ALICE, "--password-stdin", input="alice-new-password-9\n")
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        c.ehlo()
        assert c.auth_plain(ALICE, ALICE_PW).code == 535
        assert c.auth_plain(ALICE, "alice-new-password-9").code == 235


# ---------------------------------------------------------------------------------------------
# 7. crash safety, and what the log says
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_every_accepted_message_survives_sigkill(users):
    server = launch(users)
    carol = "carol@example.test"
    server.add_mailbox(carol, "carol-password-1", quota="1G")
    run_id = uuid.uuid4().hex[:8]
    acked: list[tuple[str, tuple[str, ...], bytes]] = []
    attempted: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    recipient_sets = [(ALICE,), (BOB,), (carol,), (ALICE, BOB), (ALICE, BOB, carol)]
    smtp_addr = server.address("SMTP_PORT")
    smtps_addr = server.address("SMTPS_PORT")
    ctx = client_context(server)

    def worker(n: int) -> None:
        seq = 0
        submit = n % 4 == 3  # every fourth client submits on 465 as bob
        while not stop.is_set():
            try:
                if submit:
                    s = smtplib.SMTP_SSL(*smtps_addr, local_hostname="client.test", timeout=15,
                                         context=ctx)
                    s.login(BOB, BOB_PW)
                    sender = BOB
                else:
                    s = smtplib.SMTP(*smtp_addr, local_hostname="client.test", timeout=15)
                    sender = REMOTE_SENDER
                with s:
                    while not stop.is_set():
                        seq += 1
                        mid = f"crash-{run_id}-{n}-{seq}@client.test"
                        rcpts = recipient_sets[(n + seq) % len(recipient_sets)]
                        body = (f"BODY-MARKER-{run_id}-{n}-{seq}\r\n" * (1 + seq % 50)).encode()
                        msg = (f"From: <{sender}>\r\nSubject: crash {n} {seq}\r\n"
                               f"Message-ID: <{mid}>\r\n\r\n").encode() + body
                        with lock:
                            attempted.add(mid)
                        try:
                            qid = transaction(s, sender, list(rcpts), msg)
                        except AssertionError as e:
                            with lock:
                                errors.append(f"{mid}: {e}")
                            return
                        if qid:
                            with lock:
                                acked.append((mid, rcpts, msg))
            except (OSError, smtplib.SMTPException):
                if stop.is_set():
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(20)]
    for t in threads:
        t.start()
    harness.wait_for(lambda: len(acked) >= 60, 60, "60 accepted messages", server.log_tail)
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors[:5]
    with lock:
        acked_now = list(acked)
    print(f"{len(acked_now)} messages accepted, {len(attempted) - len(acked_now)} in flight "
          "when the server was killed")
    launch(server)

    for address in (ALICE, BOB, carol):
        listed = messages(server, address)
        ids = [message_id(m) for m in listed]
        assert len(ids) == len(set(ids)), f"{address} holds a message twice"
        assert set(ids) <= attempted, f"{address} holds messages nobody sent"
        expected = {mid for mid, rcpts, _ in acked_now if address in rcpts}
        missing = expected - set(ids)
        assert not missing, (
            f"{address} lost {len(missing)} accepted messages: {sorted(missing)[:5]}")
        usage = mailbox(server, address)
        assert usage["used_messages"] == len(listed), (address, usage, len(listed))
        assert usage["used_bytes"] == sum(m["size"] for m in listed), (address, usage)
    # A sample of the messages is complete, byte for byte.
    by_id = {mid: msg for mid, _, msg in acked_now}
    for address in (ALICE, BOB):
        for m in messages(server, address)[:5]:
            if message_id(m) in by_id:
                raw = message_bytes(server, address, m["uid"])
                assert split_trace(raw).content == by_id[message_id(m)]
    log = server.log()
    assert BOB_PW not in log and ALICE_PW not in log
    assert base64.b64encode(f"\0{BOB}\0{BOB_PW}".encode()).decode() not in log
    assert f"BODY-MARKER-{run_id}" not in log
    # The server still works after the crash.
    with smtp(server) as s:
        transaction(s, REMOTE_SENDER, [ALICE], message("after the crash"))


def log_fields(line: str) -> dict[str, str]:
    """key=value fields of a text log line; quoted values unquoted."""
    out = {}
    for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\S*)', line):
        out[k] = v[1:-1] if v.startswith('"') else v
    return out


def test_log_lines(mail):
    """One line per transaction and per login; never a password or a message's content."""
    wrong = "wrong-pw-Zq81XYZ"
    secret_body = f"SECRET-BODY-{uuid.uuid4().hex}"
    secret_subject = f"SECRET-SUBJECT-{uuid.uuid4().hex}"
    with RawSMTP.to(mail, "SMTPS_PORT") as c:
        c.ehlo()
        assert c.auth_plain(ALICE, wrong).code == 535
        assert c.cmd("AUTH LOGIN").code == 334
        assert c.cmd(base64.b64encode(ALICE.encode())).code == 334
        assert c.cmd(base64.b64encode(wrong.encode())).code == 535
        assert c.auth_plain(ALICE, ALICE_PW).code == 235
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        c.expect(f"RCPT TO:<{BOB}>", 250)
        c.expect("RCPT TO:<nobody@example.test>", 550)
        c.expect("DATA", 354)
        c.send(f"From: <{ALICE}>\r\nSubject: {secret_subject}\r\n\r\n{secret_body}\r\n.\r\n"
               .encode())
        r = c.reply()
        assert r.code == 250
        qid = r.text.removeprefix("OK: queued as ")
    with smtp(mail) as s:
        s.ehlo()
        s.mail(REMOTE_SENDER)
        s.rcpt(ALICE)
        s.rset()
    harness.wait_for(lambda: len(log_transactions(mail)) >= 2, 10, "two transaction lines",
                     mail.log_tail)
    log = mail.log()
    for secret in (ALICE_PW, wrong, secret_body, secret_subject,
                   base64.b64encode(wrong.encode()).decode(),
                   base64.b64encode(ALICE_PW.encode()).decode(),
                   base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()):
        assert secret not in log, f"{secret!r} is in the log"
    lines = [log_fields(l) for l in log_transactions(mail)]
    delivered = [f for f in lines if f.get("id") == qid]
    assert len(delivered) == 1, lines
    f = delivered[0]
    assert {k: f.get(k) for k in ("service", "client", "tls", "user", "from", "result")} == {
        "service": "submissions", "client": "127.0.0.1", "tls": "true", "user": ALICE,
        "from": ALICE, "result": f"250 2.0.0 OK: queued as {qid}"}, f
    assert BOB in f["rcpts"] and "nobody@example.test" not in f["rcpts"], f
    assert "nobody@example.test=550" in f["refused"], f
    assert int(f["size"]) > len(secret_body), f
    reset = [f for f in lines if f.get("result") == "reset by RSET"]
    assert len(reset) == 1, lines
    assert {k: reset[0].get(k) for k in ("service", "client", "tls", "user", "from")} == {
        "service": "smtp", "client": "127.0.0.1", "tls": "false", "user": "",
        "from": REMOTE_SENDER}, reset
    logins = [l for l in log.splitlines() if re.search(r"\blogin\b", l)]
    assert len([l for l in logins if "login failed" in l]) == 2, logins
    ok_lines = [l for l in logins if "login failed" not in l]
    assert len(ok_lines) == 1 and ALICE in ok_lines[0] and "127.0.0.1" in ok_lines[0], logins


# ---------------------------------------------------------------------------------------------
# 8. shutdown
# ---------------------------------------------------------------------------------------------


def test_sigterm_says_goodbye_to_idle_clients(mail):
    clients = [RawSMTP.to(mail, key) for key in ("SMTP_PORT", "SUBMISSION_PORT", "SMTPS_PORT")]
    for c in clients:
        c.ehlo()
    # One in the middle of a transaction, waiting for its next command.
    clients[0].expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
    mail.send_signal(signal.SIGTERM)
    for c in clients:
        assert c.reply().raw == SHUTDOWN_BYE
        assert c.closed()
        c.close()
    assert mail.proc.wait(30) == 0, mail.log_tail()
    nothing_stored(mail, ALICE)


def test_sigterm_lets_a_message_in_progress_finish(mail):
    sent = message("finished during shutdown")
    with RawSMTP.to(mail) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{REMOTE_SENDER}>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(sent[:40])
        mail.send_signal(signal.SIGTERM)
        mail.wait_log("shutting down")
        c.send(sent[40:] + b".\r\n")
        assert c.reply().code == 250
        assert c.reply().raw == SHUTDOWN_BYE
    assert mail.proc.wait(30) == 0, mail.log_tail()
    assert split_trace(only_message(mail, ALICE)).content == sent


# ---------------------------------------------------------------------------------------------
# 9. doctor
# ---------------------------------------------------------------------------------------------


def test_doctor_reports_the_smtp_ports_as_held_by_this_server(mail):
    env = dict(LOOPBACK_ENV)
    for key in ("SMTP_PORT", "SUBMISSION_PORT", "SMTPS_PORT"):
        env[key] = mail.listener(key)["address"]
    code, report = mail.doctor(env=env)
    oks = [c["message"] for c in report["checks"] if c["check"] == "ports" and c["status"] == "ok"]
    for key in ("SMTP_PORT", "SUBMISSION_PORT", "SMTPS_PORT"):
        address = mail.listener(key)["address"]
        assert f"{key}: {address} is held by this server (pid {mail.pid})" in oks, report
    assert code == 0 and report["ok"] is True, report
