#!/usr/bin/env python3
"""One very large folder: `populate` APPENDs --messages small messages to one user's INBOX from
--clients connections; `run` times, over a raw socket (so the client's parsing does not count),
SELECT, FETCH 1:* (FLAGS), UID SEARCH (flags only, then a header field), and a QRESYNC SELECT
after another session changed flags on 100 messages and expunged 10. Each measure is the median
of --reps. Prints JSON with milliseconds per operation.
"""
import argparse, imaplib, json, os, random, socket, statistics, sys, threading, time

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


def message(rnd, user, w, i):
    subject = f"{rnd.choice(WORDS)} {rnd.choice(WORDS)} {w}-{i}"
    return (f"From: <sender{rnd.randint(1, 500)}@example.net>\r\nTo: <{user}>\r\n"
            f"Subject: {subject}\r\nMessage-ID: <big.{w}.{i}@example.net>\r\n\r\n"
            + "a line of text in a small message\r\n" * 20).encode()


def populate(args):
    per = args.messages // args.clients
    errors = []

    def worker(w):
        rnd = random.Random(w)
        try:
            if args.maildir:
                # Dovecot's own delivery format, written directly: APPEND into one maildir
                # slows to tens per second as the folder grows. Indexed at the first SELECT.
                for i in range(per):
                    name = f"{args.maildir}/new/{1700000000 + i}.M{w}P{i}.bench"
                    with open(name, "wb") as f:
                        f.write(message(rnd, args.user, w, i).replace(b"\r\n", b"\n"))
                    os.chown(name, 5000, 5000)
                return
            m = imaplib.IMAP4(args.host, args.port)
            m.login(args.user, args.password)
            for i in range(per):
                m.append("INBOX", None, None, message(rnd, args.user, w, i))
            m.logout()
        except Exception as e:
            errors.append(repr(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(appended=per * args.clients, seconds=round(time.monotonic() - t0, 1), errors=errors[:5])


class Raw:
    """A minimal IMAP client: sends a command, reads until its tagged reply, keeps the lines."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port))
        self.f = self.s.makefile("rb", buffering=1 << 20)
        self.n = 0
        self.f.readline()

    def cmd(self, text):
        self.n += 1
        tag = f"t{self.n}".encode()
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(f"{text}: {line!r}")
                return lines
            lines.append(line)

    def timed(self, text):
        t0 = time.perf_counter()
        lines = self.cmd(text)
        return (time.perf_counter() - t0) * 1000, lines


def run(args):
    c = Raw(args.host, args.port)
    c.cmd(f'LOGIN {args.user} "{args.password}"')
    c.cmd("ENABLE QRESYNC")
    # Not measured: the first look at the folder (Dovecot indexes a maildir filled directly).
    c.cmd("SELECT INBOX")
    c.cmd("FETCH 1:* (FLAGS ENVELOPE)")
    c.cmd("UNSELECT")
    out = {}
    samples = {k: [] for k in ("select", "fetch_flags", "uid_search_unseen", "uid_search_subject", "qresync_select")}
    exists = 0
    for rep in range(args.reps):
        ms, lines = c.timed("SELECT INBOX")
        samples["select"].append(ms)
        for l in lines:
            if l.endswith(b" EXISTS\r\n"):
                exists = int(l.split()[1])
        uidvalidity = next(int(l.split(b"UIDVALIDITY ")[1].split(b"]")[0]) for l in lines if b"UIDVALIDITY" in l)
        modseq = next(int(l.split(b"HIGHESTMODSEQ ")[1].split(b"]")[0]) for l in lines if b"HIGHESTMODSEQ" in l)
        ms, lines = c.timed("FETCH 1:* (FLAGS)")
        samples["fetch_flags"].append(ms)
        if len(lines) < exists:
            raise RuntimeError(f"FETCH returned {len(lines)} of {exists}")
        samples["uid_search_unseen"].append(c.timed("UID SEARCH UNSEEN")[0])
        samples["uid_search_subject"].append(c.timed(f'UID SEARCH SUBJECT "{WORDS[rep % len(WORDS)]}"')[0])
        c.cmd("UNSELECT")
        # Another session changes 100 messages' flags and expunges 10.
        o = Raw(args.host, args.port)
        o.cmd(f'LOGIN {args.user} "{args.password}"')
        o.cmd("SELECT INBOX")
        base = 1000 + rep * 200
        o.cmd(f"STORE {base}:{base + 99} +FLAGS.SILENT (\\Flagged)")
        o.cmd(f"STORE {base + 100}:{base + 109} +FLAGS.SILENT (\\Deleted)")
        o.cmd("EXPUNGE")
        o.cmd("LOGOUT")
        ms, lines = c.timed(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
        samples["qresync_select"].append(ms)
        vanished = [l for l in lines if l.startswith(b"* VANISHED")]
        changed = [l for l in lines if b" FETCH " in l]
        if not vanished or len(changed) < 100:
            raise RuntimeError(f"QRESYNC reported {len(changed)} changes, vanished {vanished[:1]}")
        c.cmd("UNSELECT")
    c.cmd("LOGOUT")
    for k, v in samples.items():
        out[k + "_ms"] = round(statistics.median(v), 1)
    out["messages"] = exists
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["populate", "run"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="user1@example.test")
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--maildir", help="populate: write into this maildir instead of APPEND")
    ap.add_argument("--out")
    args = ap.parse_args()
    result = populate(args) if args.mode == "populate" else run(args)
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
