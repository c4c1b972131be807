"""Peer side of `caravan ecg bench`: runs the wfdb Python package's XQRS detector on one channel of a WFDB
record and prints JSON {"seconds": [...], "peaks": [...], "wfdb_version": "..."} on stdout.

Usage: python3 xqrs_bench.py RECORD CHANNEL REPEAT   (needs `pip install wfdb`)
Only the detection is timed, not the reading of the record, exactly as on the Rust side; both wall-clock
("seconds") and this thread's CPU time ("cpu_seconds", robust to a busy machine) are reported.
"""
import json
import sys
import time

import wfdb
from wfdb import processing

record, channel, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rec = wfdb.rdrecord(record, channels=[channel])
sig = rec.p_signal[:, 0]
times = []
cpu = []
peaks = []
for _ in range(max(1, repeat)):
    t0, c0 = time.perf_counter(), time.thread_time()
    peaks = processing.xqrs_detect(sig=sig, fs=rec.fs, verbose=False)
    times.append(time.perf_counter() - t0)
    cpu.append(time.thread_time() - c0)
print(json.dumps({"seconds": times, "cpu_seconds": cpu, "peaks": [int(p) for p in peaks],
                  "wfdb_version": wfdb.__version__}))
