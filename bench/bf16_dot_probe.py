"""Is an AVX512_BF16 (VDPBF16PS) bf16 dot kernel worth a CPU tier? Measured, not assumed.

Compiles bench/bf16_dot_probe.cpp (g++ -O2 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16) into
/tmp, loads it with ctypes and compares, in one process with interleaved rounds of thread CPU
time, skylake's widening kernel against VDPBF16PS with the float32 query split into bf16 parts
(see the .cpp), one query against n bfloat16 rows:

    python bench/bf16_dot_probe.py            # speed table + precision table
    python bench/bf16_dot_probe.py --quick    # fewer rounds

Speed: rows mode (one call over n rows, query split once) and pair mode (n one-pair calls,
the query split in each), d = 384 and 1024, n = 200 (rows in L1/L2) and 60000 (DRAM).
Precision: max |got - ref| / (U * sum |q x|) against float64 NumPy (U = 2^-24), the unit of
tests/test_kernels.py's bound 4 (d + 2) U sum |q x| (+ 2 U |ref| + 1e-6), for random,
tiny-query (parts below 2^-126 flushed by VDPBF16PS) and mixed-magnitude data.
Needs a CPU with avx512_bf16 (Zen 4/5, Sapphire Rapids and later).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pathlib
import subprocess
import sys

import numpy as np

KERNELS = ["widen2 (skylake)", "widen4", "bf16x3", "bf16x2", "bf16x3 2 rows", "widen2 2 rows", "widen even/odd"]
U = 2.0 ** -24


def build() -> ctypes.CDLL:
    src = pathlib.Path(__file__).with_name("bf16_dot_probe.cpp")
    lib = pathlib.Path("/tmp") / f"bf16_dot_probe_{os.getuid()}.so"
    subprocess.run(["g++", "-O2", "-std=c++17", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl",
                    "-mavx512bf16", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    so = ctypes.CDLL(str(lib))
    f32p = np.ctypeslib.ndpointer(np.float32, flags="C")
    u16p = np.ctypeslib.ndpointer(np.uint16, flags="C")
    so.run.argtypes = [ctypes.c_int, ctypes.c_int, f32p, u16p, ctypes.c_size_t, ctypes.c_size_t, f32p]
    so.time_run.argtypes = so.run.argtypes + [ctypes.c_int]
    so.time_run.restype = ctypes.c_double
    so.max_dims.restype = ctypes.c_size_t
    so.peak.argtypes = [ctypes.c_int, ctypes.c_long]
    so.peak.restype = ctypes.c_double
    return so


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (as simdex's encoder)."""
    b = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def from_bf16(h: np.ndarray) -> np.ndarray:
    return (h.astype(np.uint32) << 16).view(np.float32)


def run(so, which, q, x, pair=False):
    n, d = x.shape
    out = np.empty(n, np.float32)
    so.run(which, int(pair), q, x, n, d, out)
    return out


def peak(so, rounds: int) -> None:
    """ns per 512-bit instruction, register operands: throughput (8 chains) and latency (1)."""
    iters = 2_000_000
    t = np.empty((rounds, 4))
    for r in range(rounds):
        for k in range(4) if r % 2 == 0 else reversed(range(4)):
            t[r, k] = so.peak(k, iters) / (8 * iters) * 1e9
    t = np.median(t, 0)
    print(f"zmm ns/instruction: vfmadd231ps {t[0]:.3f} (throughput) {t[2]:.3f} (latency); "
          f"vdpbf16ps {t[1]:.3f} / {t[3]:.3f}; per 32 bf16 dims a 3-part split runs 3 vdpbf16ps "
          f"where widening runs 2 FMA")


