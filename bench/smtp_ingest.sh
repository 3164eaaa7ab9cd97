#!/usr/bin/env bash
# SMTP ingest: messages of SIZE bytes from CONCURRENCY clients (Postfix's smtp-source) to 100
# local mailboxes, timed until all are durable, for mailstead and for Postfix -> Dovecot LMTP
# (the anchor, as ../shared/bench sets it up), alternating in the same run. Prints messages per
# second of both, the ratio, server CPU per message and peak memory (PSS).
#
# Usage (as root; Debian packages postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd):
#   bench/smtp_ingest.sh                     # 4 KiB and 50 KiB, 3 rounds each
#   SIZES="4096" MESSAGES=20000 REPS=1 bench/smtp_ingest.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KIT=$HERE/anchor
export ANCHOR=${ANCHOR:-/tmp/anchor}
SIZES=${SIZES:-"4096 51200"}
REPS=${REPS:-3}
CONCURRENCY=${CONCURRENCY:-20}
NICE=${NICE:--10}
RESULTS=${RESULTS:-$ROOT/bench/results/smtp-$(date +%Y%m%d-%H%M%S)}
MS_PORT=${MS_PORT:-2625}
PASS=benchpass
mkdir -p "$RESULTS"
log() { echo "[$(date +%T)] $*" | tee -a "$RESULTS/log.txt"; }
messages_for() { if [ "$1" -ge 51200 ]; then echo "${MESSAGES_50K:-10000}"; else echo "${MESSAGES:-20000}"; fi; }

log "building mailstead (release)"
(cd "$ROOT" && cargo build --release -q -p mailstead)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailstead

[ -f "$ANCHOR/postfix/etc/main.cf" ] || "$KIT/setup_anchor.sh" --users 100 --password "$PASS" >> "$RESULTS/log.txt"

MS_DATA=$RESULTS/mailstead-data
fresh_mailstead() {
    rm -rf "$MS_DATA"
    "$BIN" init --data-dir "$MS_DATA" --hostname mail.example.test --json > /dev/null
    "$BIN" domain add example.test --max-mailboxes 0 --max-quota 0 --total-quota 0 --default-quota 0 --data-dir "$MS_DATA" > /dev/null
    for i in $(seq 1 100); do
        echo "$PASS" | "$BIN" mailbox add "user$i@example.test" --password-stdin --data-dir "$MS_DATA" > /dev/null
    done
}
start_mailstead() {
    SMTP_PORT=127.0.0.1:$MS_PORT SUBMISSION_PORT=127.0.0.1:0 SMTPS_PORT=127.0.0.1:0 LOG_LEVEL=warn \
        MAX_CONNECTIONS_PER_IP=1000 nice -n "$NICE" "$BIN" serve --data-dir "$MS_DATA" 2> "$RESULTS/mailstead.log" &
    MS_PID=$!
    for _ in $(seq 1 100); do [ -f "$MS_DATA/run/listeners.json" ] && break; sleep 0.1; done
}
stop_mailstead() { kill "$MS_PID"; wait "$MS_PID" || true; }
count_cmd="python3 -c \"import sqlite3;print(sqlite3.connect('file:$MS_DATA/mailstead.db?mode=ro',uri=True).execute('select count(*) from message').fetchone()[0])\""

for size in $SIZES; do
    n=$(messages_for "$size")
    for rep in $(seq 1 "$REPS"); do
        python3 "$KIT/wait_quiet.py" --timeout 60 2>> "$RESULTS/log.txt" || log "machine not quiet; running anyway"
        log "anchor: $n x $size bytes, round $rep"
        SETTLE=3 "$KIT/reset_anchor.sh" >> "$RESULTS/log.txt" 2>&1
        nice -n "$NICE" python3 "$KIT/smtp_load.py" --port 2525 --messages "$n" --size "$size" \
            --concurrency "$CONCURRENCY" --maildir-root "$ANCHOR/mail/example.test" \
            --pidfile "$ANCHOR/postfix/spool/pid/master.pid" --pidfile "$ANCHOR/dovecot/run/master.pid" \
            --out "$RESULTS/anchor_${size}_$rep.json" > /dev/null
        "$KIT/stop_anchor.sh" >> "$RESULTS/log.txt" 2>&1 || true

        log "mailstead: $n x $size bytes, round $rep"
        fresh_mailstead
        start_mailstead
        nice -n "$NICE" python3 "$KIT/smtp_load.py" --port "$MS_PORT" --messages "$n" --size "$size" \
            --concurrency "$CONCURRENCY" --count-cmd "$count_cmd" --pid "$MS_PID" \
            --out "$RESULTS/mailstead_${size}_$rep.json" > /dev/null
        stop_mailstead
    done
done

python3 - "$RESULTS" <<'PY'
import glob, json, os, statistics, sys
d = sys.argv[1]
def load(kind, size):
    out = []
    for f in sorted(glob.glob(f"{d}/{kind}_{size}_*.json")):
        r = json.load(open(f))
        pss = r.get("procstat", {}).get("peak", {}).get("pss_kb")
        out.append((r.get("end_to_end_msg_per_s") or 0, r.get("server_cpu_ms_per_msg"), pss, r.get("errors", 0)))
    return out
sizes = sorted({int(os.path.basename(f).split("_")[1]) for f in glob.glob(f"{d}/*_*_*.json")})
lines = ["| size | anchor msg/s | mailstead msg/s | ratio | anchor CPU ms/msg | mailstead CPU ms/msg | anchor peak PSS MiB | mailstead peak PSS MiB | errors |", "|---|---|---|---|---|---|---|---|---|"]
for s in sizes:
    a, m = load("anchor", s), load("mailstead", s)
    if not a or not m: continue
    med = lambda xs, i: statistics.median([x[i] for x in xs if x[i] is not None]) if any(x[i] is not None for x in xs) else None
    am, mm = med(a, 0), med(m, 0)
    fmt = lambda v, k=1: "-" if v is None else f"{v:.{k}f}"
    mib = lambda v: None if v is None else v / 1024
    lines.append(f"| {s} | {fmt(am)} | {fmt(mm)} | {fmt(mm/am if am else None, 2)} | {fmt(med(a,1),2)} | {fmt(med(m,1),2)} | {fmt(mib(med(a,2)))} | {fmt(mib(med(m,2)))} | {sum(x[3] for x in a)}/{sum(x[3] for x in m)} |")
open(f"{d}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "results in $RESULTS"
