"""Buttiker voltage probes on every site, solved with recursive Green's functions: directly for small samples,
with a Krylov method for large ones.

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

Two solvers (``solver`` of :func:`buttiker_currents_rgf`):

* ``"dense"`` (the default up to DENSE_LIMIT orbitals, or SQUARE_DENSE_LIMIT for near-square samples): every block of G from the RGF blocks in O(L^2 n^3)
  (:func:`full_green`), every T(q -> p) from it, and an LU solve of the probe equations written as
  W mu = T(L -> p), W = diag(sum_{q != p} T(p -> q) + T(p -> L) + T(p -> R)) - T(p <- q). Writing the
  diagonal as a sum of positive terms, rather than a_p - K_pp, avoids the cancellation a_p ~ K_pp of strong
  dephasing (eta >> t), where a_p - K_pp ~ t^2 / eta^2.
* ``"gmres"`` (the default above): GMRES (lineax) on the Jacobi-preconditioned equations
  mu - a^-1 K mu = a^-1 T(L -> p), applying K with the recursions above (O(L n^3) per iteration, O(L n^2)
  memory). It stops at the tolerance ATOL on mu (which lies in [0, 1]) or at the roundoff floor, and never
  raises (under ``jax.vmap`` one failing element would fail the whole batch): a solve that did not converge
  returns its best iterate, and this shows as I_L != I_R, since I_L - I_R equals the sum of the residuals of
  the probe equations (``buttiker_currents`` returns both).

The currents are I_R = T(L -> R) + Tr[Gamma_R G^n_NN] and I_L = T(L -> R) + sum_p T(L -> p) -
Tr[Gamma_L G^n_11], with G^n for Sigma^in = 2 eta diag(mu): current conservation (I_L = I_R) checks the
solution. Where the leads have no open channel no current flows: the probe equations are then singular (a
closed network of probes, mu undetermined) and the currents are exactly zero. Everything is differentiable
(the LU solve directly; lineax differentiates the GMRES solve implicitly).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .hamiltonian import SlicedHamiltonian
from .linalg import dag as _dag
from .rgf import diagonal_blocks, left_connected

# The direct solve is used up to DENSE_LIMIT orbitals (L n) for any shape, and up to SQUARE_DENSE_LIMIT when the
# sample is not much longer than wide (L <= DENSE_ASPECT n). Its memory is (L n)^2 complex numbers (16 MiB at
# DENSE_LIMIT, 95 MiB at SQUARE_DENSE_LIMIT, per realization of a vmapped chunk) and its time O(L^2 n^3 + (L m)^3),
# m sites per slice, against O(L n^3) per GMRES iteration. Measured on 2 cores (E = 1, box W = 3.5, tau_phi = 33,
# one solve): squares 32^2, 48^2, 64^2 dense 0.084, 0.41, 1.5 s against GMRES 0.20, 0.91, 2.9 s; the spinful
# Rashba 32^2 0.30 against 1.35 s; d/d ln tau_phi (jvp) at 48^2 0.68 against 1.70 s; strips 96 x 24 (L = 4 n)
# 0.335 against 0.333 s and 128 x 16 0.30 against 0.16 s. At strong dephasing the direct solve is far faster.
DENSE_LIMIT = 1024
SQUARE_DENSE_LIMIT = 2500
DENSE_ASPECT = 4
# GMRES: absolute tolerance on the probe potentials mu (in [0, 1]) and on the Jacobi-preconditioned residual,
# and the Krylov space per restart. lineax also asks that the last correction of the iterate be below the
# tolerance; the iterate stops moving only at ~cond x 1e-16, and strong dephasing makes the probe equations
# ill-conditioned (cond ~ 500 for a 5 x 7 strip at tau_phi = 0.003, ~L^2 times more for long wires). There the
# old relative tolerance 1e-12 was unreachable: GMRES stagnated and raised. Now restarts that no longer lower
# the residual (STAGNATION of them) end the solve at that floor, with the best iterate, without raising.
ATOL = 1e-13
RESTART = 40
STAGNATION = 3
SOLVERS = ("auto", "dense", "gmres")


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


def full_green(ham: SlicedHamiltonian, ret: Retarded):
    """Every block of G = (E - H - Sigma)^-1, as a dense (L n, L n) matrix, in O(L^2 n^3) from the RGF blocks:
    G_sr = g_s V_s^+ G_{s+1,r} above the diagonal (r > s) and G_rs = G_{r,s+1} V_s g_s below it."""
    length, n = ham.length, ham.size
    if length == 1:
        return ret.g_full[0]
    later = jnp.arange(length)

    def row(g_row, x):  # G_{s+1,:} -> G_{s,:} as (n, L, n), exact for columns >= s and zero left of s
        gv_s, gfull_s, s = x
        out = jnp.where((later > s)[None, :, None], jnp.einsum("ab,bqc->aqc", gv_s, g_row), 0)
        out = out.at[:, s].set(gfull_s)
        return out, out

    def column(g_col, x):  # G_{:,s+1} -> G_{:,s} as (L, n, n), exact for rows >= s and zero above s
        vg_s, gfull_s, s = x
        out = jnp.where((later > s)[:, None, None], g_col @ vg_s, 0).at[s].set(gfull_s)
        return out, out

    steps = jnp.arange(length - 1)
    last_row = jnp.zeros((n, length, n), ret.g.dtype).at[:, -1].set(ret.g_full[-1])
    last_col = jnp.zeros((length, n, n), ret.g.dtype).at[-1].set(ret.g_full[-1])
    vg = jax.vmap(lambda hop, g_s: hop.apply(g_s))(ham.hops, ret.g[:-1])  # V_s g_s
    _, rows = jax.lax.scan(row, last_row, (ret.gv[:-1], ret.g_full[:-1], steps), reverse=True)
    _, cols = jax.lax.scan(column, last_col, (vg, ret.g_full[:-1], steps), reverse=True)
    upper = jnp.concatenate([rows, last_row[None]])  # (s, n, r, n): G_sr for r >= s
    lower = jnp.transpose(jnp.concatenate([cols, last_col[None]]), (1, 2, 0, 3))  # (r, n, s, n): G_rs, r >= s
    strictly_lower = (later[:, None] > later[None, :])[:, None, :, None]
    return (upper + jnp.where(strictly_lower, lower, 0)).reshape(length * n, length * n)


def _abs2(x):
    """|x|^2 without abs (whose derivative is NaN at exact zeros of G)."""
    return jnp.real(x) ** 2 + jnp.imag(x) ** 2


def _dense_currents(ham, ret, gamma_l, gamma_r, two_eta, orbitals, closed):
    """(I_L, I_R) from a direct solve of W mu = T(L -> p) (module docstring)."""
    n = ham.size
    g = full_green(ham, ret)
    probes = g.shape[0] // orbitals
    per_site = lambda x: jnp.real(x).reshape(probes, orbitals).sum(1)
    # t[p, q] = T(q -> p) = (2 eta)^2 sum_orbitals |G_pq|^2, p != q
    t = two_eta**2 * _abs2(g).reshape(probes, orbitals, probes, orbitals).sum((1, 3))
    t = jnp.where(jnp.eye(probes, dtype=bool), 0, t)
    g_first_col, g_first_row, g_last_row = g[:, :n], g[:n], g[-n:]
    from_l = two_eta * per_site(jnp.einsum("ia,ab,ib->i", g_first_col, gamma_l, jnp.conj(g_first_col)))
    to_l = two_eta * per_site(jnp.einsum("ai,ab,bi->i", jnp.conj(g_first_row), gamma_l, g_first_row))
    to_r = two_eta * per_site(jnp.einsum("ai,ab,bi->i", jnp.conj(g_last_row), gamma_r, g_last_row))
    g_n1 = g[-n:, :n]
    t_lr = jnp.real(jnp.trace(gamma_r @ g_n1 @ gamma_l @ _dag(g_n1)))
    w = jnp.diag(t.sum(0) + to_l + to_r) - t
    # Without open channels W is the singular Laplacian of a closed probe network; any mu gives zero current.
    w = jnp.where(closed, jnp.eye(probes, dtype=w.dtype), w)
    mu = jnp.linalg.solve(w, jnp.where(closed, 0, from_l))
    return t_lr + jnp.sum(from_l) - to_l @ mu, t_lr + to_r @ mu


def _krylov_currents(ham, ret, gamma_l, gamma_r, two_eta, orbitals, closed):
    """(I_L, I_R) from GMRES on the Jacobi-preconditioned probe equations (module docstring)."""
    length, n = ham.length, ham.size
    spectral = jnp.real(1j * jnp.diagonal(ret.g_full - _dag(ret.g_full), axis1=-2, axis2=-1))
    a = two_eta * _site_trace(spectral, orbitals)  # (L, m): total transmission out of each probe
    diag_l, _, last_l = keldysh_diagonal(ham, ret, jnp.zeros((length, n)), gamma_l)
    t_lp = two_eta * _site_trace(diag_l, orbitals)  # T(L -> p)
    t_lr = jnp.real(jnp.trace(gamma_r @ last_l))  # T(L -> R) = Tr[Gamma_R G_N1 Gamma_L G_N1^+]

    def probe_injection(mu):  # Sigma^in = 2 eta diag(mu), expanded over orbitals
        return keldysh_diagonal(ham, ret, two_eta * jnp.repeat(mu, orbitals, axis=1))

    def operator(mu):  # (1 - a^-1 K) mu
        return mu - two_eta * _site_trace(probe_injection(mu)[0], orbitals) / a

    op = lx.FunctionLinearOperator(operator, jax.ShapeDtypeStruct(a.shape, a.dtype))
    # rtol 0: ATOL is absolute on mu, which lies in [0, 1]. Restarted GMRES never raises the residual, so a
    # restart that does not lower it means the roundoff floor (or a Krylov space too small to progress).
    solver = lx.GMRES(rtol=0.0, atol=ATOL, restart=RESTART, stagnation_iters=STAGNATION, max_steps=200)
    # Without open channels the equations are singular but T(L -> p) = 0: mu = 0 at once (zero residual).
    rhs = jnp.where(closed, 0, t_lp / a)
    mu = lx.linear_solve(op, rhs, solver, throw=False).value
    _, first, last = probe_injection(mu)
    i_r = t_lr + jnp.real(jnp.trace(gamma_r @ last))
    i_l = t_lr + jnp.sum(t_lp) - jnp.real(jnp.trace(gamma_l @ first))
    return i_l, i_r


def dense_by_default(length: int, size: int) -> bool:
    """Whether ``solver="auto"`` takes the direct solve for L = ``length`` slices of ``size`` orbitals: up to
    DENSE_LIMIT orbitals, or up to SQUARE_DENSE_LIMIT when L <= DENSE_ASPECT n (measurements above)."""
    orbitals = length * size
    return orbitals <= DENSE_LIMIT or (orbitals <= SQUARE_DENSE_LIMIT and length <= DENSE_ASPECT * size)


def buttiker_currents_rgf(ham: SlicedHamiltonian, energy, sigma_left, sigma_right, eta, orbitals: int,
                          open_channels, *, solver: str = "auto"):
    """(I_L, I_R) per unit bias (e^2/h) with a Buttiker probe on every site; exactly (0, 0) where
    ``open_channels`` (of the leads) is 0. ``eta`` must be > 0.

    ``solver``: "dense" (direct solve, O(L^2 n^3) time and O((L n)^2) memory), "gmres" (O(L n^3) per
    iteration, O(L n^2) memory; a solve that did not converge shows as I_L != I_R) or "auto"
    (:func:`dense_by_default`: dense up to DENSE_LIMIT orbitals L n, or SQUARE_DENSE_LIMIT for samples not longer
    than DENSE_ASPECT times their width). See the module docstring.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if solver == "auto":
        solver = "dense" if dense_by_default(ham.length, ham.size) else "gmres"
    ret = retarded(ham, energy, sigma_left, sigma_right)
    gamma_l = 1j * (sigma_left - _dag(sigma_left))
    gamma_r = 1j * (sigma_right - _dag(sigma_right))
    closed = open_channels == 0
    currents = _dense_currents if solver == "dense" else _krylov_currents
    i_l, i_r = currents(ham, ret, gamma_l, gamma_r, 2 * eta, orbitals, closed)
    return jnp.where(closed, 0.0, i_l), jnp.where(closed, 0.0, i_r)
