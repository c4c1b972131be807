#!/usr/bin/env python3
"""The peer side of `forecast bench`: the same metapopulation SEIR solved by SciPy's solve_ivp (RK45).

Usage: seir_scipy.py DIR   (DIR holds meta.json and the little-endian binary arrays written by the Rust side)

Solves once, writes the daily trajectory (days + 1 rows of 4n states, little-endian f64) to DIR/trajectory.bin and,
when meta.json asks for it, a tight reference solution (DOP853 at meta["ref_rtol"], meta["ref_atol"]) to
DIR/reference.bin; then prints one JSON line: function evaluations, the SciPy/NumPy versions and the reference's
evaluations. After that it times one more solve per line "run" read from stdin (one JSON line back each: wall and
process CPU seconds), so the Rust side can interleave its own runs with these; anything else or EOF ends it.
"""
import json
import os
import sys
import time

import numpy as np
import scipy
from scipy.integrate import solve_ivp
from scipy.sparse import csr_matrix


def load(d, name, dtype="<f8"):
    return np.fromfile(os.path.join(d, name), dtype=dtype)


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    n = meta["n"]
    pop = load(d, "pop.bin")
    beta = load(d, "beta.bin")
    y0 = load(d, "y0.bin")
    sigma, gamma = meta["sigma"], meta["gamma"]
    if meta["dense"]:
        C = load(d, "c.bin").reshape(n, n)
    else:
        C = csr_matrix(
            (load(d, "values.bin"), load(d, "indices.bin", "<i8"), load(d, "indptr.bin", "<i8")),
            shape=(n, n),
        )
    inv_n = 1.0 / pop

    def rhs(t, y):
        S, E, I = y[:n], y[n:2 * n], y[2 * n:3 * n]
        inf = beta * S * (C @ (I * inv_n))
        prog = sigma * E
        rec = gamma * I
        return np.concatenate([-inf, inf - prog, prog - rec, rec])

    t_eval = np.arange(meta["days"] + 1, dtype=float)

    def solve(method="RK45", rtol=meta["rtol"], atol=meta["atol"]):
        return solve_ivp(rhs, (0.0, float(meta["days"])), y0, method=method,
                         rtol=rtol, atol=atol, t_eval=t_eval)

    sol = solve()
    if not sol.success:
        print(json.dumps({"error": sol.message}), flush=True)
        sys.exit(1)
    np.ascontiguousarray(sol.y.T, dtype="<f8").tofile(os.path.join(d, "trajectory.bin"))
    first = {"nfev": int(sol.nfev), "scipy": scipy.__version__, "numpy": np.__version__}
    if meta.get("reference"):
        ref = solve("DOP853", meta["ref_rtol"], meta["ref_atol"])
        if not ref.success:
            print(json.dumps({"error": ref.message}), flush=True)
            sys.exit(1)
        np.ascontiguousarray(ref.y.T, dtype="<f8").tofile(os.path.join(d, "reference.bin"))
        first["ref_nfev"] = int(ref.nfev)
    print(json.dumps(first), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        c0 = time.process_time()
        solve()
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
        print(json.dumps({"seconds": wall, "cpu_seconds": cpu}), flush=True)


if __name__ == "__main__":
    main()
