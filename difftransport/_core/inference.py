"""Microscopic inference: recover lattice-model parameters from magnetoconductance curves by optimizing through the
ensemble-averaged recursive-Green's-function conductance.

The forward model is the mean conductance over a *fixed* set of disorder realizations (common random numbers):
the same realizations are used at every parameter value, so the objective is a smooth, deterministic function of
the parameters and its gradient (``jax.grad`` through :func:`difftransport.conductance`) is exact. Two models:

* a spinful sample with box disorder (:func:`lattice_ensemble`), parameters :class:`MicroscopicParameters`:

  - ``tau_phi``: phase-coherence time (hbar/t), one per curve (e.g. per temperature),
  - ``rashba``: Rashba spin-orbit strength alpha (t), shared,
  - ``field_scale``: flux per plaquette (h/e) per unit of the target's field axis, shared: phi = field_scale * B.
    For a field in tesla and lattice constant a it is a^2 e/h.

* a spinless honeycomb (graphene) sample with smooth disorder and short-range scatterers
  (:func:`graphene_ensemble`), parameters :class:`GrapheneParameters`: ``tau_phi`` per curve, the density of
  short-range (valley-mixing) scatterers ``short_range_density``, shared, and ``field_scale`` (flux per a^2
  per field unit). The density is made differentiable at fixed scatterer sites: each realization draws its
  sites at a reference density n_0 with amplitudes of the stated strength, and density n scales those amplitudes
  by sqrt(n / n_0), which keeps n <V^2>, what the Born scattering rate of the scatterers (and so the intervalley
  rate) depends on, equal to that of n scatterers per site of the stated strength (docs/theory.md#graphene-inference).

All parameters are positive and optimized as logarithms with ``optax.lbfgs``.

**Objective.** Each curve G(B_0), G(B_1), ... is compared in the difference basis
o = (G(B_0), G(B_1) - G(B_0), G(B_2) - G(B_0), ...): with common random numbers the differences of one ensemble are
far less noisy than the levels, and a shift of the whole curve (the dominant noise between two finite ensembles)
then only enters through o_0. chi^2 = sum_i (o_model,i - o_target,i)^2 / v_i, with v_i the variance of the target
mean plus that of the model's ensemble mean, estimated once at the starting point (fixed weights, so the objective
is smooth). The full covariance is not inverted: curves sampled finely are nearly collinear between realizations,
which makes it numerically singular.

**Optimizer.** The log parameters are preconditioned by the Gauss-Newton matrix H_0 = J^T V^{-1} J at the start
(x = R (log p - log p_0), H_0 = R^T R), so that the objective is close to |x - x*|^2 and L-BFGS needs few steps.

**Uncertainty.** With J = d o/d(log p) at the optimum (forward mode), V = diag(v) and C the full covariance of
o_model - o_target (target plus model ensemble, re-estimated at the optimum), the estimator's covariance is the
sandwich cov(log p) = H^{-1} J^T V^{-1} C V^{-1} J H^{-1}, H = J^T V^{-1} J. It includes both noise sources: the
target's finite ensemble and the fit ensemble's finite sample of disorder. The standard error of p is
p sqrt(cov_ii) (first order).

Units: lattice units (a = t = hbar = 1); conductances in e^2/h, all orbitals (spin included).

**Regime and identifiability.** The objective is not convex: a stronger spin-orbit coupling with a longer
tau_phi fits a WAL curve nearly as well locally, hence the coarse grid and multi-start refinement of
:func:`infer_parameters`. On samples shorter than L_phi the conductance barely depends on tau_phi (a flat
direction): choose samples with L_phi < L, and a curve with L_phi beyond the spin-precession length, or alpha
barely changes the curves. In the diffusive (HLN) regime the magnetoconductance depends on B only through
s B / B_phi(tau_phi) and s B / B_so(alpha), so (s, tau_phi, alpha) -> (lambda s, tau_phi / lambda,
alpha sqrt(lambda)) leaves the differences G(B_k) - G(B_0) unchanged: only the levels G(B_0) and non-universal
lattice features pin all three. Where the field scale is known (lattice constant), hold it (``fixed``); where it
is fitted, a large deviation from the expected value signals this degeneracy.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .lattice import Sample
from .model import (
    correlated_potential, Disorder, draw_disorder, Model, realization_twist, short_range_potential
)
from .observables import conductance, map_realizations, observe
from .stats import Estimate, gauss_newton_covariance


class _Parameters(eqx.Module):
    """Positive parameters of an inference model: ``tau_phi`` (one per curve), then the scalars named in
    ``SHARED`` (shared by all curves), flattened in that order."""

    SHARED: ClassVar[tuple[str, ...]] = ()

    def log(self):
        return jax.tree.map(jnp.log, self)

    def exp(self):
        return jax.tree.map(jnp.exp, self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return ("tau_phi",) + cls.SHARED


class MicroscopicParameters(_Parameters):
    """Parameters of the spinful lattice model that the inference recovers (all positive).

    Attributes:
        tau_phi: phase-coherence time (hbar/t), shape (curves,); absorption hbar/(2 tau_phi) on every site.
        rashba: Rashba strength alpha (t): H[r+x, r] = -t + i alpha sigma_y, H[r+y, r] = -t - i alpha sigma_x.
        field_scale: flux per plaquette (h/e) per unit of the target's field axis.
    """

    SHARED: ClassVar[tuple[str, ...]] = ("rashba", "field_scale")
    tau_phi: jax.Array
    rashba: jax.Array
    field_scale: jax.Array


class GrapheneParameters(_Parameters):
    """Parameters of the honeycomb model of :func:`graphene_ensemble` that the inference recovers (all positive).

    Attributes:
        tau_phi: phase-coherence time (hbar/t), shape (curves,); absorption hbar/(2 tau_phi) on every site.
        short_range_density: short-range scatterers per site, at the ensemble's ``short_range_strength``; enters
            as amplitudes sqrt(short_range_density / reference_density) times those drawn at the ensemble's
            ``reference_density`` (the same n <V^2>; module docstring).
        field_scale: flux per a^2 (h/e) per unit of the target's field axis (a the lattice constant).
    """

    SHARED: ClassVar[tuple[str, ...]] = ("short_range_density", "field_scale")
    tau_phi: jax.Array
    short_range_density: jax.Array
    field_scale: jax.Array


class LatticeEnsemble(eqx.Module):
    """A spinful sample, its fixed disorder realizations (leading axis) and the fixed model parameters; the model of
    :class:`MicroscopicParameters`.

    Attributes:
        sample: the spinful sample (static).
        disorder: a :class:`Disorder` whose arrays have a leading realization axis.
        energy, hopping: Fermi energy and hopping (t).
        dephasing: dephasing model passed to :func:`difftransport.conductance` (static).
    """

    parameter_class: ClassVar[type] = MicroscopicParameters
    sample: Sample = eqx.field(static=True)
    disorder: Disorder
    energy: jax.Array
    hopping: jax.Array
    dephasing: str = eqx.field(static=True, default="probe")

    @property
    def realizations(self) -> int:
        return int(jax.tree.leaves(self.disorder)[0].shape[0])

    def data(self):
        """What differs between realizations (leading axis)."""
        return self.disorder

    def system(self, disorder, params: MicroscopicParameters, tau_phi, field) -> tuple[Model, Disorder]:
        """(model, disorder) of one realization at one tau_phi and one field value."""
        return Model(energy=self.energy, hopping=self.hopping, flux=params.field_scale * field, rashba=params.rashba,
                     tau_phi=tau_phi), disorder

    def solve(self, data, params: MicroscopicParameters, tau_phi, field):
        """G (e^2/h) of one realization at one tau_phi and one field value."""
        return conductance(self.sample, *self.system(data, params, tau_phi, field), dephasing=self.dephasing)


def _check_keys(keys):
    keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
    if keys.ndim != 1 or keys.shape[0] < 2:
        raise ValueError(f"keys must be a 1D array of at least 2 PRNG keys, got shape {keys.shape}.")
    return keys


def lattice_ensemble(keys, sample: Sample, *, energy, strength, hopping=1.0, dephasing="probe") -> LatticeEnsemble:
    """Draw one realization per key (box disorder of width ``strength``) and bundle them with the fixed model.

    Use keys different from those that produced the target: the fit must not share the target's realizations."""
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    if not sample.spinful:
        raise ValueError("the inference fits a Rashba strength, which needs Sample(..., spinful=True).")
    keys = _check_keys(keys)
    disorder = jax.vmap(lambda k: draw_disorder(k, sample, strength=strength))(keys)
    return LatticeEnsemble(sample=sample, disorder=disorder, energy=jnp.asarray(energy, float),
                           hopping=jnp.asarray(hopping, float), dephasing=dephasing)


