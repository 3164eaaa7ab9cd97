#!/usr/bin/env python3
"""Relay benchmark load: submits --messages messages for a remote domain and times them until a
loopback sink (Postfix's smtp-sink -c, its output in --sink-log) has received every one.

Each of --concurrency workers opens a connection, optionally does STARTTLS (--starttls) and
AUTH PLAIN as userN@example.test (--auth), sends --per-connection messages (sender: the worker's
own address, one random recipient rcptK@--domain each) and reconnects, until the budget is
spent. Prints and writes (--out) JSON: messages, seconds to all accepted, seconds to all
delivered, messages per second end to end, errors.
"""
import argparse, json, os, random, re, smtplib, ssl, sys, threading, time


def sink_count(path):
    """The sink's message counter: smtp-sink -c rewrites `sess=N quit=N mesg=N` with \\r."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 256))
            tail = f.read().decode("ascii", "replace")
    except FileNotFoundError:
        return 0
    found = re.findall(r"mesg=(\d+)", tail)
    return int(found[-1]) if found else 0


def body(size, sender, rcpt, n):
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: relay bench {n}\r\n"
            f"Message-ID: <bench.{n}.{random.getrandbits(48)}@example.test>\r\n\r\n")
    line = "relay benchmark payload line of text 0123456789 abcdefghijklmnopqrstuvwxyz\r\n"
    text = (line * (size // len(line) + 1))[:size]
    return head + text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--per-connection", type=int, default=50)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--domain", default="remote.test")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--auth", action="store_true")
    ap.add_argument("--sink-log", required=True)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out")
    args = ap.parse_args()

    base = sink_count(args.sink_log)
    budget = [args.messages]
    lock = threading.Lock()
    errors = []
    accepted = [0]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + args.timeout

    def take(n):
        with lock:
            k = min(n, budget[0])
            budget[0] -= k
            return k

    def worker(w):
        rnd = random.Random(w)
        while time.monotonic() < deadline:
            k = take(args.per_connection)
            if k == 0:
                return
            user = f"user{rnd.randint(1, args.users)}@example.test"
            try:
                s = smtplib.SMTP(args.host, args.port, timeout=60)
                s.ehlo("loadgen.example.net")
                if args.starttls:
                    s.starttls(context=ctx)
                    s.ehlo("loadgen.example.net")
                if args.auth:
                    s.login(user, args.password)
                for i in range(k):
                    rcpt = f"rcpt{rnd.randint(1, 1000)}@{args.domain}"
                    s.sendmail(user, [rcpt], body(args.size, user, rcpt, i))
                    with lock:
                        accepted[0] += 1
                s.quit()
            except Exception as e:  # a failed connection loses its unsent share; reported
                with lock:
                    errors.append(repr(e)[:200])

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    t_accept = time.monotonic() - t0
    want = accepted[0]
    while sink_count(args.sink_log) - base < want and time.monotonic() < deadline:
        time.sleep(0.05)
    t_deliver = time.monotonic() - t0
    delivered = sink_count(args.sink_log) - base
    result = dict(messages=args.messages, accepted=want, delivered=delivered, size=args.size,
                  concurrency=args.concurrency, t_accept_s=round(t_accept, 3),
                  t_deliver_s=round(t_deliver, 3),
                  msgs_per_s=round(delivered / t_deliver, 1) if t_deliver > 0 else 0,
                  errors=len(errors), error_samples=errors[:5])
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    return 0 if delivered == args.messages and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
