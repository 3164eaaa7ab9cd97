"""End-to-end tests of the foundation: `init`, the configuration file and its messages, `serve`
(start, run files, lock, signals, restart), the admin commands, and `doctor`. They run the real
binary; where the binary gives a message, the test checks the exact text a person would read."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time

import pytest

import harness
from harness import HOSTNAME, LOOPBACK_ENV, Server, run

GIB = 1 << 30
PORT_ALLOWED = "a port (0-65535) or IP:PORT, e.g. 25, 192.0.2.1:25 or [2001:db8::1]:25"
DEV_PORTS = {
    "SMTP_PORT": "127.0.0.1:2525",
    "SMTPS_PORT": "127.0.0.1:2465",
    "SUBMISSION_PORT": "127.0.0.1:2587",
    "IMAP_PORT": "127.0.0.1:1143",
    "IMAPS_PORT": "127.0.0.1:1993",
    "POP_PORT": "127.0.0.1:1110",
    "POPS_PORT": "127.0.0.1:1995",
    "SIEVE_PORT": "127.0.0.1:4190",
    "HTTP_PORT": "8080",
    "HTTP_BIND": "127.0.0.1",
    "HTTPS_PORT": "8443",
    "HTTPS_BIND": "127.0.0.1",
}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def fails_with(proc: subprocess.CompletedProcess, *texts: str, code: int = 1) -> None:
    """The command exited with `code` and its standard error contains every text."""
    assert proc.returncode == code, harness.describe(proc)
    for text in texts:
        assert text in proc.stderr, f"expected {text!r} in stderr\n{harness.describe(proc)}"


def checks(report: dict, name: str, status: str | None = None) -> list[dict]:
    return [
        c
        for c in report["checks"]
        if c["check"] == name and (status is None or c["status"] == status)
    ]


def messages(report: dict, name: str, status: str | None = None) -> list[str]:
    return [c["message"] for c in checks(report, name, status)]


# ---------------------------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------------------------


def test_init_writes_config_certificate_and_admin(data_dir):
    proc = run("init", "--json", "--hostname", "Mail.Example.TEST", "--tz", "UTC",
               "--data-dir", str(data_dir))
    info = json.loads(proc.stdout)
    conf = data_dir / "mailstead.conf"
    assert info == {
        "data_dir": str(data_dir),
        "config": str(conf),
        "hostname": "mail.example.test",
        "certificate": str(data_dir / "tls" / "cert.pem"),
        "admin": "admin",
        "password": info["password"],
    }
    assert re.fullmatch(r"[A-Za-z0-9]{20}", info["password"]), info["password"]

    assert mode(conf) == 0o600
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "tls" / "key.pem") == 0o600
    assert "BEGIN CERTIFICATE" in (data_dir / "tls" / "cert.pem").read_text()
    assert "PRIVATE KEY" in (data_dir / "tls" / "key.pem").read_text()

    text = conf.read_text()
    lines = text.splitlines()
    for key in harness.config_keys():
        assert sum(1 for l in lines if l.startswith(f"{key}=")) == 1, f"{key}= once in\n{text}"
    assert "MAILCOW_HOSTNAME=mail.example.test" in lines
    assert "TZ=UTC" in lines
    session_key = next(l for l in lines if l.startswith("SESSION_KEY="))[len("SESSION_KEY="):]
    assert len(session_key) >= 32
    # Every key is documented: the line before each assignment is a comment.
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"{line!r} has no comment above it"
    assert info["password"] not in text
    run("config", "check", "--data-dir", str(data_dir))


def test_init_prints_the_password_once(data_dir):
    out = run("init", "--hostname", HOSTNAME, "--tz", "UTC", "--data-dir", str(data_dir)).stdout
    found = re.findall(r"password\s+([A-Za-z0-9]{20})\s+<- shown only now", out)
    assert len(found) == 1, out
    assert out.count(found[0]) == 1, out
    assert "mailstead is set up in" in out
    assert f"mailstead serve --data-dir {data_dir}" in out


def test_init_refuses_to_overwrite_without_force(make_server):
    server = make_server()
    before = server.config_text()
    proc = server.admin("init", "--hostname", HOSTNAME, check=False)
    fails_with(
        proc,
        f"{server.config_path} already exists; pass --force to rewrite it (the values it "
        "sets, mail and accounts are kept; the administrator gets a new password)",
    )
    assert server.config_text() == before
    assert proc.stdout == ""


def test_init_force_gives_a_new_password_and_keeps_accounts(make_server):
    server = make_server()
    old_password = server.admin_password
    server.add_domain("example.test")
    server.add_mailbox("alice@example.test")
    server.add_alias("info@example.test", "alice@example.test")

    server.set_config("SMTP_PORT", "127.0.0.1:2599")
    session_key = next(l for l in server.config_text().splitlines() if l.startswith("SESSION_KEY="))
    new = server.init("--force")
    assert re.fullmatch(r"[A-Za-z0-9]{20}", new["password"])
    assert new["password"] != old_password
    # The values the old file set are kept, the secret too.
    assert "\nSMTP_PORT=127.0.0.1:2599\n" in server.config_text()
    assert session_key in server.config_text().splitlines()
    assert [d["domain"]["name"] for d in server.admin_json("domain", "list")] == ["example.test"]
    assert [m["address"] for m in server.admin_json("mailbox", "list")] == ["alice@example.test"]
    assert [a["address"] for a in server.admin_json("alias", "list")] == ["info@example.test"]


def test_init_without_hostname_and_without_terminal_fails(data_dir):
    proc = run("init", "--data-dir", str(data_dir), check=False)
    fails_with(proc, "mailstead: give the server's host name with --hostname mail.example.com")
    assert not (data_dir / "mailstead.conf").exists()


@pytest.mark.parametrize(
    "hostname, reason",
    [
        ("mail", "mail is not fully qualified; use the name of the MX host, e.g. mail.example.com"),
        ("bad_name.example.com", ""),
    ],
)
def test_init_rejects_a_bad_hostname(data_dir, hostname, reason):
    proc = run("init", "--hostname", hostname, "--data-dir", str(data_dir), check=False)
    if reason:
        fails_with(proc, f'--hostname "{hostname}": {reason}')
        assert proc.stderr.count("example.com") == 1, "the advice is given once"
    else:
        fails_with(proc, f'--hostname "{hostname}" is not a host name; use a fully qualified '
                         "name such as mail.example.com")
    assert not (data_dir / "mailstead.conf").exists()


def test_init_rejects_a_bad_time_zone(data_dir):
    proc = run("init", "--hostname", HOSTNAME, "--tz", "Mars/Olympus",
               "--data-dir", str(data_dir), check=False)
    fails_with(proc, '--tz "Mars/Olympus" is not a time zone: '
                     "Mars/Olympus is not a zone in /usr/share/zoneinfo")


def test_init_dev_writes_the_development_ports(data_dir):
    info = json.loads(run("init", "--dev", "--json", "--data-dir", str(data_dir)).stdout)
    assert "." in info["hostname"]
    lines = (data_dir / "mailstead.conf").read_text().splitlines()
    for key, value in DEV_PORTS.items():
        assert f"{key}={value}" in lines
    assert f"MAILCOW_HOSTNAME={info['hostname']}" in lines
    assert lines[0].startswith("# mailstead configuration, written by `mailstead init` --dev")


# ---------------------------------------------------------------------------------------------
# configuration errors
# ---------------------------------------------------------------------------------------------


def test_bad_value_names_key_line_value_and_what_is_allowed(make_server):
    server = make_server()
    line = server.set_config("SMTP_PORT", '"smtp"')
    expected = (
        f'{server.config_path} line {line}: SMTP_PORT="smtp": not valid; allowed: {PORT_ALLOWED}'
    )
    fails_with(server.admin("config", "check", check=False), expected)
    # The environment would override the file's SMTP_PORT, so serve runs without that variable.
    proc = server.serve_once(env={"SMTP_PORT": None})
    fails_with(proc, "the configuration has errors:", expected)
    assert "mailstead is ready" not in proc.stderr
    code, report = server.doctor()
    assert code == 1 and report["ok"] is False
    assert any(expected in m for m in messages(report, "config", "fail")), report


def test_every_bad_value_is_reported_at_once(make_server):
    server = make_server()
    first = server.set_config("MAX_CONNECTIONS", "0")
    second = server.set_config("SHUTDOWN_TIMEOUT", "soon")
    proc = server.admin("config", "check", check=False)
    fails_with(
        proc,
        f'{server.config_path} line {first}: MAX_CONNECTIONS="0": 0 is out of range; '
        "allowed: a whole number from 1 to 1000000",
        f'{server.config_path} line {second}: SHUTDOWN_TIMEOUT="soon": not valid; '
        "allowed: a duration such as 30s, 5m, 2h or 5d, from 0s to 1h",
    )


def test_http_port_with_an_address_says_to_use_http_bind(make_server):
    server = make_server()
    line = server.set_config("HTTP_PORT", "127.0.0.1:8080")
    expected = (
        f'{server.config_path} line {line}: HTTP_PORT="127.0.0.1:8080": HTTP_PORT takes a bare '
        "port, not IP:PORT; set HTTP_PORT=8080 and HTTP_BIND=127.0.0.1 instead; "
        "allowed: a port number (0-65535)"
    )
    fails_with(server.admin("config", "check", check=False), expected)
    fails_with(server.serve_once(env={"HTTP_PORT": None}), expected)


def test_unknown_key_is_a_warning_with_its_line(make_server):
    server = make_server()
    line = server.append_config("SMTP_PROT=2525")
    warning = (
        f"{server.config_path} line {line}: "
        "unknown key SMTP_PROT is ignored; did you mean SMTP_PORT?"
    )
    proc = server.admin("config", "check")
    assert f"warning: {warning}" in proc.stdout.splitlines(), proc.stdout
    assert proc.stdout.splitlines()[-1] == f"{server.config_path} is valid"
    server.start()
    assert re.search(r"WARN.*" + re.escape(warning), server.log()), server.log_tail()
    code, report = server.doctor()
    assert warning in messages(report, "config", "warn"), report


def test_mailcow_key_is_a_note(make_server):
    server = make_server()
    line = server.append_config("DBPASS=secret-of-mariadb")
    note = (
        f"{server.config_path} line {line}: DBPASS is a mailcow key with no effect here: "
        "there is no MariaDB; metadata lives in DATA_DIR (see STORE)"
    )
    proc = server.admin("config", "check")
    assert f"note: {note}" in proc.stdout.splitlines(), proc.stdout
    assert "warning" not in proc.stdout
    server.start()
    assert note in server.log(), server.log_tail()
    assert "secret-of-mariadb" not in server.log()


def test_environment_override_error_names_the_environment(make_server):
    server = make_server()
    expected = f'environment: SMTP_PORT="smtp": not valid; allowed: {PORT_ALLOWED}'
    fails_with(server.admin("config", "check", check=False, env={"SMTP_PORT": "smtp"}), expected)
    fails_with(server.serve_once(env={"SMTP_PORT": "smtp"}), expected)


def test_environment_overrides_the_file(make_server):
    server = make_server()
    server.set_config("SMTP_PORT", "smtp")
    server.admin("config", "check", env={"SMTP_PORT": "2525"})


@pytest.mark.parametrize(
    "first, second",
    [
        ("127.0.0.1:2500", "127.0.0.1:2500"),
        ("2500", "127.0.0.1:2500"),  # every address includes 127.0.0.1
    ],
)
def test_two_listeners_on_one_port_are_refused(make_server, first, second):
    server = make_server()
    server.set_config("IMAP_PORT", first)
    line = server.set_config("POP_PORT", second)
    expected = (
        f'{server.config_path} line {line}: POP_PORT="{second}": the same address as IMAP_PORT; '
        "every listener needs its own port"
    )
    fails_with(server.admin("config", "check", check=False), expected)
    fails_with(server.serve_once(env={"IMAP_PORT": None, "POP_PORT": None}), expected)


def test_listeners_on_different_addresses_may_share_a_port(make_server):
    server = make_server()
    server.set_config("IMAP_PORT", "127.0.0.1:2500")
    server.set_config("POP_PORT", "127.0.0.2:2500")
    server.admin("config", "check")


def test_config_reference_documents_every_key():
    out = run("config", "reference").stdout
    assert out.startswith("# Configuration reference\n")
    for key in ("MAILCOW_HOSTNAME", "SMTP_PORT", "HTTP_BIND", "SHUTDOWN_TIMEOUT", "TLS_CERT"):
        assert f"| `{key}` |" in out


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------


def test_serve_writes_its_run_files_and_logs_its_listeners(server):
    assert server.pid_path.read_text() == f"{server.pid}\n"
    listeners = json.loads(server.listeners_path.read_text())
    assert isinstance(listeners, list)
    log = server.log()
    assert "mailstead is ready" in log
    assert f"listeners={len(listeners)}" in log
    for entry in listeners:
        assert set(entry) == {"name", "key", "address", "port", "implicit_tls"}, entry
        assert entry["key"] in LOOPBACK_ENV, entry
        assert entry["address"] == f"127.0.0.1:{entry['port']}", entry
        assert entry["port"] != 0
        assert re.search(
            rf"listening.*key={entry['key']}.*address={re.escape(entry['address'])}", log
        ), log
        socket.create_connection(server.address(entry["key"]), timeout=5).close()
    assert log.count(" listening") == len(listeners), log


def test_serve_without_configuration_says_how_to_create_one(data_dir):
    proc = run("serve", "--data-dir", str(data_dir), check=False, timeout=15)
    fails_with(
        proc,
        f"no configuration at {data_dir}/mailstead.conf; "
        f"create one with `mailstead init --data-dir {data_dir}`",
    )


def test_second_serve_on_the_same_directory_is_refused(server):
    proc = server.serve_once()
    fails_with(proc, f"another mailstead (pid {server.pid}) already serves {server.data_dir}")
    assert server.running
    assert server.pid_path.read_text() == f"{server.pid}\n"
    assert server.listeners_path.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(server, sig):
    assert server.stop(sig) == 0, server.log_tail()
    assert not server.listeners_path.exists()
    assert not server.pid_path.exists()
    log = server.log()
    assert "shutting down" in log and "stopped" in log, log
    # The lock was released: the directory can be served again.
    server.start()


def test_store_survives_restart(server):
    server.add_domain("kept.test")
    server.add_mailbox("bob@kept.test", name="Bob")
    server.restart()
    names = [d["domain"]["name"] for d in server.admin_json("domain", "list")]
    assert "kept.test" in names
    assert server.admin_json("mailbox", "show", "bob@kept.test")["name"] == "Bob"


def test_restart_after_sigkill(server):
    server.add_domain("crash.test")
    server.kill()
    # A killed server leaves its run files; the lock died with it.
    assert server.pid_path.exists()
    server.start()
    assert server.pid_path.read_text() == f"{server.pid}\n"
    assert "crash.test" in [d["domain"]["name"] for d in server.admin_json("domain", "list")]


def test_sighup_reloads_the_certificate(server):
    server.send_signal(signal.SIGHUP)
    server.wait_log("certificate reloaded")
    assert server.running
    good = server.cert_path.read_text()
    server.cert_path.write_text("not a certificate\n")
    server.send_signal(signal.SIGHUP)
    server.wait_log("certificate reload failed; keeping the old one")
    assert server.running
    server.cert_path.write_text(good)
    assert server.stop() == 0


def test_shutdown_timeout_zero_still_exits_cleanly(make_server):
    server = make_server(env={"SHUTDOWN_TIMEOUT": "0s"})
    server.start()
    assert server.stop() == 0, server.log_tail()


def test_serve_reports_who_holds_a_port(make_server, port_holder):
    """A listener whose port another process holds stops the start and names that process.
    Needs a service with a listener (SMTP); skipped until one exists."""
    server = make_server()
    probe = server.start()
    keys = [e["key"] for e in probe.listeners]
    probe.stop()
    if not keys:
        pytest.skip("no service has listeners yet")
    key = keys[0]
    port, pid, comm = port_holder
    proc = server.serve_once(env={key: f"127.0.0.1:{port}"})
    fails_with(proc, f"the port is held by {comm} (pid {pid}) on 127.0.0.1:{port}")


# ---------------------------------------------------------------------------------------------
# admin commands
# ---------------------------------------------------------------------------------------------


def test_domain_life_cycle(make_server):
    server = make_server()
    created = server.add_domain("Shop.Example.TEST", description="the shop")
    assert created == {
        "name": "shop.example.test",
        "description": "the shop",
        "max_mailboxes": 10,
        "max_aliases": 400,
        "default_quota": 3 * GIB,
        "max_quota": 10 * GIB,
        "total_quota": 10 * GIB,
        "active": True,
        "created": created["created"],
        "modified": created["modified"],
    }
    assert abs(created["created"] - time.time()) < 300

    fails_with(server.admin("domain", "add", "shop.example.test", check=False),
               "domain shop.example.test already exists")

    listed = server.admin_json("domain", "list")
    assert listed == [{
        "domain": created,
        "usage": {"mailboxes": 0, "aliases": 0, "quota_assigned": 0,
                  "unlimited_mailboxes": 0, "bytes_used": 0},
    }]
    assert server.admin_json("domain", "show", "shop.example.test") == listed[0]
    table = server.admin("domain", "list").stdout.splitlines()
    assert table[0].split() == ["DOMAIN", "MAILBOXES", "ALIASES", "QUOTA", "ASSIGNED", "ACTIVE"]
    assert table[1].split() == ["shop.example.test", "0/10", "0/400", "0/10G", "yes"], table

    edited = server.admin_json("domain", "edit", "shop.example.test", "--description", "new",
                               "--max-mailboxes", "5", "--max-quota", "2G",
                               "--default-quota", "1G", "--active", "n")
    assert (edited["description"], edited["max_mailboxes"], edited["max_quota"],
            edited["default_quota"], edited["active"]) == ("new", 5, 2 * GIB, GIB, False)
    shown = server.admin("domain", "show", "shop.example.test").stdout
    assert re.search(r"^mailboxes\s+0 of 5$", shown, re.MULTILINE), shown
    assert re.search(r"^active\s+no$", shown, re.MULTILINE), shown

    assert server.admin("domain", "remove", "shop.example.test").stdout == (
        "removed domain shop.example.test\n"
    )
    assert server.admin_json("domain", "list") == []
    fails_with(server.admin("domain", "show", "shop.example.test", check=False),
               "mailstead: domain shop.example.test does not exist")
    fails_with(server.admin("domain", "remove", "shop.example.test", check=False),
               "domain shop.example.test does not exist")


def test_mailbox_life_cycle(stopped_server):
    server = stopped_server
    m = server.add_mailbox("alice@example.test", "alice-password-1", name="Alice",
                           quota="1G", imap=False)
    assert {k: v for k, v in m.items() if k not in ("id", "created", "modified")} == {
        "address": "alice@example.test",
        "local_part": "alice",
        "domain": "example.test",
        "name": "Alice",
        "quota": GIB,
        "used_bytes": 0,
        "used_messages": 0,
        "active": True,
        "access": {"imap": False, "pop3": True, "smtp": True, "sieve": True},
    }
    assert "password" not in m
    assert "alice-password-1" not in json.dumps(m)

    default = server.add_mailbox("bob@example.test", inactive=True)
    assert default["quota"] == 3 * GIB and default["active"] is False
    fails_with(server.admin("mailbox", "add", "alice@example.test", "--password-stdin",
                            input="another-password\n", check=False),
               "mailbox alice@example.test already exists")
    fails_with(server.admin("mailbox", "add", "carol@nowhere.test", "--password-stdin",
                            input="carol-password\n", check=False),
               "domain nowhere.test does not exist")

    assert server.admin_json("mailbox", "show", "alice@example.test") == m
    assert [x["address"] for x in server.admin_json("mailbox", "list")] == [
        "alice@example.test", "bob@example.test"]
    assert server.admin_json("mailbox", "list", "--domain", "other.test") == []
    shown = server.admin("mailbox", "show", "alice@example.test").stdout
    assert re.search(r"^access\s+pop3 smtp sieve$", shown, re.MULTILINE), shown
    assert re.search(r"^quota\s+1G$", shown, re.MULTILINE), shown

    edited = server.admin_json("mailbox", "edit", "alice@example.test", "--name", "Alice A.",
                               "--quota", "2G", "--imap", "y", "--sieve", "n", "--active", "n")
    assert edited["name"] == "Alice A." and edited["quota"] == 2 * GIB
    assert edited["access"] == {"imap": True, "pop3": True, "smtp": True, "sieve": False}
    assert edited["active"] is False

    proc = server.admin("mailbox", "passwd", "alice@example.test", "--password-stdin",
                        input="a-new-password\n")
    assert proc.stdout == "password of alice@example.test changed\n"

    proc = server.admin("mailbox", "remove", "alice@example.test", "--yes")
    assert proc.stdout == "removed mailbox alice@example.test\n"
    fails_with(server.admin("mailbox", "show", "alice@example.test", check=False),
               "mailbox alice@example.test does not exist")
    # A domain with mailboxes is not removed; without them it is.
    fails_with(server.admin("domain", "remove", "example.test", check=False),
               "domain example.test still has 1 mailbox; remove them first")
    server.admin("mailbox", "remove", "bob@example.test", "--yes")
    server.admin("domain", "remove", "example.test")


def test_mailbox_remove_needs_yes_without_a_terminal(stopped_server):
    server = stopped_server
    server.add_mailbox("alice@example.test")
    proc = server.admin("mailbox", "remove", "alice@example.test", check=False)
    fails_with(proc, "Remove mailbox alice@example.test and its 0 messages? Pass --yes to confirm.")
    server.admin("mailbox", "show", "alice@example.test")


def test_passwords_come_only_from_standard_input(stopped_server):
    server = stopped_server
    proc = server.admin("mailbox", "add", "alice@example.test", check=False)
    fails_with(proc, "no terminal to ask for the password of alice@example.test; "
                     "pass it on standard input with --password-stdin")
    # There is no option that takes a password on the command line, where `ps` would show it.
    proc = server.admin("mailbox", "add", "alice@example.test", "--password", "x" * 12,
                        check=False)
    assert proc.returncode == 2 and "unexpected argument '--password'" in proc.stderr, proc.stderr
    fails_with(server.admin("mailbox", "add", "alice@example.test", "--password-stdin",
                            input="short\n", check=False),
               "the password is too short: use at least 8 characters")
    fails_with(server.admin("mailbox", "add", "alice@example.test", "--password-stdin",
                            input="", check=False),
               "standard input held no password")
    assert server.admin_json("mailbox", "list") == []

    # Only the first line counts; a trailing CR (from a Windows file) is not part of it.
    server.admin("mailbox", "add", "alice@example.test", "--password-stdin",
                 input="first-line-password\r\nsecond line\n")
    fails_with(server.admin("mailbox", "passwd", "alice@example.test", check=False),
               "pass it on standard input with --password-stdin")
    fails_with(server.admin("mailbox", "passwd", "alice@example.test", "--password-stdin",
                            input="1234567\n", check=False),
               "the password is too short: use at least 8 characters")


def test_administrators(make_server):
    server = make_server()
    proc = server.admin("admin", "add", "ops", "--password-stdin", input="ops-password-1\n")
    assert proc.stdout == "added administrator ops\n"
    fails_with(server.admin("admin", "add", "ops", "--password-stdin",
                            input="ops-password-2\n", check=False),
               "administrator ops already exists")
    fails_with(server.admin("admin", "add", "bad name", "--password-stdin",
                            input="ops-password-2\n", check=False),
               '"bad name" is not a valid administrator name: use letters, digits and . _ - @')
    fails_with(server.admin("admin", "add", "short", "--password-stdin", input="1234\n",
                            check=False),
               "the password is too short: use at least 8 characters")
    fails_with(server.admin("admin", "add", "noinput", check=False),
               "pass it on standard input with --password-stdin")
    proc = server.admin("admin", "passwd", "--password-stdin", input="admin-password-2\n")
    assert proc.stdout == "password of administrator admin changed\n"
    fails_with(server.admin("admin", "passwd", "nobody", "--password-stdin",
                            input="whatever-password\n", check=False),
               "administrator nobody does not exist")


def test_alias_life_cycle(stopped_server):
    server = stopped_server
    server.add_mailbox("alice@example.test")
    a = server.add_alias("info@example.test", "alice@example.test,bob@elsewhere.test",
                         "carol@elsewhere.test")
    assert {k: v for k, v in a.items() if k not in ("id", "created", "modified")} == {
        "address": "info@example.test",
        "domain": "example.test",
        "targets": ["alice@example.test", "bob@elsewhere.test", "carol@elsewhere.test"],
        "active": True,
        "comment": "",
    }
    catch_all = server.add_alias("@example.test", "alice@example.test")
    assert catch_all["address"] == "@example.test"

    fails_with(server.admin("alias", "add", "alice@example.test", "bob@elsewhere.test",
                            check=False),
               "mailbox alice@example.test already exists")
    fails_with(server.admin("alias", "add", "loop@example.test", "loop@example.test",
                            check=False),
               "alias loop@example.test cannot point at itself")
    fails_with(server.admin("alias", "add", "x@nowhere.test", "alice@example.test",
                            check=False),
               "domain nowhere.test does not exist")
    fails_with(server.admin("mailbox", "add", "info@example.test", "--password-stdin",
                            input="some-password\n", check=False),
               "alias info@example.test already exists")

    listed = server.admin_json("alias", "list")
    assert sorted(x["address"] for x in listed) == ["@example.test", "info@example.test"]
    assert server.admin_json("alias", "list", "--domain", "other.test") == []
    assert server.admin_json("domain", "show", "example.test")["usage"]["aliases"] == 2

    assert server.admin("alias", "remove", "Info@Example.test").stdout == (
        "removed alias info@example.test\n")
    server.admin("alias", "remove", "@example.test")
    assert server.admin_json("alias", "list") == []
    fails_with(server.admin("alias", "remove", "info@example.test", check=False),
               "alias info@example.test does not exist")


def test_alias_domain_life_cycle(stopped_server):
    server = stopped_server
    ad = server.admin_json("alias-domain", "add", "Alias.TEST", "example.test")
    assert {k: v for k, v in ad.items() if k != "created"} == {
        "name": "alias.test", "target": "example.test", "active": True}
    assert server.admin_json("alias-domain", "list") == [ad]
    fails_with(server.admin("mailbox", "add", "x@alias.test", "--password-stdin",
                            input="some-password\n", check=False),
               "alias.test is an alias domain of example.test; create the mailbox in example.test")
    fails_with(server.admin("domain", "add", "alias.test", check=False),
               "alias domain alias.test already exists")
    fails_with(server.admin("alias-domain", "add", "example.test", "example.test", check=False),
               "example.test cannot be an alias of itself")
    fails_with(server.admin("alias-domain", "add", "other.test", "nowhere.test", check=False),
               "domain nowhere.test does not exist")
    assert server.admin("alias-domain", "remove", "alias.test").stdout == (
        "removed alias domain alias.test\n")
    assert server.admin_json("alias-domain", "list") == []
    # Removing a domain removes its alias domains, after asking (or with --yes).
    server.admin("alias-domain", "add", "alias.test", "example.test")
    fails_with(server.admin("domain", "remove", "example.test", check=False),
               "Remove domain example.test with its 0 alias(es) and 1 alias domain(s)? "
               "Pass --yes to confirm.")
    server.admin("domain", "remove", "example.test", "--yes")
    assert server.admin_json("alias-domain", "list") == []


def test_domain_limits(make_server):
    server = make_server()
    server.add_domain("lim.test", max_mailboxes=2, max_aliases=1, default_quota="1G",
                      max_quota="2G", total_quota="3G")
    server.add_mailbox("a@lim.test")
    fails_with(server.admin("mailbox", "add", "b@lim.test", "--quota", "3G",
                            "--password-stdin", input="b-password\n", check=False),
               "quota 3G exceeds the maximum mailbox quota of domain lim.test (2G)")
    fails_with(server.admin("mailbox", "add", "b@lim.test", "--quota", "0",
                            "--password-stdin", input="b-password\n", check=False),
               "domain lim.test does not allow unlimited mailbox quota; its maximum is 2G")
    fails_with(server.admin("mailbox", "add", "b@lim.test", "--quota", "2G500M",
                            "--password-stdin", input="b-password\n", check=False),
               '"2G500M" is not a size', code=2)
    server.add_mailbox("b@lim.test", quota="2G")
    fails_with(server.admin("mailbox", "add", "c@lim.test", "--password-stdin",
                            input="c-password\n", check=False),
               "domain lim.test allows at most 2 mailboxes and has 2")
    server.admin("domain", "edit", "lim.test", "--max-mailboxes", "3")
    fails_with(server.admin("mailbox", "add", "c@lim.test", "--password-stdin",
                            input="c-password\n", check=False),
               "quota 1G is more than is left of domain lim.test's total quota: "
               "3G of 3G are assigned")
    fails_with(server.admin("domain", "edit", "lim.test", "--max-mailboxes", "1", check=False),
               "domain lim.test has 2 mailboxes; the limit cannot be lower")
    fails_with(server.admin("domain", "edit", "lim.test", "--total-quota", "2G", check=False),
               "the mailboxes of domain lim.test hold 3G of quota; the total cannot be lower")
    fails_with(server.admin("domain", "edit", "lim.test", "--max-quota", "1G", check=False),
               "a mailbox of domain lim.test has a quota of 2G, above the new maximum of 1G")

    server.add_alias("x@lim.test", "a@lim.test")
    fails_with(server.admin("alias", "add", "y@lim.test", "a@lim.test", check=False),
               "domain lim.test allows at most 1 alias and has 1")
    usage = server.admin_json("domain", "show", "lim.test")["usage"]
    assert usage == {"mailboxes": 2, "aliases": 1, "quota_assigned": 3 * GIB,
                     "unlimited_mailboxes": 0, "bytes_used": 0}
    fails_with(server.admin("domain", "add", "bad.test", "--default-quota", "5G",
                            "--max-quota", "2G", check=False),
               "the default quota (5G) cannot exceed the maximum mailbox quota (2G)")


def test_admin_commands_need_a_configuration(data_dir):
    proc = run("domain", "list", "--data-dir", str(data_dir), check=False)
    fails_with(proc, f"no configuration at {data_dir}/mailstead.conf")


def test_admin_commands_work_while_the_server_runs(server):
    server.add_domain("live.test", default_quota="100M")
    server.add_mailbox("alice@live.test")
    server.add_alias("info@live.test", "alice@live.test")
    server.admin("alias-domain", "add", "live-alias.test", "live.test")
    server.admin("mailbox", "edit", "alice@live.test", "--quota", "2G")
    server.admin("mailbox", "passwd", "alice@live.test", "--password-stdin",
                 input="changed-password\n")
    server.admin("admin", "passwd", "--password-stdin", input="changed-password\n")
    # Several writers at once: the server holds the database open, SQLite serialises them.
    errors: list[str] = []

    def add(i: int) -> None:
        proc = server.admin("mailbox", "add", f"user{i}@live.test", "--password-stdin",
                            input=f"password-{i}-long\n", check=False)
        if proc.returncode != 0:
            errors.append(harness.describe(proc))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(server.admin_json("mailbox", "list", "--domain", "live.test")) == 5
    server.admin("alias", "remove", "info@live.test")
    server.admin("mailbox", "remove", "alice@live.test", "--yes")
    assert server.running, server.log_tail()
    assert " ERROR " not in server.log() and " WARN " not in server.log(), server.log_tail()
    assert server.stop() == 0


# ---------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def port_holder():
    """A separate python3 process listening on 127.0.0.1 on a port the kernel chose:
    (port, pid, process name as /proc shows it)."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        port = int(proc.stdout.readline())
        with open(f"/proc/{proc.pid}/comm") as f:
            comm = f.read().strip()
        yield port, proc.pid, comm
    finally:
        proc.kill()
        proc.wait(10)


