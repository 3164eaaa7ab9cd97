#!/usr/bin/env python3
"""Idle IMAP connections: opens --connections sessions (users user1..--users in turn), each
LOGIN, SELECT INBOX and IDLE, then holds them for --hold seconds while procstat measures the
server. Before letting go it appends one message to --probe-user's INBOX from a separate session
and checks that every idling session of that user announced it (an untagged EXISTS): the
connections are live, not just open. Prints JSON: connections established, failures, seconds to
set up, and how many probed sessions saw the new message.
"""
import argparse, asyncio, imaplib, json, sys, time


async def session(args, user, setup, gate, counters, probe):
    async with setup:  # bounds the logins in flight, not the connections held
        r, w = await asyncio.open_connection(args.host, args.port)
        await r.readline()
        w.write(f'a LOGIN {user} "{args.password}"\r\n'.encode())
        await expect(r, b"a ")
        w.write(b"b SELECT INBOX\r\n")
        await expect(r, b"b ")
        w.write(b"c IDLE\r\n")
        line = await r.readline()
        if not line.startswith(b"+"):
            raise RuntimeError(f"IDLE refused: {line!r}")
    counters["ready"] += 1
    if probe:
        reading = asyncio.ensure_future(wait_exists(r))
        closing = asyncio.ensure_future(gate.wait())
        await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done() and reading.result():
            counters["saw"] += 1
        else:
            reading.cancel()
    await gate.wait()
    w.close()


async def wait_exists(r):
    """True once the server announces a new message (keepalives `* OK` may come first)."""
    while True:
        line = await r.readline()
        if not line:
            return False
        if line.endswith(b"EXISTS\r\n"):
            return True


async def expect(r, tag):
    while True:
        line = await r.readline()
        if not line:
            raise RuntimeError("connection closed")
        if line.startswith(tag):
            if not line[len(tag):].startswith(b"OK"):
                raise RuntimeError(line.decode(errors="replace").strip())
            return


async def main_async(args):
    gate = asyncio.Event()
    setup = asyncio.Semaphore(args.setup_concurrency)
    counters = {"ready": 0, "failed": 0, "saw": 0}
    users = [f"user{i % args.users + 1}@example.test" for i in range(args.connections)]
    probes = sum(1 for u in users if u == args.probe_user)

    async def guarded(i, user):
        try:
            await session(args, user, setup, gate, counters, user == args.probe_user)
        except Exception as e:
            counters["failed"] += 1
            if counters["failed"] <= 5:
                print(f"connection {i}: {e!r}", file=sys.stderr)

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(guarded(i, u)) for i, u in enumerate(users)]
    while counters["ready"] + counters["failed"] < args.connections:
        await asyncio.sleep(0.1)
    setup_s = time.monotonic() - t0
    # Tell the driver the connections are up, then hold them while it measures.
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(counters["ready"]))
    await asyncio.sleep(args.hold)
    # The probe: a new message must reach every idling session of the probe user.
    m = imaplib.IMAP4(args.host, args.port)
    m.login(args.probe_user, args.password)
    m.append("INBOX", None, None, b"From: <probe@example.test>\r\nSubject: probe\r\n\r\nprobe\r\n")
    m.logout()
    t1 = time.monotonic()
    while counters["saw"] < probes and time.monotonic() - t1 < args.probe_timeout:
        await asyncio.sleep(0.05)
    probe_s = time.monotonic() - t1
    gate.set()
    await asyncio.gather(*tasks)
    return dict(connections=args.connections, established=counters["ready"],
                failures=counters["failed"], setup_s=round(setup_s, 2), probe_sessions=probes,
                probe_saw_exists=counters["saw"], probe_s=round(probe_s, 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--setup-concurrency", type=int, default=50)
    ap.add_argument("--hold", type=float, default=10)
    ap.add_argument("--probe-user", default="user1@example.test")
    ap.add_argument("--probe-timeout", type=float, default=60)
    ap.add_argument("--ready-file")
    ap.add_argument("--out")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result))
    if args.out:
        json.dump(result, open(args.out, "w"))
    ok = result["failures"] == 0 and result["probe_saw_exists"] == result["probe_sessions"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
