"""Recursive Green's function sweep over the slices of a :class:`SlicedHamiltonian` (one ``lax.scan``).

Left-connected recursion (PHYSICS.md 7d; Lake et al., J. Appl. Phys. 81, 7845 (1997)):

    G_1 = (E - H_1 - Sigma_L)^{-1},      G_{11} = G_1
    G_s = (E - H_s - V_{s-1} G_{s-1} V_{s-1}^+ - delta_{sN} Sigma_R)^{-1}
    G_{s1} = G_s V_{s-1} G_{s-1,1}

After the last slice, G_N and G_{N1} are blocks of the full retarded Green's function. Cost O(L n^3),
memory O(n^2). The same sweep over the reversed sample gives G_{11} and G_{1N}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._hamiltonian import SlicedHamiltonian


def sweep(energy, ham: SlicedHamiltonian, sigma_first, sigma_last):
    """Return (G_NN, G_N1): the full Green's function on the last slice and from the first to the last slice.

    ``sigma_first`` / ``sigma_last`` are the lead self-energies on the first / last slice.
    """
    n, length = ham.size, ham.length
    eye = jnp.eye(n, dtype=ham.base.dtype)
    site, bonds = ham.slice_data()

    def inverse_block(site_s, bonds_s, coupling):
        return jnp.linalg.inv(energy * eye - ham.block(site_s, bonds_s) - coupling)

    first_bonds = None if bonds is None else bonds[0]
    coupling = sigma_first + (sigma_last if length == 1 else 0)
    g = inverse_block(site[0], first_bonds, coupling)
    if length == 1:
        return g, g

    last = jnp.zeros(length - 1, dtype=eye.dtype).at[-1].set(1)

    def step(carry, x):
        g_prev, g_prev_first = carry
        site_s, bonds_s, hop, is_last = x
        g_s = inverse_block(site_s, bonds_s, hop.sandwich(g_prev) + is_last * sigma_last)
        return (g_s, g_s @ hop.apply(g_prev_first)), None

    xs = (site[1:], None if bonds is None else bonds[1:], ham.hops, last)
    (g, g_first), _ = jax.lax.scan(step, (g, g), xs)
    return g, g_first
