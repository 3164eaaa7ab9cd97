#!/usr/bin/env bash
# The test command: what CI runs, from a fresh Debian 12 machine to a verdict.
#   scripts/test.sh                 everything
#   scripts/test.sh -k doctor       extra arguments go to pytest
# Installs the Debian and Python packages the tests use when they are missing, then: format
# check, debug build, clippy, the Rust tests (nextest), and the end-to-end tests against the
# built binary. Stops at the first failure with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages of the end-to-end tests: swaks, openssl, the IMAP and POP3 clients of
# test_imap_clients.py and test_pop3.py (mbsync, offlineimap, fetchmail, mutt) and
# sieve-connect for test_managesieve.py. To come with their tests: clamav-daemon.
DEBIAN_PACKAGES=(swaks openssl isync offlineimap3 fetchmail mutt sieve-connect)

# On CI (CI is set by GitHub Actions, GitLab and most others) every build is cold: incremental
# caches are written for nothing, and full debug info only slows compiling and linking. Line
# tables keep file:line in backtraces. Not done locally, where it would force full rebuilds.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
fi

script_start=$SECONDS
section_start=$SECONDS
section() {
    if [ -n "${section_name:-}" ]; then
        printf '     (%s: %ds)\n' "$section_name" $((SECONDS - section_start))
    fi
    section_name=$1
    section_start=$SECONDS
    printf '\n==== %s ====\n' "$1"
}

section "Debian packages"
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "present: ${DEBIAN_PACKAGES[*]}"
fi

section "Python packages"
# pip only runs when a package of tests/requirements.txt is not installed at all.
if python3 - <<'PY'
import importlib.metadata, re, sys
for line in open("tests/requirements.txt"):
    name = re.split(r"[\s<>=!~;\[]", line.split("#")[0].strip())[0]
    if name:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            sys.exit(1)
PY
then
    echo "present: $(grep -v '^#' tests/requirements.txt | tr '\n' ' ')"
else
    # Debian's own python3 refuses system-wide installs (PEP 668); the test clients are
    # ordinary packages, so they are allowed there.
    python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            -r tests/requirements.txt
fi

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo build"
cargo build --workspace

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace
else
    cargo test --workspace
fi

section "End-to-end tests"
target_dir=${CARGO_TARGET_DIR:-target}
MAILSTEAD_BIN="$(cd "$target_dir" && pwd)/debug/mailstead" \
    python3 -m pytest tests -n 2 "$@"

section "done"
printf 'all checks passed in %ds\n' $((SECONDS - script_start))
