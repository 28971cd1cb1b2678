"""difftransport against Kwant 1.5, side by side in one run: time per disorder realization, realizations/s,
the ratio Kwant / difftransport, achieved GFLOP/s against the machine's complex128 GEMM rate, and the largest
conductance difference on identical potentials.

    bash benchmarks/kwant_env.sh                 # once: builds .kwant-venv (Kwant is never our dependency)
    python benchmarks/bench_kwant.py [--cases strip32 bar8] [--batch N] [--repeat 3] [--kwant-realizations N]
                                     [--method rgf|transfer|auto] [--workers N] [--chunk N] [--kwant-processes N]

Systems (all at E = 1, box disorder of width W_dis = 2, hopping t = 1, hard walls, clean leads of the same
cross-section): spinless strips W x L = 32 x 128, 64 x 256, 128 x 512; a spinful strip with Rashba
alpha = 0.2, 32 x 128; a cubic bar 8 x 8 x 64 (W x H x L). Conventions are those of the Kwant references
(tests/data/REFERENCE_README.md), so one potential array V[x, y(, z)] feeds both codes unchanged.

difftransport, two ways: "1 call", a jitted vmap over a batch of realizations, best of ``--repeat`` calls after
compilation (``bench_rgf.time_conductance``; its flop model, 16 n^3 real flops per slice, gives the GFLOP/s,
RGF-equivalent for ``--method transfer``); and "ensemble", what ``difftransport run`` does with an ensemble on
this machine: the conductance of a config entry for the case, in chunks through ``runs.ChunkRunner``, ``--workers``
at once in threads (default: the runner's default, one per core on a CPU), in the config's default chunks of 64
realizations (``--chunk``), wall clock per realization (``bench_rgf.time_ensemble``). K/ours
is Kwant's time per realization over the ensemble time. Kwant:
``kwant.smatrix(...).transmission(1, 0)`` per realization on a system finalized once (the potential enters
through ``params``), the default MUMPS solver, in a subprocess running ``.kwant-venv/bin/python``; its time
per realization is the best over ``--kwant-realizations`` realizations, after an untimed warm-up on a small
system. Those same realizations are evaluated by difftransport and max |G_ours - G_kwant| is printed. With
``--kwant-processes N`` (N > 1) Kwant also runs once with its BLAS on one thread (faster than its threaded
default on small systems) and then as N such processes at once, each on the same realizations; their ensemble
time per realization (the slowest process's summed seconds over all realizations) is printed, so that both codes'
ensembles use every core.
Without the Kwant venv the suite says so and reports difftransport alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from bench_rgf import cpu_model, gemm_gflops, time_conductance, time_ensemble

ROOT = pathlib.Path(__file__).resolve().parents[1]
KWANT_PYTHON = ROOT / ".kwant-venv" / "bin" / "python"
ENERGY, STRENGTH, RASHBA = 1.0, 2.0, 0.2


@dataclasses.dataclass(frozen=True)
class Case:
    label: str
    width: int
    length: int
    height: int | None = None  # a cubic bar when set
    spinful: bool = False
    batch: int = 64  # difftransport realizations per vmapped call
    kwant_realizations: int = 5

    def sample(self) -> dt.Sample:
        lattice = dt.strip(self.width) if self.height is None else dt.bar(self.width, self.height)
        return dt.Sample(lattice, self.length, spinful=self.spinful)

    def spec(self) -> dict:
        """The ``[sample]`` table of this case (``difftransport run``'s config)."""
        if self.height is None:
            return {"lattice": "strip", "width": self.width, "length": self.length, "spinful": self.spinful}
        return {"lattice": "bar", "width": self.width, "height": self.height, "length": self.length,
                "spinful": self.spinful}

    def model(self) -> dt.Model:
        return dt.Model(energy=ENERGY, rashba=RASHBA if self.spinful else None)


CASES = {
    "strip32": Case("spinless 32x128", 32, 128),
    "strip64": Case("spinless 64x256", 64, 256, batch=32),
    "strip128": Case("spinless 128x512", 128, 512, batch=8, kwant_realizations=2),
    "rashba32": Case("Rashba 32x128", 32, 128, spinful=True),
    "bar8": Case("bar 8x8x64", 8, 64, height=8),
}

# Runs under .kwant-venv/bin/python: argv = (input .npz, output .json). Only numpy and kwant are imported.
WORKER = r'''
import json, sys, time
import numpy as np
import kwant

def build(width, length, height, spinful, rashba, t=1.0):
    """Finalized Kwant system in the reference conventions: H[r+x, r] = -t s0 + i a s_y, H[r+y, r] = -t s0 - i a s_x
    (spinless: -t), on-site V(r) from params, clean leads continuing the sample on both ends."""
    cross = [(y,) for y in range(width)] if height is None else [(y, z) for y in range(width) for z in range(height)]
    dim = 1 + len(cross[0])
    norbs = 2 if spinful else 1
    s0, sx, sy = np.eye(2), np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]])
    hops = [-t * s0 + 1j * rashba * sy, -t * s0 - 1j * rashba * sx, -t * s0] if spinful else [-t, -t, -t]
    zero = np.zeros((2, 2)) if spinful else 0.0
    lat = kwant.lattice.general(np.eye(dim), norbs=norbs)
    onsite = (lambda site, V: V[tuple(site.tag)] * s0) if spinful else (lambda site, V: V[tuple(site.tag)])

    def hoppings(builder):
        for axis in range(dim):
            delta = tuple(int(i == axis) for i in range(dim))
            builder[kwant.builder.HoppingKind(delta, lat, lat)] = hops[axis]

    syst = kwant.Builder()
    syst[(lat(x, *c) for x in range(length) for c in cross)] = onsite
    hoppings(syst)
    lead = kwant.Builder(kwant.TranslationalSymmetry((-1,) + (0,) * (dim - 1)))
    lead[(lat(0, *c) for c in cross)] = zero
    hoppings(lead)
    syst.attach_lead(lead)
    syst.attach_lead(lead.reversed())
    return syst.finalized()

data = np.load(sys.argv[1])
spec = json.loads(str(data["spec"]))
warm = build(4, 4, None if spec["height"] is None else 2, spec["spinful"], spec["rashba"])
kwant.smatrix(warm, spec["energy"], params=dict(V=np.zeros((4, 4) if spec["height"] is None else (4, 4, 2)))
              ).transmission(1, 0)
start = time.perf_counter()
fsyst = build(spec["width"], spec["length"], spec["height"], spec["spinful"], spec["rashba"])
finalize_s = time.perf_counter() - start
conductances, seconds = [], []
for V in data["V"]:
    start = time.perf_counter()
    conductances.append(kwant.smatrix(fsyst, spec["energy"], params=dict(V=V)).transmission(1, 0))
    seconds.append(time.perf_counter() - start)
maps = open("/proc/self/maps").read().split() if sys.platform == "linux" else []
blas = sorted({m for m in maps if "/" in m and "site-packages" not in m and ("blas" in m or "lapack" in m)})
json.dump({"G": conductances, "seconds": seconds, "finalize_s": finalize_s, "kwant": kwant.__version__,
           "blas": blas}, open(sys.argv[2], "w"))
'''


def run_kwant_parallel(case: Case, potentials: np.ndarray, python: pathlib.Path, processes: int) -> float:
    """Kwant's ensemble seconds per realization with ``processes`` workers at once, each on ``potentials`` with its
    BLAS on one thread (as one would run a process pool): the slowest worker's summed seconds over all the
    realizations done."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(processes) as pool:
        results = list(pool.map(lambda _: run_kwant(case, potentials, python, threads=1), range(processes)))
    return max(sum(r["seconds"]) for r in results) / (processes * len(potentials))


def run_kwant(case: Case, potentials: np.ndarray, python: pathlib.Path, threads: int | None = None) -> dict:
    """Conductances and seconds per realization from Kwant for ``potentials`` (realization, x, y(, z)); ``threads``
    sets its BLAS threads (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS; None: the library's default)."""
    spec = {"width": case.width, "length": case.length, "height": case.height, "spinful": case.spinful,
            "rashba": RASHBA if case.spinful else 0.0, "energy": ENERGY}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "worker.py").write_text(WORKER)
        np.savez(tmp / "in.npz", V=potentials, spec=json.dumps(spec))
        env = dict(os.environ)
        if threads is not None:
            env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        proc = subprocess.run([str(python), str(tmp / "worker.py"), str(tmp / "in.npz"), str(tmp / "out.json")],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"Kwant worker failed for {case.label}:\n{proc.stderr[-3000:]}")
        return json.loads((tmp / "out.json").read_text())


def kwant_version(python: pathlib.Path) -> str | None:
    """Kwant's version in the Kwant venv, or None when the venv or Kwant is missing."""
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", "import kwant; print(kwant.__version__)"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), metavar="CASE",
                        help=f"subset of {list(CASES)} (default: all)")
    parser.add_argument("--batch", type=int, default=None,
                        help="difftransport realizations per vmapped call (default per case: 64, 32 for 64x256, "
                             "8 for 128x512)")
    parser.add_argument("--repeat", type=int, default=3, help="timed difftransport calls after compilation")
    parser.add_argument("--kwant-realizations", type=int, default=None,
                        help="Kwant realizations per case (default 5, 2 for 128x512)")
    parser.add_argument("--kwant-python", type=pathlib.Path, default=KWANT_PYTHON,
                        help="interpreter with Kwant (default: .kwant-venv/bin/python)")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the rows to this file")
    parser.add_argument("--method", choices=("rgf", "transfer", "auto"), default="rgf",
                        help="difftransport's sweep (auto: the transfer sweep wherever it applies, RGF elsewhere)")
    parser.add_argument("--workers", type=int, default=None,
                        help="difftransport chunks at once in the ensemble timing (default: the runner's default)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="realizations per chunk in the ensemble timing (default: the config's default, 64)")
    parser.add_argument("--kwant-processes", type=int, default=1,
                        help="also time N Kwant processes at once (their ensemble throughput)")
    args = parser.parse_args()

    kwant = kwant_version(args.kwant_python)
    print(f"{os.cpu_count()} cores ({cpu_model()}), load average {os.getloadavg()[0]:.2f} at start; "
          f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)), "
          f"Python {platform.python_version()}")
    if kwant is None:
        print(f"Kwant not found at {args.kwant_python}: run `bash benchmarks/kwant_env.sh` to build it. "
              "Reporting difftransport alone.")
    else:
        where = args.kwant_python.relative_to(ROOT) if args.kwant_python.is_relative_to(ROOT) else args.kwant_python
        print(f"Kwant {kwant} (MUMPS) via {where}")
    peak = gemm_gflops()
    print(f"complex128 GEMM peak (numpy 1024^3): {peak:.1f} GFLOP/s")
    print(f"E = {ENERGY}, box disorder W_dis = {STRENGTH}, Rashba alpha = {RASHBA} (spinful); sweep {args.method}; "
          f"ours: best of repeats of a vmapped batch (1 call) and of the ensemble runner, wk workers on chunks of "
          f"{args.chunk or 'the default'} (ens); Kwant: best over its realizations.\n")

    header = (f"{'case':18s} {'n':>4s} {'ch':>4s} {'batch':>5s} {'1 call ms':>9s} {'ens ms':>7s} {'wk':>3s} "
              f"{'ens r/s':>8s} {'GFLOP/s':>8s} {'%peak':>6s} {'Kwant ms':>9s} {'Kwant r/s':>9s} {'K/ours':>7s} "
              f"{'max|dG|':>9s} {'compile s':>9s}")
    if args.kwant_processes > 1:
        header += f" {'K 1thr ms':>9s} {'K1/ours':>8s} {'Kwant xN ms':>11s} {'K xN/ours':>9s}"
    print(header)
    rows = []
    for name in args.cases:
        case = CASES[name]
        sample, model = case.sample(), case.model()
        batch = args.batch or case.batch
        channels = int(dt.open_channels(sample, model))
        if channels == 0:
            print(f"{case.label}: no open channel at E = {ENERGY}; skipped")
            continue
        per, gflops, compile_s = time_conductance(sample, model, batch, args.repeat, strength=STRENGTH,
                                                  method=args.method)
        ens, workers = time_ensemble(case.spec(), {"energy": ENERGY, "rashba": RASHBA if case.spinful else None},
                                     args.repeat, strength=STRENGTH, method=args.method, workers=args.workers,
                                     chunk=args.chunk)
        gflops *= per / ens
        row = {"case": case.label, "method": args.method, "n": sample.slice_size, "channels": channels, "batch": batch,
               "one_call_ms": 1e3 * per, "ours_ms": 1e3 * ens, "workers": workers, "gflops": gflops, "peak": peak,
               "compile_s": compile_s}
        kwant_cols = f"{'-':>9s} {'-':>9s} {'-':>7s} {'-':>9s}"
        parallel_cols = ""
        if kwant is not None:
            count = args.kwant_realizations or case.kwant_realizations
            keys = jax.random.split(jax.random.key(1), count)
            potentials = jax.vmap(lambda k: dt.draw_disorder(k, sample, strength=STRENGTH).potential)(keys)
            ours = jax.jit(jax.vmap(lambda v: dt.conductance(sample, model, dt.Disorder(potential=v),
                                                             method=args.method)))(potentials)
            result = run_kwant(case, np.asarray(potentials), args.kwant_python)
            kwant_ms = 1e3 * min(result["seconds"])
            diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(result["G"]))))
            row.update(kwant_ms=kwant_ms, kwant_seconds=result["seconds"], ratio=kwant_ms / row["ours_ms"],
                       ratio_one_call=kwant_ms / row["one_call_ms"],
                       max_dG=diff, mean_G=float(jnp.mean(ours)), kwant_finalize_s=result["finalize_s"],
                       kwant_blas=result["blas"])
            kwant_cols = f"{kwant_ms:9.1f} {1e3 / kwant_ms:9.2f} {row['ratio']:6.1f}x {diff:9.1e}"
            if args.kwant_processes > 1:
                one = run_kwant(case, np.asarray(potentials), args.kwant_python, threads=1)
                one_ms = 1e3 * min(one["seconds"])
                par_ms = 1e3 * run_kwant_parallel(case, np.asarray(potentials), args.kwant_python, args.kwant_processes)
                row.update(kwant_one_thread_ms=one_ms, kwant_processes=args.kwant_processes, kwant_parallel_ms=par_ms,
                           ratio_one_thread=one_ms / row["ours_ms"], ratio_parallel=par_ms / row["ours_ms"])
                parallel_cols = (f" {one_ms:9.1f} {row['ratio_one_thread']:7.1f}x {par_ms:11.1f} "
                                 f"{row['ratio_parallel']:8.1f}x")
        rows.append(row)
        print(f"{case.label:18s} {sample.slice_size:4d} {channels:4d} {batch:5d} {row['one_call_ms']:9.2f} "
              f"{row['ours_ms']:7.2f} {workers:3d} {1e3 / row['ours_ms']:8.1f} {gflops:8.2f} "
              f"{100 * gflops / peak:5.1f}% "
              f"{kwant_cols} {compile_s:9.1f}{parallel_cols}", flush=True)
    blas = {lib for row in rows for lib in row.get("kwant_blas", [])}
    if blas:
        print(f"\nKwant's MUMPS ran on {', '.join(sorted(blas))}")
    print(f"\nn: RGF block size (orbitals per slice); ch: open channels per lead; ms: per realization; wk: chunks at "
          f"once in the ensemble runner; r/s: realizations per second; K/ours: Kwant time / difftransport ensemble "
          f"time; GFLOP/s: of the ensemble; K 1thr: one Kwant process, BLAS on one thread; Kwant xN: N such "
          f"processes at once, wall clock per realization.")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (the machine has {os.cpu_count()} cores).")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
                                         "kwant": kwant, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
