"""Ensemble-runner throughput: realizations per second of the chunked, sharded evaluation (``ChunkRunner``, the
engine of ``difftransport run``) against chunk size and host device count, for the conductance of a spinless
32 x 64 strip (E = 1, box disorder W = 2).

    python benchmarks/bench_ensemble.py [--chunks 1 8 32 128] [--devices 1 2 4] [--realizations 256]

Each device count runs in its own subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=N (the flag
must be set before JAX starts). There, for each chunk size, one chunk is run to compile, then ``--realizations``
realizations are evaluated chunk after chunk (indices to device shards to host arrays, as in a run, without
the file writes), best of ``--repeat``. A chunk is rounded up to a multiple of the device count. Forced host
devices are not extra hardware: they share the machine's cores (XLA's CPU thread pool), so on a small machine
sharding can only add overhead; the numbers show that overhead, and that chunking amortizes the per-call cost.
The suite also checks that the first realizations' conductances do not depend on chunk or device count.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

SAMPLE = {"lattice": "strip", "width": 32, "length": 64}
MODEL = {"energy": 1.0}
DISORDER = {"strength": 2.0}
CHECKED = 8  # realizations compared across chunk sizes and device counts


def worker(chunks: list[int], realizations: int, repeat: int) -> dict:
    """Timings in this process (device count fixed by XLA_FLAGS): chunk -> realizations/s, plus G[:CHECKED]."""
    import jax
    import numpy as np

    from difftransport import runs  # (switches JAX to 64-bit)

    config = runs.validate({"run": {"realizations": realizations},
                            "ensembles": {"g": {"sample": SAMPLE, "model": MODEL, "disorder": DISORDER}}})
    entry = config["ensembles"]["g"]
    devices = runs.select_devices(None)
    out = {"devices": len(devices), "rows": []}
    for chunk in chunks:
        runner = runs.ChunkRunner(entry, 0, devices, chunk)
        start = time.perf_counter()
        first = runner(np.arange(min(runner.chunk, realizations)))
        compile_s = time.perf_counter() - start
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for lo in range(0, realizations, runner.chunk):
                runner(np.arange(lo, min(lo + runner.chunk, realizations)))
            best = min(best, time.perf_counter() - start)
        shards = first if runner.chunk >= CHECKED else [
            s for lo in range(0, CHECKED, runner.chunk) for s in runner(np.arange(lo, min(lo + runner.chunk, CHECKED)))]
        g = np.concatenate([a["conductance"] for _, a in shards])[:CHECKED]
        out["rows"].append({"chunk": chunk, "effective_chunk": runner.chunk, "per_s": realizations / best,
                            "compile_s": compile_s, "G": g.tolist()})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4], help="forced host device counts")
    parser.add_argument("--realizations", type=int, default=256, help="realizations per timed pass")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.chunks, args.realizations, args.repeat)))
        return

    import jax
    from bench_rgf import cpu_model

    print(f"{os.cpu_count()} cores ({cpu_model()}), load average {os.getloadavg()[0]:.2f} at start; "
          f"jax {jax.__version__}, Python {platform.python_version()}")
    print(f"spinless strip {SAMPLE['width']}x{SAMPLE['length']}, E = {MODEL['energy']}, "
          f"box W = {DISORDER['strength']}; {args.realizations} realizations per pass, best of {args.repeat}")
    print(f"Note: forced host devices share the same {os.cpu_count()} cores; they are not extra hardware.\n")
    results = []
    for n in args.devices:
        flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                         if not f.startswith("--xla_force_host_platform_device_count"))
        env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={n}".strip()}
        cmd = [sys.executable, __file__, "--worker", "--chunks", *map(str, args.chunks),
               "--realizations", str(args.realizations), "--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"worker with {n} device(s) failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print(f"{'chunk':>6s} " + " ".join(f"{r['devices']:>4d} dev r/s" for r in results))
    for i, chunk in enumerate(args.chunks):
        cells = []
        for r in results:
            row = r["rows"][i]
            eff = "" if row["effective_chunk"] == chunk else f" [{row['effective_chunk']}]"
            cells.append(f"{row['per_s']:.1f}{eff}".rjust(12))
        print(f"{chunk:6d} " + " ".join(cells))
    reference = results[0]["rows"][0]["G"]
    spread = max(abs(a - b) for r in results for row in r["rows"] for a, b in zip(row["G"], reference))
    print(f"\nr/s: realizations per second; [k]: the chunk rounded up to a multiple of the devices.")
    print(f"max |G - G(first setting)| over the first {CHECKED} realizations, all settings: {spread:.1e}")
    compiles = [f"{r['devices']} dev: " + "/".join(f"{row['compile_s']:.1f}" for row in r["rows"]) for r in results]
    print("first-chunk (compile) seconds per chunk size: " + ", ".join(compiles))
    print(f"load average {os.getloadavg()[0]:.2f} at the end.")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
