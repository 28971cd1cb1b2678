"""Least-squares fits of magnetoconductance data to the analytic theory (``difftransport.theory``).

One entry function, :func:`fit_magnetoconductance`: it checks the data on the host (clear ``ValueError`` for NaN,
duplicate fields, too few points, fields of one sign where both are needed), then runs a jitted
Levenberg-Marquardt solve (``optimistix.LevenbergMarquardt``) on transformed parameters, log(p) for the
characteristic fields so that they stay positive. Several curves (e.g. temperatures) are fitted jointly: each
parameter is either shared by all curves or has one value per curve.

Uncertainties come from the Jacobian J = d r/d p of the weighted residuals r = (y - model)/sigma with respect to
the *natural* parameters p at the optimum (not the log-transformed ones):

    cov = (J^T J)^{-1}                 if the data carry uncertainties (``absolute_sigma=True``, the default then)
    cov = (J^T J)^{-1} chi^2/dof       otherwise (unit weights, the scatter of the residuals sets the noise level)

which are the conventions of ``scipy.optimize.curve_fit`` (``absolute_sigma=True`` / ``False``). They are the
linearized (Cramer-Rao) errors: trustworthy when the relative errors are small. The inverse is taken from the
singular value decomposition of J with its columns scaled to unit norm, so that the units of the parameters do not
matter.

A free parameter is *undetermined* when the data cannot fix it (``FitResult.determined`` is False for it, with the
reason in ``FitResult.reasons``):

* its value is not finite;
* a characteristic field (b_phi, b_so, b_s, b_i, b_star) ran off the field range of its data: above 100 times the
  largest |B|, or below 1/100 of the smallest nonzero |B| (of its curve if it is per curve, of all data if shared),
  where the curve no longer depends on it (e.g. B_so -> 0 for pure WL data, or B_phi -> inf for data without
  signal);
* J is singular in its direction: a singular value of the column-scaled J below 1e-8 of the largest has a
  component above 1e-3 on it (the model does not depend on it, or only jointly with another parameter, as
  B_phi and B_so at B_so = 0 in ``"hln"``), and its variance is then infinite; a derivative that is not finite
  counts as zero;
* its standard error is not finite, or, for a characteristic field, exceeds 10 times its value.

:func:`fit_magnetoconductance` then warns (:class:`UndeterminedWarning`) and returns the result; its values for
that parameter are not measurements. ``FitResult.require_determined`` raises instead, and the ``difftransport fit``
command exits with an error naming the parameter. Fix the parameter, share it between curves, or measure a wider
field range.

Plotting (:func:`plot_fit`) returns a matplotlib figure and writes nothing: the CLI and experiments save it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from . import theory as th
from .stats import Estimate, to_json


class UndeterminedWarning(RuntimeWarning):
    """A fit left a parameter undetermined (see the module docstring)."""


# Limits of a determined characteristic field (see the module docstring).
_RANGE_FACTOR = 100.0  # a field above 100 max|B| or below min|B|/100 has run off the data
_MAX_RELATIVE_ERROR = 10.0
_SINGULAR = 1e-8  # singular values of the column-scaled Jacobian below this fraction of the largest are zero
_NULL_WEIGHT = 1e-3  # a parameter with more weight than this in a null direction is undetermined
_MCCANN_STARTS = 3  # Levenberg-Marquardt runs of a "mccann" fit, from the best local minima of the start grid


@dataclasses.dataclass(frozen=True)
class _ModelDef:
    params: tuple[str, ...]
    positive: tuple[bool, ...]
    per_curve: tuple[str, ...]  # default per-curve parameters
    fixed: tuple[tuple[str, float], ...]  # default fixed parameters
    function: Callable
    description: str


MODELS: dict[str, _ModelDef] = {
    "hln": _ModelDef(
        ("b_phi", "b_so", "b_s"), (True, True, True), ("b_phi",), (("b_s", 0.0),),
        lambda b, p: th.hln(b, p["b_phi"], p["b_so"], p["b_s"]),
        "full HLN (spin-1/2, total): b_phi per curve, b_so shared, b_s fixed at 0 (theory.hln)",
    ),
    "alpha": _ModelDef(
        ("alpha", "b_phi"), (False, True), ("b_phi",), (),
        lambda b, p: th.hln_alpha(b, p["b_phi"], p["alpha"]),
        "simplified HLN (alpha/pi) f(B_phi/B): alpha shared, b_phi per curve (theory.hln_alpha)",
    ),
    "cubic": _ModelDef(
        ("b_phi", "b_so"), (True, True), ("b_phi",), (),
        lambda b, p: th.hln_cubic(b, p["b_phi"], p["b_so"]),
        "split-triplet HLN (cubic Dresselhaus): b_phi per curve, b_so shared (theory.hln_cubic)",
    ),
    "kawabata": _ModelDef(
        ("alpha", "b_phi"), (False, True), ("b_phi",), (),
        lambda b, p: th.kawabata(b, p["b_phi"], p["alpha"]),
        "3D Kawabata, field in tesla, result per metre: alpha shared, b_phi per curve (theory.kawabata)",
    ),
    "mccann": _ModelDef(
        ("b_phi", "b_i", "b_star"), (True, True, True), ("b_phi",), (),
        lambda b, p: th.mccann(b, p["b_phi"], p["b_i"], p["b_star"]),
        "graphene WL (McCann et al., published prefactor e^2/pi h, spin degeneracy 2): b_phi per curve, b_i and "
        "b_star shared (theory.mccann)",
    ),
}


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of a fit: which parameters are free, positive, per curve. Hashable (jit-static)."""

    model: str
    names: tuple[str, ...]  # theory parameters, then "offset" if fitted
    positive: tuple[bool, ...]
    per_curve: tuple[bool, ...]
    free: tuple[bool, ...]
    n_curves: int

    def sizes(self):
        return tuple(self.n_curves if pc else 1 for pc in self.per_curve)


