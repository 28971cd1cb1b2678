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


class TransportFieldWarning(RuntimeWarning):
    """Data reach fields where the diffusive theory fails (|B| above a fraction of the transport field)."""


TR_FRACTION = 0.25  # default: trust the diffusive formulas up to B_tr / 4
_BACKGROUNDS = ("quadratic", "linear")


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


def _ilp_model(field, p):
    """theory.ilp with b_r and b_d1 scaled down together, if needed, until every nonzero |B| of the data is resolved
    (|B| >= 16 (b_r + b_d1)/4096, theory.ilp's default levels): a trial step of Levenberg-Marquardt to larger
    fields then sees a model that stops changing instead of an error. At an optimum against this bound the
    curve depends on b_r/b_d1 only, and the fit reports b_r and b_d1 as undetermined (singular Jacobian)."""
    b_min = jnp.min(jnp.where(field != 0, jnp.abs(field), jnp.inf))
    scale = jnp.minimum(1.0, 0.99 * b_min * 4096 / 16 / (p["b_r"] + p["b_d1"]))
    return th.ilp(field, p["b_phi"], scale * p["b_r"], scale * p["b_d1"], p["b_d3"])


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
    "ilp": _ModelDef(
        ("b_phi", "b_r", "b_d1", "b_d3"), (True, True, True, True), ("b_phi",), (("b_d3", 0.0),),
        lambda b, p: _ilp_model(b, p),
        "ILP (linear Rashba b_r and linear Dresselhaus b_d1 shared, b_phi per curve, cubic b_d3 fixed at 0; the "
        "curves are symmetric in b_r <-> b_d1, so the fit starts with and reports b_r >= b_d1: b_r is the larger "
        "linear field, not necessarily Rashba) (theory.ilp)",
    ),
}


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of a fit: which parameters are free, positive, per curve. Hashable (jit-static)."""

    model: str
    names: tuple[str, ...]  # theory parameters (b_phi replaced by the law's), then "offset" and backgrounds if fitted
    positive: tuple[bool, ...]
    per_curve: tuple[bool, ...]
    free: tuple[bool, ...]
    n_curves: int
    temperatures: tuple[float, ...] | None = None  # per curve, with a law B_phi(T) = b0 + a T^p

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
    return _with_law(spec, out)


def _with_law(spec: _Spec, params):
    """Add b_phi per curve from the law's parameters when the fit has a temperature law."""
    if spec.temperatures is None:
        return params
    return {**params, "b_phi": dephasing_law(jnp.asarray(spec.temperatures), params["b0"], params["a"], params["p"])}


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
    return _with_law(spec, out)


