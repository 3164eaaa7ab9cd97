"""End-to-end tests of the IMAP service: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) with the
extensions the server announces, on IMAP_PORT (STARTTLS) and IMAPS_PORT (implicit TLS).

Clients are Python's imaplib, as a mail client would use it, and imap_helpers.Imap, a byte-exact
client for everything imaplib hides (the exact responses in order, literals, pipelining,
COMPRESS, another source address). Mail arrives by APPEND, or by SMTP on SMTP_PORT where the
test is about delivery. Each test has its own server; a test checks one behaviour, and the RFC
section it checks is named in its docstring."""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import ssl
import time
from datetime import datetime, timezone

import pytest

from harness import HOSTNAME, Server
from imap_helpers import (
    Closed,
    Imap,
    Result,
    capabilities,
    deliver,
    fetch_items,
    fetch_map,
    flags_of,
    log_lines,
    message,
    mutf7,
    parse,
    quote,
    seq_set,
    wait,
)

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PW = "alice-pw-Qz7sV9xK2"
BOB = "bob@example.test"
BOB_PW = "bob-pw-Mn3W8tR5y"
#: Keeps failed-login tests fast; the default is 2s.
FAST = {"AUTH_FAILURE_DELAY": "0s"}
DEFAULT_APPEND_LIMIT = 100 * 1024 * 1024
SYSTEM_FLAGS = {"\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft"}

#: Extensions the server announces after login and that these tests exercise.
AUTHENTICATED_CAPS = [
    "IMAP4rev1", "IMAP4rev2", "ENABLE", "IDLE", "LITERAL+", "NAMESPACE", "UNSELECT", "UIDPLUS",
    "MOVE", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE",
    "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "SORT", "THREAD=REFERENCES", "QUOTA",
    "STATUS=SIZE", "UTF8=ACCEPT", "MULTIAPPEND", "BINARY", "COMPRESS=DEFLATE",
    f"APPENDLIMIT={DEFAULT_APPEND_LIMIT}",
]


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def users(make_server) -> Server:
    """example.test with the mailboxes alice and bob; not started."""
    server = make_server()
    server.add_domain(DOMAIN, total_quota="100G")
    server.add_mailbox(ALICE, ALICE_PW)
    server.add_mailbox(BOB, BOB_PW)
    return server


@pytest.fixture
def srv(users: Server) -> Server:
    """A running server with alice@ and bob@example.test and no delay after failed logins."""
    return users.start(env=FAST)


def login(server: Server, user: str = ALICE, password: str = ALICE_PW,
          key: str = "IMAP_PORT") -> Imap:
    """A raw client, logged in (from 127.0.0.1, which may use passwords without TLS)."""
    c = Imap.connect(server, key)
    c.login(user, password)
    return c


def selected(server: Server, mailbox: str = "INBOX", user: str = ALICE,
             password: str = ALICE_PW) -> Imap:
    c = login(server, user, password)
    c.select(mailbox)
    return c


def plain(user: str, password: str, authz: str = "") -> str:
    """An AUTHENTICATE PLAIN response (RFC 4616), base64."""
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode()).decode()


def untagged_code(r: Result, name: str) -> str | None:
    """The argument of `* OK [NAME arg]` among the untagged responses, or None."""
    for resp in r.untagged:
        m = re.match(rb"\* OK \[" + name.encode() + rb"(?: ([^\]]*))?\]", resp)
        if m:
            return (m.group(1) or b"").decode()
    return None


def number(r: Result, name: str) -> int | None:
    """n of `* n NAME` (EXISTS, RECENT, EXPUNGE), the last one, or None."""
    found = None
    for resp in r.untagged:
        m = re.fullmatch(rb"\* (\d+) " + name.encode() + rb"\r\n", resp)
        if m:
            found = int(m.group(1))
    return found


def status(c: Imap, mailbox: str, items: str = "MESSAGES") -> dict[str, int]:
    r = c.ok(f"STATUS {mailbox} ({items})")
    lines = r.named("STATUS")
    assert len(lines) == 1, r
    v = parse(lines[0])
    lst = v[3]
    return {str(k).upper(): int(val) for k, val in zip(lst[::2], lst[1::2])}


def internal_date(text: bytes | str) -> datetime:
    if isinstance(text, bytes):
        text = text.decode()
    return datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")


def expunge_model(uids: list[int], r: Result) -> list[int]:
    """Applies the `* n EXPUNGE` responses of `r`, in order, to the UIDs the client knew."""
    uids = list(uids)
    for resp in r.untagged:
        m = re.fullmatch(rb"\* (\d+) EXPUNGE\r\n", resp)
        if m:
            n = int(m.group(1))
            assert 1 <= n <= len(uids), f"EXPUNGE {n} with {len(uids)} messages: {r!r}"
            del uids[n - 1]
    return uids


def no_tls_check_context(server: Server) -> ssl.SSLContext:
    """Trusts the server's certificate; imaplib checks the name it connected to (127.0.0.1),
    which the certificate does not name, so only the chain is checked."""
    ctx = server.tls_context()
    ctx.check_hostname = False
    return ctx


class IMAP4From(imaplib.IMAP4):
    """imaplib's client, connecting from another loopback address."""

    source = "127.0.0.2"

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def login_lines(server: Server) -> list[str]:
    """The log lines of successful logins."""
    return [l for l in server.log().splitlines() if re.search(r"\blogin protocol=", l)]


# ---------------------------------------------------------------------------------------------
# 1. greeting, capabilities, TLS
# ---------------------------------------------------------------------------------------------


def test_greeting_and_capability_before_login(srv):
    """RFC 9051 §7.1.1/§6.1.1: the greeting is OK and may carry the capabilities; they are the
    same as CAPABILITY's. From the server's own address, passwords are allowed without TLS:
    AUTH=PLAIN and STARTTLS are offered, LOGINDISABLED is not."""
    c = Imap.connect(srv)
    assert re.fullmatch(rb"\* OK \[CAPABILITY [^\]]+\] [^\r\n]*\r\n", c.greeting), c.greeting
    caps = capabilities(c.greeting)
    for name in ("IMAP4rev1", "IMAP4rev2", "STARTTLS", "AUTH=PLAIN", "SASL-IR", "LITERAL+",
                 "ENABLE", "IDLE"):
        assert name in caps, (name, caps)
    assert "LOGINDISABLED" not in caps
    r = c.ok("CAPABILITY")
    assert len(r.untagged) == 1 and r.untagged[0].startswith(b"* CAPABILITY "), r
    assert capabilities(r.untagged[0]) == caps
    # Commands of the authenticated state are refused before login.
    r = c.command("SELECT INBOX")
    assert r.status in ("NO", "BAD"), r
    r = c.command("LIST \"\" \"*\"")
    assert r.status in ("NO", "BAD") and not r.named("LIST"), r


def test_capability_after_login(srv):
    """RFC 9051 §6.2.3: the OK to LOGIN may carry the new capabilities; after login they list
    the extensions of the authenticated state and no longer STARTTLS or LOGINDISABLED."""
    c = Imap.connect(srv)
    r = c.login(ALICE, ALICE_PW)
    assert r.code.startswith("CAPABILITY "), r
    caps = capabilities(r.tagged)
    for name in AUTHENTICATED_CAPS:
        assert name in caps, (name, caps)
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    r = c.ok("CAPABILITY")
    assert capabilities(r.untagged[0]) == caps
    r = c.command(f"LOGIN {ALICE} {ALICE_PW}")
    assert r.status in ("NO", "BAD"), r


def test_starttls_on_imap_port(srv):
    """RFC 9051 §6.2.1: after STARTTLS the client must ask for the capabilities again; STARTTLS
    is no longer offered and a second STARTTLS fails."""
    c = Imap.connect(srv)
    assert "STARTTLS" in capabilities(c.greeting)
    c.starttls(srv)
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    r = c.ok("CAPABILITY")
    caps = capabilities(r.untagged[0])
    assert "STARTTLS" not in caps and "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps
    r = c.command("STARTTLS")
    assert r.status in ("NO", "BAD"), r
    c.login(ALICE, ALICE_PW)
    c.select()
    wait(lambda: any("tls=true" in l and ALICE in l for l in login_lines(srv)),
         "a login line with tls=true", srv)


def test_implicit_tls_port(srv):
    """RFC 8314: IMAPS_PORT speaks TLS from the first byte; the greeting offers no STARTTLS.
    imaplib's IMAP4_SSL logs in and selects."""
    c = Imap.connect(srv, "IMAPS_PORT")
    caps = capabilities(c.greeting)
    assert "STARTTLS" not in caps and "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps
    c.login(ALICE, ALICE_PW)
    c.close()
    host, port = srv.address("IMAPS_PORT")
    m = imaplib.IMAP4_SSL(host, port, ssl_context=no_tls_check_context(srv), timeout=15)
    try:
        assert "STARTTLS" not in m.capabilities
        typ, _ = m.login(ALICE, ALICE_PW)
        assert typ == "OK"
        typ, data = m.select("INBOX")
        assert (typ, data) == ("OK", [b"0"])
    finally:
        m.logout()


def test_logindisabled_from_another_address_until_starttls(srv):
    """RFC 9051 §6.2.3 and §7.2.2: a client that is not on the server's own address gets
    LOGINDISABLED without TLS, and LOGIN and AUTHENTICATE fail; after STARTTLS the capability
    is gone and LOGIN works (here with imaplib, as a mail client does it)."""
    host, port = srv.address("IMAP_PORT")
    m = IMAP4From(host, port, timeout=15)
    try:
        assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
        assert "AUTH=PLAIN" not in m.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            m.login(ALICE, ALICE_PW)
        typ, _ = m.starttls(ssl_context=no_tls_check_context(srv))
        assert typ == "OK"
        assert "LOGINDISABLED" not in m.capabilities and "STARTTLS" not in m.capabilities
        assert "AUTH=PLAIN" in m.capabilities
        typ, _ = m.login(ALICE, ALICE_PW)
        assert typ == "OK"
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.abort, OSError):
            pass
    # The raw exchange, for the exact responses.
    c = Imap.connect(srv, source="127.0.0.2")
    assert "LOGINDISABLED" in capabilities(c.greeting)
    r = c.command(f"LOGIN {ALICE} {ALICE_PW}")
    assert r.status == "NO", r
    r = c.command(f"AUTHENTICATE PLAIN {plain(ALICE, ALICE_PW)}")
    assert r.status == "NO", r
    logins = login_lines(srv)
    assert len(logins) == 1 and "client=127.0.0.2" in logins[0] and "tls=true" in logins[0], \
        logins


def test_allow_plaintext_auth_lets_any_address_log_in_without_tls(srv):
    """ALLOW_PLAINTEXT_AUTH=y (Dovecot's disable_plaintext_auth=no): no LOGINDISABLED, and
    LOGIN without TLS works from another address; the log says tls=false."""
    srv.restart(env={**FAST, "ALLOW_PLAINTEXT_AUTH": "y"})
    c = Imap.connect(srv, source="127.0.0.2")
    caps = capabilities(c.greeting)
    assert "LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps and "STARTTLS" in caps, caps
    r = c.command(f"LOGIN {ALICE} {ALICE_PW}")
    assert r.status == "OK", r
    logins = login_lines(srv)
    assert len(logins) == 1 and "client=127.0.0.2" in logins[0] and "tls=false" in logins[0], \
        logins


def test_starttls_discards_commands_pipelined_after_it(srv):
    """RFC 9051 §6.2.1 (and the STARTTLS command injection, CVE-2011-0411): bytes the client sent after
    STARTTLS in clear text must not be executed as commands of the TLS session."""
    c = Imap.connect(srv)
    c.send(f"s1 STARTTLS\r\ns2 LOGIN {ALICE} {ALICE_PW}\r\ns3 SELECT INBOX\r\n")
    r = c.until("s1")
    assert r.status == "OK", r
    assert c.buf == b"", f"clear-text bytes after the OK to STARTTLS: {c.buf!r}"
    c.sock = srv.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
    c.sock.settimeout(15)
    r = c.ok("CAPABILITY", tag="s4")
    assert len(r.untagged) == 1, f"responses to the pipelined commands: {r!r}"
    caps = capabilities(r.untagged[0])
    assert "AUTH=PLAIN" in caps and "NAMESPACE" not in caps, "the session is logged in"
    r = c.command("SELECT INBOX", tag="s5")
    assert r.status != "OK", r
    assert login_lines(srv) == []


# ---------------------------------------------------------------------------------------------
# 2. logging in
# ---------------------------------------------------------------------------------------------


def test_login_with_wrong_password(users):
    """RFC 9051 §6.2.3 and RFC 5530: a wrong password gets NO [AUTHENTICATIONFAILED], after the
    configured pause; the log has one "login failed" line, without the password; the session
    may try again."""
    users.start(env={"AUTH_FAILURE_DELAY": "1s"})
    c = Imap.connect(users)
    t0 = time.monotonic()
    r = c.command(f'LOGIN {ALICE} "wrong-Password-7Tq"')
    elapsed = time.monotonic() - t0
    assert (r.status, r.code) == ("NO", "AUTHENTICATIONFAILED"), r
    assert elapsed >= 0.9, f"answered after {elapsed:.2f}s, the pause is 1s"
    # An unknown user gets the same answer (no user enumeration).
    r = c.command('LOGIN nobody@example.test "wrong-Password-7Tq"')
    assert (r.status, r.code) == ("NO", "AUTHENTICATIONFAILED"), r
    failed = log_lines(users, "login failed")
    assert len(failed) == 2, failed
    assert ALICE in failed[0] and "client=127.0.0.1" in failed[0], failed
    assert "wrong-Password-7Tq" not in users.log()
    c.login(ALICE, ALICE_PW)
    assert len(login_lines(users)) == 1


