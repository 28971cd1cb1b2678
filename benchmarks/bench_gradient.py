"""Cost of the gradient of the ensemble-averaged conductance with respect to (tau_phi, phi, alpha), against one
forward evaluation, measured side by side in one run; plus a finite-difference check of that gradient.

    python benchmarks/bench_gradient.py [--batch 32] [--repeat 5]

Observable: <G> = mean over a batch of disorder realizations (spinful strips, E = 1, box disorder W = 2, Rashba
alpha = 0.2, flux phi = 0.01, tau_phi = 20 with the single dephasing probe, the default). Timed, each as one
jitted call, best of ``--repeat`` after compilation:

* forward: <G>;
* reverse: <G> and its gradient (jax.value_and_grad), what an optimizer needs per step;
* forward-mode: the same three derivatives by jax.jacfwd (three tangents), for comparison.

The ratio reverse/forward is the figure of merit (target <= 4). The gradient is checked against a
4th-order central difference of the same jitted forward function (relative step 1e-4).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt

CASES = [("spinful 16x64", 16, 64), ("spinful 32x128", 32, 128)]
POINT = jnp.array([20.0, 0.01, 0.2])  # tau_phi, flux, rashba


def _timed(f, *args):
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - start


def ensemble_mean(sample, disorder):
    """<G>(tau_phi, phi, alpha) over the batch of realizations in ``disorder`` (leading axis)."""

    def f(x):
        model = dt.Model(energy=1.0, flux=x[1], rashba=x[2], tau_phi=x[0])
        return jnp.mean(jax.vmap(lambda d: dt.conductance(sample, model, d))(disorder))

    return f


def bench(width, length, batch, repeat):
    sample = dt.Sample(dt.strip(width), length, spinful=True)
    keys = jax.random.split(jax.random.key(0), batch)
    disorder = jax.vmap(lambda k: dt.draw_disorder(k, sample, strength=2.0))(keys)
    f = ensemble_mean(sample, disorder)
    forward = jax.jit(f)
    reverse = jax.jit(jax.value_and_grad(f))
    fwd_mode = jax.jit(jax.jacfwd(f))
    compile_s = {name: _timed(fn, POINT) for name, fn in (("forward", forward), ("reverse", reverse),
                                                          ("jacfwd", fwd_mode))}
    times = {"forward": [], "reverse": [], "jacfwd": []}
    for _ in range(repeat):  # interleaved, so that load changes hit all three alike
        for name, fn in (("forward", forward), ("reverse", reverse), ("jacfwd", fwd_mode)):
            times[name].append(_timed(fn, POINT))
    best = {k: min(v) for k, v in times.items()}

    value, grad = reverse(POINT)
    fd = []
    for i in range(3):
        h = 1e-4 * abs(float(POINT[i]))
        e = jnp.zeros(3).at[i].set(h)
        fd.append((-forward(POINT + 2 * e) + 8 * forward(POINT + e) - 8 * forward(POINT - e)
                   + forward(POINT - 2 * e)) / (12 * h))
    fd = np.array(fd)
    rel = np.abs(np.asarray(grad) - fd) / np.abs(fd)
    return best, compile_s, float(value), np.asarray(grad), fd, rel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)), "
          f"{platform.processor() or platform.machine()}, batch {args.batch}, best of {args.repeat}")
    print(f"{'case':16s} {'forward s':>10s} {'value+grad s':>13s} {'ratio':>6s} {'jacfwd s':>9s} {'ratio':>6s} "
          f"{'max rel. FD err':>16s}")
    for name, w, l in CASES:
        best, comp, value, grad, fd, rel = bench(w, l, args.batch, args.repeat)
        print(f"{name:16s} {best['forward']:10.3f} {best['reverse']:13.3f} {best['reverse'] / best['forward']:6.2f} "
              f"{best['jacfwd']:9.3f} {best['jacfwd'] / best['forward']:6.2f} {rel.max():16.1e}")
        print(f"{'':16s} <G> = {value:.6f}; d<G>/d(tau_phi, phi, alpha) = {np.array2string(grad, precision=6)}; "
              f"compile s: " + ", ".join(f"{k} {v:.1f}" for k, v in comp.items()))


if __name__ == "__main__":
    main()
