"""The two solvers of the Buttiker probe equations side by side in one run: the direct solve ("dense") against
GMRES, per shape, for the value of G and for G with d G / d ln tau_phi (jvp); what ``solver="auto"`` picks
is marked (the solver whose result it reproduces bit for bit).

    python benchmarks/bench_buttiker.py [--repeat 2] [--quick] [--large] [--cubes]

Sample: spinless strips of W sites and L slices (spinful with Rashba alpha = 0.3 where stated), E = 1, box
disorder W_dis = 3.5, flux 0.001, a probe on every site with tau_phi = 33. Each time is the best of ``--repeat``
calls of one jitted function after compilation; both solvers must agree (to 1e-9 relative). "jvp" is G with
d G / d ln tau_phi by forward mode, "grad" the same pair by reverse mode (``jax.value_and_grad``). ``--large``
adds a 96 x 96 square, GMRES only (the direct solve's (L n)^2 = 9216^2 matrices are 1.4 GB each); ``--cubes``
runs L x L x L cubes (hard-wall bars of L slices) instead of the 2D cases.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp

import difftransport as dt

CASES = [  # (label, width, length, spinful, height: None for a 2D strip)
    ("square 32x32", 32, 32, False, None), ("square 48x48", 48, 48, False, None),
    ("spinful square 32x32", 32, 32, True, None), ("strip 24x96 (L = 4W)", 24, 96, False, None),
    ("strip 16x128 (L = 8W)", 16, 128, False, None), ("square 64x64", 64, 64, False, None),
]
LARGE = [("square 96x96", 96, 96, False, None)]
CUBES = [("cube 12x12x12", 12, 12, False, 12), ("cube 16x16x16", 16, 16, False, 16)]
DENSE_MAX = 5000  # orbitals: beyond this only GMRES is timed


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
    parser.add_argument("--large", action="store_true", help="add the 96 x 96 square (GMRES only)")
    parser.add_argument("--cubes", action="store_true", help="12^3 and 16^3 cubes instead of the 2D cases")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {jax.device_count()} device(s) {jax.devices()[0].platform}, "
          f"jax {jax.__version__}")
    print(f"{'case':24s} {'orbitals':>8s} {'auto':>6s} {'dense (s)':>10s} {'gmres (s)':>10s} {'gmres/dense':>11s} "
          f"{'jvp dense':>10s} {'jvp gmres':>10s} {'ratio':>6s} {'grad dense':>10s} {'grad gmres':>10s} "
          f"{'grad/jvp':>9s}")
    log_tau = jnp.log(33.0)
    cases = CUBES if args.cubes else CASES[:2] if args.quick else CASES + (LARGE if args.large else [])
    for label, width, length, spinful, height in cases:
        lattice = dt.strip(width) if height is None else dt.bar(width, height)
        sample = dt.Sample(lattice, length, spinful=spinful)
        disorder = dt.draw_disorder(jax.random.key(0), sample, strength=3.5)
        orbitals = length * sample.orbitals * width * (height or 1)
        solvers = ("dense", "gmres") if orbitals <= DENSE_MAX else ("gmres",)
        times, values = {}, {}
        for mode in ("value", "jvp", "grad"):
            for solver in solvers:
                def g(y, s=solver):
                    return conductance(sample, disorder, s, y)
                if mode == "value":
                    f = jax.jit(g)
                elif mode == "jvp":
                    f = jax.jit(lambda x, g=g: jax.jvp(g, (x,), (1.0,)))
                else:
                    f = jax.jit(jax.value_and_grad(g))
                values[mode, solver] = jax.tree.map(float, f(log_tau))
                times[mode, solver] = best_time(lambda: f(log_tau), args.repeat)
        pair = jax.tree.leaves(values["jvp", solvers[0]])  # (G, dG/d ln tau_phi)
        for (mode, solver), value in values.items():
            got, want = jax.tree.leaves(value), pair[:1] if mode == "value" else pair
            assert all(abs(x - y) <= 1e-9 * max(1.0, abs(y)) for x, y in zip(got, want)), (label, mode, solver, got)
        picked = float(jax.jit(lambda x: conductance(sample, disorder, "auto", x))(log_tau))
        auto = next((s for s in solvers if picked == values["value", s]), "?")

        def t(mode, solver):
            return times.get((mode, solver), float("nan"))

        best = "dense" if "dense" in solvers and auto == "dense" else "gmres"
        print(f"{label:24s} {orbitals:8d} {auto:>6s} {t('value', 'dense'):10.3f} {t('value', 'gmres'):10.3f} "
              f"{t('value', 'gmres') / t('value', 'dense'):11.2f} {t('jvp', 'dense'):10.3f} {t('jvp', 'gmres'):10.3f} "
              f"{t('jvp', 'gmres') / t('jvp', 'dense'):6.2f} {t('grad', 'dense'):10.3f} {t('grad', 'gmres'):10.3f} "
              f"{t('grad', best) / t('jvp', best):9.2f}", flush=True)


if __name__ == "__main__":
    main()