def free_ports_config(server: Server) -> None:
    """Every listener of the file on a kernel-chosen loopback port, as the tests' servers run."""
    for key, value in LOOPBACK_ENV.items():
        server.set_config(key, value)


def test_doctor_passes_on_a_free_configuration(stopped_server):
    server = stopped_server
    free_ports_config(server)
    code, report = server.doctor()
    assert code == 0 and report["ok"] is True, report
    assert {c["status"] for c in report["checks"]} <= {"ok", "warn"}, report
    assert {c["check"] for c in report["checks"]} == {
        "config", "ports", "certificate", "disk", "store", "memory"}, report
    assert f"{server.config_path} is valid" in messages(report, "config", "ok")
    for key in ("SMTP_PORT", "IMAPS_PORT", "SIEVE_PORT", "HTTP_PORT", "HTTPS_PORT"):
        assert f"{key}: port 0, chosen at start" in messages(report, "ports", "ok"), report
    assert f"{server.cert_path} covers {HOSTNAME}" in messages(report, "certificate", "ok")
    assert messages(report, "certificate", "warn") == [
        "self-signed: mail clients will warn until a certificate from a CA is installed"]
    assert messages(report, "store", "ok") == ["the database passes its integrity check"]

    text = server.admin("doctor", "--skip", "clock").stdout
    assert re.search(r"^\[ ok \] config\s+", text, re.MULTILINE), text
    assert re.search(r"^\d+ checks: 0 failed, \d+ warnings$", text, re.MULTILINE), text