def _unpack(spec: _Spec, theta, fixed):
    """Free vector (transformed) -> dict name -> (n_curves,) natural values (fixed ones from ``fixed``)."""
    out, i = {}, 0
    for name, pos, pc, free, size in zip(spec.names, spec.positive, spec.per_curve, spec.free, spec.sizes()):
        if free:
            v = theta[i:i + size]
            i += size
            v = jnp.exp(v) if pos else v
        else:
            v = fixed[name]
        out[name] = jnp.broadcast_to(v, (spec.n_curves,))
    return out


def _unpack_natural(spec: _Spec, p, fixed):
    """Free vector (natural units) -> dict of (n_curves,) values."""
    out, i = {}, 0
    for name, pc, free, size in zip(spec.names, spec.per_curve, spec.free, spec.sizes()):
        if free:
            v = p[i:i + size]
            i += size
        else:
            v = fixed[name]
        out[name] = jnp.broadcast_to(v, (spec.n_curves,))
    return out


def _predict(spec: _Spec, params, field, curve):
    per_point = {k: v[curve] for k, v in params.items()}
    value = MODELS[spec.model].function(field, per_point)
    if "offset" in params:
        value = value + per_point["offset"]
    return value


class _Data(eqx.Module):
    field: jax.Array
    value: jax.Array
    sigma: jax.Array
    curve: jax.Array


@eqx.filter_jit
def _solve(spec: _Spec, theta0, fixed, data: _Data, rtol: float, atol: float, max_steps: int):
    def residual(theta, args):
        return (data.value - _predict(spec, _unpack(spec, theta, fixed), data.field, data.curve)) / data.sigma

    def residual_natural(p):
        return (data.value - _predict(spec, _unpack_natural(spec, p, fixed), data.field, data.curve)) / data.sigma

    solver = optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    sol = optx.least_squares(residual, solver, theta0, max_steps=max_steps, throw=False)
    natural = _natural_vector(spec, sol.value)
    jac = jax.jacfwd(residual_natural)(natural)
    return natural, jac, residual(sol.value, None), sol.result == optx.RESULTS.successful, sol.stats["num_steps"]


def _natural_vector(spec: _Spec, theta):
    parts, i = [], 0
    for pos, free, size in zip(spec.positive, spec.free, spec.sizes()):
        if free:
            v = theta[i:i + size]
            parts.append(jnp.exp(v) if pos else v)
            i += size
    return jnp.concatenate(parts)


