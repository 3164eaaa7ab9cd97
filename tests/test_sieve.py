"""End-to-end tests of Sieve (RFC 5228) at local delivery: each recipient mailbox's scripts run
when mail arrives on SMTP_PORT or by submission, chained as RFC 6609 `include` in this order:
the server-wide global pre-filter, the domain's pre-filter, the generated `_vacation` and
`_forward` scripts, the mailbox's active script, the domain's post-filter, the server-wide
post-filter.

Scripts are installed with `mailstead sieve ...`, `vacation ...` and `forward ...` while the
server runs (they take effect at once). What a script does is read back from the store
(`mailstead message list|show`), over IMAP for flags, and at a loopback sink that plays the MX
of remote.test (through DNS_STATIC_MAP, as in test_outbound.py) for redirects, vacation replies
and rejection notices. Every wait is bounded; each test has its own server, so they run in
parallel. The RFC section a test checks is named in its docstring.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import smtplib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from harness import Server
from imap_helpers import Imap, flags_of
from sinks import Sink, Transaction, mx_lines
from smtp_helpers import message_bytes, split_trace
from test_outbound import (  # noqa: F401  (peers is a fixture)
    ALICE,
    ALICE_PW,
    BOB,
    BOB_PW,
    DELIVERY_TIMEOUT,
    DOMAIN,
    peers,
    queue_list,
    setup_server,
    submit,
    wait_queue_empty,
)

#: The sender of most test mail: on the internet, its MX is the sink.
SENDER = "sender@remote.test"
#: A second domain of the server, for filters scoped to one domain.
OTHER_DOMAIN = "other.test"
CAROL = "carol@other.test"
CAROL_PW = "carol-pw-Vb6Nq2Ls"

#: Seconds given, after everything expected has happened, for something that must not happen
#: (a second reply, a copy too many) to show itself before the test says it did not.
SETTLE = 2.0


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Env:
    """A running server (alice and bob at example.test) whose mail for remote.test goes to
    `sink`; `tmp` is a directory for script files."""

    server: Server
    sink: Sink
    tmp: Path


def make_env(make_server, tmp_path: Path, peers, *, with_other_domain: bool = False) -> Env:
    sink = peers(Sink("mx.remote.test")).start()
    mailboxes = {ALICE: ALICE_PW, BOB: BOB_PW}
    domains: tuple[str, ...] = (DOMAIN,)
    if with_other_domain:
        mailboxes[CAROL] = CAROL_PW
        domains = (DOMAIN, OTHER_DOMAIN)
    server = setup_server(make_server, tmp_path, mx_lines("remote.test", sink.port),
                          mailboxes=mailboxes, domains=domains)
    scripts = tmp_path / "scripts"
    scripts.mkdir(exist_ok=True)
    return Env(server, sink, scripts)


@pytest.fixture
def env(make_server, tmp_path, peers) -> Env:
    return make_env(make_server, tmp_path, peers)


def script_file(env: Env, text: str) -> Path:
    path = env.tmp / f"{uuid.uuid4().hex}.sieve"
    path.write_text(text)
    return path


def put_script(env: Env, address: str, text: str, name: str = "main",
               activate: bool = True) -> None:
    """`sieve put ADDRESS NAME FILE [--activate]`; must succeed."""
    args = ["sieve", "put", address, name, str(script_file(env, text))]
    if activate:
        args.append("--activate")
    env.server.admin(*args)


def set_global(env: Env, scope: str | None, phase: str, text: str) -> None:
    """`sieve global set (--domain SCOPE | --all) --phase PHASE FILE`."""
    where = ["--all"] if scope is None else ["--domain", scope]
    env.server.admin("sieve", "global", "set", *where, "--phase", phase,
                     str(script_file(env, text)))


def message(subject: str, *, sender: str = SENDER, to: str = ALICE, body: bytes = b"Hello.\r\n",
            headers: bytes = b"", message_id: str | None = None) -> bytes:
    """An RFC 5322 message with CRLF line ends and (unless given) a unique Message-ID; `to` is
    the To header's value."""
    mid = message_id or f"<{uuid.uuid4().hex}@client.test>"
    head = (
        f"From: <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {mid}\r\n"
        "Date: Sat, 21 Nov 2026 10:05:09 +0000\r\n"
    ).encode() + headers
    return head + b"\r\n" + body


def message_id_of(msg: bytes) -> str:
    m = re.search(rb"^Message-ID: (<[^>\r\n]+>)\r\n", msg, flags=re.MULTILINE | re.IGNORECASE)
    assert m, msg
    return m.group(1).decode()


