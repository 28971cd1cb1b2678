"""Self-energies of clean semi-infinite leads from their exact Bloch modes, differentiable by implicit
differentiation.

A lead is a chain of identical cells with cell Hamiltonian ``cell`` (n x n) and hopping ``hop`` = H[j+1, j]
from a cell to the next one (n x n, possibly singular, e.g. honeycomb ribbons). The sample's first slice is
attached to the left lead and its last slice to the right lead through the same ``hop``.

Algorithm (a reduced, stabilized transfer-matrix eigenproblem in the spirit of Kwant's ``modes``; derivation
in ``docs/physics.md``):

1. Factor ``hop = u v^dagger`` with u, v of full column rank r, read off the bond structure (static).
2. With p_j = v^dagger psi_j, q_j = u^dagger psi_j and the stabilized K = E - cell + i(u u^dagger + v v^dagger),
   the Bloch condition (p_j, q_{j+1}) = lambda (p_{j-1}, q_j) becomes a 2r x 2r standard eigenproblem.
3. Right-going modes (|lambda| < 1, or |lambda| = 1 with positive current) are separated from left-going ones
   by diagonalizing the current form restricted to propagating modes, in the metric of the modes' cell
   wavefunctions, which also resolves degenerate modes of opposite velocity. Only the span of each set matters.
   Subband edges, poles of the surface Green's function and singular pencils are evaluated at E + 1e-7 t.
4. Sigma_R = v Q_R P_R^{-1} v^dagger and Sigma_L = u P_L Q_L^{-1} u^dagger, with P, Q the p- and q-parts of
   the right- resp. left-going modes.

The result is exact (no broadening eta, no iteration): clean strips reproduce the analytic transverse-mode
self-energy to ~1e-14. Derivatives use the fixed-point equations Sigma_R = hop^dagger g hop and
Sigma_L = hop g hop^dagger, g = (E - cell - Sigma)^{-1}; their linearization is a Stein equation
X - A X B = C, solved in the eigenbases of A and B (:func:`stein_solve`, itself differentiable to any order).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .linalg import dag as _dag

# Eigenvalues with ||lambda| - 1| below this are propagating modes. Evanescent modes reach it only within
# ~1e-16 of a band edge (|lambda| - 1 ~ sqrt(E - E_edge)); roundoff on propagating |lambda| is ~1e-13.
PROPAGATING_TOL = 1e-8
# Subband edges (docs/physics.md, "Subband edges"). At an exact edge a Bloch mode has zero velocity: two
# solutions merge into a Jordan pair, which eig returns as two vectors O(sqrt(eps)) apart, and a clean sample's
# Green's function diverges. There the leads and the sample are evaluated at E + EDGE_SHIFT * t (t the largest
# inter-cell hopping), so that every quantity is the limit from above: G(E) is right-continuous. An energy is
# at an edge when a mode lies within CRITICAL_TOL of the unit circle without being propagating, or propagates
# slower than ZERO_VELOCITY_TOL (group velocity, ~ sqrt(|E - E_edge| / t)): both mean
# |E - E_edge| <~ 1e-9 t, below the shift, and far above the O(1e-16) splitting of a Jordan pair. The window is
# that wide because some leads' self-energies diverge as |E - E_edge|^(-1/2) at an edge (a periodic 3 x 3 bar
# at flux 1/3, E = 0): there the solve loses precision like |E - E_edge|^(-3/2) eps, 3e-4 in G at 1e-9 from the
# edge, 1e-6 at the shifted energy.
CRITICAL_TOL = 3e-5
ZERO_VELOCITY_TOL = 3e-5
EDGE_SHIFT = 1e-7
# |Sigma| above POLE_LIMIT t marks a pole of the lead's surface Green's function (a surface state at E), shifted
# by EDGE_SHIFT like an edge: |Sigma| ~ t^2 / |E - E_pole| puts it within ~1e-8 t of the pole.
POLE_LIMIT = 1e8
# Propagating modes whose lambda agree to DEGENERATE_TOL form one group (a band crossing or degenerate
# transverse modes), split into right- and left-movers by degenerate perturbation theory (_mode_subspaces).
DEGENERATE_TOL = 1e-8
# The mode solver needs hop = u v^dagger with u, v of full rank r (the structural rank, HopFactor). Values can
# still make it singular where the structure is regular: a flux whose phases cancel around a cycle of
# inter-cell bonds (an armchair cylinder at flux 4 sqrt(3)/N: smallest / largest singular value ~4e-16). The
# solver would then count no open channel and return G = 0, so a reduced hopping whose smallest singular value
# is below SINGULAR_HOP times its largest is refused at run time (equinox.error_if, also under jit and vmap).
SINGULAR_HOP = 1e-10


class HopFactor(eqx.Module):
    """Static description of ``hop = u v^dagger``: the orbitals that carry the nonzero columns (``sources``)
    or rows (``targets``) of the hopping; the shorter list is used, so r = min(len(sources), len(targets))."""

    sources: tuple[int, ...] = eqx.field(static=True)
    targets: tuple[int, ...] = eqx.field(static=True)

    @property
    def rank(self) -> int:
        return min(len(self.sources), len(self.targets))

    def factors(self, hop):
        """Return (u, v), each n x r, with hop = u v^dagger."""
        n = hop.shape[-1]
        if len(self.sources) <= len(self.targets):
            v = jnp.eye(n, dtype=hop.dtype)[:, jnp.asarray(self.sources)]
            return hop[:, jnp.asarray(self.sources)], v
        u = jnp.eye(n, dtype=hop.dtype)[:, jnp.asarray(self.targets)]
        return u, _dag(hop[jnp.asarray(self.targets), :])


def hop_factor_from_structure(mask: np.ndarray) -> HopFactor:
    """Build the factor description from the boolean nonzero pattern of the hopping matrix (n x n), and check
    that the pattern has full structural rank (with random values in its nonzero entries)."""
    mask = np.asarray(mask, bool)
    sources = tuple(int(i) for i in np.nonzero(mask.any(axis=0))[0])
    targets = tuple(int(i) for i in np.nonzero(mask.any(axis=1))[0])
    factor = HopFactor(sources=sources, targets=targets)
    rng = np.random.default_rng(0)
    probe = np.where(mask, rng.normal(size=mask.shape) + 1j * rng.normal(size=mask.shape), 0)
    if np.linalg.matrix_rank(probe) != factor.rank:
        raise ValueError(
            "the inter-cell hopping pattern is rank deficient beyond its zero rows and columns; "
            "the lead mode solver needs hop = u v^dagger with u, v of full rank (regroup the cell)."
        )
    return factor


# ---------------------------------------------------------------------------------------------------------
# Stein equation X - A X B = C


def stein_solve(a, b, c):
    """Solve X - A X B = C for X (all n x n), by diagonalizing A and B.

    Uniquely solvable when no product of an eigenvalue of A and one of B equals 1. Written as a
    ``lax.custom_linear_solve`` of the linear map X -> X - A X B: derivatives with respect to A, B and C go
    through that map (implicit differentiation), and the eigendecompositions serve only as its solver and
    transposed solver, so the solve is differentiable to any order.
    """
    dtype = jnp.result_type(a, b, c, 1j)
    a, b, c = a.astype(dtype), b.astype(dtype), c.astype(dtype)
    mu, pa = jnp.linalg.eig(jax.lax.stop_gradient(a))
    lam, pb = jnp.linalg.eig(jax.lax.stop_gradient(b))
    pa_inv, pb_inv = jnp.linalg.inv(pa), jnp.linalg.inv(pb)
    denom = 1 - mu[:, None] * lam[None, :]

    def solve(_, rhs):  # A = pa mu pa^-1, B = pb lam pb^-1
        return pa @ ((pa_inv @ rhs @ pb) / denom) @ pb_inv

    def transpose_solve(_, rhs):  # Y - A^T Y B^T = rhs, with A^T = pa^-T mu pa^T, B^T = pb^-T lam pb^T
        return pa_inv.T @ ((pa.T @ rhs @ pb_inv.T) / denom) @ pb.T

    return jax.lax.custom_linear_solve(lambda x: x - a @ x @ b, c, solve, transpose_solve)


# ---------------------------------------------------------------------------------------------------------
# Modes


def _mode_subspaces(energy, cell, hop, factor: HopFactor):
    """Right- and left-going mode subspaces of the reduced eigenproblem.

    Returns (u, v, p_right, q_right, p_left, q_left, n_open, at_edge): p_*, q_* are r x r (columns span the
    modes), n_open the number of right-moving propagating modes, at_edge whether ``energy`` is (numerically)
    a subband edge, where the split into right- and left-going modes is undefined (see EDGE_SHIFT).
    """
    n = cell.shape[-1]
    r = factor.rank
    dtype = jnp.result_type(cell.dtype, hop.dtype, 1j)
    cell = cell.astype(dtype)
    hop = hop.astype(dtype)
    reduced = jax.lax.stop_gradient(hop)[jnp.ix_(jnp.asarray(factor.targets), jnp.asarray(factor.sources))]
    sv = jnp.linalg.svd(reduced, compute_uv=False)
    hop = eqx.error_if(
        hop, sv[-1] <= SINGULAR_HOP * sv[0],
        "the lead's inter-cell hopping is singular at these parameters (its rank falls below the bond pattern's, "
        "e.g. a flux on an armchair cylinder); its modes are undefined: change the flux or the width.",
    )
    u, v = factor.factors(hop)
    eye_n = jnp.eye(n, dtype=dtype)
    eye_r = jnp.eye(r, dtype=dtype)
    # Stabilized on-site inverse: E - cell alone can be singular (flat bands of a single cell); the
    # anti-Hermitian i(u u^+ + v v^+) term is compensated exactly in the equations below.
    k = energy * eye_n - cell + 1j * (u @ _dag(u) + v @ _dag(v))
    kinv_u, kinv_v = jnp.split(jnp.linalg.solve(k, jnp.concatenate([u, v], axis=1)), 2, axis=1)
    a, b = _dag(v) @ kinv_u, _dag(v) @ kinv_v
    c, d = _dag(u) @ kinv_u, _dag(u) @ kinv_v
    # Bloch condition (p_j, q_{j+1}) = lambda (p_{j-1}, q_j):  lhs X_{j+1} = rhs X_j.
    rhs = jnp.block([[a, 1j * a], [c, 1j * c - eye_r]])
    lhs = jnp.block([[eye_r - 1j * b, -b], [-1j * d, -d]])
    lam, vecs = jnp.linalg.eig(jnp.linalg.solve(lhs, rhs))
    p, q = vecs[:r], vecs[r:]

    # Right- and left-movers among propagating modes: the current form J between modes vanishes between
    # different lambda, so it is block diagonal in groups of equal lambda. Within a group (a band crossing at
    # k = 0 or pi, degenerate transverse modes) the physical modes are those of degenerate perturbation
    # theory in k: they diagonalize J in the metric N of their cell wavefunctions psi (Hellmann-Feynman,
    # J_ab = <psi_a| dH/dk |psi_b>), so we solve J x = v N x with N restricted to the groups. (Diagonalizing J
    # in the Euclidean metric of the (p, q) coordinates splits a crossing along the wrong pair of J-orthogonal
    # directions.) Evanescent modes get +-1 with unit metric: +1 decaying (right), -1 growing (left).
    modulus = jnp.abs(lam)
    propagating = jnp.abs(modulus - 1) < PROPAGATING_TOL
    current = (_dag(q) @ p - _dag(p) @ q) / 2j
    same = (propagating[:, None] & propagating[None, :]) & (jnp.abs(lam[:, None] - lam[None, :]) < DEGENERATE_TOL)
    # psi_j = K^{-1}[u (p_{j-1} + i q_j) + v (q_{j+1} + i p_j)], with (p_j, q_{j+1}) = lambda (p_{j-1}, q_j).
    psi = kinv_u @ (p + 1j * q) + (kinv_v @ (q + 1j * p)) * lam[None, :]
    metric = jnp.where(same, _dag(psi) @ psi, 0) + jnp.diag(jnp.where(propagating, 0.0, 1.0))
    evanescent_sign = jnp.where(modulus < 1, 1.0, -1.0)
    form = jnp.where(same, current, 0) + jnp.diag(jnp.where(propagating, 0.0, evanescent_sign))
    chol = jnp.linalg.cholesky(metric)
    # A Jordan pair (an exact edge) inside one group makes N singular: flag it as an edge (see below) and fall
    # back to the Euclidean metric, so that nothing turns into NaN.
    pivots = jnp.real(jnp.diagonal(chol)) ** 2
    singular = ~jnp.all(jnp.isfinite(chol)) | ~jnp.all(pivots > 1e-10 * jnp.real(jnp.diagonal(metric)))
    chol = jnp.where(singular, jnp.eye(2 * r, dtype=chol.dtype), chol)
    half = jax.scipy.linalg.solve_triangular(chol, form, lower=True)  # L^-1 J
    velocity, y = jnp.linalg.eigh(jax.scipy.linalg.solve_triangular(chol, _dag(half), lower=True))  # L^-1 J L^-+
    rot = jax.scipy.linalg.solve_triangular(_dag(chol), y, lower=False)  # x = L^-+ y; ascending velocities:
    # the last r are right-going, the first r left-going.
    vecs = vecs @ rot
    p, q = vecs[:r], vecs[r:]
    n_open = jnp.sum(propagating) / 2
    # Evanescent modes have velocity +-1 in the form, so a small eigenvalue is a slow propagating mode.
    # A singular pencil (lhs not invertible: a mode with lambda = infinity, e.g. a zigzag ribbon at E = 0) gives
    # non-finite lambda; it is shifted like an edge.
    singular = singular | ~jnp.all(jnp.isfinite(lam)) | ~jnp.all(jnp.isfinite(vecs))
    at_edge = singular | jnp.any((jnp.abs(modulus - 1) < CRITICAL_TOL) & ~propagating) | jnp.any(
        jnp.abs(velocity) < ZERO_VELOCITY_TOL)
    return u, v, p[:, r:], q[:, r:], p[:, :r], q[:, :r], n_open, at_edge


def _sigmas_at(energy, cell, hop, factor):
    u, v, pr, qr, pl, ql, n_open, at_edge = _mode_subspaces(energy, cell, hop, factor)
    z_right = jnp.linalg.solve(pr.T, qr.T).T  # Q_R P_R^{-1}
    z_left = jnp.linalg.solve(ql.T, pl.T).T  # P_L Q_L^{-1}
    sigma_left, sigma_right = u @ z_left @ _dag(u), v @ z_right @ _dag(v)
    # In a gap (no open channel) the self-energies are Hermitian; near a pole (below) roundoff would leave an
    # anti-Hermitian part of relative size eps, i.e. a spurious Gamma. Drop it.
    gap = n_open == 0
    sigma_left = jnp.where(gap, (sigma_left + _dag(sigma_left)) / 2, sigma_left)
    sigma_right = jnp.where(gap, (sigma_right + _dag(sigma_right)) / 2, sigma_right)
    # A surface state of the semi-infinite lead at E gives Sigma a pole (an armchair ribbon at E = 0:
    # |Sigma| ~ 1.2 t^2 / |E|); within ~1e-8 t of it the energy is shifted like an edge (POLE_LIMIT).
    scale = jnp.max(jnp.abs(hop))
    size = jnp.maximum(jnp.max(jnp.abs(sigma_left)), jnp.max(jnp.abs(sigma_right)))
    pole = ~(size < POLE_LIMIT * scale)  # also catches NaN and inf
    return sigma_left, sigma_right, n_open, at_edge | pole


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _lead_sigmas(energy, cell, hop, factor):
    """(Sigma_left, Sigma_right, open_channels, shift): the self-energies at ``energy + shift``, where shift is
    zero except at a subband edge, a pole or a singular pencil (EDGE_SHIFT). The channel count and the shift are piecewise constant (zero
    tangent)."""
    sigma_left, sigma_right, n_open, at_edge = _sigmas_at(energy, cell, hop, factor)
    shift = EDGE_SHIFT * jnp.max(jnp.abs(hop))

    def shifted(_):
        return (*_sigmas_at(energy + shift, cell, hop, factor)[:3], shift)

    def exact(_):
        return sigma_left, sigma_right, n_open, jnp.zeros_like(shift)

    return jax.lax.cond(at_edge, shifted, exact, None)


@_lead_sigmas.defjvp
def _lead_sigmas_jvp(factor, primals, tangents):
    energy, cell, hop = primals
    d_energy, d_cell, d_hop = tangents
    sigma_left, sigma_right, n_open, shift = _lead_sigmas(energy, cell, hop, factor)
    energy = energy + shift  # the linearization holds where the self-energies were evaluated
    n = cell.shape[-1]
    eye = jnp.eye(n, dtype=sigma_left.dtype)
    d_h = d_energy * eye - d_cell  # d(E - cell)

    g = jnp.linalg.inv(energy * eye - cell - sigma_right)  # right: Sigma = hop^+ g hop
    hd = _dag(hop)
    rhs = _dag(d_hop) @ g @ hop + hd @ g @ d_hop - hd @ g @ d_h @ g @ hop  # dg = -g d(g^-1) g
    d_right = stein_solve(hd @ g, g @ hop, rhs)

    g = jnp.linalg.inv(energy * eye - cell - sigma_left)  # left: Sigma = hop g hop^+
    rhs = d_hop @ g @ hd + hop @ g @ _dag(d_hop) - hop @ g @ d_h @ g @ hd
    d_left = stein_solve(hop @ g, g @ hd, rhs)
    return (sigma_left, sigma_right, n_open, shift), (d_left, d_right, jnp.zeros_like(n_open), jnp.zeros_like(shift))


class LeadSelfEnergies(eqx.Module):
    """Self-energies of the left and right leads on the sample's first and last slice, the number of open
    channels (right-moving propagating modes) per lead, and the energy at which they hold: the requested
    energy, or E + EDGE_SHIFT t at a subband edge (the sample must be solved at this ``energy``)."""

    left: jax.Array
    right: jax.Array
    open_channels: jax.Array
    energy: jax.Array


def lead_self_energies(energy, cell, hop, factor: HopFactor) -> LeadSelfEnergies:
    """Retarded self-energies of two identical clean leads (cell Hamiltonian ``cell``, hopping
    ``hop`` = H[j+1, j]); differentiable in ``energy``, ``cell`` and ``hop``.

    Where a lead has no open channel the self-energies are Hermitian, so Gamma = i(Sigma - Sigma^+) = 0 and
    the transmission is exactly 0.

    At a subband edge (an energy within ~1e-9 t of a threshold, where a mode has zero velocity) the modes
    are those of E + 0: everything is evaluated at ``energy + 1e-7 t``, returned as ``.energy``, at which the
    sample must be solved too. Conductances are then right-continuous in E, finite and differentiable
    (``docs/physics.md``, "Subband edges").
    """
    energy = jnp.asarray(energy)
    left, right, n_open, shift = _lead_sigmas(energy, cell, hop, factor)
    return LeadSelfEnergies(left=left, right=right, open_channels=jax.lax.stop_gradient(n_open),
                            energy=energy + jax.lax.stop_gradient(shift))


def distinct_lead_self_energies(energy, left, right) -> LeadSelfEnergies:
    """Self-energies of two different clean leads, ``left`` and ``right`` each a (cell, hop, factor) triple of the
    same size and hopping pattern (e.g. the right lead carrying a vector potential): Sigma_L from ``left``,
    Sigma_R from ``right``, ``open_channels`` of the left lead. Where either lead is at a subband edge, both are
    evaluated at the shifted energy (:func:`lead_self_energies`), so that the sample is solved at one energy."""
    energy = jnp.asarray(energy)
    sigma_left, _, n_open, shift_left = _lead_sigmas(energy, *left)
    _, sigma_right, _, shift_right = _lead_sigmas(energy, *right)
    shift = jnp.maximum(shift_left, shift_right)
    sigma_left = jax.lax.cond(shift_left < shift, lambda: _lead_sigmas(energy + shift, *left)[0], lambda: sigma_left)
    sigma_right = jax.lax.cond(shift_right < shift, lambda: _lead_sigmas(energy + shift, *right)[1],
                               lambda: sigma_right)
    return LeadSelfEnergies(left=sigma_left, right=sigma_right, open_channels=jax.lax.stop_gradient(n_open),
                            energy=energy + jax.lax.stop_gradient(shift))