def test_doctor_names_the_process_holding_a_port(stopped_server, port_holder):
    server = stopped_server
    free_ports_config(server)
    port, pid, comm = port_holder
    assert comm.startswith("python3"), comm
    server.set_config("IMAP_PORT", f"127.0.0.1:{port}")
    code, report = server.doctor()
    assert code == 1 and report["ok"] is False, report
    failed = messages(report, "ports", "fail")
    assert len(failed) == 1, report
    prefix = f"IMAP_PORT: port {port} is in use on 127.0.0.1:{port} by {comm} (pid {pid}: "
    assert failed[0].startswith(prefix), failed
    assert failed[0].endswith("; stop it or change IMAP_PORT"), failed
    assert "import socket" in failed[0]


def test_doctor_fails_a_certificate_that_does_not_cover_the_hostname(stopped_server):
    server = stopped_server
    free_ports_config(server)
    server.set_config("MAILCOW_HOSTNAME", "other.example.test")
    code, report = server.doctor()
    assert code == 1 and report["ok"] is False, report
    assert messages(report, "certificate", "fail") == [
        f"{server.cert_path} does not cover other.example.test (it names {HOSTNAME})"], report
    # ADDITIONAL_SAN names must be covered too.
    server.set_config("MAILCOW_HOSTNAME", HOSTNAME)
    server.set_config("ADDITIONAL_SAN", "imap.example.test")
    code, report = server.doctor()
    assert messages(report, "certificate", "fail") == [
        f"{server.cert_path} does not cover imap.example.test (it names {HOSTNAME})"], report