@dataclasses.dataclass(frozen=True)
class FitResult(Estimate):
    """Result of :func:`fit_magnetoconductance` (host numpy arrays).

    Attributes:
        model: model name (a key of :data:`MODELS`).
        labels: names of the free parameters, e.g. ``("alpha", "b_phi[4.2 K]", "b_phi[10 K]")``.
        values, stderr: their best values and standard errors (natural units: fields in the data's field unit,
            alpha dimensionless, offsets in the data's conductance unit).
        covariance, correlation: (n_free, n_free) matrices.
        params: every theory parameter (free and fixed) per curve: name -> array of shape (n_curves,).
        curves: the curve labels in order.
        chi2, dof, reduced_chi2: chi^2 = sum r^2 of the weighted residuals, dof = points - free parameters.
        absolute_sigma: whether the covariance is taken as is (data with uncertainties) or scaled by chi2/dof.
        converged, steps: Levenberg-Marquardt status.
        determined: per free parameter, whether the data determine it (see the module docstring).
        reasons: per free parameter, why it is undetermined ("" if it is determined).

    An :class:`~difftransport.stats.Estimate` whose ``names`` are the ``labels``; ``value`` and ``error`` take a
    theory parameter's name and a curve instead.
    """

    model: str
    labels: tuple[str, ...]
    values: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    correlation: np.ndarray
    params: dict
    curves: tuple
    chi2: float
    dof: int
    reduced_chi2: float
    absolute_sigma: bool
    converged: bool
    steps: int
    _spec: _Spec = dataclasses.field(repr=False)
    determined: tuple[bool, ...] = ()
    reasons: tuple[str, ...] = ()

    names = property(lambda self: self.labels)

    def __post_init__(self):
        if not self.determined:  # built without the checks: nothing is known to be undetermined
            object.__setattr__(self, "determined", (True,) * len(self.labels))
            object.__setattr__(self, "reasons", ("",) * len(self.labels))

    def undetermined(self) -> dict[str, str]:
        """{label: reason} of the free parameters that the data do not determine (empty if all are)."""
        return {lab: why for lab, ok, why in zip(self.labels, self.determined, self.reasons) if not ok}

    def require_determined(self) -> "FitResult":
        """Return ``self``, or raise ``ValueError`` naming every undetermined parameter and the reason."""
        bad = self.undetermined()
        if bad:
            raise ValueError(
                f"the {self.model} fit cannot determine " + "; ".join(f"{k} ({v})" for k, v in bad.items())
                + ". Fix such a parameter (fixed=... / --fix NAME=VALUE), share it between curves, or fit data over "
                "a wider field range."
            )
        return self

    def predict(self, field, curve=None):
        """Model value at ``field`` for one curve (label; default the only/first curve), in the data's unit."""
        idx = 0 if curve is None else self.curves.index(curve)
        field = jnp.asarray(field, float)
        params = {k: jnp.asarray(v) for k, v in self.params.items()}
        return np.asarray(_predict(self._spec, params, field, jnp.full(field.shape, idx)))

    def value(self, name, curve=None):
        """One parameter (natural units) for ``curve`` (label; default the first)."""
        return float(self.params[name][0 if curve is None else self.curves.index(curve)])

    def error(self, name, curve=None):
        """Standard error of a free parameter (0.0 if it is fixed)."""
        label = _label(name, self.curves[0 if curve is None else self.curves.index(curve)],
                       self._spec.per_curve[self._spec.names.index(name)])
        return float(self.stderr[self.labels.index(label)]) if label in self.labels else 0.0

    def to_dict(self):
        """JSON-ready summary (``Estimate.to_dict``: a NaN or infinite number is written as None, i.e. null; an
        entry of the correlation matrix is null where a standard error is zero or infinite) with the model, the
        curves, every parameter per curve and the correlations. Each parameter carries ``"determined"``, and
        ``"reason"`` when it is not."""
        out = super().to_dict()
        for lab, ok, why in zip(self.labels, self.determined, self.reasons):
            out["parameters"][lab].update({"determined": bool(ok)}, **({} if ok else {"reason": why}))
        return {
            "model": self.model, "description": MODELS[self.model].description,
            "curves": [str(c) for c in self.curves], **out,
            "all_parameters": {k: to_json(v) for k, v in self.params.items()},
            "correlation": {"labels": list(self.labels), "matrix": to_json(self.correlation)},
            "reduced_chi2": to_json(self.reduced_chi2), "errors_scaled_by_reduced_chi2": not self.absolute_sigma,
            "steps": self.steps,
        }


def _label(name, curve, per_curve):
    return f"{name}[{curve}]" if per_curve else name


def _covariance(jac):
    """(J^T J)^{-1} of the (points, n) Jacobian ``jac`` and a (n,) mask of the parameters in its null space.

    From the SVD of J with unit-norm columns (units do not matter); singular values below ``_SINGULAR`` of the
    largest are dropped (a pseudo-inverse), and a parameter with weight above ``_NULL_WEIGHT`` in a dropped
    direction gets an infinite variance (NaN covariances)."""
    finite = np.all(np.isfinite(jac), axis=0)  # a field run to ~1e-150 can overflow its derivative
    jac = np.where(finite, jac, 0.0)
    big = np.max(np.abs(jac), axis=0, initial=0.0)
    big = np.where(big > 0, big, 1.0)
    scale = np.linalg.norm(jac / big, axis=0) * big  # without overflow of the squares
    safe = np.where(scale > 0, scale, 1.0)
    _, s, vt = np.linalg.svd(jac / safe, full_matrices=False)
    null = s <= _SINGULAR * np.max(s, initial=0.0)
    keep = ~null
    with np.errstate(over="ignore"):  # a tiny scale: an infinite variance, flagged below
        cov = (vt[keep].T / s[keep] ** 2) @ vt[keep] / np.outer(safe, safe)
    degenerate = (scale == 0) | (np.sqrt(np.sum(vt[null] ** 2, axis=0)) > _NULL_WEIGHT)
    cov[degenerate, :] = np.nan
    cov[:, degenerate] = np.nan
    cov[degenerate, degenerate] = np.inf
    return cov, degenerate


