#!/usr/bin/env python3
"""Writes the seed corpora for the fuzz targets from the crate's test data (run from crates/certlogic/fuzz).

corpus/evaluate: one file per test-suite assertion, "expression NUL data".
corpus/rules:    one file per country rule, "rule NUL payload of its first test that has one".
"""
import glob
import hashlib
import json
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def write(folder, blob):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(blob).hexdigest()), "wb") as f:
        f.write(blob)


for path in glob.glob(os.path.join(DATA, "certlogic", "testSuite", "*.json")):
    suite = json.load(open(path, encoding="utf-8"))
    for case in suite["cases"]:
        for assertion in case["assertions"]:
            expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
            write("corpus/evaluate", json.dumps(expr).encode() + b"\0" + json.dumps(assertion["data"]).encode())

for path in glob.glob(os.path.join(DATA, "dcc-rules", "*", "*", "rule.json")):
    rule = json.load(open(path, encoding="utf-8"))
    payload = {}
    for test in sorted(glob.glob(os.path.join(os.path.dirname(path), "tests", "*.json"))):
        candidate = json.load(open(test, encoding="utf-8")).get("payload")
        if candidate:
            payload = candidate
            break
    write("corpus/rules", json.dumps(rule, ensure_ascii=False).encode() + b"\0" + json.dumps(payload).encode())