def speed(so, rounds: int) -> None:
    rng = np.random.default_rng(0)
    print("speed: ns per row, median of interleaved rounds (thread CPU time); in brackets the"
          " per-round ratio widen2 / kernel, median and quartiles")
    print(f"{'mode':5} {'d':>5} {'n':>6}  " + "  ".join(f"{k:>24}" for k in KERNELS))
    for mode in ("rows", "pair"):
        for d in (384, 1024):
            for n in (200, 60000):
                if mode == "pair" and n != 200:
                    continue
                x = to_bf16(rng.standard_normal((n, d), dtype=np.float32))
                q = rng.standard_normal(d, dtype=np.float32)
                out = np.empty(n, np.float32)
                reps = max(1, int(2e7 // (n * d)))  # ~20M dims per timed call
                times = np.empty((rounds, len(KERNELS)))
                for r in range(rounds):
                    order = range(len(KERNELS)) if r % 2 == 0 else reversed(range(len(KERNELS)))
                    for k in order:
                        times[r, k] = so.time_run(k, int(mode == "pair"), q, x, n, d, out, reps) / (reps * n)
                ns = np.median(times, 0) * 1e9
                q25, q50, q75 = np.percentile(times[:, :1] / times, [25, 50, 75], axis=0)
                print(f"{mode:5} {d:5d} {n:6d}  " + "  ".join(
                    f"{t:6.1f} [{a:4.2f} {b:4.2f}-{c:4.2f}]" for t, a, b, c in zip(ns, q50, q25, q75)))


def precision(so) -> None:
    rng = np.random.default_rng(1)
    dims = [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 384, 1000, 1024]
    cases = {
        "uniform [-4, 4]": lambda n, d: (rng.uniform(-4, 4, (n, d)), rng.uniform(-4, 4, d)),
        "query * 2^-120": lambda n, d: (rng.uniform(-4, 4, (n, d)), rng.uniform(-4, 4, d) * 2.0 ** -120),
        "rows * 2^-120": lambda n, d: (rng.uniform(-4, 4, (n, d)) * 2.0 ** -120, rng.uniform(-4, 4, d)),
        "mixed 2^-130..2^10": lambda n, d: (rng.uniform(-4, 4, (n, d)),
                                             rng.uniform(1, 2, d) * 2.0 ** rng.integers(-130, 10, d)),
    }
    print("\nprecision: max over rows and dims of |got - ref| / (U sum|q x|); the tests allow 4 (d + 2)"
          " (+ 2 U |ref| + 1e-6 absolute); 'abs' = max |got - ref|")
    print(f"{'data':20} " + "  ".join(f"{k:>24}" for k in KERNELS))
    for name, make in cases.items():
        worst = np.zeros(len(KERNELS))
        worst_abs = np.zeros(len(KERNELS))
        fail_small_d = [set() for _ in KERNELS]
        for d in dims:
            xs, qs = make(64, d)
            x = to_bf16(xs.astype(np.float32))
            q = qs.astype(np.float32)
            exact = from_bf16(x).astype(np.float64)
            ref = exact @ q.astype(np.float64)
            mag = np.abs(exact) @ np.abs(q.astype(np.float64))
            for k in range(len(KERNELS)):
                for pair in (False, True):
                    got = run(so, k, q, x, pair).astype(np.float64)
                    err = np.abs(got - ref)
                    units = np.where(mag > 0, err / (U * np.maximum(mag, 1e-300)), 0)
                    worst[k] = max(worst[k], units.max())
                    worst_abs[k] = max(worst_abs[k], err.max())
                    if np.any(err > 4 * (d + 2) * U * mag + 2 * U * np.abs(ref)):
                        fail_small_d[k].add(d)
        cells = [f"{worst[k]:7.3g} abs {worst_abs[k]:7.1e}".rjust(24) for k in range(len(KERNELS))]
        print(f"{name:20} " + "  ".join(cells))
        print(f"{'  d over (no 1e-6)':20} " + "  ".join(
            ("all" if len(s) == len(dims) else ",".join(map(str, sorted(s))) or "none")[:24].rjust(24)
            for s in fail_small_d))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-precision", action="store_true")
    args = ap.parse_args()
    flags = open("/proc/cpuinfo").read()
    if "avx512_bf16" not in flags:
        sys.exit("this CPU has no avx512_bf16")
    so = build()
    model = next((l.split(":", 1)[1].strip() for l in flags.splitlines() if l.startswith("model name")), "?")
    print(f"CPU: {model}, g++ -O2")
    if not args.no_speed:
        peak(so, 5 if args.quick else 15)
        speed(so, 5 if args.quick else 31)
    if not args.no_precision:
        precision(so)


if __name__ == "__main__":
    main()