def _determination(spec: _Spec, values, stderr, degenerate, field, index):
    """(determined, reasons) per free parameter (see the module docstring)."""
    b = np.abs(field)
    determined, reasons = [], []
    i = 0
    for name, pos, free, pc, size in zip(spec.names, spec.positive, spec.free, spec.per_curve, spec.sizes()):
        if not free:
            continue
        for k in range(size):
            v, e = values[i], stderr[i]
            nz = b[(b > 0) & ((index == k) if pc else True)]
            why = ""
            if not np.isfinite(v):
                why = f"its value is {v}"
            elif pos and v > _RANGE_FACTOR * nz.max():
                why = f"it ran to {v:.3g}, above {_RANGE_FACTOR:g} x the largest |B| = {nz.max():.3g} of its data"
            elif pos and v < nz.min() / _RANGE_FACTOR:
                why = f"it ran to {v:.3g}, below 1/{_RANGE_FACTOR:g} of the smallest nonzero |B| = {nz.min():.3g}"
            elif degenerate[i]:
                why = "singular Jacobian: the curve does not depend on it, or only jointly with another parameter"
            elif not np.isfinite(e):
                why = f"its standard error is {e}"
            elif pos and e > _MAX_RELATIVE_ERROR * v:
                why = f"its standard error {e:.3g} exceeds {_MAX_RELATIVE_ERROR:g} x its value {v:.3g}"
            determined.append(not why)
            reasons.append(why)
            i += 1
    return tuple(determined), tuple(reasons)


def _fixed_problem(name: str, value: float) -> str:
    """Why ``value`` cannot be a fixed value of parameter ``name`` ("" if it can)."""
    if not math.isfinite(value):
        return f"{name} must be finite"
    if name == "b_phi" and not value > 0:
        return "b_phi (the phase-coherence field) must be positive"
    if name.startswith("b_") and not value >= 0:
        return f"{name} (a characteristic field) must be >= 0"
    return ""


# ---------------------------------------------------------------------------------------------------------
# Data checks (host side, before anything is traced)


def _as_1d(name, x, n=None):
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1D array, got shape {arr.shape}.")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, but field has {n}.")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} contains NaN or inf at rows {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}.")
    return arr


def _symmetrize(field, value, sigma, tol):
    """Average each point with its partner at -B: (y(B) + y(-B))/2, sigma sqrt(s+^2 + s-^2)/2."""
    out_b, out_y, out_s = [], [], []
    used = np.zeros(field.size, bool)
    for i in np.argsort(np.abs(field), kind="stable"):
        if used[i]:
            continue
        if field[i] == 0:
            used[i] = True
            out_b.append(0.0), out_y.append(value[i]), out_s.append(sigma[i])
            continue
        partner = np.flatnonzero(~used & (np.abs(field + field[i]) <= tol))
        if partner.size == 0:
            raise ValueError(
                f"symmetrize=True: B = {field[i]:g} has no partner at B = {-field[i]:g}; measure both signs or "
                "pass symmetrize=False."
            )
        j = partner[0]
        used[i] = used[j] = True
        out_b.append(abs(field[i])), out_y.append(0.5 * (value[i] + value[j]))
        out_s.append(0.5 * math.hypot(sigma[i], sigma[j]))
    return np.array(out_b), np.array(out_y), np.array(out_s)


