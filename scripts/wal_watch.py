#!/usr/bin/env python3
"""Watch a live SQLite WAL: frames in it and frames checkpointed, every 2 ms.

Usage: scripts/wal_watch.py <data-dir>/traitor.db-shm SECONDS

Reads the wal-index header that SQLite keeps in the -shm file (read-only; it takes no
lock and changes nothing): mxFrame (offset 16, frames in the WAL) and nBackfill
(offset 96, frames already copied into the database file). Prints how often the WAL
restarted, its longest length, and a sample every 50 ms. A WAL that sits at the same
length for tens of milliseconds while writes stream in is a writer stuck in a
checkpoint (see docs/benchmarks.md, sixth session). Little-endian hosts only.
"""
import mmap
import os
import struct
import sys
import time


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    fd = os.open(path, os.O_RDONLY)
    shm = mmap.mmap(fd, 32768, prot=mmap.PROT_READ)
    rows = []
    end = time.time() + seconds
    while time.time() < end:
        frames = struct.unpack_from("<I", shm, 16)[0]
        backfilled = struct.unpack_from("<I", shm, 96)[0]
        rows.append((time.perf_counter(), frames, backfilled))
        time.sleep(0.002)
    restarts = sum(1 for a, b in zip(rows, rows[1:]) if b[1] < a[1])
    print(f"samples {len(rows)}, restarts {restarts}, longest WAL {max(r[1] for r in rows)} frames")
    t0 = rows[0][0]
    for t, frames, backfilled in rows[::25]:
        print(f"{t - t0:7.3f} s  frames {frames:6d}  checkpointed {backfilled:6d}")


if __name__ == "__main__":
    main()
