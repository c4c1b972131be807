"""Writes tests/data/wfdb/pseudo.tst with wfdb-python's own writer (wrann): annotations with subtypes,
channels, numbers, aux strings and gaps beyond 1023 samples (so SKIP, SUB, CHN, NUM and AUX pseudo-codes all
occur), and tests/data/wfdb/pseudo.json with what wfdb-python reads back (rdann). The Rust parser is checked
against both, i.e. against an independent implementation of the MIT annotation format.

Run: python3 scripts/make_annotation_fixture.py   (needs `pip install wfdb`)
"""
import json
import os

import numpy as np
import wfdb

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "tests", "data", "wfdb")
sample = np.array([10, 500, 1600, 1601, 70000, 70001, 5_000_000, 5_000_360])
symbol = ["N", "V", "+", "A", "~", "N", '"', "N"]
subtype = np.array([0, 2, 0, -3, 5, 0, 0, 1])
chan = np.array([0, 0, 1, 1, 0, 2, 2, 0])
num = np.array([0, 0, 0, 4, 4, 9, 0, 0])
aux = ["", "", "(AFIB", "", "", "", "a note", ""]
wfdb.wrann("pseudo", "tst", sample, symbol=symbol, subtype=subtype, chan=chan, num=num,
           aux_note=aux, write_dir=out)
a = wfdb.rdann(os.path.join(out, "pseudo"), "tst")
rows = [
    {"sample": int(s), "symbol": y, "subtype": int(t), "chan": int(c), "num": int(n), "aux": x.rstrip("\x00")}
    for s, y, t, c, n, x in zip(a.sample, a.symbol, a.subtype, a.chan, a.num, a.aux_note)
]
with open(os.path.join(out, "pseudo.json"), "w") as f:
    json.dump(rows, f, indent=1)
print(len(rows), "annotations")
