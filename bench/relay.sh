#!/usr/bin/env bash
# Relay: messages submitted for a remote domain, timed from the first submission until a sink on
# loopback (Postfix's smtp-sink) has received every one, for mailstead (submission on 587 with
# STARTTLS and AUTH, outbound queue, the remote domain's MX pointed at the sink by
# DNS_STATIC_MAP) and for Postfix relaying to the same sink (an instance beside the anchor's:
# STARTTLS, the client trusted by mynetworks instead of AUTH, relayhost = the sink), alternating
# in the same run. Both queue every message durably before their 250. Prints messages per second
# of both, the ratio, server CPU per message and peak memory (PSS).
#
# Usage (as root; Debian package postfix):
#   bench/relay.sh
#   SIZES="4096" MESSAGES=5000 REPS=1 bench/relay.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KIT=$HERE/anchor
export ANCHOR=${ANCHOR:-/tmp/anchor}
SIZES=${SIZES:-"4096 51200"}
MESSAGES=${MESSAGES:-10000}
REPS=${REPS:-3}
CONCURRENCY=${CONCURRENCY:-20}
NICE=${NICE:--10}
RESULTS=${RESULTS:-$ROOT/bench/results/relay-$(date +%Y%m%d-%H%M%S)}
MS_PORT=${MS_PORT:-2687}
PF_PORT=${PF_PORT:-2588}
SINK_PORT=${SINK_PORT:-2600}
PASS=benchpass
mkdir -p "$RESULTS"
log() { echo "[$(date +%T)] $*" | tee -a "$RESULTS/log.txt"; }

log "building mailstead (release)"
(cd "$ROOT" && cargo build --release -q -p mailstead)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailstead

[ -f "$ANCHOR/postfix/etc/main.cf" ] || "$KIT/setup_anchor.sh" --users 100 --password "$PASS" >> "$RESULTS/log.txt"

# The Postfix relay: the anchor's configuration with outbound delivery to the sink.
PF=$ANCHOR/relay
rm -rf "$PF"
mkdir -p "$PF"/{etc,spool,data,log}
chown postfix:postfix "$PF/data"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.example.test \
    -keyout "$PF/etc/key.pem" -out "$PF/etc/cert.pem" 2> /dev/null
sed -e "s#$ANCHOR/postfix/#$PF/#g; s#$ANCHOR/log/postfix.log#$PF/log/postfix.log#" \
    -e '/^mynetworks\|^default_transport\|^relay_transport\|^smtpd_relay_restrictions\|^smtpd_tls_security_level/d' \
    "$ANCHOR/postfix/etc/main.cf" > "$PF/etc/main.cf"
cat >> "$PF/etc/main.cf" <<EOF
# --- relay benchmark: the load client is trusted, everything goes to the sink
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = may
smtpd_tls_security_level = may
smtpd_tls_cert_file = $PF/etc/cert.pem
smtpd_tls_key_file = $PF/etc/key.pem
EOF
sed "s#^127.0.0.1:2525 #127.0.0.1:$PF_PORT #" "$ANCHOR/postfix/etc/master.cf" > "$PF/etc/master.cf"
cp "$ANCHOR/postfix/etc/vmailbox"* "$PF/etc/"
postfix -c "$PF/etc" check
start_postfix() { nice -n "$NICE" postfix -c "$PF/etc" start > /dev/null 2>&1; sleep 2; }
stop_postfix() { postfix -c "$PF/etc" stop > /dev/null 2>&1 || true; sleep 2; }

MS_DATA=$RESULTS/mailstead-data
rm -rf "$MS_DATA"
"$BIN" init --data-dir "$MS_DATA" --hostname mail.example.test --json > /dev/null
"$BIN" domain add example.test --max-mailboxes 0 --max-quota 0 --total-quota 0 --default-quota 0 --data-dir "$MS_DATA" > /dev/null
for i in $(seq 1 100); do
    echo "$PASS" | "$BIN" mailbox add "user$i@example.test" --password-stdin --data-dir "$MS_DATA" > /dev/null
