#!/usr/bin/env bash
# Memory of idle IMAP connections: N sessions that LOGIN, SELECT INBOX and IDLE (imap_idle.py),
# held while procstat measures the server, then a probe message that every idling session of one
# user must announce. Dovecot (the anchor's configuration with its process limits raised, one
# imap process per connection) and mailstead at SMALL connections, then mailstead alone at
# LARGE. Prints PSS in total and what each connection adds to the server without connections.
#
# Usage (as root; Debian packages dovecot-imapd; run bench/imap_load.sh first or let this
# populate a smaller data set):
#   bench/imap_idle.sh
#   SMALL=500 LARGE=5000 bench/imap_idle.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KIT=$HERE/anchor
export ANCHOR=${ANCHOR:-/tmp/anchor}
SMALL=${SMALL:-1000}
LARGE=${LARGE:-10000}
HOLD=${HOLD:-10}
NICE=${NICE:--10}
RESULTS=${RESULTS:-$ROOT/bench/results/idle-$(date +%Y%m%d-%H%M%S)}
MS_PORT=${MS_PORT:-2144}
PASS=benchpass
mkdir -p "$RESULTS"
log() { echo "[$(date +%T)] $*" | tee -a "$RESULTS/log.txt"; }
# Every connection is a descriptor on both ends.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((LARGE + 1000)) ] || { log "open-file limit $(ulimit -n) is too low for $LARGE connections"; exit 1; }

log "building mailstead (release)"
(cd "$ROOT" && cargo build --release -q -p mailstead)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailstead
[ -f "$ANCHOR/postfix/etc/main.cf" ] || "$KIT/setup_anchor.sh" --users 100 --password "$PASS" >> "$RESULTS/log.txt"

# Dovecot with room for SMALL connections: one imap process each.
DC_CONF=$ANCHOR/dovecot/idle.conf
cat > "$DC_CONF" <<EOF
!include $ANCHOR/dovecot/dovecot.conf
default_process_limit = $((SMALL + 100))
default_client_limit = $((SMALL * 2 + 100))
service imap {
  process_limit = $((SMALL + 100))
}
EOF

MS_DATA=$RESULTS/mailstead-data
rm -rf "$MS_DATA"
"$BIN" init --data-dir "$MS_DATA" --hostname mail.example.test --json > /dev/null
"$BIN" domain add example.test --max-mailboxes 0 --max-quota 0 --total-quota 0 --default-quota 0 --data-dir "$MS_DATA" > /dev/null
for i in $(seq 1 100); do
    echo "$PASS" | "$BIN" mailbox add "user$i@example.test" --password-stdin --data-dir "$MS_DATA" > /dev/null
done

# Runs N idle connections against PORT: $1 = name, $2 = port, $3 = N, rest = procstat roots.
measure() {
    local name=$1 port=$2 n=$3; shift 3
    rm -f "$RESULTS/ready"
    python3 "$KIT/procstat.py" snapshot "$@" > "$RESULTS/${name}_base_procstat.json"
    nice -n "$NICE" python3 "$HERE/imap_idle.py" --port "$port" --connections "$n" --password "$PASS" \
        --hold "$HOLD" --ready-file "$RESULTS/ready" --out "$RESULTS/${name}.json" > /dev/null \
        2>> "$RESULTS/log.txt" &
    local load=$!
    for _ in $(seq 1 1200); do [ -f "$RESULTS/ready" ] && break; sleep 0.5; done
    sleep 2
    python3 "$KIT/procstat.py" snapshot "$@" > "$RESULTS/${name}_procstat.json"
    wait "$load" || log "$name: load failed"
}

log "populating (100 users x 20 messages)"
SETTLE=3 "$KIT/reset_anchor.sh" >> "$RESULTS/log.txt" 2>&1
python3 "$KIT/imap_load.py" populate --port 1143 --users 100 --password "$PASS" --per-user 20 --clients 10 --seed 1 > /dev/null
"$KIT/stop_anchor.sh" >> "$RESULTS/log.txt" 2>&1 || true
start_mailstead() {
    IMAP_PORT=127.0.0.1:$MS_PORT IMAPS_PORT=127.0.0.1:0 SMTP_PORT=127.0.0.1:0 SUBMISSION_PORT=127.0.0.1:0 \
        SMTPS_PORT=127.0.0.1:0 POP_PORT=127.0.0.1:0 POPS_PORT=127.0.0.1:0 SIEVE_PORT=127.0.0.1:0 \
        LOG_LEVEL=warn MAX_CONNECTIONS=$((LARGE + 1000)) MAX_CONNECTIONS_PER_IP=$((LARGE + 1000)) \
        nice -n "$NICE" "$BIN" serve --data-dir "$MS_DATA" 2>> "$RESULTS/mailstead.log" &
    MS_PID=$!
    for _ in $(seq 1 100); do [ -f "$MS_DATA/run/listeners.json" ] && break; sleep 0.1; done
}
stop_mailstead() { kill "$MS_PID"; wait "$MS_PID" || true; rm -f "$MS_DATA/run/listeners.json"; }
start_mailstead
python3 "$KIT/imap_load.py" populate --port "$MS_PORT" --users 100 --password "$PASS" --per-user 20 --clients 10 --seed 1 > /dev/null
stop_mailstead

log "dovecot: $SMALL idle connections"
nice -n "$NICE" dovecot -c "$DC_CONF"; sleep 2
measure "dovecot_$SMALL" 1143 "$SMALL" --pidfile "$ANCHOR/dovecot/run/master.pid"
doveadm -c "$DC_CONF" stop > /dev/null 2>&1 || true; sleep 2

for n in "$SMALL" "$LARGE"; do
    log "mailstead: $n idle connections"
    start_mailstead; sleep 1
    measure "mailstead_$n" "$MS_PORT" "$n" --pid "$MS_PID"
    stop_mailstead
done

python3 - "$RESULTS" "$SMALL" "$LARGE" <<'PY'
import json, sys
d, small, large = sys.argv[1], sys.argv[2], sys.argv[3]
def row(name, n):
    try:
        r = json.load(open(f"{d}/{name}.json"))
        p = json.load(open(f"{d}/{name}_procstat.json"))
    except FileNotFoundError:
        return f"| {name} | {n} | (no result) | | | |"
    base = json.load(open(f"{d}/{name}_base_procstat.json"))
    pss = p["total"]["pss_kb"] / 1024
    per = (p["total"]["pss_kb"] - base["total"]["pss_kb"]) / max(1, r["established"])
    return (f"| {name.split('_')[0]} | {r['established']} of {n} | {pss:.1f} | {per:.1f} | "
            f"{p['total']['procs']} | {r['probe_saw_exists']} of {r['probe_sessions']} in {r['probe_s']} s |")
lines = ["| server | idle connections | PSS MiB | added PSS KiB per connection | processes | probe EXISTS seen |",
         "|---|---|---|---|---|---|",
         row(f"dovecot_{small}", small), row(f"mailstead_{small}", small), row(f"mailstead_{large}", large)]
open(f"{d}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "results in $RESULTS"
