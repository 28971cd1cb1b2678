"""Transfer-matrix (MacKinnon-Kramer) throughput on periodic M x M Anderson bars at the transition, against a
plain numpy loop of the same algorithm, and the projected cost of a Slevin-Ohtsuki-size data set.

    python benchmarks/bench_tmm.py [--widths 4 6 8 10 12 14] [--slices 4096] [--batch 4] [--points 91]

Both codes iterate the 3D Anderson model (E = 0, hopping 1, box disorder, periodic transverse boundaries) in the
transfer form and renormalize a 2n x n frame every 12 slices (``qr_every = 12``, the project's FSS setting; at 16 the
smallest exponent of M = 14 bars is already off by ~2e-4, docs/benchmarks.md): the textbook loop by Householder QR,
ours by LU (the basis P^T L) with a QR closing each statistics batch. Per width, measured in one run:

- ours, one run: ``lyapunov_exponents`` (jit, W = 16.5) over ``--slices`` slices;
- ours, batched: ``--batch`` disorder strengths W = 16 ... 17 vmapped into one kernel (slices/s summed);
- numpy: the textbook loop, psi_{s+1} = (E - eps_s) psi_s - H_perp psi_s - psi_{s-1} with H_perp a dense n x n
  matrix (numpy's BLAS product) and ``numpy.linalg.qr``, the same slices and renormalization interval.

Precision: a run of 256 statistics batches of 1152 slices at W = 16.5 gives the relative standard error eps of
gamma_M (batch means) after N slices; eps scales as N^-1/2, so N_0.1% = N (eps / 0.001)^2 slices give Lambda
to 0.1%. Projected cost of ``--points`` points, each to 0.1%, spread evenly over the measured widths (the anchor
data set: 91 points, M <= 14, 85 core-hours): sum over widths of (points per width) N_0.1% / (slices per
core-second), with core-seconds = wall seconds x the cores this process may run on (``os.sched_getaffinity``; pin it with
``taskset -c 1`` to measure one core, as an FSS study runs one realization per core).
W = 16.5 sits at the transition, where lambda_M and hence N_0.1% are largest for a given M, so the projection
errs high for points away from it.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt

from bench_rgf import _best_call, cpu_model

QR_EVERY = 12
W_C = 16.5


def _spectrum(width, slices, chunk, strength, key=1):
    sample = dt.Sample(dt.bar(width, width, boundary="periodic"), slices)
    return dt.lyapunov_exponents(jax.random.key(key), sample, dt.Model(energy=0.0), strength=strength, rtol=None,
                                 chunk=chunk, warmup=0, qr_every=QR_EVERY, min_batches=2)


def ours(width, slices, batch):
    """slices/s of one jitted run and of ``batch`` strengths vmapped into one kernel."""
    one = jax.jit(lambda w: _spectrum(width, slices, slices // 2, w).exponents)
    many = jax.jit(jax.vmap(lambda w: _spectrum(width, slices, slices // 2, w).exponents))
    strengths = jnp.linspace(16.0, 17.0, batch)
    return slices / _best_call(lambda: one(W_C), 2), batch * slices / _best_call(lambda: many(strengths), 2)


def numpy_loop(width, slices, strength=W_C):
    n = width * width
    h = np.zeros((n, n))
    for y in range(width):
        for z in range(width):
            i = y * width + z
            for j in (((y + 1) % width) * width + z, y * width + (z + 1) % width):
                h[i, j] = h[j, i] = -1.0
    rng = np.random.default_rng(0)
    x, x_prev, logs = np.eye(n), np.zeros((n, n)), np.zeros(n)
    start = time.perf_counter()
    for s in range(slices):
        eps = rng.uniform(-strength / 2, strength / 2, n)
        x, x_prev = -eps[:, None] * x - h @ x - x_prev, x
        if (s + 1) % QR_EVERY == 0:
            q, r = np.linalg.qr(np.vstack([x, x_prev]))
            x, x_prev = q[:n], q[n:]
            logs += np.log(np.abs(np.diag(r)))
    return slices / (time.perf_counter() - start)


def slices_for_permille(width, batches=256, chunk=1152):
    """Slices for a 0.1% relative error of gamma_M at W = 16.5, from a run of ``batches`` x ``chunk`` slices."""
    spec = _spectrum(width, batches * chunk, chunk, W_C, key=7)
    eps = float(spec.relative_error)
    return batches * chunk * (eps / 1e-3) ** 2, eps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 6, 8, 10, 12, 14])
    parser.add_argument("--slices", type=int, default=6144)  # a multiple of 2 qr_every
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--points", type=int, default=91)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cpu_model()}, {os.cpu_count()} cores ({cores} used here), jax {jax.__version__}, numpy {np.__version__}")
    print(f"periodic M x M bars, E = 0, box W = {W_C}, qr_every = {QR_EVERY}, {args.slices} slices per timing")
    print(f"{'M':>3s} {'n':>4s} {'ours 1 run':>11s} {'ours x' + str(args.batch):>10s} {'numpy':>9s} {'ours/numpy':>10s}"
          f" {'eps(N)':>14s} {'N_0.1%':>9s}   (slices/s)")
    total_ours = total_numpy = 0.0
    per_width = args.points / len(args.widths)
    for width in args.widths:
        single, batched = ours(width, args.slices, args.batch)
        reference = numpy_loop(width, max(args.slices // 4, 256) if width >= 12 else args.slices)
        needed, eps = slices_for_permille(width)
        best = max(single, batched)
        total_ours += per_width * needed / (best / cores)
        total_numpy += per_width * needed / (reference / cores)
        print(f"{width:3d} {width * width:4d} {single:11.0f} {batched:10.0f} {reference:9.0f} {best / reference:9.1f}x"
              f" {eps:8.4f}@{256 * 1152 // 1000}k {needed:9.2e}", flush=True)
    print(f"projected core-hours for {args.points} points to 0.1% (evenly over M = {args.widths}): "
          f"ours {total_ours / 3600:.1f}, numpy loop {total_numpy / 3600:.1f}; anchor 85")


if __name__ == "__main__":
    main()