def test_authenticate_plain_with_initial_response(srv):
    """RFC 4959 (SASL-IR) and RFC 4616: AUTHENTICATE PLAIN with the response on the command
    line; the OK carries the capabilities of the authenticated state."""
    c = Imap.connect(srv)
    r = c.ok(f"AUTHENTICATE PLAIN {plain(ALICE, ALICE_PW)}")
    assert "NAMESPACE" in capabilities(r.tagged), r
    c.select()
    # An authorization identity equal to the user is fine.
    c2 = Imap.connect(srv)
    c2.ok(f"AUTHENTICATE PLAIN {plain(ALICE, ALICE_PW, authz=ALICE)}")


def test_authenticate_plain_with_continuation(srv):
    """RFC 9051 §6.2.2: without an initial response the server sends an empty challenge "+ "
    and the client answers with the base64 response on its own line."""
    c = Imap.connect(srv)
    c.send("a1 AUTHENTICATE PLAIN\r\n")
    cont = c.continuation()
    assert cont in (b"+ \r\n", b"+\r\n"), cont
    c.send(plain(ALICE, ALICE_PW) + "\r\n")
    r = c.until("a1")
    assert r.status == "OK", r
    c.select()


def test_authenticate_cancelled_and_malformed(srv):
    """RFC 9051 §6.2.2: "*" cancels the exchange and a response that is not base64 fails it,
    both with a tagged BAD; the client is still not logged in and may log in."""
    c = Imap.connect(srv)
    c.send("a1 AUTHENTICATE PLAIN\r\n")
    c.continuation()
    c.send("*\r\n")
    r = c.until("a1")
    assert r.status == "BAD", r
    c.send("a2 AUTHENTICATE PLAIN\r\n")
    c.continuation()
    c.send("!!not*base64!!\r\n")
    r = c.until("a2")
    assert r.status == "BAD", r
    r = c.command("SELECT INBOX")
    assert r.status != "OK", r
    c.login(ALICE, ALICE_PW)


def test_authenticate_refusals(srv):
    """RFC 9051 §6.2.2: a wrong password gets NO [AUTHENTICATIONFAILED]; acting as another
    user (authzid) is refused; an unsupported mechanism gets NO without a challenge."""
    c = Imap.connect(srv)
    r = c.command(f"AUTHENTICATE PLAIN {plain(ALICE, 'not-the-password')}")
    assert (r.status, r.code) == ("NO", "AUTHENTICATIONFAILED"), r
    r = c.command(f"AUTHENTICATE PLAIN {plain(ALICE, ALICE_PW, authz=BOB)}")
    assert r.status == "NO", r
    r = c.command("AUTHENTICATE CRAM-MD5")
    assert r.status == "NO" and not r.untagged, r
    assert login_lines(srv) == []
    c.ok(f"AUTHENTICATE PLAIN {plain(BOB, BOB_PW)}")


def test_login_refused_when_imap_access_is_disabled(users):
    """`mailbox add --imap n` and `mailbox edit --imap n|y`: a mailbox without IMAP access
    cannot log in (NO with AUTHENTICATIONFAILED or AUTHORIZATIONFAILED, RFC 5530), by LOGIN
    or AUTHENTICATE; given access again it can."""
    users.add_mailbox("carol@example.test", "carol-pw-5Fh", imap=False)
    users.start(env=FAST)
    c = Imap.connect(users)
    r = c.command('LOGIN carol@example.test "carol-pw-5Fh"')
    assert r.status == "NO" and r.code in ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED"), r
    r = c.command(f"AUTHENTICATE PLAIN {plain('carol@example.test', 'carol-pw-5Fh')}")
    assert r.status == "NO" and r.code in ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED"), r
    users.admin("mailbox", "edit", ALICE, "--imap", "n")
    r = c.command(f"LOGIN {ALICE} {ALICE_PW}")
    assert r.status == "NO", r
    users.admin("mailbox", "edit", ALICE, "--imap", "y")
    c.login(ALICE, ALICE_PW)


SPECIAL_PW = 'sp ace "quoted" back\\slash {7} ü'
ASCII_SPECIAL_PW = 'sp ace "quoted" back\\slash {7}'


def test_login_with_literal_and_quoted_password(users):
    """RFC 9051 §4.3: a password with spaces, quotes, backslashes and UTF-8 goes as a literal
    (synchronizing, or LITERAL+ RFC 7888); an ASCII one also as a quoted string with escapes,
    as imaplib sends it."""
    users.add_mailbox("dave@example.test", SPECIAL_PW)
    users.add_mailbox("erin@example.test", ASCII_SPECIAL_PW)
    users.start(env=FAST)
    pw = SPECIAL_PW.encode()
    c = Imap.connect(users)
    r = c.with_literals("LOGIN dave@example.test ", pw, "")
    assert r.status == "OK", r
    c = Imap.connect(users)
    c.send(b"a1 LOGIN {17+}\r\ndave@example.test {%d+}\r\n" % len(pw) + pw + b"\r\n")
    r = c.until("a1")
    assert r.status == "OK", r
    c = Imap.connect(users)
    r = c.command("LOGIN erin@example.test " + quote(ASCII_SPECIAL_PW))
    assert r.status == "OK", r
    host, port = users.address("IMAP_PORT")
    m = imaplib.IMAP4(host, port, timeout=15)
    try:
        assert m.login("erin@example.test", ASCII_SPECIAL_PW)[0] == "OK"
    finally:
        m.logout()


def test_log_has_one_line_per_login_without_password(srv):
    """Each login is logged once with the user and the client's address; no password, failed
    or not, ever reaches the log."""
    a = Imap.connect(srv)
    a.login(ALICE, ALICE_PW)
    b = Imap.connect(srv)
    b.ok(f"AUTHENTICATE PLAIN {plain(BOB, BOB_PW)}")
    c = Imap.connect(srv)
    c.command(f'LOGIN {ALICE} "wrong-{ALICE_PW}"')
    lines = login_lines(srv)
    assert len(lines) == 2, lines
    assert f"user={ALICE}" in lines[0] and "client=127.0.0.1" in lines[0], lines
    assert f"user={BOB}" in lines[1] and "client=127.0.0.1" in lines[1], lines
    log = srv.log()
    assert ALICE_PW not in log and BOB_PW not in log
    assert plain(ALICE, ALICE_PW) not in log and plain(BOB, BOB_PW) not in log


# ---------------------------------------------------------------------------------------------
# 3. SELECT and EXAMINE
# ---------------------------------------------------------------------------------------------


def test_select_responses(srv):
    """RFC 3501 §6.3.1 (the client has not enabled IMAP4rev2): FLAGS, PERMANENTFLAGS with \\*,
    EXISTS, RECENT, UNSEEN (the first unseen message), UIDVALIDITY, UIDNEXT, and the tagged
    OK [READ-WRITE]; with CONDSTORE also HIGHESTMODSEQ (RFC 7162 §3.1.2.1)."""
    a = login(srv)
    a.append(message("one"), flags="\\Seen")
    a.append(message("two"))
    a.append(message("three"), flags="$Label1")
    b = login(srv)
    r = b.select()
    flags = r.named("FLAGS")
    assert len(flags) == 1, r
    listed = {f.lower() for f in parse(flags[0])[2]}
    assert SYSTEM_FLAGS | {"$label1"} <= listed, listed
    perm = untagged_code(r, "PERMANENTFLAGS")
    assert perm is not None, r
    permanent = {f.lower() for f in parse(perm.encode())[0]}
    assert SYSTEM_FLAGS | {"\\*"} <= permanent, permanent
    assert number(r, "EXISTS") == 3, r
    assert number(r, "RECENT") is not None, r
    assert untagged_code(r, "UNSEEN") == "2", r
    validity = untagged_code(r, "UIDVALIDITY")
    assert validity and int(validity) > 0, r
    assert untagged_code(r, "UIDNEXT") == "4", r
    assert r.code == "READ-WRITE", r
    r = b.select("INBOX", " (CONDSTORE)")
    modseq = untagged_code(r, "HIGHESTMODSEQ")
    assert modseq and int(modseq) > 0, r
    assert untagged_code(r, "UIDVALIDITY") == validity


def test_select_after_enable_imap4rev2(srv):
    """RFC 9051 §6.3.2: an IMAP4rev2 client gets no RECENT and no UNSEEN code, but the LIST
    response of the mailbox; selecting another mailbox first closes the old one with
    OK [CLOSED] (RFC 9051 §7.1)."""
    c = login(srv)
    c.append(message("one"))
    r = c.ok("ENABLE IMAP4rev2")
    assert r.untagged == [b"* ENABLED IMAP4rev2\r\n"], r
    r = c.select()
    assert number(r, "EXISTS") == 1, r
    assert number(r, "RECENT") is None and untagged_code(r, "UNSEEN") is None, r
    lists = r.named("LIST")
    assert len(lists) == 1 and parse(lists[0])[4] in ("INBOX", b"INBOX"), r
    r = c.select("Sent")
    assert r.untagged[0].startswith(b"* OK [CLOSED]"), r
    assert number(r, "EXISTS") == 0


def test_imap4rev2_client_gets_no_recent_and_esearch(srv):
    """RFC 9051 §2.3.2 and §6.4.4: after ENABLE IMAP4rev2, \\Recent is not shown in FLAGS,
    and SEARCH without RETURN answers ESEARCH (the SEARCH response is IMAP4rev1's)."""
    c = login(srv)
    c.ok("ENABLE IMAP4rev2")
    c.select()
    other = login(srv)
    other.append(message("one"))
    other.append(message("two"), flags="\\Seen")
    r = c.ok("NOOP")
    assert number(r, "EXISTS") == 2 and number(r, "RECENT") is None, r
    assert all("\\recent" not in flags_of(i) for i in c.fetch("1:2", "(FLAGS)").values())
    r = c.ok("SEARCH UNSEEN")
    assert not r.named("SEARCH"), r
    e = esearch(r)
    assert e["TAG"] == r.tag and seq_set(e["ALL"]) == [1], r
    r = c.ok("UID SEARCH ALL")
    e = esearch(r)
    assert e.get("UID") is True and seq_set(e["ALL"]) == [1, 2], r
    r = c.ok("SEARCH KEYWORD $Nope")
    assert r.named("ESEARCH") == [f'* ESEARCH (TAG "{r.tag}")\r\n'.encode()], r


def test_recent_is_announced_to_one_session(srv):
    """RFC 3501 §2.3.2: a new message is \\Recent in the first session told of it, and in no
    other one."""
    a = selected(srv)
    b = login(srv, BOB, BOB_PW)
    b.close()
    c = login(srv)
    c.append(message("new"))
    r = a.ok("NOOP")
    assert number(r, "EXISTS") == 1 and number(r, "RECENT") == 1, r
    assert "\\recent" in flags_of(a.fetch("1", "(FLAGS)")[1])
    d = selected(srv)
    r = d.ok("NOOP")
    assert "\\recent" not in flags_of(d.fetch("1", "(FLAGS)")[1])


def test_examine_shows_recent_and_keeps_it(srv):
    """RFC 3501 §6.3.2 and §2.3.2: a read-only session sees new messages as \\Recent (RECENT
    counts them) and EXAMINE must not take \\Recent away from them: the next SELECT still
    gets them as recent."""
    first = selected(srv)  # the mailbox has been looked at
    first.logout()
    deliver(srv, ALICE, message("new"))
    e = login(srv)
    r = e.ok("EXAMINE INBOX")
    assert number(r, "EXISTS") == 1
    s = login(srv)
    r2 = s.select()
    assert number(r2, "RECENT") == 1, f"EXAMINE took \\Recent away: {r2!r}"
    assert number(r, "RECENT") == 1, f"EXAMINE does not count the recent message: {r!r}"


def test_messages_delivered_before_any_select_are_recent(srv):
    """RFC 3501 §2.3.2 and §6.3.1: messages that arrived since the last session looked are
    \\Recent for the first session that selects the mailbox, and RECENT counts them."""
    deliver(srv, ALICE, message("first"))
    deliver(srv, ALICE, message("second"))
    c = login(srv)
    r = c.select()
    assert number(r, "EXISTS") == 2, r
    assert number(r, "RECENT") == 2, r
    for items in c.fetch("1:2", "(FLAGS)").values():
        assert "\\recent" in flags_of(items)


def test_examine_is_read_only(srv):
    """RFC 9051 §6.3.3: EXAMINE selects read-only: tagged OK [READ-ONLY], PERMANENTFLAGS
    empty; FETCH BODY[] does not set \\Seen, STORE and EXPUNGE fail."""
    a = login(srv)
    a.append(message("unread"))
    r = a.ok("EXAMINE INBOX")
    assert r.code == "READ-ONLY", r
    assert untagged_code(r, "PERMANENTFLAGS") == "()", r
    items = a.fetch("1", "(BODY[])")[1]
    assert "\\seen" not in flags_of(a.fetch("1", "(FLAGS)")[1]), items
    r = a.command("STORE 1 +FLAGS (\\Flagged)")
    assert r.status == "NO", r
    r = a.command("EXPUNGE")
    assert r.status == "NO", r
    b = selected(srv)
    assert flags_of(b.fetch("1", "(FLAGS)")[1]) & {"\\seen", "\\flagged"} == set()


