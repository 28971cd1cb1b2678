"""beta(g) at g ~ 4 by the two routes, side by side in one run: the variance of each estimator per CPU-second.

    python benchmarks/bench_beta_routes.py [--derivative 64] [--size 128] [--quick]

Case (docs/physics.md#beta-function): 2D orthogonal, spinless hard-wall L x L squares, E = -1, box disorder
W = 2.5 (Born l ~ 5), contact resistance removed (g_c = 1/(1/g - 1/N)). Both routes estimate beta at g ~ 3-4:

* size route: beta = (<ln g_c>(2L) - <ln g_c>(L)) / ln 2 from independent realizations of the L x L and 2L x 2L
  coherent squares (transfer sweep, `ensemble_conductances(..., method="transfer")`), L = 48 (the pair the
  scaling study would add next) and L = 32; standard error from the two sample variances;
* derivative route: beta_phi = 2 <slope(0) - slope(B)> / <g_c> on 48 x 48 squares with a Buttiker probe on every
  site, tau_phi = 18 (L_phi ~ 10), subtracted at flux 0.005 per plaquette in the sample (`dephasing_slopes`, the
  case of `configs/scaling_dephasing_2d.toml`); jackknife standard error.

Each route's realizations run in one jitted call after compilation (compile time not counted), on the same
machine one after the other. The figure of merit is var(beta) x seconds, the variance the estimator reaches in one
CPU-second (var ~ 1/seconds for either route); the ratio size / derivative is what the beta-by-autodiff issue asks
to be >= 5. The estimates' biases are not compared here (the routes measure beta at different scales: 48 -> 96
against L_phi ~ 10-15).
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt

ENERGY, STRENGTH, TAU_PHI, FLUX = -1.0, 2.5, 18.0, 0.005


def square(length):
    return dt.Sample(dt.strip(length), length, field_region="sample")


def timed(f, keys):
    """(f(keys), seconds of the call), f compiled ahead of time for these keys (compilation not counted)."""
    compiled = jax.jit(f).lower(keys).compile()
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    return out, time.perf_counter() - t0


def size_route(length, n, seed):
    """(beta, stderr, seconds) from n realizations at L and at 2L."""
    model = dt.Model(energy=ENERGY)
    logs, seconds = [], 0.0
    for size in (length, 2 * length):
        sample = square(size)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), size), n)
        g, t = timed(lambda k: dt.ensemble_conductances(k, sample, model, strength=STRENGTH, method="transfer",
                                                        batch=16), keys)
        channels = float(dt.open_channels(sample, model))
        logs.append(np.log(np.asarray(dt.theory.intrinsic_conductance(np.asarray(g), channels))))
        seconds += t
    (m1, s1), (m2, s2) = (dt.stats.mean_stderr(x) for x in logs)
    return (m2 - m1) / math.log(2), math.hypot(s1, s2) / math.log(2), seconds, (float(np.exp(m1)), float(np.exp(m2)))


def derivative_route(length, n, seed):
    """(beta_phi, stderr, seconds, <g_c>) from n realizations, slopes at zero field and at FLUX."""
    sample = square(length)
    model = dt.Model(energy=ENERGY, tau_phi=TAU_PHI)
    keys = jax.random.split(jax.random.key(seed), n)

    slopes, seconds = timed(lambda k: dt.dephasing_slopes(k, sample, model, STRENGTH, fluxes=[0.0, FLUX]), keys)
    beta, stderr = slopes.beta(1)
    return beta, stderr, seconds, float(np.mean(np.asarray(slopes.g_contact)[:, 0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--derivative", type=int, default=64, help="realizations of the derivative route")
    parser.add_argument("--size", type=int, default=128, help="realizations per size of the size route")
    parser.add_argument("--quick", action="store_true", help="16 realizations each, L = 16/32 and 24 (a smoke test)")
    args = parser.parse_args()
    nd, ns = (16, 16) if args.quick else (args.derivative, args.size)
    pairs, dlen = ((16,), 24) if args.quick else ((32, 48), 48)
    print(f"# {platform.processor() or platform.machine()}, {jax.device_count()} device(s) {jax.devices()[0].platform}, "
          f"jax {jax.__version__}; E = {ENERGY}, W = {STRENGTH}, hard-wall squares, contacts removed")
    print(f"{'route':34s} {'n':>5s} {'<g_c>':>12s} {'beta':>8s} {'stderr':>8s} {'seconds':>8s} {'var*s':>10s}")
    beta, se, t, g = derivative_route(dlen, nd, seed=11)
    merit = se ** 2 * t
    print(f"{f'derivative {dlen}^2, tau_phi {TAU_PHI:g}, flux {FLUX:g}':34s} {nd:5d} {g:12.3f} {beta:8.4f} {se:8.4f} "
          f"{t:8.1f} {merit:10.3e}")
    print(f"{'  one loop -1/(pi <g_c>)':34s} {'':5s} {'':12s} {-1 / (math.pi * g):8.4f}")
    for length in pairs:
        b, s, ts, (g1, g2) = size_route(length, ns, seed=12)
        m = s ** 2 * ts
        print(f"{f'size {length} -> {2 * length}':34s} {ns:5d} {f'{g1:.2f}->{g2:.2f}':>12s} {b:8.4f} {s:8.4f} "
              f"{ts:8.1f} {m:10.3e}   size/derivative var*s = {m / merit:.1f}")


if __name__ == "__main__":
    main()
