#!/usr/bin/env python3
"""Extracts payloads.json from a checkout of eu-digital-green-certificates/dgc-testdata.

Usage: extract.py DGC_TESTDATA_DIR > payloads.json

Every test file that carries a decoded DCC payload (its "JSON" field) contributes {file, clock, payload}, where clock
is the file's TESTCTX.VALIDATIONCLOCK; payloads that occur more than once are kept once (the first file in sorted
order). Nothing else is changed.
"""
import glob
import json
import os
import sys

root = sys.argv[1]
out, seen = [], set()
for path in sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True)):
    try:
        test = json.load(open(path, encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        continue
    if isinstance(test, dict) and isinstance(test.get("JSON"), dict):
        key = json.dumps(test["JSON"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append({"file": os.path.relpath(path, root), "clock": test["TESTCTX"]["VALIDATIONCLOCK"],
                        "payload": test["JSON"]})
json.dump(out, sys.stdout, ensure_ascii=False, separators=(",", ":"))
