#!/usr/bin/env bash
# The run command: builds mailstead and runs a development instance on this machine, on
# unprivileged ports of 127.0.0.1 (`mailstead init --dev`). The data stays in ${DATA_DIR:-./data};
# the first run creates it and prints the administrator's password.
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=${DATA_DIR:-./data}

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    command -v curl >/dev/null || need+=(curl ca-certificates)
fi
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] \
        || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

cargo build --release -p mailstead
bin=${CARGO_TARGET_DIR:-target}/release/mailstead

conf=$data_dir/mailstead.conf
if [ ! -f "$conf" ]; then
    "$bin" init --dev --data-dir "$data_dir"
fi

value() { sed -n "s/^$1=//p" "$conf" | tail -n 1; }
cat <<INFO

mailstead ($(value MAILCOW_HOSTNAME)), data in $data_dir
  SMTP        $(value SMTP_PORT)    submission $(value SUBMISSION_PORT) (STARTTLS), $(value SMTPS_PORT) (TLS)
  IMAP        $(value IMAP_PORT)    IMAPS $(value IMAPS_PORT)
  POP3        $(value POP_PORT)    POP3S $(value POPS_PORT)
  ManageSieve $(value SIEVE_PORT)
  web         http://$(value HTTP_BIND):$(value HTTP_PORT)  https://$(value HTTPS_BIND):$(value HTTPS_PORT)
  admin       "admin"; its password was printed by the first run
              (a new one: $bin admin passwd --data-dir $data_dir)
Stop with Ctrl-C.

INFO
exec "$bin" serve --data-dir "$data_dir"
