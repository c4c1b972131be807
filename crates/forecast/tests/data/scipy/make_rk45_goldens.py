#!/usr/bin/env python3
"""Generates rk45_goldens.json: SciPy solve_ivp(method="RK45") solutions of small ODE problems, used by
tests/ode_scipy.rs to check that forecast's Dormand-Prince solver takes the same steps (same nfev) and gives the
same values. Run: python3 make_rk45_goldens.py > rk45_goldens.json  (SciPy is BSD-3-Clause.)"""
import json

import numpy as np
import scipy
from scipy.integrate import solve_ivp


def seir(t, y, beta=0.5, sigma=0.2, gamma=0.25, n=1e5):
    s, e, i, r, c = y
    inf = beta * s * i / n
    return [-inf, inf - sigma * e, sigma * e - gamma * i, gamma * i, sigma * e]


def lotka(t, y):
    return [1.1 * y[0] - 0.4 * y[0] * y[1], 0.1 * y[0] * y[1] - 0.4 * y[1]]


def decay(t, y):
    return [-0.5 * y[0], y[0] - 0.1 * y[1]]


cases = []
for name, fun, y0, t1 in [("seir", seir, [1e5 - 5, 0, 5, 0, 0], 150.0),
                          ("lotka", lotka, [10.0, 10.0], 50.0),
                          ("decay", decay, [1.0, 0.0], 20.0)]:
    for rtol, atol in [(1e-3, 1e-6), (1e-6, 1e-6), (1e-9, 1e-9)]:
        t_eval = np.linspace(0.0, t1, 31)
        sol = solve_ivp(fun, (0.0, t1), y0, method="RK45", rtol=rtol, atol=atol, t_eval=t_eval)
        cases.append({"name": name, "rtol": rtol, "atol": atol, "y0": y0, "t_eval": t_eval.tolist(),
                      "nfev": int(sol.nfev), "y": sol.y.T.tolist()})
print(json.dumps({"scipy": scipy.__version__, "cases": cases}))
