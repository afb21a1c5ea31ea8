#!/usr/bin/env python3
"""Alternates gateway binaries at the acceptance burst (every recipient down) in one session, so
that a change is measured against its base on the same machine at the same time: these shared
machines drift by more than most changes are worth, so only figures from one run compare.

    cargo build --release && cp target/release/passerelle /tmp/base
    (change, then) cargo build --release && cp target/release/passerelle /tmp/new
    python3 benches/alternate.py --rounds 3 /tmp/base /tmp/new
    python3 benches/alternate.py --push 500 /tmp/base /tmp/new   # sustained push at 500 records/s instead

With `--push RATE` the recipients are up and oha offers RATE records/s: each run prints the
records accepted and delivered, the gateway's CPU per record (its four deliveries included), the
writer's transactions per delivery, the share of deliveries handed over at acceptance, and the
mean time from acceptance to a record's last delivery, the store writer's busy share (of the
run and the 2.5 s after it, in which the last deliveries land), and what the writer thread wrote
per accepted record (its log; `benches/wal_frames.py` says which tables and indexes).

Each round runs each binary once, on a fresh store, for `--duration` seconds, and prints what the
burst's row in `load.py` prints plus the store writer's view from `/metrics`: its busy share, the
records per commit and the commit's mean duration. The binary under target/release is replaced
while it runs and left as the last one run. Uses load.py's setup (configuration, PKI, nginx as
the stopped recipients); traffic goes to 127.0.0.1 only."""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binaries", nargs="+", type=Path, help="release binaries to alternate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=12, help="seconds per run")
    parser.add_argument("--push", type=int, metavar="RATE", help="sustained push at RATE records/s, recipients up")
    args = parser.parse_args()
    setup = argparse.Namespace(quick=False, duration=args.duration, only=["burst"], skip=[], no_build=True, port_offset=0)
    load.ports_free()
    load.ensure_tools()
    target = load.ROOT / "target/release/passerelle"
    shutil.copy(args.binaries[0], target)
    config, pki, records = load.prepare(setup)
    ctx = load.Context(setup, config, pki, records)
    tls = load.client_tls(pki, "on-vital-stats")
    url = f"https://localhost:{load.PARTNER_PORT}/v1/records/birth-registration"
    if not args.push:
        ctx.recipients.stop()
        ctx.city.stop()
    rows = []
    try:
        for round in range(args.rounds):
            for binary in args.binaries:
                ctx.passerelle.stop()
                shutil.copy(binary, target)
                ctx.restart_passerelle()
                m = ctx.passerelle.metric
                if args.push:
                    row = f"{binary.name:>12} round {round + 1}: " + push(ctx, m, url, tls, records, args)
                    load.log(row)
                    rows.append(row)
                    continue
                names = ("passerelle_store_writer_busy_seconds_total", "passerelle_store_commit_batch_size_count",
                         "passerelle_store_commit_batch_size_sum", "passerelle_store_commit_duration_seconds_sum")
                before, started = [m(n) for n in names], time.monotonic()
                p = ctx.passerelle_run(lambda: load.oha(url, tls, records / "birth.json", duration=args.duration))
                busy, commits, batched, committing = (m(n) - b for n, b in zip(names, before))
                busy /= time.monotonic() - started
                commits = max(commits, 1)
                row = (f"{binary.name:>12} round {round + 1}: {p['rps']:7.0f} records/s, p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms, "
                       f"{p['cpu'] / max(p['ok'], 1) * 1e6:.0f} µs CPU/record; writer busy {busy * 100:.0f} %, "
                       f"{batched / commits:.1f} records/commit, {committing / commits * 1000:.2f} ms/commit")
                load.log(row)
                rows.append(row)
    finally:
        ctx.stop()
    print("\n".join(rows))


def push(ctx, m, url, tls, records, args):
    """One run of sustained push at `args.push` records/s, as a row."""
    delivered = ("passerelle_deliveries_total", {"outcome": "delivered"})
    names = [("passerelle_store_writer_transactions_total", None), delivered,
             ("passerelle_deliveries_handed_over_total", None),
             ("passerelle_record_completion_seconds_sum", None), ("passerelle_record_completion_seconds_count", None),
             ("passerelle_store_writer_busy_seconds_total", None)]
    # Per recipient: deliveries made, and of those handed over at acceptance.
    each = [(n, {"recipient": r, **(labels or {})}) for r in load.RECIPIENT_PORTS
            for n, labels in (delivered, ("passerelle_deliveries_handed_over_total", None))]
    writer = writer_io(ctx.passerelle.pid())
    before, started = [m(*n) for n in names + each], time.monotonic()
    p = ctx.passerelle_run(lambda: load.oha(url, tls, records / "birth.json", duration=args.duration, rate=args.push))
    time.sleep(2.5)  # the last deliveries land
    after = [m(*n) - b for n, b in zip(names + each, before)]
    written = writer_io(ctx.passerelle.pid()) - writer
    transactions, sent, handed, completing, completed, busy = after[:len(names)]
    per_recipient = after[len(names):]
    shares = ", ".join(f"{r} {h / max(d, 1) * 100:.0f} %"
                       for r, d, h in zip(load.RECIPIENT_PORTS, per_recipient[0::2], per_recipient[1::2]))
    sent = max(sent, 1)
    return (f"{p['rps']:6.0f} accepted/s, {sent / 4 / args.duration:6.0f} delivered records/s, "
            f"{p['cpu'] / max(p['ok'], 1) * 1e6:.0f} µs CPU/record, {transactions / sent:.2f} transactions/delivery, "
            f"{handed / sent * 100:.0f} % handed over, completion {completing / max(completed, 1) * 1000:.1f} ms mean, "
            f"writer busy {busy / (time.monotonic() - started) * 100:.0f} %, "
            f"writer wrote {written / 1024 / max(p['ok'], 1):.1f} KiB/record (handed over: {shares})")


def writer_io(pid):
    """Bytes the store writer thread has written (its log frames: `wchar` in /proc), 0 if unknown."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "store-writer":
                io = dict(line.split(": ") for line in (task / "io").read_text().splitlines())
                return int(io["wchar"])
        except OSError:
            continue
    return 0


if __name__ == "__main__":
    main()
