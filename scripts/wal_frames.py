#!/usr/bin/env python3
"""How many WAL frames (whole pages) a group commit of job creates writes, per B-tree.

Diagnostic for the create path of the SQLite store (docs/benchmarks.md, "creates").
Give it a traitor.db that holds at least one job, script version and audit entry
(e.g. after a few seconds of `wrk` creates, with traitor stopped). It works on a
copy: it appends groups of creates shaped like the stored rows, time-ordered ids as
traitor makes them, then reads the page number of every frame of the copy's WAL and
names its B-tree with the `dbstat` table.

    python3 scripts/wal_frames.py DATA_DIR/traitor.db [--groups 300] [--per-group 3]
"""
import argparse
import random
import shutil
import sqlite3
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path


def frame_pages(wal: Path, page_size: int) -> list[int]:
    data = wal.read_bytes()
    pages, off = [], 32
    while off + 24 <= len(data):
        pages.append(struct.unpack(">I", data[off : off + 4])[0])
        off += 24 + page_size
    return pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--per-group", type=int, default=3)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wal-frames-"))
    db = work / "traitor.db"
    shutil.copy(args.db, db)
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA wal_autocheckpoint = 0")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = c.execute("PRAGMA page_size").fetchone()[0]
    cols = [r[1] for r in c.execute("PRAGMA table_info(jobs)")]
    job = c.execute("SELECT * FROM jobs LIMIT 1").fetchone()
    version = c.execute(
        "SELECT source, note, created_at_ms FROM script_versions LIMIT 1"
    ).fetchone()
    entry = c.execute("SELECT actor, node, action, detail FROM audit LIMIT 1").fetchone()
    if not (job and version and entry):
        raise SystemExit("the database needs a job, a script version and an audit entry")
    print(f"{c.execute('SELECT COUNT(*) FROM jobs').fetchone()[0]} jobs, "
          f"schema version {c.execute('PRAGMA user_version').fetchone()[0]}, "
          f"{page_size}-byte pages")

    n = 0
    for names in ("unique names", "one name"):
        before = len(frame_pages(work / "traitor.db-wal", page_size))
        for _ in range(args.groups):
            c.execute("BEGIN IMMEDIATE")
            for _ in range(args.per_group):
                n += 1
                now = int(time.time() * 1000) + n
                # UUID v7: the millisecond first, so ids are appended in order.
                h = f"{now:012x}7{n % 4096:03x}8{random.getrandbits(60):015x}"
                jid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
                row = list(job)
                row[cols.index("id")] = jid
                row[cols.index("created_at_ms")] = now
                row[cols.index("name")] = (
                    f"wrk-1-{random.randint(0, 10**6)}" if names == "unique names" else "plain"
                )
                c.execute(f"INSERT INTO jobs VALUES ({','.join('?' * len(row))})", row)
                c.execute(
                    "INSERT INTO script_versions (job_id, version, source, note, created_at_ms) "
                    "VALUES (?, 1, ?, ?, ?)",
                    (jid, *version),
                )
                c.execute(
                    "INSERT INTO audit (id, at_ms, actor, node, action, target, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (jid[:-1] + "a", now, entry[0], entry[1], entry[2], jid, entry[3]),
                )
            c.execute("COMMIT")
        pages = frame_pages(work / "traitor.db-wal", page_size)[before:]
        tree = dict(c.execute("SELECT pageno, name FROM dbstat"))
        tree[1] = "page 1 (header)"
        counts = Counter(tree.get(p, "?") for p in pages)
        print(f"{names}: {len(pages) / args.groups:.1f} frames per group of {args.per_group}")
        for name, k in counts.most_common():
            print(f"  {name:28} {k / args.groups:5.2f}")
    c.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