def test_select_missing_mailbox_leaves_nothing_selected(srv):
    """RFC 9051 §6.3.2: a failed SELECT returns NO and leaves no mailbox selected, even if one
    was selected before."""
    c = selected(srv)
    r = c.command("SELECT Nowhere")
    assert r.status == "NO", r
    r = c.command("FETCH 1:* (FLAGS)")
    assert r.status == "BAD", r
    r = c.command("NOOP")
    assert r.status == "OK"


def test_uids_survive_restart_and_are_never_reused(srv):
    """RFC 9051 §2.3.1.1: UIDVALIDITY stays the same and UIDs are never reused, even for the
    highest UIDs expunged just before a restart."""
    c = login(srv)
    assert [c.append(message(f"m{i}")) for i in range(3)] == [1, 2, 3]
    c.ok("CREATE Folder")
    c.select()
    validity = status(c, "INBOX", "UIDVALIDITY")["UIDVALIDITY"]
    folder_validity = status(c, "Folder", "UIDVALIDITY")["UIDVALIDITY"]
    c.ok("STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    c.logout()
    srv.restart(env=FAST)
    c = login(srv)
    r = c.select()
    assert untagged_code(r, "UIDVALIDITY") == str(validity), r
    assert untagged_code(r, "UIDNEXT") == "4", r
    assert number(r, "EXISTS") == 1
    assert status(c, "Folder", "UIDVALIDITY")["UIDVALIDITY"] == folder_validity
    assert c.append(message("after restart")) == 4
    assert [i["UID"] for i in c.fetch("1:*", "(UID)").values()] == ["1", "4"]


# ---------------------------------------------------------------------------------------------
# 4. APPEND
# ---------------------------------------------------------------------------------------------


def test_append_with_flags_and_internal_date(srv):
    """RFC 9051 §6.3.12: APPEND sets the given flags and internal date (the same instant, in
    whatever zone the server shows it); RFC 4315 §3: OK [APPENDUID uidvalidity uid]."""
    c = login(srv)
    data = message("dated")
    tag = c.tag()
    c.send(f'{tag} APPEND INBOX (\\Seen \\Flagged $Label1) "05-Mar-2024 10:20:30 +0200" '
           f"{{{len(data)}}}\r\n".encode())
    c.continuation()
    c.send(data + b"\r\n")
    r = c.until(tag)
    assert r.status == "OK", r
    validity = status(c, "INBOX", "UIDVALIDITY")["UIDVALIDITY"]
    assert r.code == f"APPENDUID {validity} 1", r
    before = datetime.now(timezone.utc)
    assert c.append(message("now")) == 2
    c.select()
    got = c.fetch("1:2", "(FLAGS INTERNALDATE RFC822.SIZE)")
    # Both are \Recent to this, the first session to see them (RFC 3501 §2.3.2, as Dovecot).
    assert flags_of(got[1]) == {"\\seen", "\\flagged", "$label1", "\\recent"}
    assert internal_date(got[1]["INTERNALDATE"]) == datetime(2024, 3, 5, 8, 20, 30,
                                                             tzinfo=timezone.utc)
    assert int(got[1]["RFC822.SIZE"]) == len(data)
    assert flags_of(got[2]) == {"\\recent"}
    assert abs((internal_date(got[2]["INTERNALDATE"]) - before).total_seconds()) < 300


def test_append_synchronizing_literal_waits_for_continuation(srv):
    """RFC 9051 §7.5: the server answers a synchronizing literal with a continuation request and
    then reads exactly the announced bytes."""
    c = login(srv)
    data = message("sync")
    c.send(f"a1 APPEND INBOX {{{len(data)}}}\r\n")
    cont = c.continuation()
    assert cont.startswith(b"+"), cont
    c.send(data + b"\r\n")
    r = c.until("a1")
    assert r.status == "OK" and r.code.startswith("APPENDUID "), r
    c.select()
    assert c.fetch("1", "(BODY.PEEK[])")[1]["BODY[]"] == data


def test_append_literal_plus(srv):
    """RFC 7888 §3: a non-synchronizing literal {n+} comes with the command; the server sends no
    continuation request."""
    c = login(srv)
    data = message("literal plus")
    c.send(f"a1 APPEND INBOX (\\Draft) {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
    r = c.until("a1")  # fails on a continuation request
    assert r.status == "OK" and r.code.startswith("APPENDUID "), r
    c.select()
    got = c.fetch("1", "(FLAGS BODY.PEEK[])")[1]
    assert got["BODY[]"] == data and "\\draft" in flags_of(got)


def test_append_over_appendlimit(users):
    """RFC 7889: APPENDLIMIT is announced; a synchronizing literal over it gets NO [TOOBIG]
    without a continuation request; a LITERAL+ one over it is refused with [TOOBIG] after its
    bytes are skipped; a message of exactly the limit is taken; the session goes on."""
    users.start(env={**FAST, "MESSAGE_SIZE_LIMIT": "100K"})
    limit = 100 * 1024
    c = Imap.connect(users)
    r = c.login(ALICE, ALICE_PW)
    assert f"APPENDLIMIT={limit}" in capabilities(r.tagged)
    c.send(f"a1 APPEND INBOX {{{limit + 1}}}\r\n")
    r = c.until("a1")  # fails on a continuation request
    assert (r.status, r.code.split(" ")[0]) == ("NO", "TOOBIG"), r
    c.ok("NOOP")
    big = message("big", body=b"x" * (limit + 10) + b"\r\n")
    c.send(f"a2 APPEND INBOX {{{len(big)}+}}\r\n".encode() + big + b"\r\n")
    r = c.until("a2")
    assert r.status in ("NO", "BAD") and r.code.split(" ")[0] == "TOOBIG", r
    c.ok("NOOP")
    head = message("exact", body=b"")
    exact = head + b"y" * (limit - len(head))
    assert len(exact) == limit
    c.append(exact)
    assert status(c, "INBOX")["MESSAGES"] == 1


def test_multiappend_is_all_or_nothing(users):
    """RFC 3502: MULTIAPPEND appends all messages with one APPENDUID set; if one of them fails
    (here: the second is over APPENDLIMIT), none is appended."""
    users.start(env={**FAST, "MESSAGE_SIZE_LIMIT": "100K"})
    c = login(users)
    m1, m2, m3 = message("one"), message("two"), message("three")
    r = c.with_literals("APPEND INBOX (\\Seen) ", m1, " ", m2, " (\\Flagged) ", m3, "")
    assert r.status == "OK", r
    validity = status(c, "INBOX", "UIDVALIDITY")["UIDVALIDITY"]
    assert r.code == f"APPENDUID {validity} 1:3", r
    c.select()
    got = c.fetch("1:3", "(FLAGS BODY.PEEK[])")
    assert [got[i]["BODY[]"] for i in (1, 2, 3)] == [m1, m2, m3]
    assert "\\seen" in flags_of(got[1]) and "\\flagged" in flags_of(got[3])
    assert not flags_of(got[2]) & {"\\seen", "\\flagged"}
    too_big = message("big", body=b"z" * (101 * 1024))
    r = c.with_literals("APPEND INBOX ", message("four"), " ", too_big, "")
    assert r.status in ("NO", "BAD"), r
    c.ok("NOOP")
    assert status(c, "INBOX")["MESSAGES"] == 3
    # A failure found only by the store (a mailbox quota) also leaves nothing behind.
    users.admin("mailbox", "edit", ALICE, "--quota", "10K")
    r = c.with_literals("APPEND INBOX ", message("five"), " ", message("six", body=b"w" * 12000), "")
    assert r.status == "NO", r
    assert status(c, "INBOX")["MESSAGES"] == 3


def test_append_to_missing_mailbox(srv):
    """RFC 9051 §6.3.12: APPEND to a mailbox that does not exist fails with NO [TRYCREATE]."""
    c = login(srv)
    data = b"Subject: hi\r\n\r\nHi\r\n"
    r = c.command(b"APPEND Nowhere {%d+}\r\n" % len(data) + data)
    assert (r.status, r.code) == ("NO", "TRYCREATE"), r
    c.ok("CREATE Nowhere")
    r = c.ok("NOOP")
    assert r.untagged == [], "the literal was not read as announced"
    c.append(data, "Nowhere")
    assert status(c, "Nowhere")["MESSAGES"] == 1


def test_append_8bit_message_round_trips(srv):
    """RFC 9051 §4.3: a literal carries any octet but NUL; the message comes back byte for byte,
    and RFC822.SIZE is its length."""
    body = ("Grüße aus Köln, ½ € — 日本語\r\n".encode("utf-8")
            + bytes(range(0x80, 0x100)) + b"\r\n" + "Latin-1: caf\xe9\r\n".encode("latin-1"))
    data = message("8bit", body=body, headers="Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n")
    c = login(srv)
    c.append(data)
    c.select()
    got = c.fetch("1", "(RFC822.SIZE BODY.PEEK[])")[1]
    assert got["BODY[]"] == data
    assert int(got["RFC822.SIZE"]) == len(data)


def test_append_and_copy_to_the_selected_mailbox_announce_exists(srv):
    """RFC 9051 §6.3.12: APPEND to the selected mailbox announces the new message (EXISTS) at
    once; so does COPY into it (§7.4.1: the client is told of new messages)."""
    c = selected(srv)
    data = message("into the selected mailbox")
    tag = c.tag()
    c.send(f"{tag} APPEND INBOX {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
    r = c.until(tag)
    assert r.status == "OK" and number(r, "EXISTS") == 1, r
    r = c.ok("COPY 1 INBOX")
    assert number(r, "EXISTS") == 2, r
    r = c.ok("NOOP")
    assert number(r, "EXISTS") is None, "announced twice"


def test_append_binary_literal_with_nul(srv):
    """RFC 3516 §4.4: APPEND takes a literal8 (~{n}) whose content may contain NUL; BINARY[]
    returns it exactly (as literal8); BODY[] must not put a NUL into a plain literal, whose
    octets are CHAR8 = %x01-ff (RFC 9051 §4.3 and §9)."""
    data = b"Subject: nul\r\n\r\nhello\x00world\r\n"
    c = login(srv)
    tag = c.tag()
    c.send(b"%s APPEND INBOX ~{%d+}\r\n" % (tag.encode(), len(data)) + data + b"\r\n")
    r = c.until(tag)
    assert r.status == "OK", r
    c.select()
    r = c.ok("FETCH 1 (BINARY.PEEK[])")
    assert b"BINARY[] ~{%d}\r\n" % len(data) in r.untagged[0], r
    assert fetch_map(r)[1]["BINARY[]"] == data
    r = c.ok("FETCH 1 (BODY.PEEK[] BODY.PEEK[TEXT])")
    for resp in r.named("FETCH"):
        assert b"\x00" not in resp, f"NUL sent in a literal: {resp!r}"


# ---------------------------------------------------------------------------------------------
# 5. FETCH
# ---------------------------------------------------------------------------------------------

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 3 + b"\n%%EOF\n"
PDF_B64 = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
MULTIPART_HEADER = (
    b"From: =?UTF-8?Q?J=C3=B6rg_Example?= <jorg@remote.test>\r\n"
    b"To: Alice <alice@example.test>, bob@example.test\r\n"
    b"Cc: Carol <carol@remote.test>\r\n"
    b"Subject: =?UTF-8?Q?Quarterly_r=C3=A9port?=\r\n"
    b"Date: Sat, 21 Nov 2026 10:05:09 +0100\r\n"
    b"Message-ID: <report-1@remote.test>\r\n"
    b"In-Reply-To: <question-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1-XyZ"\r\n'
    b"\r\n"
)
PART1_MIME = (b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
PART1_BODY = b"Hello Alice,=0D=0Athe r=C3=A9port is attached.\r\n"
PART2_MIME = (b'Content-Type: application/pdf; name="report.pdf"\r\n'
              b"Content-Transfer-Encoding: base64\r\n"
              b'Content-Disposition: attachment; filename="report.pdf"\r\n\r\n')


def _multipart() -> bytes:
    text = (b"This is a multi-part message in MIME format.\r\n"
            b"--b1-XyZ\r\n" + PART1_MIME + PART1_BODY
            + b"\r\n--b1-XyZ\r\n" + PART2_MIME + PDF_B64
            + b"\r\n--b1-XyZ--\r\n")
    return MULTIPART_HEADER + text


MULTIPART = _multipart()
MULTIPART_TEXT = MULTIPART[len(MULTIPART_HEADER):]


@pytest.fixture
def report(srv) -> Imap:
    """alice's INBOX with the multipart message (UID 1, unseen), selected."""
    c = login(srv)
    c.append(MULTIPART, date="21-Nov-2026 09:05:10 +0000")
    c.select()
    return c


def upper(v):
    """Strings of a parsed value upper-cased (types and subtypes are case-insensitive)."""
    if isinstance(v, list):
        return [upper(x) for x in v]
    if isinstance(v, bytes):
        return v.decode().upper()
    if isinstance(v, str):
        return v.upper()
    return v


def test_fetch_flags_internaldate_size_uid(report):
    """RFC 9051 §7.5.2: FLAGS, INTERNALDATE, RFC822.SIZE (the number of octets of BODY[]) and
    UID."""
    got = report.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE UID BODY.PEEK[])")[1]
    assert "\\seen" not in flags_of(got)
    assert internal_date(got["INTERNALDATE"]) == datetime(2026, 11, 21, 9, 5, 10,
                                                          tzinfo=timezone.utc)
    assert got["UID"] == "1"
    assert int(got["RFC822.SIZE"]) == len(got["BODY[]"]) == len(MULTIPART)
    assert got["BODY[]"] == MULTIPART


def test_fetch_envelope(report):
    """RFC 9051 §7.5.2 ENVELOPE: date, subject (undecoded), from, sender and reply-to (the
    From address when absent), to, cc, bcc (NIL), in-reply-to, message-id; each address
    (name adl mailbox host)."""
    env = report.fetch("1", "(ENVELOPE)")[1]["ENVELOPE"]
    assert len(env) == 10, env
    assert env[0] == b"Sat, 21 Nov 2026 10:05:09 +0100"
    assert env[1] == b"=?UTF-8?Q?Quarterly_r=C3=A9port?="
    (name, adl, mbox, host), = env[2]
    assert (adl, mbox, host) == (None, b"jorg", b"remote.test")
    assert name is not None and name.startswith(b"=?"), name  # RFC 2047 in 7-bit
    assert env[3] == env[2] and env[4] == env[2], "sender and reply-to default to from"
    assert env[5] == [[b"Alice", None, b"alice", b"example.test"],
                      [None, None, b"bob", b"example.test"]]
    assert env[6] == [[b"Carol", None, b"carol", b"remote.test"]]
    assert env[7] is None
    assert env[8] == b"<question-1@example.test>"
    assert env[9] == b"<report-1@remote.test>"


def test_fetch_bodystructure_of_multipart(report):
    """RFC 9051 §7.5.2 BODYSTRUCTURE: a multipart/mixed with its boundary, a text/plain part
    (charset, encoding, octets, lines) and an application/pdf attachment (name, base64,
    octets, disposition with filename)."""
    bs = report.fetch("1", "(BODYSTRUCTURE)")[1]["BODYSTRUCTURE"]
    text, pdf = bs[0], bs[1]
    assert upper(bs[2]) == "MIXED", bs
    assert upper(bs[3]) == ["BOUNDARY", "B1-XYZ"], bs
    assert upper(text[:6]) == ["TEXT", "PLAIN", ["CHARSET", "UTF-8"], None, None,
                               "QUOTED-PRINTABLE"], text
    assert int(text[6]) == len(PART1_BODY)
    assert int(text[7]) == PART1_BODY.count(b"\n")
    assert upper(pdf[:6]) == ["APPLICATION", "PDF", ["NAME", "REPORT.PDF"], None, None,
                              "BASE64"], pdf
    assert int(pdf[6]) == len(PDF_B64)
    # body-ext-1part: md5, disposition, language, location.
    assert pdf[7] is None
    assert upper(pdf[8]) == ["ATTACHMENT", ["FILENAME", "REPORT.PDF"]], pdf
    # BODY (non-extensible) is the same without the extension data.
    body = report.fetch("1", "(BODY)")[1]["BODY"]
    assert upper(body[0][:6]) == upper(text[:6]) and upper(body[1][:7]) == upper(pdf[:7])
    assert len(body[1]) == 7 and upper(body[2]) == "MIXED" and len(body) == 3, body


def test_fetch_body_sections(report):
    """RFC 9051 §6.4.5: BODY[HEADER] (with the blank line), BODY[TEXT], BODY[1], BODY[2.MIME],
    BODY[HEADER.FIELDS (...)] and BODY[HEADER.FIELDS.NOT (...)], and a partial <0.10> that
    is answered as BODY[]<0>."""
    got = report.fetch(
        "1",
        "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[2.MIME] "
        "BODY.PEEK[HEADER.FIELDS (Subject From X-Missing)] "
        "BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Cc Date Message-ID In-Reply-To)] "
        "BODY.PEEK[]<0.10> BODY.PEEK[1]<6.5>)")[1]
    assert got["BODY[HEADER]"] == MULTIPART_HEADER
    assert got["BODY[TEXT]"] == MULTIPART_TEXT
    assert got["BODY[1]"] == PART1_BODY
    assert got["BODY[2]"] == PDF_B64
    assert got["BODY[2.MIME]"] == PART2_MIME
    fields = {k: v for k, v in got.items() if k.startswith("BODY[HEADER.FIELDS (")}
    assert list(fields.values()) == [
        b"From: =?UTF-8?Q?J=C3=B6rg_Example?= <jorg@remote.test>\r\n"
        b"Subject: =?UTF-8?Q?Quarterly_r=C3=A9port?=\r\n\r\n"], got.keys()
    nots = [v for k, v in got.items() if k.startswith("BODY[HEADER.FIELDS.NOT")]
    assert nots == [b"MIME-Version: 1.0\r\n"
                    b'Content-Type: multipart/mixed; boundary="b1-XyZ"\r\n\r\n'], got.keys()
    assert got["BODY[]<0>"] == MULTIPART[:10]
    assert got["BODY[1]<6>"] == PART1_BODY[6:11]
    # A partial past the end is empty (RFC 9051 §6.4.5).
    got = report.fetch("1", "(BODY.PEEK[TEXT]<100000.10>)")[1]
    assert got["BODY[TEXT]<100000>"] == b""


def test_fetch_binary_decodes_parts(report):
    """RFC 3516 §4.2 (RFC 9051 §6.4.5): BINARY[2] is the attachment with its base64 undone,
    BINARY[1] the text with quoted-printable undone, BINARY.SIZE their decoded sizes."""
    got = report.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1] BINARY.SIZE[1])")[1]
    assert got["BINARY[2]"] == PDF
    assert int(got["BINARY.SIZE[2]"]) == len(PDF)
    text = "Hello Alice,\r\nthe réport is attached.\r\n".encode()
    assert got["BINARY[1]"] == text
    assert int(got["BINARY.SIZE[1]"]) == len(text)
    got = report.fetch("1", "(BINARY.PEEK[2]<0.8>)")[1]
    assert got["BINARY[2]<0>"] == PDF[:8]
    assert "\\seen" not in flags_of(report.fetch("1", "(FLAGS)")[1])


def test_body_peek_leaves_seen_alone_but_body_sets_it(report):
    """RFC 9051 §6.4.5: BODY.PEEK and BINARY.PEEK do not set \\Seen; BODY[...] does, and the
    new flags come with the FETCH response."""
    report.fetch("1", "(BODY.PEEK[] BODY.PEEK[TEXT] BINARY.PEEK[1])")
    assert "\\seen" not in flags_of(report.fetch("1", "(FLAGS)")[1])
    got = report.fetch("1", "(BODY[TEXT])")[1]
    assert got["BODY[TEXT]"] == MULTIPART_TEXT
    assert "\\seen" in flags_of(got), got.keys()
    assert "\\seen" in flags_of(report.fetch("1", "(FLAGS)")[1])
    report.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    got = report.fetch("1", "(RFC822)")[1]
    assert got["RFC822"] == MULTIPART and "\\seen" in flags_of(got)


def test_fetch_macros(report):
    """RFC 9051 §6.4.5: FAST is (FLAGS INTERNALDATE RFC822.SIZE), ALL adds ENVELOPE, FULL adds
    ENVELOPE and BODY."""
    fast = report.fetch("1", "FAST")[1]
    assert set(fast) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}, fast
    all_ = report.fetch("1", "ALL")[1]
    assert set(all_) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}, all_
    full = report.fetch("1", "FULL")[1]
    assert set(full) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"}, full
    assert int(full["RFC822.SIZE"]) == len(MULTIPART)


