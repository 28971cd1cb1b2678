"""Buttiker voltage probes on every site, solved with recursive Green's functions and a Krylov method.

Every sample site p is a voltage probe with Gamma_p = 2 eta (eta = hbar / 2 tau_phi) whose potential mu_p is
fixed by zero net current (D'Amato & Pastawski, PRB 41, 7411 (1990)). In linear response, with mu_L = 1 and
mu_R = 0, the probe equations are

    a_p mu_p - sum_q K_pq mu_q = T(L -> p),      a_p = 2 eta Tr_p A_pp,  K_pq = (2 eta)^2 sum_{orbitals} |G_pq|^2,

using the sum rule sum_k T(p -> k) = Tr[Gamma_p A_pp] (k over all terminals, p itself included) with
A = i(G - G^+). The map mu -> K mu is 2 eta times the site-diagonal of G^n = G Sigma^in G^+ with
Sigma^in = 2 eta diag(mu), and T(L -> p) is the same diagonal for Sigma^in = Gamma_L. Both come from one
forward and one backward recursion over slices, in O(L n^3), derived in docs/physics.md:

    forward   g^n_s = g_s (Sigma^in_s + V_{s-1} g^n_{s-1} V_{s-1}^+) g_s^+                     (left-connected)
    backward  R_s   = G_ss Sigma^in_s G_ss^+ + g_s V_s^+ R_{s+1} V_s g_s^+                     (sources right of s)
              G^n_ss = M_s g^n_s M_s^+ + g_s V_s^+ R_{s+1} V_s g_s^+,   M_s = 1 + g_s V_s^+ G_{s+1,s+1} V_s

The probe system is solved with GMRES (lineax), Jacobi-preconditioned by a_p. The currents are
I_R = T(L -> R) + Tr[Gamma_R G^n_NN] and I_L = T(L -> R) + sum_p T(L -> p) - Tr[Gamma_L G^n_11], with G^n
for Sigma^in = 2 eta diag(mu). Current conservation (I_L = I_R) checks the solution. Everything is
differentiable (lineax differentiates the solve implicitly).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from ._hamiltonian import SlicedHamiltonian
from ._rgf import diagonal_blocks, left_connected

# GMRES tolerance on the probe potentials; the currents inherit it (tested against a dense solve to 1e-10).
_RTOL = 1e-12


def _dag(x):
    return jnp.conj(jnp.swapaxes(x, -1, -2))


def _right_dagger(x, hop):
    """x V^+ for a hopping V: (V x^+)^+."""
    return _dag(hop.apply(_dag(x)))


def _right(x, hop):
    """x V for a hopping V: (V^+ x^+)^+."""
    return _dag(hop.dagger().apply(_dag(x)))


class Retarded(eqx.Module):
    """Retarded blocks a Keldysh recursion reuses (all (L, n, n)): left-connected g_s, full G_ss, and
    g_s V_s^+ and M_s = G_ss g_s^{-1} = 1 + g_s V_s^+ G_{s+1,s+1} V_s for s < L - 1 (zero-padded at the end)."""

    g: jax.Array
    g_full: jax.Array
    gv: jax.Array
    m: jax.Array


def retarded(ham: SlicedHamiltonian, energy, sigma_left, sigma_right) -> Retarded:
    g = left_connected(energy, ham, sigma_left, sigma_right)
    g_full = diagonal_blocks(ham, g)
    if ham.length == 1:
        return Retarded(g=g, g_full=g_full, gv=jnp.zeros_like(g), m=jnp.zeros_like(g))
    gv = jax.vmap(_right_dagger)(g[:-1], ham.hops)
    m = jnp.eye(ham.size, dtype=g.dtype) + jax.vmap(lambda a, b, h: a @ _right(b, h))(gv, g_full[1:], ham.hops)
    pad = jnp.zeros_like(g[:1])
    return Retarded(g=g, g_full=g_full, gv=jnp.concatenate([gv, pad]), m=jnp.concatenate([m, pad]))


def keldysh_diagonal(ham: SlicedHamiltonian, ret: Retarded, diag_in, first_in=None):
    """Diagonals of the blocks of G^n = G Sigma^in G^+ for a block-diagonal Sigma^in, plus its full first and
    last blocks: returns (diag (L, n) real, G^n_11, G^n_NN).

    Args:
        diag_in: (L, n) diagonal of Sigma^in on every slice (may be zero).
        first_in: optional extra (n, n) block of Sigma^in on the first slice (a lead's Gamma).

    Six n x n products per slice: the forward recursion (2), and backward G_ss D G_ss^+ (1, D diagonal),
    g V^+ R V g^+ (2) and the diagonal of M g^n M^+ (1).
    """
    g, length = ret.g, ham.length
    diag_in = diag_in.astype(g.dtype)
    first_block = jnp.diag(diag_in[0]) + (0 if first_in is None else first_in)

    def forward(gn_prev, x):
        g_s, d_s, hop = x
        gn_s = g_s @ (jnp.diag(d_s) + hop.sandwich(gn_prev)) @ _dag(g_s)
        return gn_s, gn_s

    gn0 = g[0] @ first_block @ _dag(g[0])
    if length == 1:
        return jnp.real(jnp.diagonal(gn0))[None], gn0, gn0
    gn_last, gn_rest = jax.lax.scan(forward, gn0, (g[1:], diag_in[1:], ham.hops))
    gn = jnp.concatenate([gn0[None], gn_rest])

    def source(s, d_s):  # G_ss Sigma^in_s G_ss^+ with a diagonal Sigma^in
        return (ret.g_full[s] * d_s[None, :]) @ _dag(ret.g_full[s])

    def backward(r_next, x):
        gfull_s, gv_s, m_s, gn_s, d_s = x
        right = gv_s @ r_next @ _dag(gv_s)
        diag = jnp.real(jnp.sum((m_s @ gn_s) * jnp.conj(m_s), axis=1) + jnp.diagonal(right))
        r_s = (gfull_s * d_s[None, :]) @ _dag(gfull_s) + right
        return r_s, (diag, right)

    r_last = source(-1, diag_in[-1])
    xs = (ret.g_full[1:-1], ret.gv[1:-1], ret.m[1:-1], gn[1:-1], diag_in[1:-1])
    r_first, (diags, _) = jax.lax.scan(backward, r_last, xs, reverse=True)
    # The first slice separately: its full block is needed (currents into the left lead), and its Sigma^in
    # may hold the lead's Gamma.
    right0 = ret.gv[0] @ r_first @ _dag(ret.gv[0])
    gn_first = ret.m[0] @ gn[0] @ _dag(ret.m[0]) + right0
    diag = jnp.concatenate([jnp.real(jnp.diagonal(gn_first))[None], diags, jnp.real(jnp.diagonal(gn_last))[None]])
    return diag, gn_first, gn_last


def _site_trace(diag, orbitals: int):
    """Per-site sums of a (L, n) diagonal -> (L, n / orbitals)."""
    return diag.reshape(diag.shape[0], -1, orbitals).sum(-1)


def buttiker_currents_rgf(ham: SlicedHamiltonian, energy, sigma_left, sigma_right, eta, orbitals: int):
    """(I_L, I_R) per unit bias (e^2/h) with a Buttiker probe on every site. ``eta`` must be > 0."""
    ret = retarded(ham, energy, sigma_left, sigma_right)
    gamma_l = 1j * (sigma_left - _dag(sigma_left))
    gamma_r = 1j * (sigma_right - _dag(sigma_right))
    length, n = ham.length, ham.size
    two_eta = 2 * eta

    spectral = jnp.real(1j * jnp.diagonal(ret.g_full - _dag(ret.g_full), axis1=-2, axis2=-1))
    a = two_eta * _site_trace(spectral, orbitals)  # (L, m): total transmission out of each probe
    diag_l, _, last_l = keldysh_diagonal(ham, ret, jnp.zeros((length, n)), gamma_l)
    t_lp = two_eta * _site_trace(diag_l, orbitals)  # T(L -> p)
    t_lr = jnp.real(jnp.trace(gamma_r @ last_l))  # T(L -> R) = Tr[Gamma_R G_N1 Gamma_L G_N1^+]

    def probe_injection(mu):  # Sigma^in = 2 eta diag(mu), expanded over orbitals
        return keldysh_diagonal(ham, ret, two_eta * jnp.repeat(mu, orbitals, axis=1))

    def operator(x):  # Jacobi-preconditioned: x = a mu, (1 - K a^-1) x = T(L -> p)
        mu = x / a
        return x - two_eta * _site_trace(probe_injection(mu)[0], orbitals)

    op = lx.FunctionLinearOperator(operator, jax.ShapeDtypeStruct(a.shape, a.dtype))
    solver = lx.GMRES(rtol=_RTOL, atol=_RTOL, restart=40, stagnation_iters=40, max_steps=4000)
    x = lx.linear_solve(op, t_lp, solver, throw=True).value
    mu = x / a
    _, first, last = probe_injection(mu)
    i_r = t_lr + jnp.real(jnp.trace(gamma_r @ last))
    i_l = t_lr + jnp.sum(t_lp) - jnp.real(jnp.trace(gamma_l @ first))
    return i_l, i_r