def test_doctor_skips_checks_by_name(stopped_server):
    code, report = stopped_server.doctor("ports", "certificate", "disk", "store", "memory",
                                         "config")
    assert code == 0 and report == {"ok": True, "checks": []}


def test_doctor_reports_the_running_servers_ports_as_its_own(server):
    """Expected to fail until a service has listeners (the SMTP service brings the first)."""
    if not server.listeners:
        pytest.fail("no listeners yet: the running server has no service, so there is no port "
                    "for doctor to report as held by this server")
    # Point every key at the address the server got, as if the file said so.
    env: dict[str, str] = {}
    for entry in server.listeners:
        host, port = server.address(entry["key"])
        if entry["key"] in ("HTTP_PORT", "HTTPS_PORT"):
            env[entry["key"]] = str(port)
            env[entry["key"].replace("_PORT", "_BIND")] = host
        else:
            env[entry["key"]] = entry["address"]
    for key, value in LOOPBACK_ENV.items():
        env.setdefault(key, value)
    code, report = server.doctor(env=env)
    for entry in server.listeners:
        key, address = entry["key"], entry["address"]
        assert f"{key}: {address} is held by this server (pid {server.pid})" in messages(
            report, "ports", "ok"), report
    assert code == 0 and report["ok"] is True, report


# ---------------------------------------------------------------------------------------------
# the harness itself
# ---------------------------------------------------------------------------------------------


def test_harness_tls_context_trusts_the_servers_certificate(make_server):
    """Protocol tests verify the server's certificate with server.tls_context(); check that the
    self-signed certificate `init` made works for that, with a TLS server of Python's own."""
    server = make_server()
    listener = socket.create_server(("127.0.0.1", 0))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server.cert_path, server.key_path)

    def accept():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello")

    t = threading.Thread(target=accept)
    t.start()
    with socket.create_connection(listener.getsockname(), timeout=10) as raw:
        with server.tls_context().wrap_socket(raw, server_hostname=server.hostname) as tls:
            assert tls.recv(5) == b"hello"
    t.join(10)
    listener.close()


def test_harness_fails_with_the_log_when_serve_exits(make_server):
    server = make_server()
    with pytest.raises(AssertionError) as e:
        server.start(env={"MAX_CONNECTIONS": "lots"})
    assert "exited with 1 before it was ready" in str(e.value)
    assert 'MAX_CONNECTIONS="lots"' in str(e.value)
