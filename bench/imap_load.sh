#!/usr/bin/env bash
# IMAP under load: the same deterministic data set (100 users x 200 messages, imap_load.py
# populate) in Dovecot (the anchor, as ../shared/bench sets it up) and in mailstead, then
# CLIENTS concurrent sessions for SECS seconds of LOGIN, SELECT, FETCH 1:* (FLAGS RFC822.SIZE
# ENVELOPE), 50 x BODY.PEEK[], STORE, SEARCH, LOGOUT, alternating anchor and mailstead rounds.
# Prints commands per second, p50/p99 latency, server CPU per command and peak memory (PSS)
# of both, with the ratios.
#
# Usage (as root; Debian packages postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd):
#   bench/imap_load.sh
#   REPS=1 SECS=15 bench/imap_load.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KIT=$HERE/anchor
export ANCHOR=${ANCHOR:-/tmp/anchor}
REPS=${REPS:-3}
SECS=${SECS:-30}
CLIENTS=${CLIENTS:-20}
USERS=${USERS:-100}
PER_USER=${PER_USER:-200}
NICE=${NICE:--10}
RESULTS=${RESULTS:-$ROOT/bench/results/imap-$(date +%Y%m%d-%H%M%S)}
MS_PORT=${MS_PORT:-2143}
PASS=benchpass
mkdir -p "$RESULTS"
log() { echo "[$(date +%T)] $*" | tee -a "$RESULTS/log.txt"; }

log "building mailstead (release)"
(cd "$ROOT" && cargo build --release -q -p mailstead)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailstead

[ -f "$ANCHOR/postfix/etc/main.cf" ] || "$KIT/setup_anchor.sh" --users "$USERS" --password "$PASS" >> "$RESULTS/log.txt"

MS_DATA=$RESULTS/mailstead-data
rm -rf "$MS_DATA"
"$BIN" init --data-dir "$MS_DATA" --hostname mail.example.test --json > /dev/null
"$BIN" domain add example.test --max-mailboxes 0 --max-quota 0 --total-quota 0 --default-quota 0 --data-dir "$MS_DATA" > /dev/null
for i in $(seq 1 "$USERS"); do
    echo "$PASS" | "$BIN" mailbox add "user$i@example.test" --password-stdin --data-dir "$MS_DATA" > /dev/null
done
start_mailstead() {
    # IMAP from 127.0.0.1 to 127.0.0.1 may log in without TLS, like the anchor's Dovecot.
    IMAP_PORT=127.0.0.1:$MS_PORT IMAPS_PORT=127.0.0.1:0 SMTP_PORT=127.0.0.1:0 SUBMISSION_PORT=127.0.0.1:0 \
        SMTPS_PORT=127.0.0.1:0 LOG_LEVEL=warn MAX_CONNECTIONS_PER_IP=1000 \
        nice -n "$NICE" "$BIN" serve --data-dir "$MS_DATA" 2>> "$RESULTS/mailstead.log" &
    MS_PID=$!
    for _ in $(seq 1 100); do [ -f "$MS_DATA/run/listeners.json" ] && break; sleep 0.1; done
}
stop_mailstead() { kill "$MS_PID"; wait "$MS_PID" || true; rm -f "$MS_DATA/run/listeners.json"; }
load() { nice -n "$NICE" python3 "$KIT/imap_load.py" "$@" --users "$USERS" --password "$PASS"; }
# Runs the load against PORT while sampling the server processes; $1 = name, $2 = port, rest = procstat roots.
measure() {
    local name=$1 port=$2; shift 2
    python3 "$KIT/procstat.py" sample --interval 0.5 --max-seconds $((SECS + 120)) \
        --stop-file "$RESULTS/stop" "$@" --out "$RESULTS/${name}_procstat.json" > /dev/null &
    local sampler=$!
    timeout $((SECS + 120)) python3 "$KIT/imap_load.py" run --port "$port" --users "$USERS" \
        --password "$PASS" --clients "$CLIENTS" --duration "$SECS" --seed "$name" \
        --out "$RESULTS/${name}.json" > /dev/null || log "$name: load failed"
    touch "$RESULTS/stop"; wait "$sampler" || true; rm -f "$RESULTS/stop"
}

log "populating the anchor ($USERS users x $PER_USER messages)"
SETTLE=3 "$KIT/reset_anchor.sh" >> "$RESULTS/log.txt" 2>&1
load populate --port 1143 --per-user "$PER_USER" --clients 10 --seed 1 --out "$RESULTS/anchor_populate.json" > /dev/null
"$KIT/stop_anchor.sh" >> "$RESULTS/log.txt" 2>&1 || true
log "populating mailstead"
start_mailstead
load populate --port "$MS_PORT" --per-user "$PER_USER" --clients 10 --seed 1 --out "$RESULTS/mailstead_populate.json" > /dev/null
stop_mailstead

for rep in $(seq 1 "$REPS"); do
    python3 "$KIT/wait_quiet.py" --timeout 60 2>> "$RESULTS/log.txt" || log "machine not quiet; running anyway"
    log "anchor: round $rep"
    NICE=$NICE "$KIT/start_anchor.sh" >> "$RESULTS/log.txt" 2>&1; sleep 3
    measure "anchor_$rep" 1143 --pidfile "$ANCHOR/dovecot/run/master.pid"
    "$KIT/stop_anchor.sh" >> "$RESULTS/log.txt" 2>&1 || true

    log "mailstead: round $rep"
    start_mailstead; sleep 1
    measure "mailstead_$rep" "$MS_PORT" --pid "$MS_PID"
    stop_mailstead
done

python3 - "$RESULTS" <<'PY'
import glob, json, statistics, sys
d = sys.argv[1]
def rounds(kind):
    out = []
    for f in sorted(glob.glob(f"{d}/{kind}_[0-9]*.json")):
        if f.endswith("_procstat.json"):
            continue
        r = json.load(open(f))
        p = json.load(open(f.replace(".json", "_procstat.json")))
        cmds = r["imap_commands"] or 1
        out.append(dict(cps=r["commands_per_s"], p50=r["latency_all_commands"]["p50_ms"],
                        p99=r["latency_all_commands"]["p99_ms"], cpu=1000 * p["server_cpu_s"] / cmds,
                        pss=p["peak"]["pss_kb"] / 1024, errors=r["errors"]))
    return out
a, m = rounds("anchor"), rounds("mailstead")
med = lambda xs, k: statistics.median(x[k] for x in xs)
rows = [("commands/s", "cps", True), ("p50 ms", "p50", False), ("p99 ms", "p99", False),
        ("server CPU ms/command", "cpu", False), ("peak PSS MiB", "pss", False)]
lines = ["| measure | Dovecot | mailstead | mailstead / Dovecot |", "|---|---|---|---|"]
for name, k, _ in rows:
    av, mv = med(a, k), med(m, k)
    lines.append(f"| {name} | {av:.3g} | {mv:.3g} | {mv / av:.2f} |")
lines.append(f"| errors | {sum(x['errors'] for x in a)} | {sum(x['errors'] for x in m)} | |")
open(f"{d}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "results in $RESULTS"