def test_fetch_unknown_transfer_encoding_in_binary(srv):
    """RFC 3516 §4.3 (RFC 9051 §6.4.5): BINARY of a part in an encoding the server cannot undo
    fails with NO [UNKNOWN-CTE]; BODY of the same part works."""
    data = (b"Subject: uu\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\nend\r\n")
    c = login(srv)
    c.append(data)
    c.select()
    r = c.command("FETCH 1 (BINARY.PEEK[1])")
    assert (r.status, r.code) == ("NO", "UNKNOWN-CTE"), r
    assert c.fetch("1", "(BODY.PEEK[1])")[1]["BODY[1]"] == b"begin 644 x\r\nend\r\n"


def test_8bit_header_strings(srv):
    """RFC 9051 §4.3/§9 and RFC 6855 §3: without UTF8=ACCEPT a raw UTF-8 header value in
    ENVELOPE cannot be a quoted string (quoted strings are 7-bit), so it comes as a literal
    with the same octets; after ENABLE UTF8=ACCEPT it may be quoted UTF-8."""
    subject = "Grüße aus Köln".encode()
    data = (b"Subject: " + subject + b"\r\nFrom: =?utf-8?q?J=C3=B6rg?= <jorg@remote.test>\r\n"
            b"\r\nbody\r\n")
    c = login(srv)
    c.append(data)
    c.select()
    r = c.ok("FETCH 1 (ENVELOPE)")
    resp = r.named("FETCH")[0]
    assert b'"' + subject + b'"' not in resp, resp
    env = fetch_items(resp)[1]["ENVELOPE"]
    assert env[1] == subject
    assert all(b < 0x80 for b in env[2][0][0]), "a display name goes 7-bit (RFC 2047)"
    c.ok("ENABLE UTF8=ACCEPT")
    env = c.fetch("1", "(ENVELOPE)")[1]["ENVELOPE"]
    assert env[1] == subject
    assert env[2][0][0] == "Jörg".encode()


def test_fetch_sequence_sets_and_uid_fetch(srv):
    """RFC 9051 §6.4.5, §6.4.9 and §9: `*`, ranges, lists; UID FETCH always returns UID; a UID
    range n:* includes the last message even when n is above every UID; a sequence number
    past the last message is BAD."""
    c = login(srv)
    for i in range(6):
        c.append(message(f"m{i}"))
    c.select()
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")  # UIDs now 1 3 4 5 6
    assert list(c.fetch("*", "(UID)")) == [5]
    assert {s: i["UID"] for s, i in c.fetch("2:3,5", "(UID)").items()} == \
        {2: "3", 3: "4", 5: "6"}
    assert list(c.fetch("4:2", "(UID)")) == [2, 3, 4]
    got = c.fetch("3:*", "(FLAGS)", uid=True)
    assert {s: i["UID"] for s, i in got.items()} == {2: "3", 3: "4", 4: "5", 5: "6"}
    got = c.fetch("2", "(FLAGS)", uid=True)
    assert got == {}, "UID 2 is gone"
    got = c.fetch("100:*", "(FLAGS)", uid=True)
    assert {s: i["UID"] for s, i in got.items()} == {5: "6"}
    got = c.fetch("1,4:5", "(RFC822.SIZE)", uid=True)
    assert {s: i["UID"] for s, i in got.items()} == {1: "1", 3: "4", 4: "5"}
    r = c.command("FETCH 6 (FLAGS)")
    assert r.status == "BAD", r
    r = c.command("FETCH 0 (FLAGS)")
    assert r.status == "BAD", r


def test_fetch_of_a_big_message_arrives_complete(srv):
    """A 5 MB message comes back whole, byte for byte, in one literal."""
    line = b"".join(b"%07d abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV\r\n" % i
                    for i in range(75_000))
    data = message("big", body=line)
    assert len(data) > 5_000_000
    c = login(srv)
    c.append(data)
    c.select()
    got = c.fetch("1", "(RFC822.SIZE BODY.PEEK[])")[1]
    assert int(got["RFC822.SIZE"]) == len(data)
    assert got["BODY[]"] == data


def test_fetch_of_300_messages_arrives_complete(srv):
    """FETCH 1:* of 300 messages (more than the server sends in one batch) gets every message
    once, in order, each complete, then the tagged OK."""
    c = login(srv)
    msgs = [message(f"message {i}", body=(b"line %03d of message %03d\r\n" % (j, i)) * 80)
            for i in range(300) for j in [i % 7]]
    tag = c.tag()
    cmd = b"%s APPEND INBOX" % tag.encode()
    for m in msgs:
        cmd += b" {%d+}\r\n" % len(m) + m
    c.send(cmd + b"\r\n")
    r = c.until(tag)
    assert r.status == "OK" and r.code.endswith(" 1:300"), r
    c.select()
    r = c.ok("FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])")
    assert len(r.untagged) == 300, f"{len(r.untagged)} responses"
    for n, resp in enumerate(r.untagged, start=1):
        seq, items = fetch_items(resp)
        assert seq == n and items["UID"] == str(n)
        assert items["BODY[]"] == msgs[n - 1]
        assert int(items["RFC822.SIZE"]) == len(msgs[n - 1])


# ---------------------------------------------------------------------------------------------
# 6. STORE, COPY, MOVE, EXPUNGE, CLOSE
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def five(srv) -> Imap:
    """alice's INBOX with five unseen messages (UIDs 1-5), selected."""
    c = login(srv)
    for i in range(1, 6):
        c.append(message(f"message {i}"))
    c.select()
    return c


def test_store_flags(five):
    """RFC 9051 §6.4.6: +FLAGS adds, -FLAGS removes, FLAGS replaces, each answered with the new
    flags in an untagged FETCH; .SILENT sends none; keywords are kept and appear in FLAGS and
    PERMANENTFLAGS of the next SELECT."""
    r = five.ok("STORE 1:2 +FLAGS (\\Flagged \\Seen)")
    got = fetch_map(r)
    assert set(got) == {1, 2}
    assert all(flags_of(i) - {"\\recent"} == {"\\flagged", "\\seen"} for i in got.values())
    r = five.ok("STORE 1 -FLAGS (\\Seen)")
    assert flags_of(fetch_map(r)[1]) - {"\\recent"} == {"\\flagged"}
    r = five.ok("STORE 2 FLAGS ($Label1 \\Answered)")
    assert flags_of(fetch_map(r)[2]) - {"\\recent"} == {"$label1", "\\answered"}
    r = five.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert r.named("FETCH") == [], r
    got = five.fetch("1:3", "(FLAGS)")
    assert [flags_of(got[i]) - {"\\recent"} for i in (1, 2, 3)] == \
        [{"\\flagged"}, {"$label1", "\\answered"}, {"\\deleted"}]
    r = five.ok("UID STORE 4 +FLAGS ($Label1)")
    assert fetch_map(r)[4]["UID"] == "4", "UID STORE answers with the UID (RFC 9051 §6.4.9)"
    r = five.select()
    assert "$label1" in {f.lower() for f in parse(r.named("FLAGS")[0])[2]}
    assert "$label1" in {f.lower() for f in parse(untagged_code(r, "PERMANENTFLAGS").encode())[0]}


