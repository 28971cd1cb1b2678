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
    """x V^+ for a hopping V (rows of x times V^+): (V x^+)^+."""
    return _dag(hop.apply(_dag(x)))


def keldysh_diagonal(ham: SlicedHamiltonian, g, g_full, diag_in, first_in=None):
    """Diagonal blocks of G^n = G Sigma^in G^+ for a block-diagonal Sigma^in.

    Args:
        g: left-connected blocks (L, n, n); g_full: full diagonal blocks G_ss (L, n, n).
        diag_in: (L, n) diagonal of Sigma^in on every slice (may be zero).
        first_in: optional extra (n, n) block of Sigma^in on the first slice (a lead's Gamma).

    Returns:
        G^n_ss, stacked (L, n, n).
    """
    length = ham.length
    blocks = jax.vmap(jnp.diag)(diag_in.astype(g.dtype))
    if first_in is not None:
        blocks = blocks.at[0].add(first_in)

    def forward(gn_prev, x):
        g_s, sin_s, hop = x
        gn_s = g_s @ (sin_s + hop.sandwich(gn_prev)) @ _dag(g_s)
        return gn_s, gn_s

    gn0 = g[0] @ blocks[0] @ _dag(g[0])
    if length == 1:
        return gn0[None]
    _, gn_rest = jax.lax.scan(forward, gn0, (g[1:], blocks[1:], ham.hops))
    gn = jnp.concatenate([gn0[None], gn_rest])

    def backward(r_next, x):
        g_s, gfull_s, gfull_next, gn_s, sin_s, hop = x
        gv = _right_dagger(g_s, hop)  # g_s V_s^+
        right = gv @ r_next @ _dag(gv)  # g_s V^+ R_{s+1} V g_s^+
        m = jnp.eye(g_s.shape[0], dtype=g_s.dtype) + gv @ gfull_next @ hop.apply(jnp.eye(g_s.shape[0], dtype=g_s.dtype))
        gn_full = m @ gn_s @ _dag(m) + right
        r_s = gfull_s @ sin_s @ _dag(gfull_s) + right
        return r_s, gn_full

    r_last = g_full[-1] @ blocks[-1] @ _dag(g_full[-1])
    xs = (g[:-1], g_full[:-1], g_full[1:], gn[:-1], blocks[:-1], ham.hops)
    _, gn_full = jax.lax.scan(backward, r_last, xs, reverse=True)
    return jnp.concatenate([gn_full, gn[-1:]])


def _site_trace(blocks, orbitals: int):
    """Real part of the per-site trace of the diagonals of (L, n, n) blocks -> (L, n / orbitals)."""
    d = jnp.real(jnp.diagonal(blocks, axis1=-2, axis2=-1))
    return d.reshape(d.shape[0], -1, orbitals).sum(-1)


def buttiker_currents_rgf(ham: SlicedHamiltonian, energy, sigma_left, sigma_right, eta, orbitals: int):
    """(I_L, I_R) per unit bias (e^2/h) with a Buttiker probe on every site. ``eta`` must be > 0."""
    g = left_connected(energy, ham, sigma_left, sigma_right)
    g_full = diagonal_blocks(ham, g)
    gamma_l = 1j * (sigma_left - _dag(sigma_left))
    gamma_r = 1j * (sigma_right - _dag(sigma_right))
    length, n = ham.length, ham.size
    two_eta = 2 * eta

    spectral = 1j * (g_full - _dag(g_full))
    a = two_eta * _site_trace(spectral, orbitals)  # (L, m): total transmission out of each probe
    from_left = keldysh_diagonal(ham, g, g_full, jnp.zeros((length, n)), gamma_l)
    t_lp = two_eta * _site_trace(from_left, orbitals)  # T(L -> p)
    t_lr = jnp.real(jnp.trace(gamma_r @ from_left[-1]))  # T(L -> R) = Tr[Gamma_R G_N1 Gamma_L G_N1^+]

    def probe_injection(mu):  # Sigma^in = 2 eta diag(mu), expanded over orbitals
        return keldysh_diagonal(ham, g, g_full, two_eta * jnp.repeat(mu, orbitals, axis=1))

    def operator(x):  # Jacobi-preconditioned: x = a mu, (1 - K a^-1) x = T(L -> p)
        mu = x / a
        return x - two_eta * _site_trace(probe_injection(mu), orbitals)

    op = lx.FunctionLinearOperator(operator, jax.ShapeDtypeStruct(a.shape, a.dtype))
    solver = lx.GMRES(rtol=_RTOL, atol=_RTOL, restart=40, stagnation_iters=40, max_steps=4000)
    x = lx.linear_solve(op, t_lp, solver, throw=True).value
    mu = x / a
    injected = probe_injection(mu)
    i_r = t_lr + jnp.real(jnp.trace(gamma_r @ injected[-1]))
    i_l = t_lr + jnp.sum(t_lp) - jnp.real(jnp.trace(gamma_l @ injected[0]))
    return i_l, i_r
