"""Sweep benchmark: seconds per realization and achieved GFLOP/s, vmapped over a batch of disorder
realizations (E = 1, box disorder of width 2; spinful samples with Rashba alpha = 0.2), for the RGF sweep and
the transfer-matrix sweep (``method="transfer"``) side by side on the same realizations, with their ratio and
the largest conductance difference.

    python benchmarks/bench_rgf.py [--batch 64] [--repeat 3] [--methods rgf transfer]
    python benchmarks/bench_rgf.py --ceiling      # what the building blocks reach, n = 64 ... 512

``--ceiling`` measures, against the same GEMM peak, the rate of one unbatched n x n complex inverse (numpy's
LAPACK and ``jnp.linalg.inv``) and product (numpy and XLA), and both sweeps on strips of width 64, 128 and 256:
the RGF kernel is one inverse and one product per slice, so it cannot run faster than those do.

Flop model (complex128, 8 real flops per complex multiply-add): per slice one n x n inverse (LU + inversion,
~n^3 complex MACs) and one n x n product for G_{s1} (n^3 MACs), i.e. 16 n^3 real flops; the (block-)diagonal
inter-slice hopping and the lead self-energies (computed once per energy, shared by the batch) are not counted.
The machine's complex128 GEMM rate (numpy, 1024 x 1024) is measured in the same run for comparison. The
transfer sweep's GFLOP/s are RGF-equivalent (the same flop model), i.e. a speed, not its own flop rate.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import time

import jax
import numpy as np

import difftransport as dt

CASES = [
    ("spinless 32x128", 32, 128, False),
    ("spinless 64x256", 64, 256, False),
    ("spinful Rashba 32x128", 32, 128, True),
]
METHODS = ("rgf", "transfer")
# Kwant times quoted for a 2-core machine, not measured in this run
KWANT_MS = {"spinless 32x128": 60, "spinless 64x256": 380, "spinful Rashba 32x128": 260}


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_gflops(n=1024, repeat=5):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeat))
    return 8 * n**3 / best / 1e9


def _timed(f):
    start = time.perf_counter()
    out = f()
    jax.block_until_ready(out)
    return time.perf_counter() - start


def rgf_flops(sample):
    """Real flops of one RGF conductance evaluation in the model above: 16 n^3 per slice."""
    return 16 * sample.slice_size**3 * sample.length


def time_conductance(sample, model, batch, repeat, strength=2.0, method="rgf", values=False):
    """(seconds per realization, GFLOP/s, compile seconds[, conductances]) of the conductance of ``batch``
    box-disorder realizations as one jitted vmap, best of ``repeat`` calls after the compiling one."""
    keys = jax.random.split(jax.random.key(0), batch)
    run = jax.jit(jax.vmap(lambda k: dt.conductance(sample, model, dt.draw_disorder(k, sample, strength=strength),
                                                    method=method)))
    compile_s = _timed(lambda: run(keys))
    best = min(_timed(lambda: run(keys)) for _ in range(repeat))
    out = (best / batch, rgf_flops(sample) * batch / best / 1e9, compile_s)
    return out + (np.asarray(run(keys)),) if values else out


def time_ensemble(spec: dict, model: dict, repeat, strength=2.0, method="rgf", workers=None, rounds=2, chunk=None):
    """(seconds per realization, workers) of an ensemble exactly as ``difftransport run`` computes it: the
    conductance of an ensemble entry (``[sample]`` table ``spec``, ``[model]`` table ``model``, box disorder of
    ``strength``) through ``runs.ChunkRunner`` on one CPU device, ``workers`` chunks of ``chunk`` realizations at
    once in threads (None: the runner's defaults, one worker per core and the config's default chunk, 64; inside
    a chunk the runner vmaps ``runs.cpu_vmap_width`` realizations at a time). Each timed pass is
    ``rounds * workers`` chunks after a compiling one; best of ``repeat`` passes (wall clock over the pass / its
    realizations)."""
    entry = {"observables": ["conductance"], "sample": spec, "model": model, "disorder": {"strength": strength},
             "method": method}
    config = dt.runs.validate({"run": {"seed": 0, "realizations": 1}, "ensembles": {"bench": entry}})
    chunk = config["run"]["chunk"] if chunk is None else chunk
    devices = jax.devices("cpu")[:1]
    workers = dt.runs.default_workers(devices) if workers is None else workers
    runner = dt.runs.ChunkRunner(config["ensembles"]["bench"], 0, devices, chunk, workers=workers)
    runner(np.arange(chunk))
    chunks = [np.arange(k * chunk, (k + 1) * chunk) for k in range(rounds * workers)]
    best = min(_timed(lambda: list(runner.map(chunks))) for _ in range(repeat))
    return best / (len(chunks) * chunk), workers


def bench(width, length, spinful, batch, repeat, method="rgf"):
    sample = dt.Sample(dt.strip(width), length, spinful=spinful)
    model = dt.Model(energy=1.0, rashba=0.2) if spinful else dt.Model(energy=1.0)
    return time_conductance(sample, model, batch, repeat, method=method, values=True)


def _best_call(f, repeat=20):
    f()
    return min(_timed(f) for _ in range(repeat))


def ceiling(peak, repeat):
    """Print GFLOP/s (and % of ``peak``) of single n x n complex inverses and products, then of the two sweeps
    on wide strips (RGF-equivalent flops), all in this run."""
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    inv, mm = jax.jit(jnp.linalg.inv), jax.jit(lambda x: x @ x)
    pct = lambda flops, s: f"{flops / s / 1e9:7.1f} ({100 * flops / s / 1e9 / peak:3.0f}%)"
    print(f"{'n':>4s} {'numpy inv':>13s} {'jax inv':>13s} {'numpy matmul':>13s} {'XLA matmul':>13s}   GFLOP/s (% GEMM)")
    for n in (64, 128, 256, 512):
        a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)) + 4 * np.eye(n)
        aj, flops = jnp.asarray(a), 8 * n**3  # inverse and product: n^3 complex multiply-adds each
        print(f"{n:4d} {pct(flops, _best_call(lambda: np.linalg.inv(a), repeat))} "
              f"{pct(flops, _best_call(lambda: inv(aj), repeat))} {pct(flops, _best_call(lambda: a @ a, repeat))} "
              f"{pct(flops, _best_call(lambda: mm(aj), repeat))}", flush=True)
    for width, length, batch in ((64, 128, 16), (128, 64, 8), (256, 32, 4)):
        for method in METHODS:
            per, gflops, _, _ = bench(width, length, False, batch, max(2, repeat // 10), method)
            print(f"spinless {width}x{length} (batch {batch}) {method:>8s}: {1e3 * per:8.1f} ms/realization, "
                  f"{gflops:5.1f} GFLOP/s RGF-equivalent ({100 * gflops / peak:.0f}% of GEMM)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--ceiling", action="store_true",
                        help="rates of single inverses and products (n = 64-512) and of both sweeps on wide strips")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)), "
          f"{platform.processor() or platform.machine()}, batch {args.batch}")
    peak = gemm_gflops()
    print(f"complex128 GEMM (numpy 1024^3): {peak:.1f} GFLOP/s")
    if args.ceiling:
        ceiling(peak, 20)
        print(f"complex128 GEMM (numpy 1024^3) at the end: {gemm_gflops():.1f} GFLOP/s")
        return
    print(f"{'case':24s} {'method':>8s} {'ms/realization':>15s} {'GFLOP/s':>9s} {'% GEMM':>7s} {'vs Kwant*':>9s} "
          f"{'compile s':>10s} {'vs rgf':>7s} {'max|dG|':>8s}")
    for name, w, l, spin in CASES:
        first = None
        for method in args.methods:
            per, gflops, comp, g = bench(w, l, spin, args.batch, args.repeat, method)
            first = first or (per, g)
            print(f"{name:24s} {method:>8s} {1e3 * per:15.2f} {gflops:9.2f} {100 * gflops / peak:6.1f}% "
                  f"{KWANT_MS[name] / (1e3 * per):8.1f}x {comp:10.1f} {first[0] / per:6.2f}x "
                  f"{np.max(np.abs(g - first[1])):8.1e}", flush=True)
    print("* against Kwant 1.5 times quoted for a 2-core machine, not measured in this run; "
          "bench_kwant.py measures them side by side. 'vs rgf': speed relative to the first method.")


if __name__ == "__main__":
    main()