def _predict(spec: _Spec, params, field, curve):
    per_point = {k: v[curve] for k, v in params.items()}
    value = MODELS[spec.model].function(field, per_point)
    if "offset" in params:
        value = value + per_point["offset"]
    if "bg_quadratic" in params:  # classical (Drude) magnetoresistance background, c2 B^2
        value = value + per_point["bg_quadratic"] * field**2
    if "bg_linear" in params:
        value = value + per_point["bg_linear"] * field
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
    masked: int = 0

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
        """Standard error of a free parameter (0.0 if it is fixed); with a temperature law, that of the derived
        b_phi of ``curve`` too (propagated from the covariance of b0, a, p)."""
        k = 0 if curve is None else self.curves.index(curve)
        if name == "b_phi" and self._spec.temperatures is not None:
            t = self._spec.temperatures[k]
            a, p = self.params["a"][k], self.params["p"][k]
            grad = {"b0": 1.0, "a": t**p, "p": a * t**p * math.log(t)}  # d b_phi / d(b0, a, p)
            idx = [self.labels.index(n) for n in _LAW_PARAMS if n in self.labels]
            g = np.array([grad[self.labels[i]] for i in idx])
            return float(np.sqrt(g @ self.covariance[np.ix_(idx, idx)] @ g))
        label = _label(name, self.curves[k], self._spec.per_curve[self._spec.names.index(name)])
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
            "steps": self.steps, "masked_above_transport_field": self.masked,
            **({"temperatures": dict(zip(map(str, self.curves), self._spec.temperatures)),
                "law": "b_phi = b0 + a T^p"} if self._spec.temperatures is not None else {}),
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
            elif pos and name.startswith("b_") and v > _RANGE_FACTOR * nz.max():
                why = f"it ran to {v:.3g}, above {_RANGE_FACTOR:g} x the largest |B| = {nz.max():.3g} of its data"
            elif pos and name.startswith("b_") and v < nz.min() / _RANGE_FACTOR:
                why = f"it ran to {v:.3g}, below 1/{_RANGE_FACTOR:g} of the smallest nonzero |B| = {nz.min():.3g}"
            elif degenerate[i]:
                why = "singular Jacobian: the curve does not depend on it, or only jointly with another parameter"
            elif not np.isfinite(e):
                why = f"its standard error is {e}"
            elif pos and name.startswith("b_") and e > _MAX_RELATIVE_ERROR * v:
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
    if model == "ilp":
        # The split-triplet grid gives B_phi per curve and an effective B_so, close to (sqrt b_r - sqrt b_d1)^2 (the
        # part of the linear terms that is not a pure gauge). ILP curves are then compared on a grid of
        # b_plus = (sqrt b_r + sqrt b_d1)^2 >= b_minus = (sqrt b_r - sqrt b_d1)^2 around it, i.e. b_r >= b_d1 (the
        # curves are symmetric in b_r <-> b_d1, and Levenberg-Marquardt keeps the order).
        cubic = _starting_values("cubic", {}, field, value, sigma, index, n_curves, offset)
        b_phi, floor = cubic["b_phi"], 0.01 * cubic["b_phi"].min()
        top = 0.9 * nz.min() * 4096 / 16  # largest resolvable b_r + b_d1 (theory.ilp, default levels)
        held = lambda name, v: float(np.atleast_1d(np.asarray(fixed[name], float))[0]) if name in fixed else v
        pairs = []
        for minus in float(cubic["b_so"][0]) * np.array([0.5, 1.0, 2.0]):
            for plus in minus * np.array([1.0, 3.0, 10.0, 30.0, 100.0]):
                r, d = (0.5 * (math.sqrt(plus) + math.sqrt(minus))) ** 2, (0.5 * (math.sqrt(plus) - math.sqrt(minus))) ** 2
                if r + d < top:
                    pairs.append((held("b_r", r), held("b_d1", d)))
        pairs = sorted(set(pairs)) or [(held("b_r", 0.5 * top), held("b_d1", 0.1 * top))]
        b_d3 = held("b_d3", 0.05 * float(b_phi.min()))
        b_r, b_d1 = (jnp.asarray([pair[i] for pair in pairs])[:, None] for i in (0, 1))
        curves = np.asarray(th.ilp(jnp.asarray(b), jnp.asarray(b_phi[index]), b_r, b_d1, b_d3))
        ssr, _, off = _linear_ssr(curves, value, weight, index, n_curves, False, offset)
        k = int(np.argmin(ssr.sum(axis=1)))
        return {"b_phi": b_phi, "b_r": np.full(n_curves, max(pairs[k][0], floor)),
                "b_d1": np.full(n_curves, max(pairs[k][1], floor)), "b_d3": np.full(n_curves, max(b_d3, floor)),
                "offset": off[k]}
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


def _transport_check(field, value, sigma, curve, temperature, b_tr, fraction, mask):
    """(field, value, sigma, curve, temperature, number masked): warn about, or leave out, |B| > fraction B_tr."""
    if not (math.isfinite(b_tr) and b_tr > 0):
        raise ValueError(f"b_tr (the transport field) must be positive and finite, got {b_tr}.")
    if not (math.isfinite(fraction) and fraction > 0):
        raise ValueError(f"tr_fraction must be positive, got {fraction}.")
    field = _as_1d("field", field)
    above = np.abs(field) > fraction * b_tr
    if not above.any():
        return field, value, sigma, curve, temperature, 0
    if not mask:
        warnings.warn(
            f"{int(above.sum())} of {field.size} points have |B| > {fraction:g} B_tr = {fraction * b_tr:.3g} (largest "
            f"|B| = {np.abs(field).max():.3g}), where the diffusive theory fails; mask them (mask_above_tr=True, "
            "--mask-above-tr) or fit a smaller field range.", TransportFieldWarning, stacklevel=3)
        return field, value, sigma, curve, temperature, 0
    keep = ~above
    pick = lambda x: None if x is None else (x if isinstance(x, Mapping) else np.asarray(x, float)[keep])
    curve = None if curve is None else list(np.asarray(list(curve), object)[keep])
    return (field[keep], _as_1d("value", value, above.size)[keep], pick(sigma), curve, pick(temperature),
            int(above.sum()))


