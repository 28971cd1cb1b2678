"""Prototype kernel for the performance issue: the conductance of a spinless hard-wall strip from a transfer-matrix
sweep whose basis is renormalized only every k slices, side by side with the library's RGF sweep (same
realizations, same run), with the agreement of the two printed.

    python benchmarks/bench_transfer.py [--batch 16] [--every 8] [--repeat 3]

Why it can pay: with the square lattice's inter-slice hopping V = -1 and a tridiagonal slice Hamiltonian H_s, the
outgoing-wave solution space [X_s; X_{s+1}] (n x n blocks, started from the right lead, X_{L+1} = Sigma_R X_L / V)
propagates to the left by X_{s-1} = -[(H_s - E) X_s + V X_{s+1}] / V in O(n^2) per slice, where RGF spends an
n x n inverse and a product (O(n^3)). Every k slices the basis is renormalized to [1; X_{s+1} X_s^-1] (one
inverse: the Riccati form that RGF uses at every slice), which bounds the growth of the evanescent modes to
e^(k kappa_max). At the first slice, Sigma = V X_1 X_0^-1 is the self-energy of everything to the right,
G_11 = (E - H_1 - Sigma_L - Sigma)^-1, G_N1 = X_N X_1^-1 G_11 (X_N carried through the renormalizations), and
T = Tr[Gamma_R G_N1 Gamma_L G_N1^+]. Measured: k = 8 agrees with RGF to ~1e-11; k = 16 only to ~1e-8
(the evanescent modes grow by e^(16 kappa)), so k = 8 is the default.

This is a prototype for spinless strips without a field (the library's sweep handles every lattice, field,
spin-orbit and dephasing model); the numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from bench_rgf import _timed, gemm_gflops
from difftransport._leads import lead_self_energies

CASES = [("spinless 32x128", 32, 128), ("spinless 64x256", 64, 256), ("spinless 128x512", 128, 512)]


def transfer_conductance(potential, energy, sigma_left, sigma_right, every):
    """Two-terminal conductance (e^2/h) of a hard-wall strip with on-site ``potential`` (L, n), hopping 1."""
    length, n = potential.shape
    hop = -1.0  # V = H[s+1, s] = hop * identity
    eye = jnp.eye(n, dtype=complex)

    def h_minus_e(site, x):  # (H_s - E) x for the tridiagonal slice Hamiltonian
        zero = jnp.zeros_like(x[:1])
        return (site - energy)[:, None] * x - jnp.concatenate([x[1:], zero]) - jnp.concatenate([zero, x[:-1]])

    def step(carry, site):  # (X_s, X_{s+1}) -> (X_{s-1}, X_s)
        x_s, x_next = carry
        return (-(h_minus_e(site, x_s) + hop * x_next) / hop, x_s), None

    def block(carry, sites):
        x_s, x_next, last = carry
        (x_s, x_next), _ = jax.lax.scan(step, (x_s, x_next), sites)
        inv = jnp.linalg.inv(x_s)  # renormalize the basis: [X_s; X_{s+1}] -> [1; X_{s+1} X_s^-1]
        return (eye, x_next @ inv, last @ inv), None

    sites = potential[1:][::-1]  # slices L-1 ... 1 (0-based), each step produces the slice before it
    blocks = (length - 1) // every
    carry = (eye, sigma_right / hop, eye)  # X_{L-1} = 1, X_L = Sigma_R / V; ``last`` carries X_{L-1}
    carry, _ = jax.lax.scan(block, carry, sites[: blocks * every].reshape(blocks, every, n))
    x_s, x_next, last = carry
    (x_s, x_next), _ = jax.lax.scan(step, (x_s, x_next), sites[blocks * every:])
    h0 = jnp.diag(potential[0]).astype(complex) - jnp.eye(n, k=1) - jnp.eye(n, k=-1)
    g11 = jnp.linalg.inv(energy * eye - h0 - sigma_left - hop * x_next @ jnp.linalg.inv(x_s))
    gn1 = last @ jnp.linalg.solve(x_s, g11)
    gamma_l = 1j * (sigma_left - sigma_left.conj().T)
    gamma_r = 1j * (sigma_right - sigma_right.conj().T)
    return jnp.real(jnp.trace(gamma_r @ gn1 @ gamma_l @ gn1.conj().T))


def bench(width, length, batch, every, repeat, energy=1.0, strength=2.0):
    sample = dt.Sample(dt.strip(width), length)
    model = dt.Model(energy=energy)
    keys = jax.random.split(jax.random.key(0), batch)
    disorder = jax.vmap(lambda k: dt.draw_disorder(k, sample, strength=strength))(keys)
    lead = dt.build_hamiltonian(sample, model, jax.tree.map(lambda x: x[0], disorder)).lead
    sigmas = lead_self_energies(energy, lead.cell, lead.hop, lead.factor)
    rgf = jax.jit(jax.vmap(lambda d: dt.conductance(sample, model, d)))
    tm = jax.jit(jax.vmap(lambda p: transfer_conductance(p, energy, sigmas.left, sigmas.right, every)))
    reference, got = np.asarray(rgf(disorder)), np.asarray(tm(disorder.potential))
    t_rgf = min(_timed(lambda: rgf(disorder)) for _ in range(repeat)) / batch
    t_tm = min(_timed(lambda: tm(disorder.potential)) for _ in range(repeat)) / batch
    return t_rgf, t_tm, float(np.max(np.abs(got - reference)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=8, help="slices between renormalizations")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=[c[0] for c in CASES[:2]], choices=[c[0] for c in CASES])
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch}, renormalized every "
          f"{args.every} slices; complex128 GEMM (numpy 1024^3) {gemm_gflops():.1f} GFLOP/s")
    print(f"{'case':20s} {'RGF ms':>9s} {'transfer ms':>12s} {'ratio':>6s} {'max |dG|':>10s}")
    for name, w, l in CASES:
        if name in args.cases:
            t_rgf, t_tm, err = bench(w, l, args.batch, args.every, args.repeat)
            print(f"{name:20s} {1e3 * t_rgf:9.2f} {1e3 * t_tm:12.2f} {t_rgf / t_tm:6.2f} {err:10.1e}")


if __name__ == "__main__":
    main()
