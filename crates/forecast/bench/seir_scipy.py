#!/usr/bin/env python3
"""The peer side of `forecast bench`: the same metapopulation SEIR solved by SciPy's solve_ivp (RK45).

Usage: seir_scipy.py DIR   (DIR holds meta.json and the little-endian binary arrays written by the Rust side)
Prints one JSON object: best wall time and best process CPU time over the repeats, function evaluations and the
SciPy/NumPy versions; writes the daily trajectory (days + 1 rows of 4n states, little-endian f64) to DIR/trajectory.bin.
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
    best = float("inf")
    best_cpu = float("inf")
    sol = None
    for _ in range(meta["repeats"]):
        t0 = time.perf_counter()
        c0 = time.process_time()
        sol = solve_ivp(rhs, (0.0, float(meta["days"])), y0, method="RK45",
                        rtol=meta["rtol"], atol=meta["atol"], t_eval=t_eval)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best = min(best, time.perf_counter() - t0)
    if not sol.success:
        print(json.dumps({"error": sol.message}))
        sys.exit(1)
    np.ascontiguousarray(sol.y.T, dtype="<f8").tofile(os.path.join(d, "trajectory.bin"))
    print(json.dumps({"seconds": best, "cpu_seconds": best_cpu, "nfev": int(sol.nfev),
                      "scipy": scipy.__version__, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