def _curve_temperatures(temperature, field, curve):
    """label -> temperature of the curve (from a mapping, or per-point values constant within a curve)."""
    labels = (0,) if curve is None else tuple(dict.fromkeys(curve))
    if isinstance(temperature, Mapping):
        missing = [lab for lab in labels if lab not in temperature]
        if missing:
            raise ValueError(f"temperature has no entry for curves {missing}.")
        temps = {lab: float(temperature[lab]) for lab in labels}
    else:
        t = _as_1d("temperature", temperature, np.asarray(field).size)
        index = np.zeros(t.size, int) if curve is None else np.array([labels.index(c) for c in curve])
        temps = {}
        for k, lab in enumerate(labels):
            tk = t[index == k]
            if np.ptp(tk) > 1e-12 * np.max(np.abs(tk)):
                raise ValueError(f"temperature varies within curve {lab!r} ({tk.min():g} to {tk.max():g}): one "
                                 "temperature per curve.")
            temps[lab] = float(tk[0])
    bad = {lab: v for lab, v in temps.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"temperatures must be positive and finite, got {bad}.")
    if len(set(temps.values())) < len(temps):
        raise ValueError("two curves have the same temperature; the law B_phi(T) needs one curve per temperature.")
    return temps.__getitem__


def _law_start(model, field, value, sigma, index, labels, temperatures, fixed, offset, background, symmetrize):
    """Starting values of a fit with the law B_phi(T): a per-curve fit, then :func:`fit_dephasing_law`."""
    curve = [labels[k] for k in index]
    inner_fixed = {k: v for k, v in fixed.items() if k not in _LAW_PARAMS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = fit_magnetoconductance(field, value, model=model, sigma=sigma, curve=curve, fixed=inner_fixed,
                                       offset=offset, background=background, symmetrize=symmetrize)
    b_phi = first.params["b_phi"]
    law_fixed = {k: float(np.atleast_1d(v)[0]) for k, v in fixed.items() if k in _LAW_PARAMS}
    if len(labels) <= len(_LAW_PARAMS) - len(law_fixed) and "b0" not in law_fixed:
        law_fixed["b0"] = 0.0  # too few curves to start b0 from the second stage: start it at 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            law = fit_dephasing_law(np.asarray(temperatures), b_phi, fixed=law_fixed).params
    except ValueError:
        slope, intercept = np.polyfit(np.log(temperatures), np.log(b_phi), 1)
        law = {"b0": 0.0, "a": math.exp(intercept), "p": slope, **law_fixed}
    start = {k: np.asarray(v) for k, v in first.params.items()}
    n = len(labels)
    start.update({k: np.full(n, float(law[k])) for k in _LAW_PARAMS})
    start["a"] = np.full(n, max(float(law["a"]), 1e-300))
    return start


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
    background: str | Sequence[str] = (),
    temperature=None,
    law: str | None = None,
    b_tr: float | None = None,
    tr_fraction: float = TR_FRACTION,
    mask_above_tr: bool = False,
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
        background: background terms added to the theory, one coefficient per curve each: ``"quadratic"``
            (c2 B^2, parameter ``bg_quadratic``: the classical magnetoresistance every real curve carries,
            -sigma mu^2 B^2 for one carrier type) and ``"linear"`` (c1 B, ``bg_linear``: an odd admixture, e.g.
            Hall pickup, for unsymmetrized data). Units: the value's unit per field unit^2 (or ^1).
        temperature: the temperature of each curve, for ``law``: a mapping curve label -> T, or one value per
            point (constant within a curve). Kelvin, or any unit the law's ``a`` is then stated in.
        law: ``"power"`` replaces the per-curve B_phi by B_phi(T) = b0 + a T^p (:func:`dephasing_law`) with b0,
            a and p shared by all curves (fit parameters ``b0``, ``a`` > 0, ``p``; fix one with ``fixed``, e.g.
            ``{"b0": 0.0}``). Starting values come from a per-curve fit followed by :func:`fit_dephasing_law`.
        b_tr: the transport field B_tr = hbar/(2 e l^2) (:func:`~difftransport.theory.transport_field` from the
            mobility and density), above which the diffusive formulas fail. Points with |B| > ``tr_fraction`` x
            B_tr give a :class:`TransportFieldWarning`, or are left out with ``mask_above_tr=True`` (counted in
            ``FitResult.masked``). None: no check.
        tr_fraction: the fraction of B_tr up to which the diffusive theory is trusted (default 0.25).
        mask_above_tr: leave out the points above ``tr_fraction`` x ``b_tr`` instead of warning.
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
    background = (background,) if isinstance(background, str) else tuple(background)
    bad = [b for b in background if b not in _BACKGROUNDS]
    if bad or len(set(background)) != len(background):
        raise ValueError(f"background must list distinct terms of {_BACKGROUNDS}, got {background!r}.")
    if law not in (None, "power"):
        raise ValueError(f"law must be None or 'power', got {law!r}.")
    if (law is None) != (temperature is None):
        raise ValueError("law='power' and temperature= go together: give both or neither.")
    if law is not None and "b_phi" not in mdef.params:
        raise ValueError(f"law='power' needs a model with b_phi; {model!r} has {mdef.params}.")
    extra = (("offset",) if offset else ()) + tuple(f"bg_{b}" for b in background)
    theory_names = tuple(n for n in mdef.params if law is None or n != "b_phi")
    law_names = _LAW_PARAMS if law is not None else ()
    names = theory_names + law_names + extra
    positive = tuple(pos for n, pos in zip(mdef.params, mdef.positive) if n in theory_names) \
        + tuple(n == "a" for n in law_names) + (False,) * len(extra)
    per_curve = set(mdef.per_curve if per_curve is None else per_curve) | set(extra)
    if law is not None:
        if per_curve & set(law_names) or "b_phi" in (per_curve - set(mdef.per_curve)):
            raise ValueError("with law='power', b_phi follows the law and b0, a, p are shared: do not list them in "
                             "per_curve.")
        per_curve.discard("b_phi")
    fixed = dict(mdef.fixed if fixed is None else fixed)
    if law is not None and "b_phi" in fixed:
        raise ValueError("with law='power', b_phi follows the law: fix b0, a or p instead of b_phi.")
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
    masked = 0
    if b_tr is not None:
        field, value, sigma, curve, temperature, masked = _transport_check(
            field, value, sigma, curve, temperature, b_tr, tr_fraction, mask_above_tr)
    if law is not None:
        temps = _curve_temperatures(temperature, field, curve)
    field, value, sigma_arr, index, labels, has_sigma = _prepare(field, value, sigma, curve, symmetrize)
    n_curves = len(labels)
    spec = _Spec(model, names, positive, tuple(n in per_curve for n in names), tuple(n not in fixed for n in names),
                 n_curves, None if law is None else tuple(temps(lab) for lab in labels))
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

    if law is None:
        guesses = _starting_values(model, fixed, field, value, sigma_arr, index, n_curves, offset)
        guesses = guesses if isinstance(guesses, list) else [guesses]
    else:
        guesses = [_law_start(model, field, value, sigma_arr if has_sigma else None, index, labels, spec.temperatures,
                              fixed, offset, background, symmetrize=False)]
    guesses = [{**{n: np.zeros(n_curves) for n in extra}, **g} for g in guesses]

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
        converged=bool(ok), steps=int(steps), _spec=spec, determined=determined, reasons=reasons, masked=masked,
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
    """A two-panel matplotlib figure: data with error bars and the fitted curves (top; with fitted offsets both
    are shown minus their curve's offset, so the magnetoconductance is visible), weighted residuals
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
        shift = float(result.params["offset"][k]) if "offset" in result.params else 0.0  # show sigma - sigma_0
        top.errorbar(b, y - shift, yerr=s, fmt="o", ms=3.5, color=c, capsize=2, label=name)
        grid = np.linspace(min(b.min(), 0.0), b.max(), 400)
        top.plot(grid, result.predict(grid, lab) - shift, "-", color=c, lw=1.4)
        resid = (y - result.predict(b, lab)) / (1.0 if s is None else s)
        bottom.plot(b, resid, "o", ms=3.5, color=c)
    top.plot([], [], "k-", lw=1.4, label=f"fit ({result.model}), $\\chi^2$/dof = {result.reduced_chi2:.2f}")
    top.axhline(0, color="k", lw=0.5)
    top.set_ylabel(ylabel + (" $-$ fitted offset" if "offset" in result.params else ""))
    top.legend(fontsize=8)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_xlabel(xlabel)
    bottom.set_ylabel("residual / $\\sigma$" if sigma is not None else "residual")
    if title:
        top.set_title(title, fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Temperature law of the phase-coherence field (second stage, or the joint fit's law)


def dephasing_law(temperature, b0, a, p):
    """B_phi(T) = b0 + a T^p: a saturation field b0 (T -> 0) plus a power law (p = 1 for electron-electron
    dephasing in 2D, Altshuler-Aronov-Khmelnitsky; B_phi = hbar/(4 e D tau_phi) is linear in 1/tau_phi). Units:
    b0 and B_phi in the field unit of the data, a in field unit / kelvin^p, temperature in kelvin (or any unit
    a is stated in)."""
    return b0 + a * jnp.asarray(temperature, float) ** p


@dataclasses.dataclass(frozen=True)
class LawFit(Estimate):
    """Result of :func:`fit_dephasing_law`.

    Attributes:
        names: the free parameters among ("b0", "a", "p").
        values, stderr, covariance, correlation: their best values, standard errors and (co)variances.
        params: every parameter (free and fixed) by name.
        chi2, dof, reduced_chi2: generalized chi^2 r^T C^{-1} r of the B_phi residuals, points - free parameters.
        absolute_sigma: whether the covariance is taken as is (B_phi with errors) or scaled by chi2/dof.
        converged, steps: Levenberg-Marquardt status.
    """

    names: tuple[str, ...]
    values: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    correlation: np.ndarray
    params: dict
    chi2: float
    dof: int
    reduced_chi2: float
    absolute_sigma: bool
    converged: bool
    steps: int

    def predict(self, temperature):
        """B_phi(T) of the fitted law."""
        return np.asarray(dephasing_law(temperature, self.params["b0"], self.params["a"], self.params["p"]))

    def to_dict(self):
        return {**super().to_dict(), "law": "b_phi = b0 + a T^p", "all_parameters": dict(self.params),
                "correlation": {"labels": list(self.names), "matrix": to_json(self.correlation)},
                "reduced_chi2": to_json(self.reduced_chi2), "errors_scaled_by_reduced_chi2": not self.absolute_sigma}


_LAW_PARAMS = ("b0", "a", "p")


def fit_dephasing_law(temperature, b_phi, stderr=None, *, covariance=None, fixed: Mapping[str, float] | None = None,
                      initial: Mapping[str, float] | None = None, absolute_sigma: bool | None = None) -> LawFit:
    """Fit B_phi(T) = b0 + a T^p (:func:`dephasing_law`) to phase-coherence fields from per-curve fits.

    The second stage of a temperature analysis: fit each curve's B_phi with :func:`fit_magnetoconductance`, then
    this law with the first stage's errors propagated — ``stderr`` (independent errors), or better the full
    ``covariance`` of the B_phi values (their errors are correlated when the curves share parameters, e.g. B_so:
    take the B_phi block of ``FitResult.covariance``). The residuals are whitened by the Cholesky factor of the
    covariance (generalized least squares), the fit runs Levenberg-Marquardt on (b0, log a, p), and the
    covariance of the result is the linearized (J^T J)^{-1} in (b0, a, p), scaled by chi^2/dof when no errors are
    given. For a fit of the law jointly with the curves, pass ``temperature=`` and ``law="power"`` to
    :func:`fit_magnetoconductance`.

    Args:
        temperature: temperatures T > 0 (kelvin), shape (n,), n >= free parameters + 1.
        b_phi: fitted B_phi(T) > 0, shape (n,).
        stderr: their standard errors (n,), or None.
        covariance: their (n, n) covariance (instead of ``stderr``).
        fixed: parameters held fixed, e.g. ``{"b0": 0.0}`` (no saturation) or ``{"p": 1.0}``.
        initial: starting values; default b0 = 0 and (a, p) from a straight line through log B_phi against log T.
        absolute_sigma: as in :func:`fit_magnetoconductance` (default: True when errors are given).

    Returns:
        A :class:`LawFit`.

    Raises:
        ValueError: mismatched shapes, non-finite values, T <= 0, B_phi <= 0, errors <= 0, a covariance that is not
            symmetric positive definite, unknown parameter names, too few points.
    """
    temperature = _as_1d("temperature", temperature)
    n = temperature.size
    b_phi = _as_1d("b_phi", b_phi, n)
    if np.any(temperature <= 0):
        raise ValueError(f"temperature must be positive, got {temperature.tolist()}.")
    if np.any(b_phi <= 0):
        raise ValueError(f"b_phi must be positive, got {b_phi.tolist()}.")
    if stderr is not None and covariance is not None:
        raise ValueError("give stderr or covariance, not both.")
    has_sigma = stderr is not None or covariance is not None
    if covariance is not None:
        cov_in = np.asarray(covariance, float)
        if cov_in.shape != (n, n) or not np.all(np.isfinite(cov_in)) or not np.allclose(cov_in, cov_in.T):
            raise ValueError(f"covariance must be a finite symmetric ({n}, {n}) matrix, got shape {cov_in.shape}.")
    else:
        err = np.ones(n) if stderr is None else _as_1d("stderr", stderr, n)
        if np.any(err <= 0):
            raise ValueError(f"stderr must be positive, got {err.tolist()}.")
        cov_in = np.diag(err**2)
    try:
        chol = np.linalg.cholesky(cov_in)
    except np.linalg.LinAlgError:
        raise ValueError("covariance is not positive definite.") from None
    whiten = np.linalg.inv(chol)
    fixed = dict(fixed or {})
    initial = dict(initial or {})
    for what, keys in (("fixed", fixed), ("initial", initial)):
        unknown = set(keys) - set(_LAW_PARAMS)
        if unknown:
            raise ValueError(f"{what} names unknown parameters {sorted(unknown)}; the law's are {_LAW_PARAMS}.")
    for name, v in {**fixed, **initial}.items():
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v}.")
    if "a" in fixed and not float(fixed["a"]) > 0 or "a" in initial and not float(initial["a"]) > 0:
        raise ValueError("a (the coefficient of T^p) must be positive.")
    free = tuple(k for k in _LAW_PARAMS if k not in fixed)
    if n <= len(free):
        raise ValueError(f"too few points: {n} temperatures for {len(free)} free parameters; need at least "
                         f"{len(free) + 1}.")
    slope, intercept = (np.polyfit(np.log(temperature), np.log(b_phi), 1) if np.ptp(temperature) > 0
                        else (1.0, math.log(b_phi.mean())))
    guess = {"b0": 0.0, "a": math.exp(intercept), "p": slope, **initial}
    theta0 = jnp.asarray([math.log(guess[k]) if k == "a" else float(guess[k]) for k in free])
    consts = jnp.asarray([float(fixed.get(k, 0.0)) for k in _LAW_PARAMS])
    values, jac, resid, ok, steps = _solve_law(free, theta0, consts, jnp.asarray(temperature), jnp.asarray(b_phi),
                                               jnp.asarray(whiten))
    values, jac, resid = np.asarray(values), np.asarray(jac), np.asarray(resid)
    params = {**{k: float(fixed[k]) for k in fixed}, **{k: float(v) for k, v in zip(free, values)}}
    chi2 = float(resid @ resid)
    dof = n - len(free)
    absolute = has_sigma if absolute_sigma is None else bool(absolute_sigma)
    cov, _ = _covariance(jac)
    if not absolute:
        cov = cov * (chi2 / dof)
    stderr_out = np.sqrt(np.abs(np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(stderr_out, stderr_out)
    return LawFit(names=free, values=values, stderr=stderr_out, covariance=cov, correlation=corr, params=params,
                  chi2=chi2, dof=dof, reduced_chi2=chi2 / dof, absolute_sigma=absolute, converged=bool(ok),
                  steps=int(steps))


@eqx.filter_jit
def _solve_law(free: tuple[str, ...], theta0, consts, t, y, whiten):
    """Levenberg-Marquardt on (b0, log a, p) restricted to ``free`` (static); the others from ``consts`` (in the
    order of _LAW_PARAMS). Returns the natural values, the Jacobian of the whitened residuals in them, the
    residuals, success and steps."""
    def params_of(natural_free):
        vals = dict(zip(_LAW_PARAMS, consts))
        vals.update(zip(free, natural_free))
        return vals

    def to_natural(theta):
        return jnp.stack([jnp.exp(v) if k == "a" else v for k, v in zip(free, theta)])

    def resid_of(natural_free):
        p = params_of(natural_free)
        return whiten @ (y - dephasing_law(t, p["b0"], p["a"], p["p"]))

    sol = optx.least_squares(lambda th, _: resid_of(to_natural(th)), optx.LevenbergMarquardt(rtol=1e-12, atol=1e-12),
                             theta0, max_steps=2000, throw=False)
    values = to_natural(sol.value)
    return (values, jax.jacfwd(resid_of)(values), resid_of(values), sol.result == optx.RESULTS.successful,
            sol.stats["num_steps"])


def plot_dephasing_law(temperature, b_phi, b_phi_err, law: LawFit | Mapping[str, float] | None = None, *,
                       diffusion: float | None = None, title=None):
    """B_phi(T), L_phi(T) = sqrt(hbar/(4 e B_phi)) and, with the diffusion constant ``diffusion`` (m^2/s), tau_phi(T)
    = L_phi^2/D, against T on log axes, with the fitted law (a :class:`LawFit` or its parameters {b0, a, p}) as a
    line. Fields in tesla. Returns the figure; saving it is the caller's business."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, b, e = (np.asarray(x, float) for x in (temperature, b_phi, b_phi_err))
    params = law.params if isinstance(law, LawFit) else law
    panels = 3 if diffusion is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.2), layout="constrained")
    grid = np.geomspace(t.min() / 1.3, t.max() * 1.3, 200)
    line = None if params is None else np.asarray(dephasing_law(grid, params["b0"], params["a"], params["p"]))
    length = lambda x: np.sqrt(th.HBAR / (4 * th.ELEMENTARY_CHARGE * x))
    # L = sqrt(hbar/(4 e B)): dL = L dB/(2B); tau = L^2/D: dtau = tau dB/B
    series = [("$B_\\phi$ (T)", b, e, line), ("$L_\\phi$ (nm)", 1e9 * length(b), 1e9 * length(b) * e / (2 * b),
                                              None if line is None else 1e9 * length(line))]
    if diffusion is not None:
        tau = length(b) ** 2 / diffusion * 1e12
        series.append(("$\\tau_\\phi$ (ps)", tau, tau * e / b,
                       None if line is None else length(line) ** 2 / diffusion * 1e12))
    for ax, (label, y, dy, fitted) in zip(axes, series):
        ax.errorbar(t, y, yerr=dy, fmt="o", ms=4, capsize=2, label="per-curve fit")
        if fitted is not None:
            ax.plot(grid, fitted, "-", lw=1.3,
                    label=f"$b_0 + aT^p$, p = {params['p']:.3g}" if ax is axes[0] else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(t, [f"{x:g}" for x in t])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("T (K)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
