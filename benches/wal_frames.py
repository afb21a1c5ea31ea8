#!/usr/bin/env python3
"""What the SQLite store writer writes to its log, by b-tree: run it beside a load (for example
`benches/alternate.py --push 2500`) on the gateway's store file, and it samples the write-ahead
log for a few seconds and prints the frames (4 KiB pages) each commit wrote, by the table or index
each page belongs to, and by the kind of commit (records accepted, attempt results, claims).

    python3 benches/alternate.py --push 2500 --rounds 1 --duration 30 target/release/passerelle &
    sleep 12; python3 benches/wal_frames.py target/bench-load/data/passerelle.sqlite

Every commit writes each page it changed once, whole, and an fsync follows: the frames per commit
are what the writer's transaction costs in I/O beyond its statements. A b-tree whose rows are
appended in key order costs about one frame per commit whatever the rows; one whose keys
scatter (or a row updated in an older page) costs a frame per page touched.

The log is read by copying it every `--interval` while the gateway runs (the checkpoint thread
starts it over from time to time); frames are read up to the first one of an earlier pass, and
each commit is counted once. Pages are named by SQLite's `dbstat` table, read once at the end
(a page reused since by another b-tree is named after its new owner: rare in a growing store).
Read-only: the store is opened with `mode=ro`."""

import argparse
import collections
import shutil
import sqlite3
import struct
import tempfile
import time
from pathlib import Path

HEADER = struct.Struct(">IIIIIIII")
FRAME = struct.Struct(">IIIIII")


def commits(wal):
    """The commits in one copy of a log: each (salts, commit frame's offset) and its page numbers."""
    data = wal.read_bytes()
    if len(data) < HEADER.size:
        return
    _, _, page_size, _, salt1, salt2, _, _ = HEADER.unpack_from(data)
    offset, pages = HEADER.size, []
    while offset + FRAME.size + page_size <= len(data):
        page, commit_size, s1, s2, _, _ = FRAME.unpack_from(data, offset)
        if (s1, s2) != (salt1, salt2):
            break  # a frame of the log's previous pass
        pages.append(page)
        if commit_size:
            yield (salt1, salt2, offset), pages
            pages = []
        offset += FRAME.size + page_size


def kind(owners):
    if "records" in owners:
        return "records accepted" + (" and attempt results" if "delivery_attempts_by_time" in owners else "")
    if "delivery_attempts_by_time" in owners:
        return "attempt results"
    if set(owners) <= {"deliveries", "sqlite_schema"}:
        return "claims"
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="the gateway's SQLite file (its log is the file beside it, -wal)")
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()
    wal = args.store.with_name(args.store.name + "-wal")
    seen = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "wal"
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            shutil.copyfile(wal, copy)
            for key, pages in commits(copy):
                seen.setdefault(key, pages)
            time.sleep(args.interval)
    db = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
    owner = dict((page, name) for name, page in db.execute("SELECT name, pageno FROM dbstat"))
    by_tree, by_kind, frames_by_kind = collections.Counter(), collections.Counter(), collections.Counter()
    for pages in seen.values():
        owners = collections.Counter(owner.get(p, "(page since freed)") for p in pages)
        by_tree.update(owners)
        k = kind(owners)
        by_kind[k] += 1
        frames_by_kind[k] += len(pages)
    n, frames = max(len(seen), 1), sum(by_tree.values())
    print(f"{len(seen)} commits, {frames} frames, {frames / n:.1f} frames per commit")
    print("\n| commit | commits | frames per commit |\n|---|---|---|")
    for k, count in by_kind.most_common():
        print(f"| {k} | {count} | {frames_by_kind[k] / max(count, 1):.1f} |")
    print("\n| b-tree | frames per commit | share |\n|---|---|---|")
    for name, count in by_tree.most_common():
        print(f"| {name} | {count / n:.2f} | {count / max(frames, 1) * 100:.1f} % |")


if __name__ == "__main__":
    main()
