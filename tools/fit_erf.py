#!/usr/bin/env python3
"""Fits the piecewise polynomials of the AVX-512 GELU epilogue's erf
(src/backend/cpu/gemm/gelu.rs) and prints them as the Rust table it holds.

erf(a) on [0, 4) is cut into 16 intervals of width 1/4; on interval i it is a degree-5
polynomial in u = 4a - i - 1/2 (u in [-1/2, 1/2]). Each polynomial is a least-squares fit
on Chebyshev nodes (close to the minimax one), its coefficients rounded to f32. The
largest error of the rounded polynomials against math.erf is printed to stderr; the Rust
test checks the f32 evaluation against libm's f64 erf.

Usage: python3 tools/fit_erf.py   (numpy)
"""

import math
import sys

import numpy as np

INTERVALS = 16
DEGREE = 5
NODES = 64


def fit(i):
    k = np.arange(NODES)
    u = 0.5 * np.cos(np.pi * (k + 0.5) / NODES)
    a = (u + i + 0.5) / 4.0
    y = np.array([math.erf(v) for v in a])
    coef = np.polynomial.polynomial.polyfit(u, y, DEGREE)
    return coef.astype(np.float32)


def main():
    table = [fit(i) for i in range(INTERVALS)]
    worst = 0.0
    for i, coef in enumerate(table):
        u = np.linspace(-0.5, 0.5, 4001)
        a = (u + i + 0.5) / 4.0
        want = np.array([math.erf(v) for v in a])
        got = np.polynomial.polynomial.polyval(u, coef.astype(np.float64))
        worst = max(worst, float(np.max(np.abs(got - want))))
    print(f"largest |error| of the f32 coefficients: {worst:.3e}", file=sys.stderr)
    print("/// erf on interval i of [0, 4) (width 1/4): coefficient d of u^d at [d][i],")
    print("/// u = 4a - i - 1/2; from tools/fit_erf.py.")
    print(f"const ERF_TABLE: [[f32; {INTERVALS}]; {DEGREE + 1}] = [")
    for d in range(DEGREE + 1):
        print("    [")
        for i in range(INTERVALS):
            print(f"        {str(table[i][d])},")
        print("    ],")
    print("];")


if __name__ == "__main__":
    main()
