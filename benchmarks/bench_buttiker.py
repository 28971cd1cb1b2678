"""The two solvers of the Buttiker probe equations side by side in one run: the direct solve ("dense") against
GMRES, per shape, for the value of G and for G with d G / d ln tau_phi (jvp); what ``solver="auto"`` picks
is marked (the solver whose result it reproduces bit for bit).

    python benchmarks/bench_buttiker.py [--repeat 2] [--quick]

Sample: spinless strips of W sites and L slices (spinful with Rashba alpha = 0.3 where stated), E = 1, box
disorder W_dis = 3.5, flux 0.001, a probe on every site with tau_phi = 33. Each time is the best of ``--repeat``
calls of one jitted function after compilation; both solvers must agree (to 1e-9 relative).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp

import difftransport as dt

CASES = [  # (label, width, length, spinful)
    ("square 32x32", 32, 32, False), ("square 48x48", 48, 48, False), ("spinful square 32x32", 32, 32, True),
    ("strip 24x96 (L = 4W)", 24, 96, False), ("strip 16x128 (L = 8W)", 16, 128, False),
    ("square 64x64", 64, 64, False),
]


def conductance(sample, disorder, solver, log_tau):
    model = dt.Model(energy=1.0, flux=0.001, tau_phi=jnp.exp(log_tau), rashba=0.3 if sample.spinful else None)
    return dt.buttiker_currents(sample, model, disorder, solver=solver)[1]


def best_time(f, repeat):
    jax.block_until_ready(f())  # compile
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the two smallest cases only")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {jax.device_count()} device(s) {jax.devices()[0].platform}, "
          f"jax {jax.__version__}")
    print(f"{'case':24s} {'orbitals':>8s} {'auto':>6s} {'dense (s)':>10s} {'gmres (s)':>10s} {'gmres/dense':>11s} "
          f"{'jvp dense':>10s} {'jvp gmres':>10s} {'ratio':>6s}")
    log_tau = jnp.log(33.0)
    for label, width, length, spinful in CASES[:2] if args.quick else CASES:
        sample = dt.Sample(dt.strip(width), length, spinful=spinful)
        disorder = dt.draw_disorder(jax.random.key(0), sample, strength=3.5)
        row, values = [], {}
        for mode in ("value", "jvp"):
            for solver in ("dense", "gmres"):
                if mode == "value":
                    f = jax.jit(lambda x, s=solver: conductance(sample, disorder, s, x))
                else:
                    f = jax.jit(lambda x, s=solver: jax.jvp(lambda y: conductance(sample, disorder, s, y), (x,), (1.0,)))
                values[mode, solver] = jax.tree.map(float, f(log_tau))
                row.append(best_time(lambda: f(log_tau), args.repeat))
        for mode in ("value", "jvp"):
            a, b = jax.tree.leaves(values[mode, "dense"]), jax.tree.leaves(values[mode, "gmres"])
            assert all(abs(x - y) <= 1e-9 * max(1.0, abs(x)) for x, y in zip(a, b)), (label, mode, a, b)
        orbitals = length * sample.orbitals * width
        picked = float(jax.jit(lambda x: conductance(sample, disorder, "auto", x))(log_tau))
        auto = "dense" if picked == values["value", "dense"] else "gmres" if picked == values["value", "gmres"] else "?"
        print(f"{label:24s} {orbitals:8d} {auto:>6s} {row[0]:10.3f} {row[1]:10.3f} {row[1] / row[0]:11.2f} "
              f"{row[2]:10.3f} {row[3]:10.3f} {row[3] / row[2]:6.2f}", flush=True)


if __name__ == "__main__":
    main()