done
echo "remote.test MX 10 127.0.0.1:$SINK_PORT" > "$MS_DATA/dns-static.map"
start_mailstead() {
    SUBMISSION_PORT=127.0.0.1:$MS_PORT SMTP_PORT=127.0.0.1:0 SMTPS_PORT=127.0.0.1:0 IMAP_PORT=127.0.0.1:0 \
        IMAPS_PORT=127.0.0.1:0 POP_PORT=127.0.0.1:0 POPS_PORT=127.0.0.1:0 SIEVE_PORT=127.0.0.1:0 \
        DNS_STATIC_MAP=$MS_DATA/dns-static.map LOG_LEVEL=warn MAX_CONNECTIONS_PER_IP=1000 \
        nice -n "$NICE" "$BIN" serve --data-dir "$MS_DATA" 2>> "$RESULTS/mailstead.log" &
    MS_PID=$!
    for _ in $(seq 1 100); do [ -f "$MS_DATA/run/listeners.json" ] && break; sleep 0.1; done
}
stop_mailstead() { kill "$MS_PID"; wait "$MS_PID" || true; rm -f "$MS_DATA/run/listeners.json"; }

SINK_LOG=$RESULTS/sink.log
smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 256 > "$SINK_LOG" 2>&1 &
SINK_PID=$!
trap 'kill $SINK_PID 2> /dev/null || true; stop_postfix' EXIT
sleep 0.5

# Runs one load while sampling the server processes: $1 = name, $2 = port, $3 = size,
# $4 = client flags, rest = procstat roots.
measure() {
    local name=$1 port=$2 size=$3 flags=$4; shift 4
    python3 "$KIT/procstat.py" sample --interval 0.5 --max-seconds 900 \
        --stop-file "$RESULTS/stop" "$@" --out "$RESULTS/${name}_procstat.json" > /dev/null &
    local sampler=$!
    # shellcheck disable=SC2086
    nice -n "$NICE" python3 "$HERE/relay_load.py" --port "$port" --messages "$MESSAGES" --size "$size" \
        --concurrency "$CONCURRENCY" --password "$PASS" --sink-log "$SINK_LOG" $flags \
        --out "$RESULTS/${name}.json" > /dev/null || log "$name: load failed"
    touch "$RESULTS/stop"; wait "$sampler" || true; rm -f "$RESULTS/stop"
}

for size in $SIZES; do
    for rep in $(seq 1 "$REPS"); do
        python3 "$KIT/wait_quiet.py" --timeout 60 2>> "$RESULTS/log.txt" || log "machine not quiet; running anyway"
        log "postfix: $MESSAGES x $size bytes, round $rep"
        start_postfix
        measure "postfix_${size}_$rep" "$PF_PORT" "$size" "--starttls" --pidfile "$PF/spool/pid/master.pid"
        stop_postfix

        log "mailstead: $MESSAGES x $size bytes, round $rep"
        start_mailstead
        measure "mailstead_${size}_$rep" "$MS_PORT" "$size" "--starttls --auth" --pid "$MS_PID"
        stop_mailstead
    done
done

python3 - "$RESULTS" "$SIZES" <<'PY'
import glob, json, statistics, sys
d, sizes = sys.argv[1], sys.argv[2].split()
def rounds(kind, size):
    out = []
    for f in sorted(glob.glob(f"{d}/{kind}_{size}_[0-9]*.json")):
        if f.endswith("_procstat.json"):
            continue
        r = json.load(open(f))
        p = json.load(open(f.replace(".json", "_procstat.json")))
        n = r["delivered"] or 1
        out.append(dict(mps=r["msgs_per_s"], cpu=1000 * p["server_cpu_s"] / n,
                        pss=p["peak"]["pss_kb"] / 1024, errors=r["errors"] + r["messages"] - r["delivered"]))
    return out
lines = ["| size | measure | Postfix | mailstead | mailstead / Postfix |", "|---|---|---|---|---|"]
for size in sizes:
    a, m = rounds("postfix", size), rounds("mailstead", size)
    if not a or not m:
        continue
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    for name, k in (("messages/s", "mps"), ("server CPU ms/message", "cpu"), ("peak PSS MiB", "pss")):
        av, mv = med(a, k), med(m, k)
        lines.append(f"| {size} | {name} | {av:.3g} | {mv:.3g} | {mv / av:.2f} |")
    lines.append(f"| {size} | lost or failed | {sum(x['errors'] for x in a)} | {sum(x['errors'] for x in m)} | |")
open(f"{d}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "results in $RESULTS"