class GrapheneEnsemble(eqx.Module):
    """A spinless honeycomb sample, its fixed realizations (leading axis) and the fixed model parameters; the model
    of :class:`GrapheneParameters` (built by :func:`graphene_ensemble`).

    Attributes:
        sample: the honeycomb sample (static).
        smooth: the smooth (valley-conserving) potential of every realization, shape (R, *potential_shape).
        short_range: short-range scatterers drawn at ``reference_density`` (sites and amplitudes), same shape.
        twist: Aharonov-Bohm twist of every realization (flux quanta), shape (R,); zeros on ribbons.
        energy, hopping: Fermi energy and hopping (t).
        reference_density: n_0, the density at which ``short_range`` was drawn (static).
        dephasing: dephasing model passed to :func:`difftransport.conductance` (static).
    """

    parameter_class: ClassVar[type] = GrapheneParameters
    sample: Sample = eqx.field(static=True)
    smooth: jax.Array
    short_range: jax.Array
    twist: jax.Array
    energy: jax.Array
    hopping: jax.Array
    reference_density: float = eqx.field(static=True)
    dephasing: str = eqx.field(static=True, default="probe")

    @property
    def realizations(self) -> int:
        return int(self.smooth.shape[0])

    def data(self):
        """What differs between realizations (leading axis)."""
        return self.smooth, self.short_range, self.twist

    def system(self, data, params: GrapheneParameters, tau_phi, field) -> tuple[Model, Disorder]:
        """(model, disorder) of one realization at one tau_phi and one field value."""
        smooth, short_range, twist = data
        scale = jnp.sqrt(params.short_range_density / self.reference_density)
        model = Model(energy=self.energy, hopping=self.hopping, flux=params.field_scale * field, tau_phi=tau_phi,
                      twist=twist if self.sample.lattice.transverse_period is not None else None)
        return model, Disorder(potential=smooth + scale * short_range)

    def solve(self, data, params: GrapheneParameters, tau_phi, field):
        """G (e^2/h) of one realization at one tau_phi and one field value."""
        return conductance(self.sample, *self.system(data, params, tau_phi, field), dephasing=self.dephasing)