def test_store_unchangedsince(five):
    """RFC 7162 §3.1.3: STORE (UNCHANGEDSINCE m) changes messages whose MODSEQ is at most m and
    answers with their new MODSEQ; the others are listed in OK [MODIFIED set]."""
    got = five.fetch("1:2", "(MODSEQ)")
    m1 = int(got[1]["MODSEQ"][0])
    m2 = int(got[2]["MODSEQ"][0])
    r = five.ok(f"STORE 1 (UNCHANGEDSINCE {m1}) +FLAGS (\\Seen)")
    items = fetch_map(r)[1]
    new = int(items["MODSEQ"][0])
    assert new > m1 and "\\seen" in flags_of(items), r
    r = five.command(f"STORE 1:2 (UNCHANGEDSINCE {max(m1, m2)}) +FLAGS (\\Flagged)")
    assert r.status == "OK" and r.code == "MODIFIED 1", r
    got = five.fetch("1:2", "(FLAGS)")
    assert "\\flagged" not in flags_of(got[1]) and "\\flagged" in flags_of(got[2])
    r = five.ok(f"UID STORE 1 (UNCHANGEDSINCE {new}) -FLAGS (\\Seen)")
    assert r.code == "", r
    r = five.command("UID STORE 1 (UNCHANGEDSINCE 1) -FLAGS (\\Seen)")
    assert r.code == "MODIFIED 1", r


