"""Zigzag honeycomb cylinders: one slice per cell against column slices (docs/physics.md#column-slices), side by
side in one run.

    python benchmarks/bench_columns.py [--rows 40 100 180] [--batch 4] [--repeat 3]

Each case is a zigzag cylinder of N rows (circumference N sqrt(3)/2, 2N sites per cell) and length N cells, at
E = 0.2 t with Gaussian impurities (correlation length 1.5 a, density 0.1, strength 0.8: the smooth disorder of the
graphene experiment). Three ways to the same conductance, each a jitted vmap over ``--batch`` realizations, best
of ``--repeat`` calls after the compiling one: (a) one 2N-site slice per cell, RGF (``build_hamiltonian(...,
columns=False)`` and ``hamiltonian_transmission``); (b) column slices, RGF; (c) column slices, the transfer sweep
((b) and (c) are what ``conductance(method="rgf" | "transfer")`` run). Printed: seconds per realization, the
ratios (a)/(b) and (a)/(c), and max |G_b - G_a|, |G_c - G_a| over the batch.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import difftransport as dt

ENERGY = 0.2
DISORDER = dict(strength=0.8, correlation_length=1.5, density=0.1)


def _best(run, keys, repeat):
    out = run(keys).block_until_ready()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run(keys).block_until_ready()
        times.append(time.perf_counter() - start)
    return min(times) / len(keys), np.asarray(out)


def bench(rows: int, batch: int, repeat: int):
    sample = dt.Sample(dt.zigzag_ribbon(rows, boundary="periodic"), rows)
    model = dt.Model(energy=ENERGY)
    keys = jax.random.split(jax.random.key(0), batch)

    def draw(key):
        return dt.draw_disorder(key, sample, **DISORDER)

    cells = jax.jit(jax.vmap(lambda k: dt.hamiltonian_transmission(
        dt.build_hamiltonian(sample, model, draw(k), columns=False), ENERGY)))
    columns = {m: jax.jit(jax.vmap(lambda k, m=m: dt.conductance(sample, model, draw(k), method=m)))
               for m in ("rgf", "transfer")}
    t_cells, g_cells = _best(cells, keys, repeat)
    t_rgf, g_rgf = _best(columns["rgf"], keys, repeat)
    t_transfer, g_transfer = _best(columns["transfer"], keys, repeat)
    print(f"{rows:5d} {2 * rows:5d} {rows:5d} {t_cells:10.4f} {t_rgf:10.4f} {t_transfer:10.4f} "
          f"{t_cells / t_rgf:7.1f} {t_cells / t_transfer:7.1f} {np.max(np.abs(g_rgf - g_cells)):9.1e} "
          f"{np.max(np.abs(g_transfer - g_cells)):9.1e} {np.mean(g_cells):7.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[40, 100, 180])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, E = {ENERGY}, disorder {DISORDER}")
    print(f"{'N':>5s} {'cell':>5s} {'L':>5s} {'cells s':>10s} {'cols rgf':>10s} {'cols tr':>10s} {'a/b':>7s} "
          f"{'a/c':>7s} {'|Gb-Ga|':>9s} {'|Gc-Ga|':>9s} {'<G>':>7s}")
    for rows in args.rows:
        bench(rows, args.batch, args.repeat)


if __name__ == "__main__":
    main()