def mx_send(server: Server, sender: str, rcpts: list[str], msg: bytes) -> tuple[int, str]:
    """One MX transaction on SMTP_PORT; MAIL and every RCPT must be accepted. Returns the code
    and text of the reply to the end of DATA, whatever it is."""
    host, port = server.address("SMTP_PORT")
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        code, text = s.mail(sender)
        assert code == 250, (sender, code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        try:
            code, text = s.data(msg)
        except smtplib.SMTPDataError as e:  # a refusal of DATA itself
            code, text = e.smtp_code, e.smtp_error
    return code, text.decode(errors="replace")


def deliver(server: Server, msg: bytes, rcpts: list[str] | None = None,
            sender: str = SENDER) -> None:
    """Delivers on SMTP_PORT (to alice unless told); the message must be accepted."""
    code, text = mx_send(server, sender, rcpts or [ALICE], msg)
    assert code == 250, f"DATA got {code} {text}\n{server.log_tail()}"


def folder(server: Server, address: str, name: str = "INBOX") -> list[dict] | None:
    """The messages of a folder (`message list --json`), or None when it does not exist."""
    proc = server.admin("message", "list", address, "--folder", name, "--json", check=False)
    if proc.returncode != 0:
        if "no folder" in proc.stdout + proc.stderr:
            return None
        raise AssertionError(harness.describe(proc))
    return json.loads(proc.stdout)["messages"]


def subjects(server: Server, address: str, name: str = "INBOX") -> list[str]:
    return [m["subject"] for m in folder(server, address, name) or []]


def wait_subjects(server: Server, address: str, name: str, *expected: str,
                  timeout: float = DELIVERY_TIMEOUT) -> list[str]:
    """Waits until the folder holds (at least) messages with each of `expected` subjects;
    returns its subjects."""
    def there():
        have = subjects(server, address, name)
        return all(have.count(s) >= expected.count(s) for s in expected)

    harness.wait_for(there, timeout, f"{expected} in {name} of {address}",
                     lambda: f"it has {subjects(server, address, name)}\n{server.log_tail()}")
    return subjects(server, address, name)


def raw_message(server: Server, address: str, subject: str, name: str = "INBOX") -> bytes:
    """The stored bytes of the one message with `subject` in a folder."""
    found = [m for m in folder(server, address, name) or [] if m["subject"] == subject]
    assert len(found) == 1, f"{len(found)} messages {subject!r} in {name} of {address}"
    return message_bytes(server, address, found[0]["uid"], name)


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def parsed(t: Transaction) -> email.message.EmailMessage:
    return email.message_from_bytes(t.data, policy=email.policy.default)


def text_of(t: Transaction) -> str:
    """Everything readable in a message the sink got: the raw bytes and every decoded text
    part, with whitespace runs made single spaces (the reason may be folded or encoded)."""
    pieces = [t.data.decode("utf-8", "replace")]
    for part in email.message_from_bytes(t.data, policy=email.policy.compat32).walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if payload:
                pieces.append(payload.decode("utf-8", "replace"))
    return " ".join(" ".join(pieces).split())


def is_null(mail_from: str) -> bool:
    return mail_from in ("", "<>")


def settle_queue(env: Env) -> None:
    """Waits until the queue is empty, then a moment for anything late."""
    wait_queue_empty(env.server)
    time.sleep(SETTLE)
    wait_queue_empty(env.server)


def sent_to(sink: Sink, address: str) -> list[Transaction]:
    return [t for t in sink.transactions if address.lower() in (r.lower() for r in t.rcpt_tos)]


# ---------------------------------------------------------------------------------------------
# no script: no change
# ---------------------------------------------------------------------------------------------


def test_mail_without_an_active_script_is_stored_as_before(env):
    """Without an active script every recipient gets the message once in INBOX, byte for byte
    after the trace headers; a stored but inactive script does nothing (RFC 5804 §1.3)."""
    server = env.server
    put_script(env, BOB, 'require "fileinto";\nfileinto "Archive";\n', activate=False)
    msg = message("no script", to=f"{ALICE}, {BOB}")
    deliver(server, msg, [ALICE, BOB])
    for address in (ALICE, BOB):
        found = folder(server, address)
        assert len(found) == 1, f"{address}: {found}"
        trace = split_trace(message_bytes(server, address, found[0]["uid"]))
        assert trace.content == msg, f"stored {trace.content!r}\n  sent {msg!r}"
        assert trace.return_path == SENDER
        assert folder(server, address, "Archive") == []
    assert env.sink.transactions == []


# ---------------------------------------------------------------------------------------------
# fileinto, mailbox, imap4flags
# ---------------------------------------------------------------------------------------------

FILEINTO = r'''require ["fileinto", "mailbox"];
if header :is "Subject" "to archive" { fileinto "Archive"; }
elsif header :is "Subject" "to missing" { fileinto "NoSuchFolder"; }
elsif header :is "Subject" "to created" { fileinto :create "Created"; }
'''


def test_fileinto_existing_missing_and_create(env):
    """RFC 5228 §4.1 fileinto into an existing folder; a missing one without :create is an
    error that keeps the message in INBOX (RFC 5490 §3.2); `fileinto :create` makes it."""
    server = env.server
    put_script(env, ALICE, FILEINTO)
    for subject in ("to archive", "to missing", "to created", "no rule"):
        deliver(server, message(subject))
    assert wait_subjects(server, ALICE, "Archive", "to archive") == ["to archive"]
    assert wait_subjects(server, ALICE, "Created", "to created") == ["to created"]
    assert sorted(wait_subjects(server, ALICE, "INBOX", "to missing", "no rule")) == [
        "no rule", "to missing"]
    assert folder(server, ALICE, "NoSuchFolder") is None, "fileinto without :create made a folder"
    assert any("NoSuchFolder" in line for line in server.log().splitlines()), (
        f"the failed fileinto is not logged\n{server.log_tail()}")


def test_scripts_run_for_submitted_mail(env):
    """Scripts run at local delivery whichever way the mail came: here by submission."""
    server = env.server
    put_script(env, ALICE, 'require "fileinto";\nfileinto "Archive";\n')
    submit(server, BOB, [ALICE], message("submitted", sender=BOB), user=BOB, password=BOB_PW)
    assert wait_subjects(server, ALICE, "Archive", "submitted") == ["submitted"]
    assert subjects(server, ALICE) == []


IMAP4FLAGS = r'''require ["imap4flags", "fileinto"];
if header :is "Subject" "flag me" { addflag ["\\Flagged", "$Important"]; }
if header :is "Subject" "file flagged" { fileinto :flags "\\Seen project-x" "Archive"; }
'''


def test_imap4flags_are_imap_flags_and_keywords(env):
    """RFC 5232: addflag sets the flags of the implicit keep (§3), `fileinto :flags` those of
    the filed copy (§5); both are what IMAP FETCH FLAGS shows."""
    server = env.server
    put_script(env, ALICE, IMAP4FLAGS)
    deliver(server, message("flag me"))
    deliver(server, message("file flagged"))
    wait_subjects(server, ALICE, "INBOX", "flag me")
    wait_subjects(server, ALICE, "Archive", "file flagged")
    c = Imap.connect(server)
    try:
        c.login(ALICE, ALICE_PW)
        c.select("INBOX")
        inbox_flags = flags_of(c.fetch("1", "(FLAGS)")[1])
        assert {"\\flagged", "$important"} <= inbox_flags, inbox_flags
        assert "\\seen" not in inbox_flags, inbox_flags
        c.select("Archive")
        archive_flags = flags_of(c.fetch("1", "(FLAGS)")[1])
        assert {"\\seen", "project-x"} <= archive_flags, archive_flags
        assert "\\flagged" not in archive_flags, archive_flags
    finally:
        c.logout()


# ---------------------------------------------------------------------------------------------
# tests: body, variables, envelope, subaddress
# ---------------------------------------------------------------------------------------------


def test_body_test(env):
    """RFC 5173: `body :text` looks at the text of the body, transfer-decoded (§5.3), and never
    at the headers."""
    server = env.server
    put_script(env, ALICE, 'require ["body", "fileinto"];\n'
                           'if body :text :contains "magic-phrase" { fileinto "Archive"; }\n')
    deliver(server, message("plain body", body=b"Some text with the magic-phrase in it.\r\n"))
    deliver(server, message("only the subject has magic-phrase", body=b"Nothing here.\r\n"))
    encoded = base64.encodebytes(b"The magic-phrase, base64-encoded.\n").replace(b"\n", b"\r\n")
    multipart = (b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded +
                 b"--b1--\r\n")
    deliver(server, message("base64 part", body=multipart, headers=(
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n")))
    assert sorted(wait_subjects(server, ALICE, "Archive", "plain body", "base64 part")) == [
        "base64 part", "plain body"]
    assert subjects(server, ALICE) == ["only the subject has magic-phrase"]


def test_variables_from_a_match(env):
    """RFC 5229 §3.2: `:matches` sets ${1} to what the first wildcard matched."""
    server = env.server
    put_script(env, ALICE, 'require ["variables", "fileinto", "mailbox"];\n'
                           'if header :matches "Subject" "[*] *" { fileinto :create "${1}"; }\n')
    deliver(server, message("[reports] weekly numbers"))
    deliver(server, message("no brackets here"))
    assert wait_subjects(server, ALICE, "reports", "[reports] weekly numbers") == [
        "[reports] weekly numbers"]
    assert subjects(server, ALICE) == ["no brackets here"]


def test_envelope_test(env):
    """RFC 5228 §5.4: `envelope "from"` is the MAIL FROM address, not the From header."""
    server = env.server
    put_script(env, ALICE, 'require ["envelope", "fileinto"];\n'
                           'if envelope :domain :is "from" "partner.test" {\n'
                           '  fileinto "Archive";\n}\n')
    deliver(server, message("envelope from partner", sender="someone@elsewhere.test"),
            sender="news@partner.test")
    deliver(server, message("header from partner", sender="news@partner.test"),
            sender="someone@elsewhere.test")
    assert wait_subjects(server, ALICE, "Archive", "envelope from partner") == [
        "envelope from partner"]
    assert subjects(server, ALICE) == ["header from partner"]


def test_subaddress_detail_to_folder(env):
    """RFC 5233: mail for alice+lists@ reaches alice, and `envelope :detail "to"` is "lists"."""
    server = env.server
    put_script(env, ALICE, 'require ["envelope", "subaddress", "fileinto", "mailbox"];\n'
                           'if envelope :detail :is "to" "lists" { fileinto :create "Lists"; }\n')
    deliver(server, message("for the lists", to="alice+lists@example.test"),
            ["alice+lists@example.test"])
    deliver(server, message("plain address"))
    deliver(server, message("other detail", to="alice+other@example.test"),
            ["alice+other@example.test"])
    assert wait_subjects(server, ALICE, "Lists", "for the lists") == ["for the lists"]
    assert sorted(subjects(server, ALICE)) == ["other detail", "plain address"]


# ---------------------------------------------------------------------------------------------
# reject, ereject, discard
# ---------------------------------------------------------------------------------------------


def test_reject_by_every_recipient_is_refused_at_data(env):
    """RFC 5429 §2.1: when every recipient rejects, the refusal is the SMTP reply to DATA; no
    notice is sent and nothing is stored."""
    server = env.server
    put_script(env, ALICE, 'require "reject";\nreject "Your message is unwelcome here";\n')
    code, text = mx_send(server, SENDER, [ALICE], message("rejected"))
    assert code == 550 and text.startswith("5.7.1 "), (code, text)
    assert "Your message is unwelcome here" in text, text
    deliver(server, message("sentinel"), [BOB])
    settle_queue(env)
    assert folder(server, ALICE) == [] and folder(server, ALICE, "Junk") == []
    assert env.sink.transactions == [], "a notice was sent although DATA was refused"


def test_reject_by_some_recipients_sends_a_notice(env):
    """RFC 5429 §2.1: when only some recipients reject, the message is accepted for the others
    and the sender gets a notice from the server (null sender, RFC 5321 §4.5.5) with the
    reason; the rejecting recipient stores nothing."""
    server = env.server
    put_script(env, ALICE, 'require "reject";\nreject "Alice takes no mail about widgets";\n')
    msg = message("widgets", to=f"{ALICE}, {BOB}")
    code, text = mx_send(server, SENDER, [ALICE, BOB], msg)
    assert code == 250, (code, text)
    assert wait_subjects(server, BOB, "INBOX", "widgets") == ["widgets"]
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    assert is_null(t.mail_from), f"the notice must have the null sender, not {t.mail_from!r}"
    assert t.rcpt_tos == [SENDER], t
    notice = parsed(t)
    assert "MAILER-DAEMON" in str(notice["From"]), notice["From"]
    assert str(notice["Auto-Submitted"]).strip().lower().startswith("auto-replied"), (
        notice["Auto-Submitted"])
    assert "Alice takes no mail about widgets" in text_of(t), t.data
    settle_queue(env)
    assert len(env.sink.transactions) == 1, env.sink.transactions
    assert folder(server, ALICE) == []


def test_ereject_by_every_recipient_is_refused_at_data(env):
    """RFC 5429 §2.2: ereject refuses in the protocol."""
    server = env.server
    for address in (ALICE, BOB):
        put_script(env, address, 'require "ereject";\nereject "No thanks";\n')
    code, text = mx_send(server, SENDER, [ALICE, BOB], message("erejected"))
    assert code == 550 and text.startswith("5.7.1 "), (code, text)
    assert "No thanks" in text, text
    settle_queue(env)
    assert folder(server, ALICE) == [] and folder(server, BOB) == []
    assert env.sink.transactions == []


def test_discard(env):
    """RFC 5228 §4.5: discard cancels the implicit keep; the sender learns nothing."""
    server = env.server
    put_script(env, ALICE, 'if header :contains "Subject" "discard me" { discard; }\n')
    deliver(server, message("please discard me"))
    deliver(server, message("keep me"))
    assert wait_subjects(server, ALICE, "INBOX", "keep me") == ["keep me"]
    settle_queue(env)
    assert subjects(server, ALICE) == ["keep me"]
    assert env.sink.transactions == []


# ---------------------------------------------------------------------------------------------
# redirect
# ---------------------------------------------------------------------------------------------


def test_redirect_to_a_remote_address(env):
    """RFC 5228 §4.2: redirect sends the message unchanged to the new address, through the
    queue, with the original envelope sender; the implicit keep is cancelled."""
    server = env.server
    put_script(env, ALICE, 'redirect "carol@remote.test";\n')
    sender = "someone@elsewhere.test"
    msg = message("redirected away", sender=sender)
    deliver(server, msg, sender=sender)
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["carol@remote.test"], t
    assert t.mail_from == sender, f"envelope sender changed to {t.mail_from!r}"
    assert t.data.endswith(msg), f"relayed {t.data!r}\n    sent {msg!r}"
    assert not t.data.startswith(b"Return-Path:"), t.data[:200]
    added = t.data[: len(t.data) - len(msg)]
    # Only trace headers may come in front of the message.
    assert added == b"" or (added.endswith(b"\r\n") and b"\r\n\r\n" not in added), added
    settle_queue(env)
    assert folder(server, ALICE) == []
    assert len(env.sink.transactions) == 1


def test_redirect_copy_keeps_a_copy(env):
    """RFC 3894: `redirect :copy` does not cancel the implicit keep."""
    server = env.server
    put_script(env, ALICE, 'require "copy";\nredirect :copy "carol@remote.test";\n')
    msg = message("copied away")
    deliver(server, msg)
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["carol@remote.test"] and t.data.endswith(msg), t
    assert wait_subjects(server, ALICE, "INBOX", "copied away") == ["copied away"]
    assert split_trace(raw_message(server, ALICE, "copied away")).content == msg


def test_redirect_to_a_local_mailbox_runs_its_script(env):
    """A redirect to a local address is a delivery there, with that mailbox's own script."""
    server = env.server
    put_script(env, ALICE, f'redirect "{BOB}";\n')
    put_script(env, BOB, 'require ["fileinto", "mailbox"];\nfileinto :create "FromRedirect";\n')
    msg = message("handed to bob")
    deliver(server, msg)
    assert wait_subjects(server, BOB, "FromRedirect", "handed to bob") == ["handed to bob"]
    assert raw_message(server, BOB, "handed to bob", "FromRedirect").endswith(msg)
    settle_queue(env)
    assert folder(server, ALICE) == [] and folder(server, BOB) == []
    assert subjects(server, BOB, "FromRedirect") == ["handed to bob"]
    assert env.sink.transactions == []


def test_redirect_loop_is_bounded(env):
    """Alice redirects to bob and bob to alice: the loop is found, the message is kept once,
    and nothing stays in the queue."""
    server = env.server
    put_script(env, ALICE, f'redirect "{BOB}";\n')
    put_script(env, BOB, f'redirect "{ALICE}";\n')
    deliver(server, message("round and round"))

    def copies() -> int:
        return subjects(server, ALICE).count("round and round") + subjects(
            server, BOB).count("round and round")

    harness.wait_for(lambda: copies() >= 1, DELIVERY_TIMEOUT, "the looping message to be kept",
                     lambda: f"queue: {queue_list(server)}\n{server.log_tail()}")
    settle_queue(env)
    assert copies() == 1, (f"alice {subjects(server, ALICE)}, bob {subjects(server, BOB)}")
    assert queue_list(server) == []
    assert env.sink.transactions == [], "the loop ended in mail to the sender"


def test_redirect_to_oneself_is_keep(env):
    server = env.server
    put_script(env, ALICE, f'redirect "{ALICE}";\n')
    deliver(server, message("to myself"))
    assert wait_subjects(server, ALICE, "INBOX", "to myself") == ["to myself"]
    settle_queue(env)
    assert subjects(server, ALICE) == ["to myself"]
    assert env.sink.transactions == []


# ---------------------------------------------------------------------------------------------
# vacation
# ---------------------------------------------------------------------------------------------


def test_vacation_replies_once_per_sender_and_period(env):
    """RFC 5230 §5: the reply goes to the envelope sender with the null sender, From the
    recipient, `Auto-Submitted: auto-replied`, Subject "Auto: " + the original when there is
    no :subject, In-Reply-To the original Message-ID; one reply per sender per :days period
    (§4.1, §4.2); the message itself is kept."""
    server = env.server
    put_script(env, ALICE, 'require "vacation";\nvacation :days 1 "I am away until Monday.";\n')
    s1, s2 = "first@remote.test", "second@remote.test"
    first = message("first question", sender=s1)
    deliver(server, first, sender=s1)
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    assert is_null(t.mail_from), f"a vacation reply must have the null sender: {t.mail_from!r}"
    assert t.rcpt_tos == [s1], t
    reply = parsed(t)
    assert s1 in str(reply["To"]), reply["To"]
    assert ALICE in str(reply["From"]), reply["From"]
    assert str(reply["Auto-Submitted"]).strip().lower().startswith("auto-replied"), (
        reply["Auto-Submitted"])
    assert str(reply["Subject"]) == "Auto: first question", reply["Subject"]
    assert str(reply["In-Reply-To"]).strip() == message_id_of(first), reply["In-Reply-To"]
    assert "I am away until Monday." in text_of(t), t.data

    deliver(server, message("second question", sender=s1), sender=s1)
    deliver(server, message("from someone else", sender=s2), sender=s2)
    env.sink.wait_accepted(2, log=server.log_tail)
    settle_queue(env)
    assert len(sent_to(env.sink, s1)) == 1, f"{s1} got {len(sent_to(env.sink, s1))} replies"
    assert len(sent_to(env.sink, s2)) == 1, env.sink.transactions
    assert len(env.sink.transactions) == 2, env.sink.transactions
    assert sorted(subjects(server, ALICE)) == [
        "first question", "from someone else", "second question"]


def test_vacation_does_not_answer_automatic_or_list_mail(env):
    """RFC 5230 §4.6 and RFC 3834 §2: no reply to the null sender, to mailing-list mail
    (List-Id, List-Unsubscribe), to Precedence: bulk, to Auto-Submitted other than "no"; and
    none when the recipient is not in To or Cc (RFC 5230 §4.5)."""
    server = env.server
    put_script(env, ALICE, 'require "vacation";\nvacation :days 1 :subject "Away" "Away.";\n')
    cases = [
        ("", message("a bounce", sender="daemon@remote.test")),
        ("list1@remote.test", message("list id", sender="list1@remote.test",
                                      headers=b"List-Id: <news.remote.test>\r\n")),
        ("list2@remote.test", message("list unsubscribe", sender="list2@remote.test",
                                      headers=b"List-Unsubscribe: <mailto:u@remote.test>\r\n")),
        ("bulk@remote.test", message("bulk", sender="bulk@remote.test",
                                     headers=b"Precedence: bulk\r\n")),
        ("auto@remote.test", message("auto generated", sender="auto@remote.test",
                                     headers=b"Auto-Submitted: auto-generated\r\n")),
        ("bcc@remote.test", message("not addressed to alice", sender="bcc@remote.test",
                                    to="someone-else@remote.test")),
    ]
    for sender, msg in cases:
        deliver(server, msg, sender=sender)
    # Auto-Submitted: no is a person's message: answered.
    deliver(server, message("a person", sender="person@remote.test",
                            headers=b"Auto-Submitted: no\r\n"), sender="person@remote.test")
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["person@remote.test"], (
        f"a reply went to {t.rcpt_tos}, which must not be answered")
    assert str(parsed(t)["Subject"]) == "Away"
    settle_queue(env)
    assert [t.rcpt_tos for t in env.sink.transactions] == [["person@remote.test"]], (
        [t.rcpt_tos for t in env.sink.transactions])
    assert len(subjects(server, ALICE)) == len(cases) + 1


def test_vacation_cli(env):
    """`vacation set|show|clear`: the generated script answers before the mailbox's own script
    runs (which still files the message), and is gone after clear."""
    server = env.server
    put_script(env, ALICE, 'require "fileinto";\nfileinto "Archive";\n')
    server.admin("vacation", "set", ALICE, "--subject", "Out of office",
                 "--message", "Back on Monday.", "--days", "3")
    shown = server.admin("vacation", "show", ALICE).stdout
    assert "Out of office" in shown and "Back on Monday." in shown, shown

    s1 = "one@remote.test"
    first = message("are you there", sender=s1)
    deliver(server, first, sender=s1)
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    reply = parsed(t)
    assert t.rcpt_tos == [s1] and is_null(t.mail_from), t
    assert str(reply["Subject"]) == "Out of office", reply["Subject"]
    assert str(reply["In-Reply-To"]).strip() == message_id_of(first)
    assert "Back on Monday." in text_of(t), t.data
    assert wait_subjects(server, ALICE, "Archive", "are you there") == ["are you there"]

    server.admin("vacation", "clear", ALICE)
    shown = server.admin("vacation", "show", ALICE, check=False)
    assert "Out of office" not in shown.stdout + shown.stderr, harness.describe(shown)
    s2 = "two@remote.test"
    deliver(server, message("still away?", sender=s2), sender=s2)
    wait_subjects(server, ALICE, "Archive", "still away?")
    settle_queue(env)
    assert sent_to(env.sink, s2) == [], "a reply after vacation clear"

    # A period that starts in the future answers nobody yet; --message-file is the text.
    text = env.tmp / "vacation.txt"
    text.write_text("Travelling next century.\n")
    server.admin("vacation", "set", ALICE, "--subject", "Later", "--message-file", str(text),
                 "--from", "2099-01-01", "--until", "2099-12-31")
    assert "Later" in server.admin("vacation", "show", ALICE).stdout
    s3 = "three@remote.test"
    deliver(server, message("before the period", sender=s3), sender=s3)
    wait_subjects(server, ALICE, "Archive", "before the period")
    settle_queue(env)
    assert sent_to(env.sink, s3) == [], "a reply before the vacation's --from date"
    assert len(env.sink.transactions) == 1


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------


def test_forward_cli_with_and_without_keep(env):
    """`forward set|show|clear`: without --keep the message goes only to the targets (local
    and remote, envelope sender unchanged); with --keep a copy stays; after clear nothing is
    forwarded."""
    server = env.server
    server.admin("forward", "set", ALICE, "--to", "ext@remote.test", "--to", BOB)
    shown = server.admin("forward", "show", ALICE).stdout
    assert "ext@remote.test" in shown and BOB in shown, shown

    msg = message("forward without keep")
    deliver(server, msg)
    [t] = env.sink.wait_accepted(1, log=server.log_tail)
    assert t.rcpt_tos == ["ext@remote.test"] and t.mail_from == SENDER, t
    assert t.data.endswith(msg)
    assert wait_subjects(server, BOB, "INBOX", "forward without keep") == ["forward without keep"]
    settle_queue(env)
    assert subjects(server, ALICE) == []

    server.admin("forward", "set", ALICE, "--to", "ext@remote.test", "--keep")
    shown = server.admin("forward", "show", ALICE).stdout
    assert "ext@remote.test" in shown and BOB not in shown, shown
    deliver(server, message("forward with keep"))
    env.sink.wait_accepted(2, log=server.log_tail)
    assert wait_subjects(server, ALICE, "INBOX", "forward with keep") == ["forward with keep"]
    settle_queue(env)
    assert subjects(server, BOB) == ["forward without keep"]

    server.admin("forward", "clear", ALICE)
    shown = server.admin("forward", "show", ALICE, check=False)
    assert "ext@remote.test" not in shown.stdout, harness.describe(shown)
    deliver(server, message("not forwarded"))
    wait_subjects(server, ALICE, "INBOX", "not forwarded")
    settle_queue(env)
    assert len(env.sink.transactions) == 2, env.sink.transactions


# ---------------------------------------------------------------------------------------------
# global filters
# ---------------------------------------------------------------------------------------------

JUNK_PRE = r'''require "fileinto";
if header :contains "Subject" "SPAM" { fileinto "Junk"; stop; }
'''
PERSONAL = 'require ["fileinto", "mailbox"];\nfileinto :create "Personal";\n'


def test_domain_pre_filter_runs_before_the_users_script(make_server, tmp_path, peers):
    """A domain's pre-filter that files and stops ends filtering (RFC 6609 §3.2 semantics of
    stop): the user's script does not run. It applies to that domain only, is listed by
    `sieve global list`, and `sieve global clear` removes it, at once."""
    env = make_env(make_server, tmp_path, peers, with_other_domain=True)
    server = env.server
    put_script(env, ALICE, PERSONAL)
    put_script(env, CAROL, PERSONAL)
    set_global(env, DOMAIN, "pre", JUNK_PRE)
    listed = json.dumps(server.admin_json("sieve", "global", "list"))
    assert DOMAIN in listed and "pre" in listed, listed

    deliver(server, message("SPAM offer"))
    deliver(server, message("hello alice"))
    deliver(server, message("SPAM offer", to=CAROL), [CAROL])
    assert wait_subjects(server, ALICE, "Junk", "SPAM offer") == ["SPAM offer"]
    assert wait_subjects(server, ALICE, "Personal", "hello alice") == ["hello alice"]
    assert wait_subjects(server, CAROL, "Personal", "SPAM offer") == ["SPAM offer"]
    assert subjects(server, ALICE) == [] and subjects(server, CAROL, "Junk") == []

    server.admin("sieve", "global", "clear", "--domain", DOMAIN, "--phase", "pre")
    assert DOMAIN not in json.dumps(server.admin_json("sieve", "global", "list"))
    deliver(server, message("SPAM again"))
    assert "SPAM again" in wait_subjects(server, ALICE, "Personal", "SPAM again")
    assert subjects(server, ALICE, "Junk") == ["SPAM offer"]


POST = 'require ["fileinto", "mailbox"];\nfileinto :create "Post";\n'


def test_server_wide_post_filter_runs_after_the_users_script(env):
    """The server-wide post-filter runs after the user's script (not when it stops) and for
    mailboxes without a script of their own."""
    server = env.server
    put_script(env, ALICE, 'require "fileinto";\n'
                           'if header :contains "Subject" "private" {\n'
                           '  fileinto "Archive";\n  stop;\n}\n')
    set_global(env, None, "post", POST)
    deliver(server, message("private note"))
    deliver(server, message("ordinary note"))
    deliver(server, message("for bob", to=BOB), [BOB])
    assert wait_subjects(server, ALICE, "Archive", "private note") == ["private note"]
    assert wait_subjects(server, ALICE, "Post", "ordinary note") == ["ordinary note"]
    assert wait_subjects(server, BOB, "Post", "for bob") == ["for bob"]
    assert subjects(server, ALICE) == [] and subjects(server, BOB) == []

    server.admin("sieve", "global", "clear", "--all", "--phase", "post")
    deliver(server, message("after clear"))
    assert wait_subjects(server, ALICE, "INBOX", "after clear") == ["after clear"]
    assert subjects(server, ALICE, "Post") == ["ordinary note"]


# ---------------------------------------------------------------------------------------------
# duplicate, editheader
# ---------------------------------------------------------------------------------------------


def test_duplicate_discards_a_second_copy(env):
    """RFC 7352 §3: `duplicate` is true for a Message-ID already seen."""
    server = env.server
    put_script(env, ALICE, 'require "duplicate";\nif duplicate { discard; stop; }\n')
    mid = f"<{uuid.uuid4().hex}@client.test>"
    deliver(server, message("original", message_id=mid))
    deliver(server, message("same id again", message_id=mid))
    deliver(server, message("another id"))
    wait_subjects(server, ALICE, "INBOX", "original", "another id")
    settle_queue(env)
    assert subjects(server, ALICE) == ["original", "another id"]


def test_editheader_changes_the_stored_copy(env):
    """RFC 5293: addheader and deleteheader change the message that is kept."""
    server = env.server
    put_script(env, ALICE, 'require "editheader";\naddheader "X-Filtered" "yes";\n'
                           'deleteheader "X-Spam-Flag";\n')
    body = b"Body stays as it is.\r\n"
    deliver(server, message("edited", headers=b"X-Spam-Flag: YES\r\n", body=body))
    wait_subjects(server, ALICE, "INBOX", "edited")
    raw = raw_message(server, ALICE, "edited")
    head = header_block(raw)
    assert re.search(rb"(?m)^X-Filtered: yes\r$", head), head
    assert b"X-Spam-Flag" not in head, head
    assert raw.endswith(b"\r\n\r\n" + body), raw


# ---------------------------------------------------------------------------------------------
# errors: runtime errors, broken scripts, hop count
# ---------------------------------------------------------------------------------------------


def test_runtime_error_keeps_the_message_in_inbox(env):
    """RFC 6609 §3.2: including a script that does not exist (without :optional) is a runtime
    error; RFC 5228 §2.10.6: the message is then kept, never lost."""
    server = env.server
    main = 'require ["include", "fileinto"];\ninclude :personal "part";\nfileinto "Archive";\n'
    proc = server.admin("sieve", "put", ALICE, "main", str(script_file(env, main)),
                        "--activate", check=False)
    if proc.returncode != 0:
        # Refused while "part" does not exist: store it first, then take it away again.
        put_script(env, ALICE, "keep;\n", name="part", activate=False)
        put_script(env, ALICE, main)
        server.admin("sieve", "remove", ALICE, "part")
    deliver(server, message("include fails"))
    assert "include fails" in wait_subjects(server, ALICE, "INBOX", "include fails")


BROKEN = [
    ('require "fileinto";\n\nif true {\n  fileinto "x"\n}\n', 5),
    ('require "fileinto";\nrequire ["regex"];\nkeep;\n', 2),
]


@pytest.mark.parametrize("text,line", BROKEN, ids=["syntax", "unsupported-extension"])
def test_broken_script_is_refused_with_its_line(env, text, line):
    """`sieve put` checks the script and names the line of the error; the script stored under
    that name before stays as it was (RFC 5804 §2.6 PUTSCRIPT semantics)."""
    server = env.server
    good = 'require "fileinto";\nfileinto "Archive";\n'
    put_script(env, ALICE, good)
    proc = server.admin("sieve", "put", ALICE, "main", str(script_file(env, text)), check=False)
    assert proc.returncode != 0, harness.describe(proc)
    assert f"line {line}:" in proc.stdout + proc.stderr, harness.describe(proc)
    proc = server.admin("sieve", "put", ALICE, "other", "-", input=text, check=False)
    assert proc.returncode != 0 and f"line {line}:" in proc.stdout + proc.stderr, (
        harness.describe(proc))
    assert server.admin("sieve", "show", ALICE, "main").stdout.strip() == good.strip()
    assert "other" not in script_names(server, ALICE)
    deliver(server, message("still filtered"))
    assert wait_subjects(server, ALICE, "Archive", "still filtered") == ["still filtered"]


#: Received header fields a message may carry; one more is taken for a loop.
HOP_LIMIT = 100


def received_lines(n: int) -> bytes:
    return b"".join(
        f"Received: from hop{i}.remote.test by relay{i}.remote.test; "
        "Sat, 21 Nov 2026 10:00:00 +0000\r\n".encode() for i in range(n))


def test_hop_count_limit(env):
    """More than HOP_LIMIT Received headers is taken for a loop (RFC 5321 §6.3): refused at
    DATA with 554 5.4.6 (RFC 3463: routing loop detected), nothing stored. HOP_LIMIT are still
    accepted."""
    server = env.server
    too_many = received_lines(HOP_LIMIT + 1) + message("looping")
    code, text = mx_send(server, SENDER, [ALICE], too_many)
    assert code == 554 and text.startswith("5.4.6"), (code, text)
    deliver(server, received_lines(HOP_LIMIT) + message("at the limit"))
    assert wait_subjects(server, ALICE, "INBOX", "at the limit") == ["at the limit"]
    settle_queue(env)
    assert subjects(server, ALICE) == ["at the limit"]


# ---------------------------------------------------------------------------------------------
# the sieve admin commands
# ---------------------------------------------------------------------------------------------


def script_names(server: Server, address: str) -> dict[str, bool]:
    """`sieve list ADDRESS --json` as {name: active}."""
    data = server.admin_json("sieve", "list", address)
    if isinstance(data, dict):
        data = data.get("scripts", data)
    return {s["name"]: bool(s["active"]) for s in data}


def test_sieve_list_activate_deactivate_show_remove(env):
    """At most one active script (RFC 5804 §1.3); switching it changes delivery at once."""
    server = env.server
    a = 'require "fileinto";\nfileinto "Archive";\n'
    b = 'require ["fileinto", "mailbox"];\nfileinto :create "B";\n'
    put_script(env, ALICE, a, name="a", activate=False)
    server.admin("sieve", "put", ALICE, "b", "-", "--activate", input=b)
    assert script_names(server, ALICE) == {"a": False, "b": True}
    assert server.admin("sieve", "show", ALICE, "b").stdout.strip() == b.strip()
    deliver(server, message("while b"))
    assert wait_subjects(server, ALICE, "B", "while b") == ["while b"]

    server.admin("sieve", "activate", ALICE, "a")
    assert script_names(server, ALICE) == {"a": True, "b": False}
    deliver(server, message("while a"))
    assert wait_subjects(server, ALICE, "Archive", "while a") == ["while a"]

    server.admin("sieve", "deactivate", ALICE)
    assert script_names(server, ALICE) == {"a": False, "b": False}
    deliver(server, message("none active"))
    assert wait_subjects(server, ALICE, "INBOX", "none active") == ["none active"]

    server.admin("sieve", "remove", ALICE, "b")
    assert script_names(server, ALICE) == {"a": False}
    proc = server.admin("sieve", "show", ALICE, "b", check=False)
    assert proc.returncode != 0, harness.describe(proc)
    assert subjects(server, ALICE, "B") == ["while b"]
    assert subjects(server, ALICE, "Archive") == ["while a"]