def graphene_ensemble(keys, sample: Sample, *, energy, strength, correlation_length, short_range_strength,
                      reference_density, density=1.0, hopping=1.0, dephasing="probe") -> GrapheneEnsemble:
    """Draw one honeycomb realization per key and bundle them with the fixed model (:class:`GrapheneEnsemble`).

    Realization r: the smooth potential of :func:`difftransport.correlated_potential` (``strength``,
    ``correlation_length`` xi, impurity ``density``; Gaussian-correlated, valley-conserving for xi >~ a), the
    short-range scatterers of :func:`difftransport.short_range_potential` (box amplitudes of width
    ``short_range_strength`` on a fraction ``reference_density`` of the sites; the fitted density rescales them,
    :class:`GrapheneParameters`), both from ``draw_disorder(keys[r], ...)``'s streams, and on a cylinder (periodic
    transverse boundary) a twist uniform in [0, 1) from the key (:func:`difftransport.realization_twist`), which
    averages over boundary conditions. Use keys other than the target's."""
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    if sample.spinful or set(sample.lattice.sublattice) != {0, 1}:
        raise ValueError(f"graphene_ensemble needs a spinless honeycomb sample (zigzag_ribbon or armchair_ribbon), "
                         f"got {sample.lattice.name}{' (spinful)' if sample.spinful else ''}.")
    reference_density = float(reference_density)
    if not 0.0 < reference_density <= 1.0:
        raise ValueError(f"reference_density must lie in (0, 1] (short-range scatterers per site), "
                         f"got {reference_density}.")
    keys = _check_keys(keys)

    def one(key):
        smooth = correlated_potential(key, sample, strength, correlation_length=correlation_length, density=density)
        short = short_range_potential(key, sample, short_range_strength, density=reference_density)
        return smooth, short, realization_twist(key)

    smooth, short, twist = jax.vmap(one)(keys)
    if sample.lattice.transverse_period is None:
        twist = jnp.zeros_like(twist)
    return GrapheneEnsemble(sample=sample, smooth=smooth, short_range=short, twist=twist,
                            energy=jnp.asarray(energy, float), hopping=jnp.asarray(hopping, float),
                            reference_density=reference_density, dephasing=dephasing)


