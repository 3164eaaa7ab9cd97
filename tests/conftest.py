"""Fixtures shared by the end-to-end tests. Each test gets its own data directory under pytest's
tmp_path and servers on kernel-chosen ports, so tests run in parallel (`pytest -n 2`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import Server  # noqa: E402

#: The domain the `server` fixture has.
DOMAIN = "example.test"


def pytest_report_header(config):
    return f"mailstead binary: {harness.BIN}"


@pytest.fixture(scope="session", autouse=True)
def mailstead_bin() -> Path:
    """The binary under test; every test fails at once, and says why, if it is missing."""
    if not harness.BIN.is_file():
        pytest.exit(
            f"no mailstead binary at {harness.BIN}: build it with `cargo build -p mailstead` "
            "or set MAILSTEAD_BIN",
            returncode=2,
        )
    return harness.BIN


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that does not exist yet (init creates it)."""
    return tmp_path / "data"


@pytest.fixture
def make_server(tmp_path: Path):
    """A factory of initialised, not started servers: make_server(name="b", config={...}).
    Every server it made is stopped (or killed) when the test ends, and a failed test's report
    shows their logs."""
    made: list[Server] = []

    def make(name: str = "data", **kwargs) -> Server:
        server = Server(tmp_path / name, **kwargs)
        made.append(server)
        return server

    make.servers = made
    yield make
    for server in made:
        server.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the log of every server a failed test made to its report: the first thing to read
    when a test fails is what the server said."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        factory = getattr(item, "funcargs", {}).get("make_server")
        for server in getattr(factory, "servers", []):
            log = server.log()
            if log:
                report.sections.append((f"mailstead log {server.log_path.name}", log))


@pytest.fixture
def stopped_server(make_server) -> Server:
    """An initialised data directory with the domain example.test; not started."""
    server = make_server()
    server.add_domain(DOMAIN)
    return server


@pytest.fixture
def server(stopped_server: Server) -> Server:
    """A running server with the domain example.test."""
    return stopped_server.start()
