"""What the CPU LAPACK settings cost: the deadlock guard and the OpenBLAS thread count, side by side in one run.

    python benchmarks/bench_lapack.py [--batch 32] [--repeat 5] [--blas]

Each setting runs in its own subprocess (both are fixed at import): ``DIFFTRANSPORT_LAPACK_GUARD`` = 1 (default: a
batched LAPACK call that jaxlib could split over its thread pool becomes a loop of chunks it runs inline), ``wide``
(the previous guard: every batched call a loop of single matrices) or 0, and ``DIFFTRANSPORT_BLAS_THREADS`` = 1
(default: the OpenBLAS under jaxlib's LAPACK kernels runs on one thread) or, with ``--blas``, also the machine's
core count (OpenBLAS's own default). Each
subprocess times the conductance of ``--batch`` realizations (one jitted vmap, best of ``--repeat`` after compiling;
``bench_rgf.time_conductance``) with both sweeps on the three strips of the Kwant suite that carry LAPACK calls in
their loops: spinless 32 x 128 and 64 x 256, spinful Rashba 32 x 128 (E = 1, box W = 2). Unguarded settings can hang
on jaxlib 0.10 - 0.11.1 (the deadlock the guard exists for): each subprocess has a ``--timeout`` and a hang is
reported as such. The conductances of every setting are compared with the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = {"strip32": (32, 128, False), "strip64": (64, 256, False), "rashba32": (32, 128, True),
         "rashba16": (16, 64, True)}


def child(batch, repeat):
    import numpy as np

    import difftransport as dt
    from bench_rgf import time_conductance

    rows = {"blas_threads": os.environ.get("DIFFTRANSPORT_BLAS_THREADS")}  # applied at import (tests/test_lapack_guard.py)
    for name, (width, length, spinful) in CASES.items():
        sample = dt.Sample(dt.strip(width), length, spinful=spinful)
        model = dt.Model(energy=1.0, rashba=0.2) if spinful else dt.Model(energy=1.0)
        for method in ("transfer", "rgf"):
            per, _, _, g = time_conductance(sample, model, batch, repeat, method=method, values=True)
            rows[f"{name}/{method}"] = {"ms": 1e3 * per, "g": np.asarray(g).tolist()}
    print("RESULT " + json.dumps(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per setting before it counts as hung")
    parser.add_argument("--blas", action="store_true", help="also every guard setting with threaded OpenBLAS")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.batch, args.repeat)
    cores = len(os.sched_getaffinity(0))
    settings = [(guard, threads) for guard in ("1", "wide", "0")
                for threads in (("1", str(cores)) if args.blas else ("1",))]
    here = os.path.dirname(os.path.abspath(__file__))
    results = {}
    for guard, threads in settings:
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        env.update(DIFFTRANSPORT_LAPACK_GUARD=guard, DIFFTRANSPORT_BLAS_THREADS=threads,
                   PYTHONPATH=os.pathsep.join([here, os.path.dirname(here), env.get("PYTHONPATH", "")]))
        label = f"guard {dict(zip('1 wide 0'.split(), ('on', 'wide', 'off')))[guard]:4s}, BLAS threads {threads}"
        try:
            out = subprocess.run([sys.executable, __file__, "--child", "--batch", str(args.batch), "--repeat",
                                  str(args.repeat)], env=env, capture_output=True, text=True, timeout=args.timeout)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            results[label] = json.loads(line[0][7:]) if line else f"failed: {out.stderr.strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            results[label] = f"hung (no result in {args.timeout} s)"
        print(label, "done", flush=True)
    print(f"{cores} cores, batch {args.batch}, ms per realization (best of {args.repeat}); max|dG| against the first")
    first = next(v for v in results.values() if isinstance(v, dict))
    keys = [k for k in first if k != "blas_threads"]
    print(f"{'setting':32s}" + "".join(f"{k:>19s}" for k in keys))
    for label, rows in results.items():
        if not isinstance(rows, dict):
            print(f"{label:32s} {rows}")
            continue
        cells = []
        for k in keys:
            dg = max(abs(a - b) for a, b in zip(rows[k]["g"], first[k]["g"]))
            cells.append(f"{rows[k]['ms']:8.2f} ({dg:.0e})")
        print(f"{label:32s}" + "".join(f"{c:>19s}" for c in cells) + f"   DIFFTRANSPORT_BLAS_THREADS={rows['blas_threads']}")


if __name__ == "__main__":
    main()