Ensemble = LatticeEnsemble | GrapheneEnsemble


def realization_conductances(ensemble: Ensemble, params: _Parameters, field, *, batch: int = 8):
    """G (e^2/h) of every realization, curve and field: shape (realizations, curves, fields).

    Curve c uses tau_phi[c]; the flux per plaquette is field_scale * field. ``batch`` realizations are vmapped
    at a time."""
    field = jnp.asarray(field, float)
    per_field = lambda d, tau: jax.vmap(lambda b: ensemble.solve(d, params, tau, b))(field)
    per_curve = lambda d: jax.vmap(lambda tau: per_field(d, tau))(params.tau_phi)
    return map_realizations(per_curve, ensemble.data(), batch=batch)  # memory bounded by one batch


def mean_conductance(ensemble: Ensemble, params: _Parameters, field):
    """Ensemble mean <G> over the fixed realizations, shape (curves, fields); differentiable in ``params``."""
    return jnp.mean(realization_conductances(ensemble, params, field), axis=0)


def _difference_basis(curves: int, fields: int) -> np.ndarray:
    """T with o = T g for g flattened (curve-major): per curve (G(B_0), G(B_k) - G(B_0) for k >= 1)."""
    one = np.eye(fields)
    one[1:, 0] = -1.0
    return np.kron(np.eye(curves), one)


def curve_statistics(conductances):
    """Mean curves and the covariance of the mean from per-realization conductances (realizations, curves,
    fields), e.g. of a simulated target: (mean (curves, fields), covariance (n, n)), n = curves * fields."""
    g = np.asarray(conductances, float)
    if g.ndim != 3 or g.shape[0] < 2:
        raise ValueError(f"conductances must have shape (realizations >= 2, curves, fields), got {g.shape}.")
    flat = g.reshape(g.shape[0], -1)
    return g.mean(0), np.atleast_2d(np.cov(flat, rowvar=False)) / g.shape[0]


@dataclasses.dataclass(frozen=True)
class InferenceResult(Estimate):
    """Result of :func:`infer_parameters`.

    Attributes:
        params: the recovered parameters (:class:`MicroscopicParameters` or :class:`GrapheneParameters`, as the
            ensemble's model).
        stderr: their first-order standard errors (same structure; 0 for fixed parameters).
        log_covariance: sandwich covariance of (log tau_phi..., log of each shared parameter); rows and columns of
            fixed parameters are 0.
        chi2, dof: chi^2 at the optimum (fixed diagonal weights, difference basis) and points - free parameters.
        history: chi^2 at every optimizer step.
        steps: optimizer steps taken; converged: whether the tolerance was met.
        start: where the returned local fit started: a minimum of the coarse grid (``search``) or ``initial``.
        local_fits: (parameters, chi^2) of every local fit (one per refined grid minimum), same weights:
            several with similar chi^2 and different parameters mean the data do not single out one solution.

    An :class:`~difftransport.stats.Estimate` of ("tau_phi[0]", ..., then the shared names of the model, e.g.
    "rashba", "field_scale"), whose ``covariance`` is that of p to first order, p_i p_j log_covariance_ij.
    """

    params: _Parameters
    stderr: _Parameters
    log_covariance: np.ndarray
    chi2: float
    dof: int
    history: tuple
    steps: int
    converged: bool
    start: _Parameters
    local_fits: tuple = ()

    names = property(lambda self: tuple(f"tau_phi[{i}]" for i in range(self.params.tau_phi.shape[0]))
                     + type(self.params).SHARED)
    values = property(lambda self: np.asarray(_flatten(self.params)))
    covariance = property(lambda self: self.log_covariance * np.outer(self.values, self.values))


def _flatten(p: _Parameters):
    return jnp.concatenate([p.tau_phi] + [jnp.asarray(getattr(p, name))[None] for name in p.SHARED])


