#!/usr/bin/env python3
"""Python baseline for `caravan cert bench`: the same full HC1 verification as the Rust verifier, with the usual
Python stack (base45 + zlib + cbor2 + cryptography), keys parsed once and cached by kid.

Input: a JSON file [{"prefix": "HC1:...", "certificate": "<base64 DER>", "clock": <unix seconds>}, ...].
Output: one JSON line {"verifications": N, "seconds": S, "per_second": R, "ok": K}.
Needs: pip install cbor2 base45 cryptography
"""
import hashlib
import json
import sys
import time
import zlib

import base45
import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def load_keys(cases):
    keys = {}
    for case in cases:
        der = __import__("base64").b64decode(case["certificate"])
        kid = hashlib.sha256(der).digest()[:8]
        cert = x509.load_der_x509_certificate(der)
        keys.setdefault(kid, []).append(cert.public_key())
    return keys


def verify(text, keys, clock):
    if not text.startswith("HC1:"):
        raise ValueError("prefix")
    cose = zlib.decompress(base45.b45decode(text[4:]))
    obj = cbor2.loads(cose)
    while isinstance(obj, cbor2.CBORTag):
        obj = obj.value
    protected, unprotected, payload, signature = obj
    phdr = cbor2.loads(protected) if protected else {}
    alg = phdr.get(1, unprotected.get(1))
    kid = phdr.get(4, unprotected.get(4))
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    for key in keys.get(kid, ()):
        try:
            if alg == -7 and isinstance(key, ec.EllipticCurvePublicKey):
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                key.verify(encode_dss_signature(r, s), to_sign, ec.ECDSA(hashes.SHA256()))
            elif alg == -35 and isinstance(key, ec.EllipticCurvePublicKey):
                r = int.from_bytes(signature[:48], "big")
                s = int.from_bytes(signature[48:], "big")
                key.verify(encode_dss_signature(r, s), to_sign, ec.ECDSA(hashes.SHA384()))
            elif alg == -37 and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, to_sign,
                           padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
            else:
                continue
        except InvalidSignature:
            continue
        claims = cbor2.loads(payload)
        dcc = claims[-260][1]
        if not (claims[6] <= clock <= claims[4]):
            return False
        return bool(dcc.get("nam")) and "dob" in dcc
    return False


def main():
    cases = json.load(open(sys.argv[1]))
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    keys = load_keys(cases)
    ok = sum(1 for c in cases if verify(c["prefix"], keys, c["clock"]))
    n = 0
    # Rates are per CPU second of this thread (like `openssl speed`, which divides by user time), so a loaded
    # machine does not skew the comparison; the loop itself runs for `seconds` of wall time.
    start = time.perf_counter()
    cpu = time.thread_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for c in cases:
            verify(c["prefix"], keys, c["clock"])
        n += len(cases)
    elapsed = time.thread_time() - cpu
    print(json.dumps({"verifications": n, "seconds": elapsed, "per_second": n / elapsed, "ok": ok}))


if __name__ == "__main__":
    main()