def _prepare(field, value, sigma, curve, symmetrize):
    """Checked arrays (field, value, sigma, curve index) and curve labels."""
    field = _as_1d("field", field)
    n = field.size
    value = _as_1d("value", value, n)
    has_sigma = sigma is not None
    sigma = np.ones(n) if sigma is None else _as_1d("sigma", sigma, n)
    if np.any(sigma <= 0):
        raise ValueError(f"sigma (the uncertainties) must be positive; rows {np.flatnonzero(sigma <= 0)[:10].tolist()} "
                         "are not.")
    if curve is None:
        labels, index = (0,), np.zeros(n, int)
    else:
        curve = list(curve)
        if len(curve) != n:
            raise ValueError(f"curve has {len(curve)} entries, but field has {n}.")
        labels = tuple(dict.fromkeys(curve))
        index = np.array([labels.index(c) for c in curve])
    fields, values, sigmas, indices = [], [], [], []
    for k, lab in enumerate(labels):
        sel = index == k
        b, y, s = field[sel], value[sel], sigma[sel]
        name = f"curve {lab!r}" if curve is not None else "the data"
        uniq, counts = np.unique(b, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"duplicate field values in {name}: B = {uniq[counts > 1][:5].tolist()}; average repeated "
                             "sweeps first, or give each sweep its own curve label.")
        if symmetrize:
            if not (np.any(b > 0) and np.any(b < 0)):
                raise ValueError(f"symmetrize=True needs fields of both signs, but {name} has B of one sign only.")
            b, y, s = _symmetrize(b, y, s, 1e-9 * np.max(np.abs(b)))
        if not np.any(b != 0):
            raise ValueError(f"{name} has no point at nonzero field.")
        fields.append(b), values.append(y), sigmas.append(s), indices.append(np.full(b.size, k))
    return (np.concatenate(fields), np.concatenate(values), np.concatenate(sigmas), np.concatenate(indices),
            labels, has_sigma)


# ---------------------------------------------------------------------------------------------------------
# Starting values


def _linear_ssr(curves, value, weight, index, n_curves, amplitude, offset):
    """Per-curve weighted SSR of y ~ [amplitude *] curves [+ offset], the linear coefficients solved exactly.

    ``curves`` has shape (grid, points). Returns ssr (grid, n_curves), amplitude and offset (grid, n_curves)."""
    ssr = np.zeros((curves.shape[0], n_curves))
    amp = np.ones_like(ssr)
    off = np.zeros_like(ssr)
    for k in range(n_curves):
        sel = index == k
        f, y, w = curves[:, sel], value[sel], weight[sel]
        cols = ([f] if amplitude else []) + ([np.ones_like(f)] if offset else [])
        target = np.broadcast_to(y - (0.0 if amplitude else f), f.shape)  # (grid, m)
        if cols:
            a = np.stack(cols, -1) * w[:, None]  # (grid, m, c)
            ata = np.einsum("gmc,gmd->gcd", a, a)
            atb = np.einsum("gmc,gm->gc", a, target * w)
            coef = np.linalg.solve(ata, atb[..., None])[..., 0]
            fitted = np.einsum("gmc,gc->gm", a, coef)
            if amplitude:
                amp[:, k] = coef[:, 0]
            if offset:
                off[:, k] = coef[:, -1]
        else:
            fitted = np.zeros_like(target)
        ssr[:, k] = np.sum((fitted - target * w) ** 2, axis=1)
    return ssr, amp, off


@eqx.filter_jit
def _grid_curves(model, field, grid, so_grid, b_s):
    """Model curves on the (B_so, B_phi) grid, shape (so, grid, points), alpha = 1."""
    fn = MODELS[model].function
    one = lambda so, g: fn(field, {"b_phi": g, "b_so": so, "b_s": b_s, "alpha": 1.0})
    return jax.vmap(lambda so: jax.vmap(lambda g: one(so, g))(grid))(so_grid)


@eqx.filter_jit
def _mccann_grid_curves(field, grid, b_i, b_star):
    """McCann curves for each (B_i, B_*) pair and B_phi on ``grid``, shape (pairs, grid, points)."""
    return jax.vmap(lambda i, s: jax.vmap(lambda g: th.mccann(field, g, i, s))(grid))(b_i, b_star)


def _mccann_starts(fixed, field, grid, value, weight, index, n_curves, offset):
    """Starting points for ``"mccann"``: B_phi per curve on ``grid`` and shared (B_i, B_*) on a coarser log grid
    reaching 30 x max|B| (B_* is often above the field range); a fixed B_i or B_* is held at its (first) value,
    offsets are solved linearly. The profile SSR over (B_i, B_*) has separate valleys (e.g. B_* -> 0 with a larger
    B_i mimics a moderate B_*), so the best :data:`_MCCANN_STARTS` local minima of the grid are all returned."""
    coarse = np.geomspace(grid[0], 10 * grid[-1], 13)
    axes = [np.atleast_1d(np.asarray(fixed[n], float))[:1] if n in fixed else coarse for n in ("b_i", "b_star")]
    b_i, b_star = np.meshgrid(*axes, indexing="ij")
    curves = np.asarray(_mccann_grid_curves(jnp.asarray(field), jnp.asarray(grid), jnp.asarray(b_i.ravel()),
                                            jnp.asarray(b_star.ravel())))
    cols = np.arange(n_curves)
    total, picks, offsets = [], [], []
    for k in range(b_i.size):
        ssr, _, off = _linear_ssr(curves[k], value, weight, index, n_curves, False, offset)
        pick = np.argmin(ssr, axis=0)
        total.append(ssr[pick, cols].sum()), picks.append(pick), offsets.append(off[pick, cols])
    total = np.array(total).reshape(b_i.shape)
    padded = np.pad(total, 1, constant_values=np.inf)
    neighbours = np.stack([padded[1 + di:padded.shape[0] - 1 + di, 1 + dj:padded.shape[1] - 1 + dj]
                           for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj])
    minima = np.flatnonzero(total <= neighbours.min(axis=0))
    minima = minima if minima.size else np.array([np.argmin(total)])
    starts = []
    for k in minima[np.argsort(total.ravel()[minima], kind="stable")][:_MCCANN_STARTS]:
        b_phi = grid[picks[k]]
        floor = 0.01 * b_phi.min()  # a start must be positive (log parameters), also when a fixed value is 0
        starts.append({"b_phi": b_phi, "b_i": np.full(n_curves, max(b_i.flat[k], floor)),
                       "b_star": np.full(n_curves, max(b_star.flat[k], floor)), "offset": offsets[k]})
    return starts