def _free_indices(fixed, curves: int, cls: type) -> np.ndarray:
    """Indices of the fitted entries of the flat vector (tau_phi..., then cls.SHARED)."""
    fixed = (fixed,) if isinstance(fixed, str) else tuple(fixed)
    names = cls.names()
    unknown = [name for name in fixed if name not in names]
    if unknown:
        raise ValueError(f"fixed names unknown parameters {unknown}; choose from {list(names)}.")
    blocks = {"tau_phi": range(curves)} | {name: [curves + i] for i, name in enumerate(cls.SHARED)}
    free = [i for name in names if name not in fixed for i in blocks[name]]
    if not free:
        raise ValueError("every parameter is fixed: nothing to fit.")
    return np.asarray(free)


def _unflatten(x, curves, cls):
    return cls(tau_phi=x[:curves], **{name: x[curves + i] for i, name in enumerate(cls.SHARED)})


def _model_observables(ensemble, logp, field, curves, basis):
    g = mean_conductance(ensemble, _unflatten(jnp.exp(logp), curves, ensemble.parameter_class), field).reshape(-1)
    return basis @ g


def _chi2_log(logp, ensemble, field, target, basis, weight):
    """chi^2 at log parameters ``logp`` (all entries)."""
    resid = _model_observables(ensemble, logp, field, target.shape[0] // field.shape[0], basis) - target
    return jnp.sum(weight * resid**2)


def _chi2(x, ensemble, frame, field, target, basis, weight):
    """chi^2 in preconditioned coordinates x of the free parameters: log p = logp0 + P R^{-1} x, with P the
    embedding of the free entries (``frame`` = (logp0, P R^{-1}))."""
    logp0, embed = frame
    return _chi2_log(logp0 + embed @ x, ensemble, field, target, basis, weight)


_chi2_jit = eqx.filter_jit(_chi2_log)  # forward-only evaluations (grid points, final chi^2)


def _grid_offsets(free: np.ndarray, curves: int, size: int, span: float, points: int) -> tuple[np.ndarray, tuple]:
    """Log offsets of a coarse grid: each free group (all tau_phi together, then each shared parameter) scaled
    by factors span^(-1 .. 1) in ``points`` steps: (offsets (points^groups, curves + shared), grid shape)."""
    all_groups = [list(range(curves))] + [[i] for i in range(curves, size)]
    groups = [g for g in all_groups if set(g) <= set(free.tolist())]
    steps = np.linspace(-np.log(span), np.log(span), points)
    mesh = np.stack(np.meshgrid(*[steps] * len(groups), indexing="ij"), -1).reshape(-1, len(groups))
    offsets = np.zeros((mesh.shape[0], size))
    for k, g in enumerate(groups):
        offsets[:, g] = mesh[:, k:k + 1]
    return offsets, (points,) * len(groups)


def _grid_minima(chi2s: np.ndarray, shape) -> list[int]:
    """Flat indices of the grid points whose chi^2 is below that of every axis neighbour (ties: the first in
    flat order wins), lowest first."""
    grid = np.where(np.isfinite(chi2s), chi2s, np.inf).reshape(shape)
    minimum = np.ones(shape, bool)
    for axis in range(grid.ndim):
        for shift in (1, -1):
            neighbour = np.roll(grid, shift, axis)
            edge = [slice(None)] * grid.ndim
            edge[axis] = 0 if shift == 1 else -1  # np.roll wraps around: the edge has no neighbour there
            neighbour[tuple(edge)] = np.inf
            minimum &= grid <= neighbour
    order = np.argsort(grid, axis=None, kind="stable")
    chosen = []
    for i in order:
        if minimum.reshape(-1)[i] and not any(_adjacent(i, j, shape) for j in chosen):
            chosen.append(int(i))
    return chosen


def _adjacent(i: int, j: int, shape) -> bool:
    """Whether flat grid indices i and j are axis neighbours."""
    a, b = np.unravel_index(i, shape), np.unravel_index(j, shape)
    return sum(abs(int(x) - int(y)) for x, y in zip(a, b)) == 1


STALL_GTOL = 1e-2  # a stalled chi^2 counts as converged only within ~0.005 standard errors of a stationary point
_OPTIMIZER = optax.lbfgs()  # memory 10, zoom line search (strong Wolfe conditions)


@eqx.filter_jit
def _lbfgs_step(x, state, ensemble, frame, field, target, basis, weight):
    """One L-BFGS step; the line search's value and gradient at the accepted point are reused from ``state``."""
    f = lambda y: _chi2(y, ensemble, frame, field, target, basis, weight)
    value, grad = optax.value_and_grad_from_state(f)(x, state=state)
    updates, state = _OPTIMIZER.update(grad, state, x, value=value, grad=grad, value_fn=f)
    return optax.apply_updates(x, updates), state, value, grad


def _local_fit(ensemble, logp0, free, field, target_obs, basis, weight, steps, rtol, gtol):
    """L-BFGS from ``logp0`` over the free entries, preconditioned by the Gauss-Newton matrix there.
    Returns (log p, chi^2 history, converged, logp0)."""
    curves = logp0.shape[0] - len(ensemble.parameter_class.SHARED)
    jac0 = np.asarray(_jacobian(ensemble, logp0, jnp.asarray(free), field, curves, basis))
    chol = np.linalg.cholesky(jac0.T @ (np.asarray(weight)[:, None] * jac0))  # H0 = L L^T, x = L^T (log q - log q0)
    embed = np.zeros((logp0.shape[0], free.size))
    embed[free, np.arange(free.size)] = 1.0
    frame = (logp0, jnp.asarray(embed @ np.linalg.inv(chol.T)))

    x = jnp.zeros(free.size)
    state = _OPTIMIZER.init(x)
    history, converged = [], False
    for _ in range(steps):
        new, state, value, grad = _lbfgs_step(x, state, ensemble, frame, field, target_obs, basis, weight)
        history.append(float(value))  # value and grad belong to x (before this step)
        largest = float(jnp.max(jnp.abs(grad)))
        stalled = len(history) > 1 and abs(history[-2] - history[-1]) <= rtol * history[-1]
        if largest < gtol or stalled:
            converged = largest < max(gtol, STALL_GTOL)
            break
        x = new
    return frame[0] + frame[1] @ x, history, converged, logp0


@eqx.filter_jit
def _model_covariance(ensemble, logp, field, curves, basis):
    """Covariance of the model's ensemble-mean observables (difference basis) at log p."""
    g = realization_conductances(ensemble, _unflatten(jnp.exp(logp), curves, ensemble.parameter_class), field)
    o = g.reshape(g.shape[0], -1) @ basis.T
    return jnp.atleast_2d(jnp.cov(o, rowvar=False)) / g.shape[0]


@eqx.filter_jit
def _jacobian(ensemble, logp, free, field, curves, basis):
    """d o_model / d log p of the free entries ``free`` of log p, shape (n, free parameters), by forward mode."""
    f = lambda lq: _model_observables(ensemble, logp.at[free].set(lq), field, curves, basis)
    return jax.jacfwd(f)(logp[free])


class ProbeBypassWarning(RuntimeWarning):
    """The single global probe (``dephasing="probe"``) carries a large share of the current: L_phi < L, where it
    bypasses the sample and is no model of local dephasing (docs/physics.md#dephasing)."""


PROBE_SHARE_LIMIT = 0.5  # above this share of G through the single probe, infer_parameters warns


def probe_share(ensemble: Ensemble, params: _Parameters, field, *, realizations: int = 4) -> float:
    """Largest share 1 - T(L->R) / G of the single-probe conductance that passes through the probe, over the first
    ``realizations`` realizations, every tau_phi and the first field value: 0 without absorption, near 1 where the
    absorbed current re-injected by the global probe carries the conductance (L_phi << L)."""
    data = jax.tree.map(lambda x: x[:realizations], ensemble.data())

    def one(d, tau):
        model, disorder = ensemble.system(d, params, tau, jnp.asarray(field, float).reshape(-1)[0])
        out = observe(ensemble.sample, model, disorder, observables=("conductance", "transmission"),
                      dephasing="probe")
        return 1.0 - out["transmission"] / out["conductance"]

    shares = jax.vmap(lambda d: jax.vmap(lambda tau: one(d, tau))(params.tau_phi))(data)
    return float(jnp.max(shares))


def infer_parameters(field, target, ensemble: Ensemble, initial: _Parameters, *,
                     fixed=(), search: float | None = 4.0, search_points: int = 7, refine: int = 2,
                     target_covariance=None, target_error=None, steps: int = 30, rtol: float = 1e-6,
                     gtol: float = 1e-4) -> InferenceResult:
    """Recover the model's parameters -- (tau_phi per curve, rashba, field_scale) of a :class:`LatticeEnsemble`,
    (tau_phi per curve, short_range_density, field_scale) of a :class:`GrapheneEnsemble` -- from target curves
    <G(B)> by L-BFGS (optax) on the log parameters, through the ensemble-averaged RGF conductance over
    ``ensemble``'s fixed realizations.

    The objective can have several local minima (a tau_phi / alpha trade-off: a stronger spin-orbit coupling
    with a longer tau_phi fits nearly as well locally). Before the local fit, ``search`` evaluates chi^2 on a
    coarse grid around ``initial`` -- every free group (all tau_phi together, each shared parameter) scaled by
    ``search_points`` factors from 1/search to search, geometrically -- and L-BFGS runs from each of the
    ``refine`` lowest local minima of the grid; the fit with the lowest final chi^2 is returned.

    In the diffusive regime the three are nearly degenerate (module docstring): where the field scale is known
    (lattice constant a: s = a^2 e/h per tesla), pass ``fixed=("field_scale",)`` and fit tau_phi and rashba.

    Args:
        field: the target's field axis, shape (fields,), any unit; the model flux is ``field_scale * field``. The
            first field is the reference of the differences (usually B = 0).
        target: target mean conductances <G(B)> (e^2/h), shape (curves, fields) or (fields,) for one curve.
        ensemble: the fit's sample and realizations (:func:`lattice_ensemble`, :func:`graphene_ensemble`), drawn
            with keys other than the target's.
        initial: starting parameters of the ensemble's model (``ensemble.parameter_class``, ``tau_phi`` with one
            entry per curve), all positive and finite; fixed parameters keep their initial values.
        fixed: names of parameters held at their initial values: any of ``ensemble.parameter_class.names()``
            ("tau_phi", "rashba", "field_scale" or "tau_phi", "short_range_density", "field_scale").
        search, search_points: span (> 1) and points per free group of the coarse grid (forward evaluations:
            search_points ** groups); ``search=None`` starts L-BFGS at ``initial``.
        refine: how many grid minima (distinct basins, lowest chi^2 first) to start L-BFGS from.
        target_covariance: covariance of the target means, shape (curves*fields, curves*fields), curve-major
            (:func:`curve_statistics` computes it from realizations). Or give ``target_error`` (standard errors,
            shape of ``target``; uncorrelated). Neither: the target is taken as exact.
        steps: maximum number of L-BFGS steps.
        rtol, gtol: stop when the largest component of the gradient of chi^2 in the preconditioned coordinates
            (where chi^2 ~ |x - x*|^2 + const, so a component g is a distance ~g/2 in standard errors) is below
            ``gtol`` (converged), or when chi^2 changes by less than ``rtol`` relative over a step (converged only
            if that gradient is below ``STALL_GTOL``: a stalled line search far from a minimum is reported).

    Returns:
        An :class:`InferenceResult` with sandwich (Gauss-Newton) standard errors.
    """
    field = jnp.asarray(field, float)
    target = jnp.asarray(target, float)
    if target.ndim == 1:
        target = target[None]
    if field.ndim != 1 or target.ndim != 2 or target.shape[1] != field.shape[0]:
        raise ValueError(f"target must have shape (curves, fields) = (curves, {field.shape[0]}), got {target.shape}.")
    curves, n = target.shape[0], target.size
    cls = getattr(ensemble, "parameter_class", None)
    if cls is None:
        raise ValueError(f"ensemble must come from lattice_ensemble or graphene_ensemble, got "
                         f"{type(ensemble).__name__}.")
    if type(initial) is not cls:
        raise ValueError(f"initial must be {cls.__name__} for a {type(ensemble).__name__}, got "
                         f"{type(initial).__name__}.")
    if initial.tau_phi.shape != (curves,):
        raise ValueError(f"initial.tau_phi must have one entry per curve ({curves}), got {initial.tau_phi.shape}.")
    start_values = np.asarray(_flatten(initial))
    valid = lambda v: np.all(np.isfinite(v) & (v > 0))
    if not valid(start_values):
        bad = [f"{name}={np.asarray(getattr(initial, name)).tolist()}" for name in cls.names()
               if not valid(np.asarray(getattr(initial, name)))]
        raise ValueError(f"initial parameters must be positive and finite (they are fitted as logarithms): "
                         f"{', '.join(bad)}.")
    free = _free_indices(fixed, curves, cls)
    if search is not None and not (search > 1 and int(search_points) == search_points and search_points >= 2):
        raise ValueError(f"search must be None or a span > 1 with search_points >= 2 (an integer), got "
                         f"search={search}, search_points={search_points}.")
    if not (int(refine) == refine and refine >= 1):
        raise ValueError(f"refine must be a positive integer, got {refine}.")
    if n <= free.size:
        raise ValueError(f"too few target points: {n} for {free.size} parameters.")
    if target_covariance is not None and target_error is not None:
        raise ValueError("give target_covariance or target_error, not both.")
    if target_covariance is None:
        err = np.zeros(n) if target_error is None else np.asarray(target_error, float).reshape(-1)
        if err.shape != (n,):
            raise ValueError(f"target_error must have the shape of target {target.shape}.")
        target_covariance = np.diag(err**2)
    target_covariance = np.asarray(target_covariance, float)
    if target_covariance.shape != (n, n):
        raise ValueError(f"target_covariance must have shape ({n}, {n}), got {target_covariance.shape}.")

    if ensemble.dephasing == "probe":
        share = probe_share(ensemble, initial, field)
        if share > PROBE_SHARE_LIMIT:
            warnings.warn(f"dephasing='probe': at the initial parameters the single global probe carries {share:.0%} "
                          f"of the conductance (L_phi < L: it bypasses the sample); use dephasing='buttiker' for "
                          f"local dephasing (docs/physics.md#dephasing).", ProbeBypassWarning, stacklevel=2)

    basis_np = _difference_basis(curves, field.shape[0])
    basis = jnp.asarray(basis_np)
    target_obs = basis @ target.reshape(-1)
    target_cov = basis_np @ target_covariance @ basis_np.T

    model_variance = lambda lp: np.diag(np.asarray(_model_covariance(ensemble, lp, field, curves, basis)))
    starts = [jnp.log(_flatten(initial))]
    if search is not None:
        # Grid chi^2 with weights from the initial point; the local fits start from the grid's lowest local
        # minima (distinct basins), all with weights re-estimated at the grid's best point, so that their
        # final chi^2 are comparable.
        weight = jnp.asarray(1.0 / (np.diag(target_cov) + model_variance(starts[0])))
        offsets, shape = _grid_offsets(free, curves, start_values.size, search, int(search_points))
        candidates = np.asarray(starts[0])[None] + offsets
        chi2s = np.array([float(_chi2_jit(jnp.asarray(c), ensemble, field, target_obs, basis, weight))
                          for c in candidates])
        starts = [jnp.asarray(candidates[i]) for i in _grid_minima(chi2s, shape)[:refine]]
    weight = jnp.asarray(1.0 / (np.diag(target_cov) + model_variance(starts[0])))
    fits = [_local_fit(ensemble, logp0, free, field, target_obs, basis, weight, steps, rtol, gtol) for logp0 in starts]
    finals = [float(_chi2_jit(f[0], ensemble, field, target_obs, basis, weight)) for f in fits]
    logp, history, converged, logp0 = fits[int(np.argmin(finals))]
    jac = np.asarray(_jacobian(ensemble, logp, jnp.asarray(free), field, curves, basis))
    cov = target_cov + np.asarray(_model_covariance(ensemble, logp, field, curves, basis))
    w = np.asarray(weight)
    log_cov = np.zeros((start_values.size, start_values.size))
    log_cov[np.ix_(free, free)] = gauss_newton_covariance(jac, w, cov)
    resid = np.asarray(_model_observables(ensemble, logp, field, curves, basis)) - np.asarray(target_obs)
    values = np.exp(np.asarray(logp))
    return InferenceResult(
        params=_unflatten(jnp.asarray(values), curves, cls),
        stderr=_unflatten(jnp.asarray(values * np.sqrt(np.diag(log_cov))), curves, cls),
        log_covariance=log_cov, chi2=float(np.sum(w * resid**2)), dof=n - free.size, history=tuple(history),
        steps=len(history), converged=converged, start=_unflatten(jnp.exp(logp0), curves, cls),
        local_fits=tuple((_unflatten(jnp.exp(f[0]), curves, cls), c) for f, c in zip(fits, finals)),
    )