def test_copy_answers_copyuid(five):
    """RFC 9051 §6.4.7 and RFC 4315 §3: COPY keeps the source messages and answers
    OK [COPYUID uidvalidity source-uids dest-uids]; copying to a missing mailbox is
    NO [TRYCREATE]."""
    five.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    r = five.ok("COPY 2:3 Archive")
    validity = status(five, "Archive", "UIDVALIDITY")["UIDVALIDITY"]
    assert r.code == f"COPYUID {validity} 2:3 1:2", r
    r = five.ok("UID COPY 5 Archive")
    assert r.code == f"COPYUID {validity} 5 3", r
    assert status(five, "Archive")["MESSAGES"] == 3
    assert status(five, "INBOX")["MESSAGES"] == 5
    r = five.command("COPY 1 Nowhere")
    assert (r.status, r.code) == ("NO", "TRYCREATE"), r
    five.select("Archive")
    got = five.fetch("1:3", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert "\\flagged" in flags_of(got[1])
    assert [got[i]["BODY[HEADER.FIELDS (SUBJECT)]"] for i in (1, 2, 3)] == \
        [b"Subject: message %d\r\n\r\n" % n for n in (2, 3, 5)]


def test_move_answers_copyuid_and_expunges(five):
    """RFC 6851 §4.3: MOVE sends an untagged OK [COPYUID ...], then EXPUNGE for each moved
    message, then the tagged OK; after ENABLE QRESYNC the expunges are VANISHED (RFC 7162
    §3.2.10)."""
    r = five.ok("MOVE 2 Trash")
    validity = status(five, "Trash", "UIDVALIDITY")["UIDVALIDITY"]
    assert r.untagged[0].startswith(f"* OK [COPYUID {validity} 2 1]".encode()), r
    assert expunge_model([1, 2, 3, 4, 5], r) == [1, 3, 4, 5], r
    r = five.ok("UID MOVE 3:4 Trash")
    assert r.untagged[0].startswith(f"* OK [COPYUID {validity} 3:4 2:3]".encode()), r
    assert expunge_model([1, 3, 4, 5], r) == [1, 5], r
    assert status(five, "Trash")["MESSAGES"] == 3
    five.ok("ENABLE QRESYNC")
    five.select()
    r = five.ok("UID MOVE 5 Trash")
    assert b"* VANISHED 5\r\n" in r.untagged, r
    assert not r.named("EXPUNGE"), r
    got = five.fetch("1:*", "(UID)")
    assert [i["UID"] for i in got.values()] == ["1"]


def test_expunge_and_uid_expunge(five):
    """RFC 9051 §6.4.3 and RFC 4315 §2.1: EXPUNGE removes every \\Deleted message with one
    EXPUNGE response each (numbers as they are at that moment); UID EXPUNGE only those of its
    set."""
    five.ok("STORE 1,3,5 +FLAGS.SILENT (\\Deleted)")
    r = five.ok("UID EXPUNGE 3:4")
    assert expunge_model([1, 2, 3, 4, 5], r) == [1, 2, 4, 5], r
    r = five.ok("EXPUNGE")
    assert expunge_model([1, 2, 4, 5], r) == [2, 4], r
    assert [i["UID"] for i in five.fetch("1:*", "(UID)").values()] == ["2", "4"]
    r = five.ok("EXPUNGE")
    assert r.untagged == [], r


def test_close_expunges_but_unselect_does_not(five):
    """RFC 9051 §6.4.1: CLOSE expunges \\Deleted messages without EXPUNGE responses;
    §6.4.2 UNSELECT (RFC 3691) leaves them; CLOSE after EXAMINE expunges nothing."""
    five.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    r = five.ok("UNSELECT")
    assert r.untagged == [], r
    assert status(five, "INBOX")["MESSAGES"] == 5
    five.ok("EXAMINE INBOX")
    five.ok("CLOSE")
    assert status(five, "INBOX")["MESSAGES"] == 5
    five.select()
    r = five.ok("CLOSE")
    assert r.untagged == [], r
    assert status(five, "INBOX")["MESSAGES"] == 3
    r = five.command("FETCH 1 (FLAGS)")
    assert r.status == "BAD", "no mailbox is selected after CLOSE"


# ---------------------------------------------------------------------------------------------
# 7. SEARCH, ESEARCH, SEARCHRES, SORT, THREAD
# ---------------------------------------------------------------------------------------------

#: (From, Subject, Date header, internal date, body, extra headers, APPEND flags); see `mixed`.
SEARCH_MESSAGES = [
    ('"Anna Adams" <anna@remote.test>', "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
     "Sun, 15 Mar 2026 10:00:00 +0000", "10-Feb-2026 12:00:00 +0000",
     b"A plain body about apples.\r\n", "", "\\Seen"),
    ("zed@remote.test", "Re: Meeting notes",
     "Thu, 01 Jan 2026 10:00:00 +0000", "20-Apr-2026 12:00:00 +0000",
     b"bananas and cherries\r\n" + b"padding line\r\n" * 500, "X-Priority: 1\r\n", "\\Flagged"),
    ('"Bob Brown" <bob@example.test>', "Meeting notes",
     "Mon, 25 May 2026 10:00:00 +0000", "01-Jan-2026 12:00:00 +0000",
     b"Gr=FC=DFe von M=FCller\r\n",
     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
     "Content-Transfer-Encoding: quoted-printable\r\n", ""),
    ("carl@remote.test", "Fwd: Invoice 42",
     "Tue, 10 Feb 2026 10:00:00 +0000", "25-May-2026 12:00:00 +0000",
     b"The invoice is attached.\r\n", "", "\\Seen \\Answered $Label1"),
    ("anna@remote.test", "apples",
     "Mon, 20 Apr 2026 10:00:00 +0000", "15-Mar-2026 12:00:00 +0000",
     b"nothing to see\r\n", "", ""),
]


@pytest.fixture
def mixed(srv) -> Imap:
    """alice's INBOX with SEARCH_MESSAGES as messages 1-5 and UIDs 2-6 (UID 1 was expunged, so
    that UIDs and sequence numbers differ), selected."""
    c = login(srv)
    c.append(message("gone"))
    for frm, subject, date, idate, body, headers, flags in SEARCH_MESSAGES:
        c.append(message(subject, sender=frm, date=date, body=body, headers=headers),
                 flags=flags, date=idate)
    c.select()
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    return c


def search(c: Imap, criteria: str, uid: bool = False) -> list[int]:
    """The numbers of the one `* SEARCH` response of a (UID) SEARCH."""
    r = c.ok(f"{'UID ' if uid else ''}SEARCH {criteria}")
    lines = r.named("SEARCH")
    assert len(lines) == 1, r
    return [int(x) for x in lines[0].split()[2:]]


def esearch(r: Result) -> dict:
    """The one `* ESEARCH` response: {"TAG": tag, "UID": True?, "MIN": ..., ...}."""
    lines = r.named("ESEARCH")
    assert len(lines) == 1, r
    v = parse(lines[0])[2:]
    out: dict = {}
    if v and isinstance(v[0], list):
        assert str(v[0][0]).upper() == "TAG", v
        out["TAG"] = v[0][1].decode()
        v = v[1:]
    if v and str(v[0]).upper() == "UID":
        out["UID"] = True
        v = v[1:]
    for k, val in zip(v[::2], v[1::2]):
        out[str(k).upper()] = val
    return out


def test_search_flags_sizes_and_dates(mixed):
    """RFC 9051 §6.4.4: ALL, flag keys, KEYWORD, LARGER/SMALLER (RFC822.SIZE), and SINCE,
    BEFORE, ON (internal date, day granularity) and SENTSINCE (Date header)."""
    assert search(mixed, "ALL") == [1, 2, 3, 4, 5]
    assert search(mixed, "UNSEEN") == [2, 3, 5]
    assert search(mixed, "SEEN") == [1, 4]
    assert search(mixed, "FLAGGED") == [2]
    assert search(mixed, "ANSWERED UNSEEN") == []
    assert search(mixed, "KEYWORD $Label1") == [4]
    assert search(mixed, "UNKEYWORD $Label1") == [1, 2, 3, 5]
    assert search(mixed, "LARGER 5000") == [2]
    assert search(mixed, "SMALLER 5000") == [1, 3, 4, 5]
    assert search(mixed, "SINCE 15-Mar-2026") == [2, 4, 5]
    assert search(mixed, "BEFORE 15-Mar-2026") == [1, 3]
    assert search(mixed, "ON 15-Mar-2026") == [5]
    assert search(mixed, "SENTSINCE 15-Mar-2026") == [1, 3, 5]
    assert search(mixed, "SENTBEFORE 10-Feb-2026") == [2]


def test_search_addresses_subject_header_body_text(mixed):
    """RFC 9051 §6.4.4: FROM and SUBJECT match substrings case-insensitively (FROM also in the
    display name), HEADER a named field (an empty string: any message that has it), BODY only
    the body, TEXT header and body."""
    assert search(mixed, "FROM anna") == [1, 5]
    assert search(mixed, 'FROM "Bob Brown"') == [3]
    assert search(mixed, "FROM ANNA@REMOTE.TEST") == [1, 5]
    assert search(mixed, "TO alice") == [1, 2, 3, 4, 5]
    assert search(mixed, "SUBJECT meeting") == [2, 3]
    assert search(mixed, 'SUBJECT "invoice 42"') == [4]
    assert search(mixed, "HEADER X-Priority 1") == [2]
    assert search(mixed, 'HEADER X-Priority ""') == [2]
    assert search(mixed, "BODY cherries") == [2]
    assert search(mixed, "BODY apples") == [1]
    assert search(mixed, "TEXT apples") == [1, 5]
    assert search(mixed, "BODY nosuchword") == []


def test_search_decoded_subject_and_body_with_charset(mixed):
    """RFC 9051 §6.4.4: strings are matched against decoded text: an RFC 2047 subject, a
    quoted-printable ISO-8859-1 body, with the search string in UTF-8 (CHARSET UTF-8, as a
    literal); an unknown charset gets NO [BADCHARSET]."""
    r = mixed.with_literals("SEARCH CHARSET UTF-8 SUBJECT ", "Grüße".encode(), "")
    assert r.status == "OK" and r.named("SEARCH") == [b"* SEARCH 1\r\n"], r
    r = mixed.with_literals("SEARCH CHARSET UTF-8 SUBJECT ", "KÖLN".encode(), "")
    assert r.named("SEARCH") == [b"* SEARCH 1\r\n"], r
    r = mixed.with_literals("SEARCH CHARSET UTF-8 BODY ", "Müller".encode(), "")
    assert r.named("SEARCH") == [b"* SEARCH 3\r\n"], r
    r = mixed.with_literals("SEARCH CHARSET UTF-8 TEXT ", "grüße".encode(), "")
    assert r.named("SEARCH") == [b"* SEARCH 1 3\r\n"], r
    r = mixed.command("SEARCH CHARSET X-UNKNOWN-CHARSET SUBJECT x")
    assert r.status == "NO" and r.code.startswith("BADCHARSET"), r


def test_search_or_not_and_uid(mixed):
    """RFC 9051 §6.4.4 and §6.4.9: OR, NOT, parenthesised lists, sequence sets and UID sets as
    keys; UID SEARCH answers UIDs."""
    assert search(mixed, "OR FROM anna SUBJECT invoice") == [1, 4, 5]
    assert search(mixed, "NOT FROM anna") == [2, 3, 4]
    assert search(mixed, "NOT (OR SEEN FLAGGED)") == [3, 5]
    assert search(mixed, "(FROM anna UNSEEN) OR FLAGGED ANSWERED") == []
    assert search(mixed, "OR (FROM anna UNSEEN) FLAGGED") == [2, 5]
    assert search(mixed, "2:3") == [2, 3]
    assert search(mixed, "4:*") == [4, 5]
    assert search(mixed, "UID 2:3") == [1, 2]
    assert search(mixed, "UNSEEN", uid=True) == [3, 4, 6]
    assert search(mixed, "UID 1:4 SEEN", uid=True) == [2]
    assert search(mixed, "1:2", uid=True) == [2, 3]


def test_esearch_return_options(mixed):
    """RFC 4731 §3.1 (RFC 9051 §6.4.4): SEARCH RETURN (MIN MAX COUNT ALL) answers one ESEARCH
    with the tag, UID when it is UID SEARCH; MIN, MAX and ALL are left out when nothing
    matched; RETURN () means ALL."""
    r = mixed.ok("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    assert not r.named("SEARCH"), r
    e = esearch(r)
    assert e["TAG"] == r.tag and "UID" not in e
    assert (e["MIN"], e["MAX"], e["COUNT"]) == ("2", "5", "3")
    assert seq_set(e["ALL"]) == [2, 3, 5]
    r = mixed.ok("UID SEARCH RETURN (COUNT ALL) UNSEEN")
    e = esearch(r)
    assert e.get("UID") is True and e["COUNT"] == "3" and seq_set(e["ALL"]) == [3, 4, 6], r
    e = esearch(mixed.ok("SEARCH RETURN () FLAGGED"))
    assert seq_set(e["ALL"]) == [2] and set(e) == {"TAG", "ALL"}, e
    e = esearch(mixed.ok("SEARCH RETURN (COUNT) SEEN"))
    assert set(e) == {"TAG", "COUNT"} and e["COUNT"] == "2", e
    e = esearch(mixed.ok("SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD $Nope"))
    assert set(e) == {"TAG", "COUNT"} and e["COUNT"] == "0", e


def test_searchres_save_and_dollar(mixed):
    """RFC 5182 §2: SEARCH RETURN (SAVE) answers no ESEARCH and keeps the result for `$`;
    FETCH $ and UID FETCH $ use it; with SAVE MIN only the minimum is saved (§2.1)."""
    r = mixed.ok("SEARCH RETURN (SAVE) UNSEEN")
    assert r.untagged == [], r
    got = mixed.fetch("$", "(UID)")
    assert sorted(got) == [2, 3, 5]
    got = mixed.fetch("$", "(FLAGS)", uid=True)
    assert sorted(i["UID"] for i in got.values()) == ["3", "4", "6"]
    assert search(mixed, "$ FROM anna") == [5]
    r = mixed.ok("UID SEARCH RETURN (SAVE MIN) UNSEEN")
    e = esearch(r)
    assert e["MIN"] == "3" and e.get("UID") is True, r
    got = mixed.fetch("$", "(UID)")
    assert sorted(got) == [2], f"SAVE MIN saves only the minimum, not {sorted(got)}"


def test_sort(mixed):
    """RFC 5256 §3: SORT by ARRIVAL (internal date), SUBJECT (base subject without Re:/Fwd:),
    FROM (mailbox of the first From address), REVERSE DATE (Date header); ties go by sequence
    number; UID SORT answers UIDs."""
    def sort(criteria, search="ALL", uid=False):
        r = mixed.ok(f"{'UID ' if uid else ''}SORT ({criteria}) UTF-8 {search}")
        lines = r.named("SORT")
        assert len(lines) == 1, r
        return [int(x) for x in lines[0].split()[2:]]

    assert sort("ARRIVAL") == [3, 1, 5, 2, 4]
    assert sort("SUBJECT") == [5, 1, 4, 2, 3]
    assert sort("FROM") == [1, 5, 3, 4, 2]
    assert sort("REVERSE DATE") == [3, 5, 1, 4, 2]
    assert sort("DATE") == [2, 4, 1, 5, 3]
    assert sort("SIZE") [-1] == 2
    assert sort("REVERSE ARRIVAL", "UNSEEN") == [2, 5, 3]
    assert sort("ARRIVAL", uid=True) == [4, 2, 6, 3, 5]


def test_thread_references_and_orderedsubject(srv):
    """RFC 5256 §4: THREAD REFERENCES builds the tree from In-Reply-To/References, children and
    threads in date order: (1 (2 3)(5))(4); ORDEREDSUBJECT groups by base subject with the
    later messages as children of the first: (1 (2)(3)(5))(4)."""
    c = login(srv)
    chain = [
        ("<a@x.test>", "Plan", "Thu, 01 Jan 2026 10:00:00 +0000", ""),
        ("<b@x.test>", "Re: Plan", "Fri, 02 Jan 2026 10:00:00 +0000",
         "In-Reply-To: <a@x.test>\r\nReferences: <a@x.test>\r\n"),
        ("<c@x.test>", "Re: Plan", "Sat, 03 Jan 2026 10:00:00 +0000",
         "References: <a@x.test> <b@x.test>\r\n"),
        ("<d@x.test>", "Other", "Sun, 01 Feb 2026 10:00:00 +0000", ""),
        ("<e@x.test>", "Re: Plan", "Sun, 04 Jan 2026 10:00:00 +0000",
         "In-Reply-To: <a@x.test>\r\nReferences: <a@x.test>\r\n"),
    ]
    for mid, subject, date, headers in chain:
        c.append(message(subject, date=date, headers=headers, message_id=mid))
    c.select()
    r = c.ok("THREAD REFERENCES UTF-8 ALL")
    assert r.named("THREAD") == [b"* THREAD (1 (2 3)(5))(4)\r\n"], r
    r = c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert r.named("THREAD") == [b"* THREAD (1 (2)(3)(5))(4)\r\n"], r
    r = c.ok("UID THREAD REFERENCES UTF-8 ALL")
    assert r.named("THREAD") == [b"* THREAD (1 (2 3)(5))(4)\r\n"], r


# ---------------------------------------------------------------------------------------------
# 8. mailboxes: LIST, CREATE, RENAME, DELETE, SUBSCRIBE, STATUS, NAMESPACE, names
# ---------------------------------------------------------------------------------------------


def list_entries(r: Result, verb: str = "LIST") -> dict[str, set[str]]:
    """{name: {attributes lower-cased}} of the LIST (or LSUB) responses; names as sent."""
    out: dict[str, set[str]] = {}
    for resp in r.named(verb):
        v = parse(resp)
        assert v[3] in ("/", b"/"), resp
        name = v[4].decode() if isinstance(v[4], bytes) else v[4]
        assert name not in out, f"{name} listed twice: {r!r}"
        out[name] = {a.lower() for a in v[2]}
    return out


DEFAULT_FOLDERS = {
    "INBOX": set(), "Archive": {"\\archive"}, "Drafts": {"\\drafts"}, "Junk": {"\\junk"},
    "Sent": {"\\sent"}, "Trash": {"\\trash"},
}


def test_list_with_special_use(srv):
    """RFC 9051 §6.3.9 and RFC 6154 §2: LIST "" "*" lists INBOX and the special-use mailboxes
    with \\Sent, \\Drafts, \\Trash, \\Junk, \\Archive; LIST (SPECIAL-USE) only those (RFC
    6154 §3); RETURN (SPECIAL-USE) shows the attributes too; an empty pattern answers the
    hierarchy delimiter."""
    c = login(srv)
    c.ok("CREATE Plain")
    got = list_entries(c.ok('LIST "" "*"'))
    assert set(got) == set(DEFAULT_FOLDERS) | {"Plain"}, got
    for name, use in DEFAULT_FOLDERS.items():
        specials = got[name] & {"\\sent", "\\drafts", "\\trash", "\\junk", "\\archive",
                                "\\all", "\\flagged"}
        assert specials == use, (name, got[name])
    assert got["Plain"] & {"\\sent", "\\drafts", "\\trash", "\\junk", "\\archive"} == set()
    got = list_entries(c.ok('LIST (SPECIAL-USE) "" "*"'))
    assert set(got) == {"Archive", "Drafts", "Junk", "Sent", "Trash"}, got
    got = list_entries(c.ok('LIST "" "*" RETURN (SPECIAL-USE)'))
    assert "\\sent" in got["Sent"] and "Plain" in got
    r = c.ok('LIST "" ""')
    assert r.named("LIST") == [b'* LIST (\\Noselect) "/" ""\r\n'], r
    got = list_entries(c.ok('LIST "" "inbox"'))
    assert set(got) == {"INBOX"}, "INBOX matches case-insensitively (RFC 9051 §5.1)"


def test_list_status(srv):
    """RFC 5819: LIST ... RETURN (STATUS (MESSAGES UNSEEN)) sends a STATUS response for every
    listed mailbox, with the right counts."""
    c = login(srv)
    c.append(message("a"), flags="\\Seen")
    c.append(message("b"))
    c.append(message("c"), "Sent")
    r = c.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert set(list_entries(r)) == set(DEFAULT_FOLDERS)
    statuses = {}
    for resp in r.named("STATUS"):
        v = parse(resp)
        name = v[2].decode() if isinstance(v[2], bytes) else v[2]
        statuses[name] = {str(k).upper(): int(x) for k, x in zip(v[3][::2], v[3][1::2])}
    assert set(statuses) == set(DEFAULT_FOLDERS), r
    assert statuses["INBOX"] == {"MESSAGES": 2, "UNSEEN": 1}
    assert statuses["Sent"] == {"MESSAGES": 1, "UNSEEN": 1}
    assert statuses["Trash"] == {"MESSAGES": 0, "UNSEEN": 0}


def test_create_with_hierarchy(srv):
    """RFC 9051 §6.3.4: CREATE of a name with the delimiter creates the superior names; LIST
    shows \\HasChildren / \\HasNoChildren (RFC 5258 §4); `%` stops at the delimiter; creating
    an existing name fails; a trailing delimiter is ignored."""
    c = login(srv)
    c.ok("CREATE Work/2026/Q4")
    got = list_entries(c.ok('LIST "" "Work*"'))
    assert set(got) == {"Work", "Work/2026", "Work/2026/Q4"}, got
    assert "\\haschildren" in got["Work"] and "\\haschildren" in got["Work/2026"]
    assert "\\hasnochildren" in got["Work/2026/Q4"]
    assert set(list_entries(c.ok('LIST "" "Work/%"'))) == {"Work/2026"}
    assert set(list_entries(c.ok('LIST "Work/" "%"'))) == {"Work/2026"}
    assert set(list_entries(c.ok('LIST "" "%"'))) == set(DEFAULT_FOLDERS) | {"Work"}
    c.select("Work/2026")
    r = c.command("CREATE Work/2026/Q4")
    assert r.status == "NO", r
    r = c.command("CREATE inbox")
    assert r.status == "NO", r
    c.ok("CREATE Later/")
    assert set(list_entries(c.ok('LIST "" "Later*"'))) == {"Later"}


def test_create_with_special_use(srv):
    """RFC 6154 §3 (CREATE-SPECIAL-USE): CREATE name (USE (\\Archive)) makes a mailbox with that
    attribute; an attribute the server does not support is NO [USEATTR]."""
    c = login(srv)
    c.ok("CREATE Old-Mail (USE (\\Archive))")
    got = list_entries(c.ok('LIST "" "Old-Mail"'))
    assert "\\archive" in got["Old-Mail"], got
    r = c.command("CREATE Starred (USE (\\Flagged))")
    assert (r.status, r.code) == ("NO", "USEATTR"), r
    assert list_entries(c.ok('LIST "" "Starred"')) == {}


def test_rename(srv):
    """RFC 9051 §6.3.6: RENAME moves the mailbox with its messages, its UIDVALIDITY and its
    inferior names; renaming to an existing name or from a missing one fails."""
    c = login(srv)
    c.ok("CREATE Work/2026")
    c.append(message("kept"), "Work")
    validity = status(c, "Work", "UIDVALIDITY")["UIDVALIDITY"]
    c.ok("RENAME Work Projects")
    got = list_entries(c.ok('LIST "" "*"'))
    assert "Projects" in got and "Projects/2026" in got, got
    assert "Work" not in got and "Work/2026" not in got, got
    assert status(c, "Projects", "MESSAGES UIDVALIDITY") == {"MESSAGES": 1,
                                                               "UIDVALIDITY": validity}
    r = c.command("RENAME Projects Sent")
    assert r.status == "NO", r
    r = c.command("RENAME Nowhere Elsewhere")
    assert r.status == "NO", r


def test_rename_into_a_new_hierarchy(srv):
    """RFC 9051 §6.3.6: RENAME to a name under superiors that do not exist SHOULD create them;
    either way §6.3.9 requires LIST "" "%" to return the levels of hierarchy above an
    existing mailbox (\\Noselect or \\NonExistent if they are not mailboxes), so a client
    browsing level by level finds the renamed mailbox."""
    c = login(srv)
    c.ok("CREATE Temp")
    c.append(message("moved along"), "Temp")
    c.ok("RENAME Temp A/B/C")
    assert status(c, "A/B/C")["MESSAGES"] == 1
    assert "A/B/C" in list_entries(c.ok('LIST "" "*"'))
    top = list_entries(c.ok('LIST "" "%"'))
    assert "A" in top, f"A/B/C cannot be reached from the top level: {sorted(top)}"
    assert "A/B" in list_entries(c.ok('LIST "" "A/%"'))


def test_rename_inbox_moves_its_messages(srv):
    """RFC 9051 §6.3.6: renaming INBOX moves all its messages to a new mailbox of the new name
    and leaves INBOX empty (and still there)."""
    c = login(srv)
    for i in range(3):
        c.append(message(f"m{i}"))
    c.ok("RENAME INBOX Old-Inbox")
    assert status(c, "Old-Inbox")["MESSAGES"] == 3
    assert status(c, "INBOX", "MESSAGES UIDNEXT")["MESSAGES"] == 0
    got = list_entries(c.ok('LIST "" "*"'))
    assert "INBOX" in got and "Old-Inbox" in got
    c.select("Old-Inbox")
    assert [i["BODY[HEADER.FIELDS (SUBJECT)]"] for i in
            c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])").values()] == \
        [b"Subject: m%d\r\n\r\n" % i for i in range(3)]
    assert c.append(message("new")) >= 1


def test_delete(srv):
    """RFC 9051 §6.3.5: DELETE removes a mailbox and its messages; INBOX and missing mailboxes
    cannot be deleted; a deleted name can be created again, with a new UIDVALIDITY or UIDs
    that do not repeat."""
    c = login(srv)
    c.ok("CREATE Temp")
    assert c.append(message("x"), "Temp") == 1
    validity = status(c, "Temp", "UIDVALIDITY")["UIDVALIDITY"]
    c.ok("DELETE Temp")
    assert "Temp" not in list_entries(c.ok('LIST "" "*"'))
    r = c.command("STATUS Temp (MESSAGES)")
    assert r.status == "NO", r
    r = c.command("DELETE INBOX")
    assert r.status == "NO", r
    r = c.command("DELETE Nowhere")
    assert r.status == "NO", r
    c.ok("CREATE Temp")
    st = status(c, "Temp", "MESSAGES UIDVALIDITY UIDNEXT")
    assert st["MESSAGES"] == 0
    assert st["UIDVALIDITY"] != validity or st["UIDNEXT"] > 1, st


def test_subscribe_and_lsub(srv):
    """RFC 9051 §6.3.7/§6.3.8 and RFC 3501 §6.3.9 LSUB: SUBSCRIBE adds a name to LSUB and to
    LIST (SUBSCRIBED) with \\Subscribed (RFC 5258); UNSUBSCRIBE removes it."""
    c = login(srv)
    c.ok("CREATE Lists/IETF")
    # Whether CREATE subscribes is the server's choice; start from a known state.
    c.ok("UNSUBSCRIBE Lists")
    c.ok("UNSUBSCRIBE Lists/IETF")
    lsub = list_entries(c.ok('LSUB "" "*"'), "LSUB")
    assert "Lists" not in lsub and "Lists/IETF" not in lsub, lsub
    c.ok("SUBSCRIBE Lists/IETF")
    assert "Lists/IETF" in list_entries(c.ok('LSUB "" "*"'), "LSUB")
    got = list_entries(c.ok('LIST (SUBSCRIBED) "" "*"'))
    assert "\\subscribed" in got["Lists/IETF"], got
    assert "Lists" not in got
    got = list_entries(c.ok('LIST "" "Lists*" RETURN (SUBSCRIBED)'))
    assert "\\subscribed" in got["Lists/IETF"] and "\\subscribed" not in got["Lists"], got
    c.ok("UNSUBSCRIBE Lists/IETF")
    assert "Lists/IETF" not in list_entries(c.ok('LSUB "" "*"'), "LSUB")
    assert "Lists/IETF" not in list_entries(c.ok('LIST (SUBSCRIBED) "" "*"'))


def test_list_subscribed_recursivematch(srv):
    """RFC 5258 §3 (LIST-EXTENDED): LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" also returns a
    parent that is not subscribed itself but has a subscribed child, with the extended data
    item CHILDINFO ("SUBSCRIBED")."""
    c = login(srv)
    c.ok("CREATE Lists/IETF")
    c.ok("UNSUBSCRIBE Lists")
    c.ok("SUBSCRIBE Lists/IETF")
    r = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    lists = [x for x in r.named("LIST") if b'"/" Lists' in x]
    assert len(lists) == 1, r
    v = parse(lists[0])
    assert "\\subscribed" not in {a.lower() for a in v[2]}, r
    assert len(v) == 6 and upper(v[5]) == ["CHILDINFO", ["SUBSCRIBED"]], r


def test_subscription_outlives_a_deleted_mailbox(srv):
    """RFC 3501 §6.3.6 and §6.3.9: the server MUST NOT remove a name from the subscription list
    on its own, even when the mailbox no longer exists; LIST (SUBSCRIBED) then shows it with
    \\NonExistent (RFC 5258 §3)."""
    c = login(srv)
    c.ok("CREATE Gone")
    c.ok("SUBSCRIBE Gone")
    c.ok("DELETE Gone")
    assert "Gone" in list_entries(c.ok('LSUB "" "*"'), "LSUB")
    got = list_entries(c.ok('LIST (SUBSCRIBED) "" "*"'))
    assert {"\\subscribed", "\\nonexistent"} <= got.get("Gone", set()), got
    c.ok("UNSUBSCRIBE Gone")
    assert "Gone" not in list_entries(c.ok('LSUB "" "*"'), "LSUB")


def test_status(srv):
    """RFC 9051 §6.3.11: STATUS MESSAGES, UIDNEXT, UNSEEN, UIDVALIDITY, DELETED, and SIZE (RFC
    8438: the sum of RFC822.SIZE) of a mailbox, also of the selected one."""
    c = login(srv)
    msgs = [message("a"), message("b", body=b"x" * 1000), message("c")]
    c.append(msgs[0], flags="\\Seen")
    c.append(msgs[1], flags="\\Deleted")
    c.append(msgs[2])
    st = status(c, "INBOX", "MESSAGES UIDNEXT UNSEEN SIZE DELETED UIDVALIDITY")
    assert st["MESSAGES"] == 3 and st["UIDNEXT"] == 4 and st["UNSEEN"] == 2
    assert st["SIZE"] == sum(len(m) for m in msgs)
    assert st["DELETED"] == 1 and st["UIDVALIDITY"] > 0
    c.select()
    assert status(c, "INBOX", "MESSAGES")["MESSAGES"] == 3
    assert status(c, "Drafts", "MESSAGES UNSEEN SIZE") == {"MESSAGES": 0, "UNSEEN": 0, "SIZE": 0}
    r = c.command("STATUS Nowhere (MESSAGES)")
    assert r.status == "NO", r


def test_namespace(srv):
    """RFC 2342 / RFC 9051 §6.3.10: one personal namespace with the prefix "" and the
    delimiter "/", no others."""
    c = login(srv)
    r = c.ok("NAMESPACE")
    assert r.named("NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL\r\n'], r


def test_mailbox_names_in_modified_utf7_and_utf8(srv):
    """RFC 3501 §5.1.3: without UTF8=ACCEPT, names with non-ASCII letters go in modified UTF-7
    both ways (and "&" as "&-"); RFC 6855 §3 / RFC 9051 §5.1: after ENABLE UTF8=ACCEPT they go
    as UTF-8, and modified UTF-7 is no longer decoded."""
    c = login(srv)
    apfel = mutf7("Äpfel & Birnen")
    assert apfel == "&AMQ-pfel &- Birnen"
    c.ok(f'CREATE "{apfel}"')
    c.ok(f'CREATE "{mutf7("Grüße/日本")}"')
    got = list_entries(c.ok('LIST "" "*"'))
    assert apfel in got and mutf7("Grüße") in got and mutf7("Grüße/日本") in got, got
    c.append(message("fruit"), f'"{apfel}"')
    assert status(c, f'"{apfel}"')["MESSAGES"] == 1
    r = c.command('CREATE "bad&Jjo!name"')
    assert r.status in ("NO", "BAD"), r
    u = login(srv)
    r = u.ok("ENABLE UTF8=ACCEPT")
    assert r.untagged == [b"* ENABLED UTF8=ACCEPT\r\n"], r
    got = list_entries(u.ok('LIST "" "*"'))
    assert "Äpfel & Birnen" in got and "Grüße/日本" in got, got
    r = u.ok('SELECT "Äpfel & Birnen"'.encode())
    assert number(r, "EXISTS") == 1
    u.ok('CREATE "Café"'.encode())
    assert "Café" in list_entries(u.ok('LIST "" "Caf*"'))
    assert mutf7("Café") in list_entries(c.ok('LIST "" "Caf*"'))
    # "&AMQ-pfel" is a plain ASCII name for a UTF-8 client, not "Äpfel".
    r = u.command(f'STATUS "{apfel}" (MESSAGES)')
    assert r.status == "NO", r


# ---------------------------------------------------------------------------------------------
# 9. two sessions on one mailbox
# ---------------------------------------------------------------------------------------------


def test_changes_of_another_session_are_announced(srv):
    """RFC 9051 §7.3.1, §7.4.1, §7.5.2: a delivery, a flag change and an expunge made elsewhere
    reach a session that selected the mailbox at its next command (NOOP): EXISTS, FETCH
    (FLAGS), EXPUNGE."""
    setup = login(srv)
    for i in range(3):
        setup.append(message(f"m{i}"))
    a = selected(srv)
    b = selected(srv)
    deliver(srv, ALICE, message("delivered"))
    r = b.ok("NOOP")
    assert number(r, "EXISTS") == 4, r
    r = a.ok("NOOP")
    assert number(r, "EXISTS") == 4, r
    a.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    r = b.ok("NOOP")
    got = fetch_map(r)
    assert set(got) == {1} and "\\flagged" in flags_of(got[1]), r
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    r = b.ok("NOOP")
    assert expunge_model([1, 2, 3, 4], r) == [1, 3, 4], r
    assert [i["UID"] for i in b.fetch("1:*", "(UID)").values()] == ["1", "3", "4"]
    r = b.ok("NOOP")
    assert r.untagged == [], "each change is announced once"


def test_no_expunge_during_fetch_store_search(srv):
    """RFC 9051 §7.5.1: while answering FETCH, STORE or SEARCH (not their UID forms) the server
    must not send EXPUNGE; the expunge made by another session is announced at the next
    command that allows it, and until then the sequence numbers stay as they were."""
    setup = login(srv)
    for i in range(3):
        setup.append(message(f"m{i}"))
    a = selected(srv)
    b = selected(srv)
    a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    r = b.command("FETCH 1:3 (UID)")
    assert r.status in ("OK", "NO") and not r.named("EXPUNGE"), r
    got = fetch_map(r)
    assert {s: i["UID"] for s, i in got.items() if s != 1} == {2: "2", 3: "3"}, r
    r = b.command("STORE 3 +FLAGS (\\Seen)")
    assert r.status == "OK" and not r.named("EXPUNGE"), r
    assert fetch_map(r)[3]["FLAGS"], r
    r = b.ok("SEARCH ALL")
    assert not r.named("EXPUNGE"), r
    assert [int(x) for x in r.named("SEARCH")[0].split()[2:]] == [2, 3], r
    r = b.ok("SEARCH SEEN")
    assert r.named("SEARCH") == [b"* SEARCH 3\r\n"], r
    r = b.ok("NOOP")
    assert expunge_model([1, 2, 3], r) == [2, 3], r
    assert list(b.fetch("2", "(UID)").items()) == [(2, {"UID": "3"})]


def test_pipelined_commands_are_answered_in_order(srv):
    """RFC 9051 §5.5: a client may send several commands without waiting; each gets its
    responses and its tagged completion, in order here as none of them may be reordered
    (the STORE changes what the FETCH after it sees)."""
    c = login(srv)
    for i in range(3):
        c.append(message(f"m{i}"))
    c.send("p1 SELECT INBOX\r\np2 STORE 2 +FLAGS (\\Flagged)\r\np3 FETCH 1:3 (FLAGS)\r\n"
           "p4 SEARCH FLAGGED\r\np5 NOOP\r\n")
    results = [c.until(f"p{i}") for i in range(1, 6)]
    assert [r.status for r in results] == ["OK"] * 5, results
    assert number(results[0], "EXISTS") == 3
    assert "\\flagged" in flags_of(fetch_map(results[2])[2])
    assert results[3].named("SEARCH") == [b"* SEARCH 2\r\n"]


# ---------------------------------------------------------------------------------------------
# 10. IDLE
# ---------------------------------------------------------------------------------------------


def idle_until(c: Imap, pattern: bytes, timeout: float = 10.0) -> list[bytes]:
    """Reads untagged responses during IDLE until one matches `pattern`."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = c.response()
        seen.append(resp)
        if re.search(pattern, resp):
            return seen
    raise AssertionError(f"no {pattern!r} within {timeout}s during IDLE: {seen!r}")


def test_idle_announces_a_delivery(srv):
    """RFC 2177 / RFC 9051 §6.3.13: during IDLE a message delivered by SMTP is announced with
    EXISTS within seconds; DONE ends IDLE with a tagged OK."""
    a = selected(srv)
    a.send("i1 IDLE\r\n")
    assert a.continuation().startswith(b"+")
    deliver(srv, ALICE, message("while idling"))
    seen = idle_until(a, rb"^\* 1 EXISTS\r\n$")
    assert all(s.startswith(b"* ") for s in seen), seen
    a.send("DONE\r\n")
    r = a.until("i1")
    assert r.status == "OK", r
    got = a.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1]
    assert got["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: while idling\r\n\r\n"


def test_idle_announces_flag_changes_and_expunges(srv):
    """RFC 9051 §6.3.13: during IDLE, flag changes by another session come as FETCH (FLAGS)
    and expunges as EXPUNGE."""
    setup = login(srv)
    setup.append(message("one"))
    setup.append(message("two"))
    a = selected(srv)
    b = selected(srv)
    a.send("i1 IDLE\r\n")
    a.continuation()
    b.ok("STORE 2 +FLAGS (\\Flagged)")
    seen = idle_until(a, rb"^\* 2 FETCH ")
    assert "\\flagged" in flags_of(fetch_items(seen[-1])[1])
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    idle_until(a, rb"^\* 1 EXPUNGE\r\n$")
    a.send("DONE\r\n")
    r = a.until("i1")
    assert r.status == "OK", r
    assert [i["UID"] for i in a.fetch("1:*", "(UID)").values()] == ["2"]


# ---------------------------------------------------------------------------------------------
# 11. CONDSTORE and QRESYNC
# ---------------------------------------------------------------------------------------------


def test_condstore_changedsince_and_modseq_search(srv):
    """RFC 7162 §3.1: after ENABLE CONDSTORE, SELECT reports HIGHESTMODSEQ, STORE answers with
    MODSEQ, FETCH (CHANGEDSINCE m) returns only messages changed after m, SEARCH MODSEQ
    reports the highest MODSEQ found, STATUS HIGHESTMODSEQ grows."""
    c = login(srv)
    for i in range(4):
        c.append(message(f"m{i}"))
    r = c.ok("ENABLE CONDSTORE")
    assert r.untagged == [b"* ENABLED CONDSTORE\r\n"], r
    r = c.select()
    m0 = int(untagged_code(r, "HIGHESTMODSEQ"))
    r = c.ok("STORE 2 +FLAGS (\\Seen)")
    assert int(fetch_map(r)[2]["MODSEQ"][0]) > m0, r
    c.ok("STORE 4 +FLAGS.SILENT (\\Flagged)")
    got = c.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {m0})")
    assert sorted(got) == [2, 4], got
    assert all(int(i["MODSEQ"][0]) > m0 for i in got.values())
    got = c.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {m0})", uid=True)
    assert sorted(i["UID"] for i in got.values()) == ["2", "4"]
    r = c.ok(f"SEARCH MODSEQ {m0 + 1}")
    m = re.fullmatch(rb"\* SEARCH 2 4 \(MODSEQ (\d+)\)\r\n", r.named("SEARCH")[0])
    assert m, r
    top = int(m.group(1))
    assert top == max(int(i["MODSEQ"][0]) for i in got.values())
    assert status(c, "INBOX", "HIGHESTMODSEQ")["HIGHESTMODSEQ"] >= top


def test_qresync_select_reports_what_changed(srv):
    """RFC 7162 §3.2.5: after ENABLE QRESYNC, SELECT mailbox (QRESYNC (uidvalidity modseq))
    answers VANISHED (EARLIER) for messages expunged since, and FETCH (UID FLAGS MODSEQ) for
    messages changed or added since; a wrong UIDVALIDITY gets neither. UID FETCH (CHANGEDSINCE
    m VANISHED) answers the same (§3.2.6); QRESYNC without ENABLE is BAD."""
    setup = login(srv)
    for i in range(4):
        setup.append(message(f"m{i}"))
    c = login(srv)
    r = c.ok("ENABLE QRESYNC")
    assert len(r.untagged) == 1 and b"QRESYNC" in r.untagged[0], r
    r = c.select()
    validity = int(untagged_code(r, "UIDVALIDITY"))
    m0 = int(untagged_code(r, "HIGHESTMODSEQ"))
    c.logout()
    other = selected(srv)
    other.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    other.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.append(message("new"))  # UID 5
    c = login(srv)
    c.ok("ENABLE QRESYNC")
    r = c.ok(f"SELECT INBOX (QRESYNC ({validity} {m0}))")
    assert b"* VANISHED (EARLIER) 3\r\n" in r.untagged, r
    got = fetch_map(r)
    assert sorted(i["UID"] for i in got.values()) == ["2", "5"], r
    assert all("MODSEQ" in i and "FLAGS" in i for i in got.values()), r
    assert "\\flagged" in flags_of(got[2])
    assert number(r, "EXISTS") == 4
    r = c.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0} VANISHED)")
    assert r.untagged[0] == b"* VANISHED (EARLIER) 3\r\n", r
    assert sorted(i["UID"] for i in fetch_map(r).values()) == ["2", "5"], r
    r = c.ok(f"SELECT INBOX (QRESYNC ({validity + 1} {m0}))")
    assert not any(x.startswith(b"* VANISHED") for x in r.untagged), r
    assert not r.named("FETCH"), r
    plain_client = login(srv)
    r = plain_client.command(f"SELECT INBOX (QRESYNC ({validity} {m0}))")
    assert r.status == "BAD", r


# ---------------------------------------------------------------------------------------------
# 12. QUOTA
# ---------------------------------------------------------------------------------------------


def test_quota(users):
    """RFC 9208: GETQUOTAROOT INBOX names the root and its STORAGE usage and limit in units of
    1024 octets, as set with `mailbox edit --quota`; APPEND or COPY over the quota fail with
    NO [OVERQUOTA] (§5.1) and store nothing; SETQUOTA is not for users."""
    users.admin("mailbox", "edit", ALICE, "--quota", "200K")
    users.start(env=FAST)
    c = login(users)
    r = c.ok("GETQUOTAROOT INBOX")
    roots = r.named("QUOTAROOT")
    assert len(roots) == 1, r
    v = parse(roots[0])
    assert v[2] in ("INBOX", b"INBOX") and len(v) == 4, r
    root = v[3]
    quotas = r.named("QUOTA")
    assert len(quotas) == 1, r
    q = parse(quotas[0])
    assert q[2] == root and [str(x).upper() for x in q[3]] == ["STORAGE", "0", "200"], r
    first = message("first", body=b"a" * 150_000)
    c.append(first)
    r = c.ok(f"GETQUOTA {quote(root.decode() if isinstance(root, bytes) else root)}")
    q = parse(r.named("QUOTA")[0])
    assert int(q[3][1]) == -(-len(first) // 1024) and int(q[3][2]) == 200, r
    tag = c.tag()
    second = message("second", body=b"b" * 60_000)
    c.send(f"{tag} APPEND INBOX {{{len(second)}+}}\r\n".encode() + second + b"\r\n")
    r = c.until(tag)
    assert (r.status, r.code) == ("NO", "OVERQUOTA"), r
    assert status(c, "INBOX")["MESSAGES"] == 1
    c.select()
    r = c.command("COPY 1 Archive")
    assert (r.status, r.code) == ("NO", "OVERQUOTA"), r
    assert status(c, "Archive")["MESSAGES"] == 0
    r = c.command('SETQUOTA "" (STORAGE 100000)')
    assert r.status in ("NO", "BAD"), r


# ---------------------------------------------------------------------------------------------
# 13. COMPRESS=DEFLATE
# ---------------------------------------------------------------------------------------------


def test_compress_deflate(srv):
    """RFC 4978: after COMPRESS DEFLATE both directions are raw DEFLATE (RFC 1951) with sync
    flushes; commands go on working, the capability is gone, and a second COMPRESS is
    NO [COMPRESSIONACTIVE]."""
    c = Imap.connect(srv)
    r = c.command("COMPRESS DEFLATE")
    assert r.status in ("NO", "BAD"), "COMPRESS needs a login (RFC 4978 §3)"
    c.login(ALICE, ALICE_PW)
    data = message("compressed", body=b"The same line again and again.\r\n" * 20_000)
    c.append(data)
    c.compress()
    r = c.ok("CAPABILITY")
    caps = capabilities(r.untagged[0])
    assert "COMPRESS=DEFLATE" not in caps and "IMAP4rev2" in caps
    r = c.select()
    assert number(r, "EXISTS") == 1
    got = c.fetch("1", "(RFC822.SIZE BODY.PEEK[])")[1]
    assert got["BODY[]"] == data
    c.append(message("sent compressed"))
    r = c.command("COMPRESS DEFLATE")
    assert (r.status, r.code) == ("NO", "COMPRESSIONACTIVE"), r
    r = c.ok("NOOP")
    c.send(b"z LOGOUT\r\n")
    assert c.response().startswith(b"* BYE")
    assert c.until("z").status == "OK"


# ---------------------------------------------------------------------------------------------
# 14. bad input
# ---------------------------------------------------------------------------------------------


def test_overlong_line_is_refused_and_the_session_goes_on(srv):
    """RFC 9051 §4 lets a server limit line length; a 100 KB line gets BAD and the session
    stays usable, before and after login."""
    for logged_in in (False, True):
        c = login(srv) if logged_in else Imap.connect(srv)
        c.send(b"a1 NOOP " + b"x" * 100_000 + b"\r\n")
        resp = c.response()
        assert re.match(rb"(a1|\*) BAD ", resp), resp
        c.ok("NOOP")
        if not logged_in:
            c.login(ALICE, ALICE_PW)
        c.ok("CAPABILITY")


def test_big_literal_before_login_is_refused_at_once(srv):
    """RFC 7888 §4 / RFC 9051 §7.5: before login the server refuses a big synchronizing literal
    at once (no continuation request, no wait for the bytes), and skips a big LITERAL+ one; the
    session goes on."""
    c = Imap.connect(srv)
    c.send("a1 LOGIN {100000}\r\n")
    r = c.until("a1")  # fails on a continuation request; times out if the server waits
    assert r.status in ("NO", "BAD"), r
    c.ok("CAPABILITY")
    c.send(b"a2 LOGIN {100000+}\r\n" + b"u" * 100_000 + b" secret\r\n")
    r = c.until("a2")
    assert r.status in ("NO", "BAD"), r
    c.ok("NOOP")
    c.login(ALICE, ALICE_PW)


def test_garbage_nul_and_unknown_commands(srv):
    """RFC 9051 §7.1.3: what cannot be parsed gets BAD (untagged when there is no tag); NUL is
    not allowed in a command line; an unknown command is BAD; commands are
    case-insensitive; the session goes on."""
    c = Imap.connect(srv)
    c.send(b"\x00\x01\x02\xff\xfe garbage\r\n")
    resp = c.response()
    assert resp.startswith(b"* BAD") or re.match(rb"\S+ BAD", resp), resp
    r = c.command(b"NOOP\x00")
    assert r.status == "BAD", r
    r = c.command("FROBNICATE now")
    assert r.status == "BAD", r
    c.ok("noop")
    c.ok(f"login {ALICE} {ALICE_PW}")
    r = c.command("FROBNICATE now")
    assert r.status == "BAD", r
    r = c.command("FETCH 1 (FLAGS)")
    assert r.status == "BAD", "FETCH without a selected mailbox"
    c.append(message("x"))
    c.ok("select inbox")
    r = c.command("FETCH 1:* (NOSUCHITEM)")
    assert r.status == "BAD", r
    c.ok("NOOP")


def test_many_bad_commands_in_a_row_end_the_session(srv):
    """A client that sends nothing but invalid commands is disconnected with BYE (RFC 9051
    §7.1.5) instead of being answered forever."""
    c = Imap.connect(srv)
    c.send(b"".join(b"b%d FOO BAR\r\n" % i for i in range(25)))
    responses = []
    try:
        while True:
            responses.append(c.response())
    except Closed:
        pass
    byes = [r for r in responses if r.startswith(b"* BYE")]
    assert len(byes) == 1 and responses[-1] == byes[0], responses
    assert all(re.match(rb"b\d+ BAD ", r) for r in responses[:-1]), responses
    assert 1 <= len(responses) - 1 < 25, responses


def test_half_closed_connection_is_closed(srv):
    """A client that shuts down its sending side in the middle of a command (or a literal) gets
    the connection closed, not a session waiting forever; a half-sent APPEND stores
    nothing."""
    c = Imap.connect(srv)
    c.send("a1 LOGIN alice")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed(10), f"still open; got {c.buf!r}"
    c = login(srv)
    c.send("a2 APPEND INBOX {1000}\r\n")
    c.continuation()
    c.send(b"Subject: half\r\n\r\nonly part")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed(10), f"still open; got {c.buf!r}"
    check = login(srv)
    assert status(check, "INBOX")["MESSAGES"] == 0


# ---------------------------------------------------------------------------------------------
# 15. LOGOUT and shutdown
# ---------------------------------------------------------------------------------------------


def test_logout_says_bye(srv):
    """RFC 9051 §6.1.3: LOGOUT answers an untagged BYE, then the tagged OK, then closes; ID
    (RFC 2971) answers the server's name."""
    c = Imap.connect(srv)
    r = c.ok('ID ("name" "test-client")')
    assert len(r.named("ID")) == 1, r
    c.login(ALICE, ALICE_PW)
    r = c.ok("LOGOUT")
    assert len(r.untagged) == 1 and r.untagged[0].startswith(b"* BYE"), r
    assert c.closed(10)


def test_sigterm_sends_bye_to_every_client(srv):
    """RFC 9051 §7.1.5: on shutdown the server tells connected clients with an untagged BYE:
    one not logged in, one idle in the selected state, one in IDLE; the server exits 0."""
    waiting = Imap.connect(srv)
    sitting = selected(srv)
    idling = selected(srv)
    idling.send("i1 IDLE\r\n")
    idling.continuation()
    code = srv.stop()
    assert code == 0, srv.log_tail()
    for c in (waiting, sitting, idling):
        resp = c.response()
        assert resp.startswith(b"* BYE"), resp
        assert c.closed(10)