def _starting_values(model, fixed, field, value, sigma, index, n_curves, offset):
    """Grid search: B_phi on a log grid (per curve) and, for the spin-orbit models, a shared B_so on the same grid;
    amplitudes (alpha) and offsets are solved linearly at each grid point. Returns the best point, or for
    ``"mccann"`` a list of starting points (:func:`_mccann_starts`)."""
    b = np.abs(field)
    nz = b[b > 0]
    grid = np.geomspace(nz.min() / 30, nz.max() * 3, 41)
    weight = 1 / sigma
    if model in ("alpha", "kawabata"):
        curves = np.asarray(_grid_curves(model, jnp.asarray(b), jnp.asarray(grid), jnp.zeros(1), 0.0))[0]
        ssr, amp, off = _linear_ssr(curves, value, weight, index, n_curves, True, offset)
        best = np.argmin(ssr, axis=0)
        cols = np.arange(n_curves)
        return {"b_phi": grid[best], "alpha": amp[best, cols], "offset": off[best, cols]}
    if model == "mccann":
        return _mccann_starts(fixed, b, grid, value, weight, index, n_curves, offset)
    so_grid = np.atleast_1d(np.asarray(fixed["b_so"], float))[:1] if "b_so" in fixed else np.concatenate([[0.0], grid])
    b_s = float(np.atleast_1d(fixed.get("b_s", 0.0))[0])
    all_curves = np.asarray(_grid_curves(model, jnp.asarray(b), jnp.asarray(grid), jnp.asarray(so_grid), b_s))
    curves_for = dict(zip(so_grid, all_curves)).__getitem__

    best_total, best = np.inf, None
    for so in so_grid:
        ssr, _, off = _linear_ssr(curves_for(so), value, weight, index, n_curves, False, offset)
        pick = np.argmin(ssr, axis=0)
        total = ssr[pick, np.arange(n_curves)].sum()
        if total < best_total:
            best_total, best = total, (so, grid[pick], off[pick, np.arange(n_curves)])
    so, b_phi, off = best
    return {"b_phi": b_phi, "b_so": np.full(n_curves, max(so, 0.01 * b_phi.min())), "b_s": 0.05 * b_phi,
            "offset": off}


# ---------------------------------------------------------------------------------------------------------


