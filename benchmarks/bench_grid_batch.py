"""Ensemble grids on large samples: the whole grid vmapped against ``grid_batch`` (docs/ensembles.md), side by side
in one run.

    python benchmarks/bench_grid_batch.py [--config configs/graphene_crossover.toml] [--ensemble smooth]
                                          [--settings 16:0 16:1 32:1] [--rows N] [--length L]

Each setting ``chunk:grid_batch`` runs the ensemble's realization function through ``ChunkRunner`` (the engine of
``difftransport run``) on one device: realizations 0 ... chunk - 1 once (compiling), then again, timed. Printed:
seconds per realization of the timed call, the first setting's time over it, and max |G - G_first| over the
realizations the settings share (grid_batch and chunk change no number). The default case is the graphene
crossover run's smooth ensemble: 150-row zigzag cylinders of length 130, 8 twists x 5 fluxes (40 grid points).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from difftransport.runs import ChunkRunner, load

ROOT = pathlib.Path(__file__).resolve().parents[1]


def bench(entry: dict, seed: int, chunk: int, grid_batch: int):
    entry = {**entry, "grid_batch": grid_batch}
    runner = ChunkRunner(entry, seed, jax.devices()[:1], chunk)
    runner(np.arange(chunk))  # compiles
    start = time.perf_counter()
    ((_, out),) = runner(np.arange(chunk))  # the same realizations again, timed
    seconds = time.perf_counter() - start
    return seconds / chunk, np.asarray(out["conductance"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, default=ROOT / "configs" / "graphene_crossover.toml")
    parser.add_argument("--ensemble", default="smooth")
    parser.add_argument("--settings", nargs="+", default=["16:0", "16:1", "32:1"], help="chunk:grid_batch")
    parser.add_argument("--rows", type=int, help="override the sample's n (rows)")
    parser.add_argument("--length", type=int, help="override the sample's length")
    args = parser.parse_args()
    config = load(args.config)
    entry = json.loads(json.dumps(config["ensembles"][args.ensemble]))
    entry["sample"].update({k: v for k, v in (("n", args.rows), ("length", args.length)) if v is not None})
    points = int(np.prod([len(v) for v in entry["grid"].values()]))
    print(f"{args.config.name} [{args.ensemble}]: sample {entry['sample']['lattice']} n = {entry['sample']['n']}, "
          f"length {entry['sample']['length']}, {points} grid points; jax {jax.__version__}, {jax.devices()[0]}")
    first = None
    for setting in args.settings:
        chunk, grid_batch = (int(x) for x in setting.split(":"))
        per, g = bench(entry, config["run"]["seed"], chunk, grid_batch)
        if first is None:
            first = (per, g)
        shared = min(len(g), len(first[1]))
        diff = np.abs(g[:shared] - first[1][:shared]).max()
        print(f"  chunk {chunk:3d}, grid_batch {grid_batch:3d}: {per:7.2f} s per realization "
              f"({first[0] / per:4.2f}x the first), max |dG| = {diff:.1e}")


if __name__ == "__main__":
    main()
