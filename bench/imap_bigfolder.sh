#!/usr/bin/env bash
# One folder of MESSAGES (100,000) messages in Dovecot (the anchor) and in mailstead: SELECT,
# FETCH 1:* (FLAGS), UID SEARCH and a QRESYNC resync after another session's changes
# (imap_bigfolder.py), with the server's peak memory. Dovecot's maildir is filled with files
# directly (APPEND into one maildir slows to tens per second), mailstead's by APPEND. Prints milliseconds of both and the ratios.
#
# Usage (as root; Debian packages postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd):
#   bench/imap_bigfolder.sh
#   MESSAGES=20000 bench/imap_bigfolder.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KIT=$HERE/anchor
export ANCHOR=${ANCHOR:-/tmp/anchor}
MESSAGES=${MESSAGES:-100000}
NICE=${NICE:--10}
RESULTS=${RESULTS:-$ROOT/bench/results/bigfolder-$(date +%Y%m%d-%H%M%S)}
MS_PORT=${MS_PORT:-2145}
PASS=benchpass
mkdir -p "$RESULTS"
log() { echo "[$(date +%T)] $*" | tee -a "$RESULTS/log.txt"; }

log "building mailstead (release)"
(cd "$ROOT" && cargo build --release -q -p mailstead)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailstead
[ -f "$ANCHOR/postfix/etc/main.cf" ] || "$KIT/setup_anchor.sh" --users 100 --password "$PASS" >> "$RESULTS/log.txt"

# Runs the measure against PORT while sampling the server: $1 = name, $2 = port, rest = roots.
measure() {
    local name=$1 port=$2; shift 2
    python3 "$KIT/procstat.py" sample --interval 0.2 --max-seconds 900 \
        --stop-file "$RESULTS/stop" "$@" --out "$RESULTS/${name}_procstat.json" > /dev/null &
    local sampler=$!
    nice -n "$NICE" python3 "$HERE/imap_bigfolder.py" run --port "$port" --password "$PASS" \
        --out "$RESULTS/${name}.json" > /dev/null || log "$name: run failed"
    touch "$RESULTS/stop"; wait "$sampler" || true; rm -f "$RESULTS/stop"
}

log "dovecot: populating $MESSAGES messages"
SETTLE=3 "$KIT/reset_anchor.sh" >> "$RESULTS/log.txt" 2>&1
MAILDIR=$ANCHOR/mail/example.test/user1/Maildir
mkdir -p "$MAILDIR"/{new,cur,tmp} && chown -R 5000:5000 "$ANCHOR/mail/example.test/user1"
python3 "$HERE/imap_bigfolder.py" populate --port 1143 --password "$PASS" --messages "$MESSAGES" \
    --maildir "$MAILDIR" --out "$RESULTS/dovecot_populate.json" > /dev/null
"$KIT/stop_anchor.sh" >> "$RESULTS/log.txt" 2>&1 || true
NICE=$NICE "$KIT/start_anchor.sh" >> "$RESULTS/log.txt" 2>&1; sleep 3
log "dovecot: measuring"
measure dovecot 1143 --pidfile "$ANCHOR/dovecot/run/master.pid"
"$KIT/stop_anchor.sh" >> "$RESULTS/log.txt" 2>&1 || true

MS_DATA=$RESULTS/mailstead-data
rm -rf "$MS_DATA"
"$BIN" init --data-dir "$MS_DATA" --hostname mail.example.test --json > /dev/null
"$BIN" domain add example.test --max-mailboxes 0 --max-quota 0 --total-quota 0 --default-quota 0 --data-dir "$MS_DATA" > /dev/null
echo "$PASS" | "$BIN" mailbox add user1@example.test --password-stdin --data-dir "$MS_DATA" > /dev/null
start_mailstead() {
    IMAP_PORT=127.0.0.1:$MS_PORT IMAPS_PORT=127.0.0.1:0 SMTP_PORT=127.0.0.1:0 SUBMISSION_PORT=127.0.0.1:0 \
        SMTPS_PORT=127.0.0.1:0 POP_PORT=127.0.0.1:0 POPS_PORT=127.0.0.1:0 SIEVE_PORT=127.0.0.1:0 \
        LOG_LEVEL=warn nice -n "$NICE" "$BIN" serve --data-dir "$MS_DATA" 2>> "$RESULTS/mailstead.log" &
    MS_PID=$!
    for _ in $(seq 1 100); do [ -f "$MS_DATA/run/listeners.json" ] && break; sleep 0.1; done
}
stop_mailstead() { kill "$MS_PID"; wait "$MS_PID" || true; rm -f "$MS_DATA/run/listeners.json"; }
log "mailstead: populating $MESSAGES messages"
start_mailstead
python3 "$HERE/imap_bigfolder.py" populate --port "$MS_PORT" --password "$PASS" --messages "$MESSAGES" \
    --clients 50 --out "$RESULTS/mailstead_populate.json" > /dev/null
stop_mailstead
start_mailstead; sleep 1
log "mailstead: measuring"
measure mailstead "$MS_PORT" --pid "$MS_PID"
stop_mailstead

python3 - "$RESULTS" <<'PY'
import json, sys
d = sys.argv[1]
a, m = json.load(open(f"{d}/dovecot.json")), json.load(open(f"{d}/mailstead.json"))
pa, pm = (json.load(open(f"{d}/{k}_procstat.json"))["peak"]["pss_kb"] / 1024 for k in ("dovecot", "mailstead"))
pop = {k: json.load(open(f"{d}/{k}_populate.json")) for k in ("dovecot", "mailstead")}
lines = [f"| {a['messages']} messages | Dovecot | mailstead | mailstead / Dovecot |", "|---|---|---|---|"]
for k in ("select_ms", "fetch_flags_ms", "uid_search_unseen_ms", "uid_search_subject_ms", "qresync_select_ms"):
    lines.append(f"| {k[:-3]} ms | {a[k]:.1f} | {m[k]:.1f} | {m[k] / max(a[k], 0.01):.2f} |")
lines.append(f"| peak PSS MiB | {pa:.1f} | {pm:.1f} | {pm / pa:.2f} |")
rm = pop["mailstead"]["appended"] / pop["mailstead"]["seconds"]
lines.append(f"| APPEND/s while populating (50 clients, one folder) | (filled as maildir files) | {rm:.0f} | |")
open(f"{d}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "results in $RESULTS"