def fit_magnetoconductance(
    field,
    value,
    *,
    model: str = "hln",
    sigma=None,
    curve: Sequence | None = None,
    per_curve: Sequence[str] | None = None,
    fixed: Mapping[str, object] | None = None,
    initial: Mapping[str, object] | None = None,
    offset: bool = False,
    symmetrize: bool = False,
    absolute_sigma: bool | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    max_steps: int = 2000,
) -> FitResult:
    """Fit magnetoconductance curves Delta sigma(B) to a theory model by Levenberg-Marquardt.

    Args:
        field: B of every point, shape (n,) (tesla, or any unit the model's characteristic fields share; the
            ``"kawabata"`` model needs tesla). The models are even in B.
        value: Delta sigma(B) = sigma(B) - sigma(0) in e^2/h (per square in 2D; per metre for ``"kawabata"``), or
            sigma(B) itself with ``offset=True``. Sign convention: WL is positive (``docs/theory.md``).
        model: ``"hln"`` (B_phi, B_so, B_s), ``"alpha"`` (alpha, B_phi), ``"cubic"`` (B_phi, B_so),
            ``"kawabata"`` (alpha, B_phi) or ``"mccann"`` (B_phi, B_i, B_*: graphene, the published prefactor with
            spin degeneracy 2; double spinless-lattice data first); see :data:`MODELS`.
        sigma: standard uncertainties of ``value``, shape (n,); None for unit weights.
        curve: a label per point (e.g. the temperature); curves are fitted jointly. None: one curve.
        per_curve: parameters that take one value per curve; default the model's (B_phi). Others are shared; to
            make a shared-by-default parameter per curve, list it with B_phi (e.g. ``("b_phi", "b_i")``).
        fixed: parameters held fixed, name -> value (scalar or one per curve). Default: the model's defaults
            (``"hln"`` fixes b_s = 0); pass ``{}`` to free everything.
        initial: starting values, name -> scalar or one per curve; default from a grid search of the simplified
            form. Starting values must be positive for fields.
        offset: fit an additive constant per curve (for sigma(B) or G(B) data rather than Delta sigma).
        symmetrize: average y(B) and y(-B) first; every nonzero B needs its partner at -B.
        absolute_sigma: covariance (J^T J)^{-1} taken as is (True) or scaled by chi^2/dof (False). Default: True
            when ``sigma`` is given, False otherwise (the ``scipy.optimize.curve_fit`` conventions).
        rtol, atol, max_steps: Levenberg-Marquardt termination (optimistix: relative/absolute change of the
            log-parameters and of the residual).

    Returns:
        A :class:`FitResult`. If the data do not determine a free parameter (module docstring: non-finite value or
        error, singular Jacobian, a field run off the data's range or with a standard error above 10 times its
        value), ``result.determined`` is False for it with the reason in ``result.reasons``, and an
        :class:`UndeterminedWarning` is issued; ``result.require_determined()`` turns that into a ``ValueError``.

    Raises:
        ValueError: bad data (NaN/inf, duplicate fields in a curve, mismatched lengths, non-positive sigma, too few
            points, one sign of B with ``symmetrize``) or bad options (unknown model or parameter names; fixed
            values that are not finite, b_phi <= 0 or another characteristic field < 0; non-finite initial
            values).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {model!r}.")
    mdef = MODELS[model]
    names = mdef.params + (("offset",) if offset else ())
    positive = mdef.positive + ((False,) if offset else ())
    per_curve = set(mdef.per_curve if per_curve is None else per_curve) | ({"offset"} if offset else set())
    fixed = dict(mdef.fixed if fixed is None else fixed)
    initial = dict(initial or {})
    for what, keys in (("per_curve", per_curve), ("fixed", fixed), ("initial", initial)):
        unknown = set(keys) - set(names)
        if unknown:
            raise ValueError(f"{what} names unknown parameters {sorted(unknown)} for model {model!r}; "
                             f"its parameters are {names}.")
    for name, v in fixed.items():
        for x in np.atleast_1d(np.asarray(v, float)).ravel():
            problem = _fixed_problem(name, float(x))
            if problem:
                raise ValueError(f"fixed[{name!r}] = {np.asarray(v).tolist()}: {problem}.")
    for name, v in initial.items():
        if not np.all(np.isfinite(np.asarray(v, float))):
            raise ValueError(f"initial[{name!r}] must be finite, got {np.asarray(v).tolist()}.")
    field, value, sigma_arr, index, labels, has_sigma = _prepare(field, value, sigma, curve, symmetrize)
    n_curves = len(labels)
    spec = _Spec(model, names, positive, tuple(n in per_curve for n in names), tuple(n not in fixed for n in names),
                 n_curves)
    n_free = sum(s for s, f in zip(spec.sizes(), spec.free) if f)
    if field.size <= n_free:
        raise ValueError(f"too few points: {field.size} data points for {n_free} free parameters; a fit needs at "
                         f"least {n_free + 1} (dof >= 1).")
    counts = np.bincount(index, minlength=n_curves)
    own = sum(1 for pc, f in zip(spec.per_curve, spec.free) if pc and f)
    thin = [labels[k] for k in range(n_curves) if counts[k] <= own]
    if thin:
        raise ValueError(f"too few points in curves {thin}: each curve needs more points than its {own} own "
                         "parameters.")

    guesses = _starting_values(model, fixed, field, value, sigma_arr, index, n_curves, offset)
    guesses = guesses if isinstance(guesses, list) else [guesses]

    def per_curve_value(name, v, what):
        v = np.asarray(v, float)
        if v.ndim == 0 or v.size == 1:
            return np.full(n_curves, float(v.reshape(-1)[0]))
        if v.shape != (n_curves,):
            raise ValueError(f"{what}[{name!r}] needs a scalar or {n_curves} values (one per curve), got {v.shape}.")
        return v

    fixed_arrays = {name: jnp.asarray(per_curve_value(name, fixed[name], "fixed"))
                    for name, free in zip(spec.names, spec.free) if not free}

    def start_vector(guess):
        theta0 = []
        for name, pos, pc, free in zip(spec.names, spec.positive, spec.per_curve, spec.free):
            if not free:
                continue
            start = per_curve_value(name, initial[name], "initial") if name in initial else guess[name]
            start = start if pc else np.array([np.mean(start)])
            if pos:
                if np.any(start <= 0):
                    raise ValueError(f"initial[{name!r}] must be positive, got {start.tolist()}.")
                start = np.log(start)
            theta0.append(start)
        return np.concatenate(theta0)

    starts = list({tuple(t): t for t in map(start_vector, guesses)}.values())  # distinct starts only
    data = _Data(*(jnp.asarray(a) for a in (field, value, sigma_arr, index)))
    # Several starts (the valleys of "mccann"): keep the run with the lowest chi^2.
    runs = [_solve(spec, jnp.asarray(t), fixed_arrays, data, rtol, atol, max_steps) for t in starts]
    lowest = [float(np.sum(np.asarray(r[2]) ** 2)) for r in runs]
    natural, jac, resid, ok, steps = runs[int(np.argmin([c if math.isfinite(c) else math.inf for c in lowest]))]

    natural, jac, resid = np.asarray(natural), np.asarray(jac), np.asarray(resid)
    chi2 = float(resid @ resid)
    dof = field.size - n_free
    absolute = has_sigma if absolute_sigma is None else bool(absolute_sigma)
    cov, degenerate = _covariance(jac)
    if not absolute:
        with np.errstate(invalid="ignore"):  # inf * 0 for a degenerate parameter of a perfect fit
            cov = cov * (chi2 / dof)
        cov[degenerate, degenerate] = np.inf
    stderr = np.sqrt(np.abs(np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(stderr, stderr)
    determined, reasons = _determination(spec, natural, stderr, degenerate, field, index)

    params = {k: np.asarray(v) for k, v in _unpack_natural(spec, jnp.asarray(natural), fixed_arrays).items()}
    labels_free = tuple(
        _label(name, labels[k], pc)
        for name, pc, free, size in zip(spec.names, spec.per_curve, spec.free, spec.sizes()) if free
        for k in range(size)
    )
    result = FitResult(
        model=model, labels=labels_free, values=natural, stderr=stderr, covariance=cov, correlation=corr,
        params=params, curves=labels, chi2=chi2, dof=dof, reduced_chi2=chi2 / dof, absolute_sigma=absolute,
        converged=bool(ok), steps=int(steps), _spec=spec, determined=determined, reasons=reasons,
    )
    if not all(determined):
        warnings.warn(
            "fit_magnetoconductance: the data do not determine "
            + "; ".join(f"{k} ({v})" for k, v in result.undetermined().items())
            + ". Its values are not measurements (FitResult.determined).",
            UndeterminedWarning, stacklevel=2,
        )
    return result


def plot_fit(result: FitResult, field, value, *, sigma=None, curve=None, xlabel="B (T)",
             ylabel=r"$\Delta\sigma$ ($e^2/h$)", title=None):
    """A two-panel matplotlib figure: data with error bars and the fitted curves (top), weighted residuals
    (y - fit)/sigma (bottom). Returns the figure; saving it is the caller's business (CLI, experiments)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    field, value = np.asarray(field, float), np.asarray(value, float)
    sigma = None if sigma is None else np.asarray(sigma, float)
    curve_arr = np.array([result.curves[0]] * field.size, dtype=object) if curve is None else np.asarray(curve, object)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True, height_ratios=(3, 1.3),
                                      layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, lab in enumerate(result.curves):
        sel = curve_arr == lab
        b, y = field[sel], value[sel]
        s = None if sigma is None else sigma[sel]
        c = colors[k % len(colors)]
        name = "data" if len(result.curves) == 1 else str(lab)
        top.errorbar(b, y, yerr=s, fmt="o", ms=3.5, color=c, capsize=2, label=name)
        grid = np.linspace(min(b.min(), 0.0), b.max(), 400)
        top.plot(grid, result.predict(grid, lab), "-", color=c, lw=1.4)
        resid = (y - result.predict(b, lab)) / (1.0 if s is None else s)
        bottom.plot(b, resid, "o", ms=3.5, color=c)
    top.plot([], [], "k-", lw=1.4, label=f"fit ({result.model}), $\\chi^2$/dof = {result.reduced_chi2:.2f}")
    top.axhline(0, color="k", lw=0.5)
    top.set_ylabel(ylabel)
    top.legend(fontsize=8)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_xlabel(xlabel)
    bottom.set_ylabel("residual / $\\sigma$" if sigma is not None else "residual")
    if title:
        top.set_title(title, fontsize=9)
    return fig
