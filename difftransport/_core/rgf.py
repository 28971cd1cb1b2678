"""Recursive Green's function sweep over the slices of a :class:`SlicedHamiltonian` (one ``lax.scan``).

Left-connected recursion (docs/physics.md#rgf; Lake et al., J. Appl. Phys. 81, 7845 (1997)):

    G_1 = (E - H_1 - Sigma_L)^{-1},      G_{11} = G_1
    G_s = (E - H_s - V_{s-1} G_{s-1} V_{s-1}^+ - delta_{sN} Sigma_R)^{-1}
    G_{s1} = G_s V_{s-1} G_{s-1,1}

After the last slice, G_N and G_{N1} are blocks of the full retarded Green's function. Cost O(L n^3),
memory O(n^2). The same sweep over the reversed sample gives G_{11} and G_{1N}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .hamiltonian import SlicedHamiltonian
from .linalg import dag as _dag


def _cmatmul(a, b):
    """a @ b for complex matrices by three real products (Gauss / 3M): on CPU, XLA's real batched dot is
    ~1.4x faster per flop than its complex one and 3M needs 3/4 of the flops; differentiable as usual."""
    if not (jnp.iscomplexobj(a) and jnp.iscomplexobj(b)):
        return a @ b
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    t1, t2, t3 = ar @ br, ai @ bi, (ar + ai) @ (br + bi)
    return jax.lax.complex(t1 - t2, t3 - t1 - t2)


@jax.custom_jvp
def inverse(a):
    """Matrix inverse (``jnp.linalg.inv``) whose derivative reuses the inverse: d(A^-1) = -A^-1 dA A^-1.

    ``jnp.linalg.inv`` differentiates through its LU solve, so its reverse mode runs two more triangular solves
    per matrix and keeps the LU factors; here the tangent is two products with the inverse itself (which the
    sweeps carry anyway), and reverse mode transposes them. Forward and reverse mode both work.
    """
    return jnp.linalg.inv(a)


@inverse.defjvp
def _inverse_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    x = inverse(a)
    return x, -_cmatmul(_cmatmul(x, da), x)


def sweep(energy, ham: SlicedHamiltonian, sigma_first, sigma_last):
    """Return (G_NN, G_N1): the full Green's function on the last slice and from the first to the last slice.

    ``sigma_first`` / ``sigma_last`` are the lead self-energies on the first / last slice.
    """
    n, length = ham.size, ham.length
    eye = jnp.eye(n, dtype=ham.base.dtype)
    site, bonds = ham.slice_data()

    def inverse_block(site_s, bonds_s, coupling):
        return inverse(energy * eye - ham.block(site_s, bonds_s) - coupling)

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
        return (g_s, _cmatmul(g_s, hop.apply(g_prev_first))), None

    xs = (site[1:], None if bonds is None else bonds[1:], ham.hops, last)
    g, g_first = checkpointed_scan(step, (g, g), xs, length - 1)
    return g, g_first


CHECKPOINT_MIN_LENGTH = 64  # shorter sweeps store every step's residuals (cheaper than recomputing)


def checkpointed_scan(step, init, xs, length: int, unroll: int = 1):
    """Final carry of ``lax.scan(step, init, xs)`` (``step`` returns ``(carry, None)``), organised so that
    reverse-mode differentiation stores O(sqrt(length)) carries instead of every step's residuals.

    The steps are grouped into blocks of b ~ sqrt(length); each block is a ``jax.checkpoint``-ed inner scan,
    so the backward pass keeps only the carries between blocks and recomputes one block's forward steps at a
    time: memory O(sqrt(L) n^2) instead of O(L n^2), for one extra forward sweep. The forward pass and its
    results are unchanged (the same steps in the same order). Below ``CHECKPOINT_MIN_LENGTH`` a plain scan.
    ``unroll`` steps run per loop iteration (``lax.scan``'s argument).
    """
    if length < CHECKPOINT_MIN_LENGTH:
        return jax.lax.scan(step, init, xs, unroll=unroll)[0]
    block = max(1, int(round(length**0.5)))
    blocks, rest = divmod(length, block)
    head = jax.tree.map(lambda x: x[: blocks * block].reshape((blocks, block) + x.shape[1:]), xs)

    @jax.checkpoint
    def run_block(carry, xs_block):
        return jax.lax.scan(step, carry, xs_block, unroll=unroll)[0], None

    carry = jax.lax.scan(run_block, init, head)[0]
    if rest:
        carry = jax.lax.scan(step, carry, jax.tree.map(lambda x: x[blocks * block:], xs), unroll=unroll)[0]
    return carry


def left_connected(energy, ham: SlicedHamiltonian, sigma_first, sigma_last):
    """All left-connected blocks g_s, stacked (L, n, n); the last includes ``sigma_last``, so g_N = G_NN.

    Memory O(L n^2): for solvers that need every slice (diagonal blocks, Buttiker probes).
    """
    n, length = ham.size, ham.length
    eye = jnp.eye(n, dtype=ham.base.dtype)
    site, bonds = ham.slice_data()
    first = inverse(
        energy * eye - ham.block(site[0], None if bonds is None else bonds[0])
        - sigma_first - (sigma_last if length == 1 else 0)
    )
    if length == 1:
        return first[None]
    last = jnp.zeros(length - 1, dtype=eye.dtype).at[-1].set(1)

    def step(g_prev, x):
        site_s, bonds_s, hop, is_last = x
        g_s = inverse(energy * eye - ham.block(site_s, bonds_s) - hop.sandwich(g_prev) - is_last * sigma_last)
        return g_s, g_s

    xs = (site[1:], None if bonds is None else bonds[1:], ham.hops, last)
    _, rest = jax.lax.scan(step, first, xs)
    return jnp.concatenate([first[None], rest])


def diagonal_blocks(ham: SlicedHamiltonian, g):
    """Full diagonal blocks G_ss (L, n, n) from the left-connected g_s (backward recursion
    G_ss = g_s + g_s V_s^+ G_{s+1,s+1} V_s g_s, V_s = H[s+1, s])."""
    if ham.length == 1:
        return g

    def step(g_next, x):
        g_s, hop = x
        gv = _dag(hop.apply(_dag(g_s)))  # g_s V_s^+ = (V_s g_s^+)^+
        g_full = g_s + gv @ g_next @ hop.apply(g_s)
        return g_full, g_full

    _, rest = jax.lax.scan(step, g[-1], (g[:-1], ham.hops), reverse=True)
    return jnp.concatenate([rest, g[-1:]])
