"""Statistics shared by the fits, the scaling analysis, the inference, the CLI and the experiments.

Conventions: samples carry the realization axis first; a standard error is that of the estimate (not the spread
of the data); sample variances use ddof = 1. ``mean_stderr``, ``variance_stderr`` and ``jackknife`` run on the
host (NumPy; ``jackknife`` calls arbitrary Python statistics); the others are ``jax.numpy`` and work under ``jit``.
:class:`Estimate` is the one shape of every fit result (``FitResult``, ``ScalingFit``, ``BetaFit``,
``InferenceResult``, ``LyapunovSpectrum``, :class:`LineFit`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfinv, gammaincc


def mean_stderr(x, axis: int = 0):
    """Sample mean along ``axis`` and its standard error s / sqrt(n), s the standard deviation with ddof = 1."""
    x = np.asarray(x, float)
    return x.mean(axis), x.std(axis, ddof=1) / math.sqrt(x.shape[axis])


def variance_stderr(x) -> tuple[float, float]:
    """Sample variance s^2 (ddof = 1) of the 1D ``x`` and its standard error from the fourth central moment m4:
    SE^2 = (m4 - s^4 (n - 3)/(n - 1)) / n (no normality assumed; clipped at 0)."""
    x = np.asarray(x, float)
    n = len(x)
    d = x - x.mean()
    s2 = d.var(ddof=1)
    m4 = np.mean(d**4)
    return float(s2), float(math.sqrt(max(m4 - s2**2 * (n - 3) / (n - 1), 0.0) / n))


def jackknife(statistic, samples, *, blocks: int):
    """Delete-a-block jackknife: ``(statistic(samples), standard error)``.

    ``samples`` has the realization axis first (n rows; pass ``np.arange(n)`` for a statistic of row indices);
    the rows are cut into min(blocks, n) contiguous blocks (``np.array_split``: the first n mod B are one row
    longer), and theta_b = ``statistic`` of the samples without block b. The error is

        SE^2 = (B - 1)/B sum_b (theta_b - mean_b theta_b)^2,

    which is s/sqrt(n) exactly for the mean with B = n (Efron & Tibshirani, An Introduction to the Bootstrap,
    ch. 11). Use it for statistics of curves whose points share realizations, where an error that treats the
    points as independent is too small."""
    samples = np.asarray(samples)
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 2:
        raise ValueError(f"blocks must be an integer >= 2, got {blocks!r}.")
    parts = np.array([np.asarray(statistic(np.delete(samples, block, axis=0)), float)
                      for block in np.array_split(np.arange(samples.shape[0]), min(blocks, samples.shape[0]))])
    count = parts.shape[0]
    error = np.sqrt((count - 1) / count * np.sum((parts - parts.mean(0)) ** 2, axis=0))
    return np.asarray(statistic(samples), float), error


def chi2_pvalue(chi2, dof):
    """Goodness of fit Q = P(chi^2_dof >= chi2) = Gamma(dof/2, chi2/2) / Gamma(dof/2) (NaN for dof <= 0)."""
    return jnp.where(dof > 0, gammaincc(jnp.maximum(dof, 1) / 2.0, chi2 / 2.0), jnp.nan)


def confidence_z(confidence):
    """Half-width z = sqrt(2) erfinv(c), in standard errors, of the central Gaussian interval of probability c
    (1.96 for c = 0.95)."""
    return math.sqrt(2.0) * float(erfinv(jnp.asarray(confidence, float)))


def gauss_newton_covariance(jac, weights=None, noise=None):
    """Covariance of least-squares parameters from the (points, p) Jacobian J of the residuals at the optimum.

    With weights W = diag(``weights``) (None: residuals already divided by their errors, W = 1) and H = J^T W J:
    H^{-1}; with ``noise`` C, the covariance of the residuals, the sandwich H^{-1} J^T W C W J H^{-1} (right also
    when W is not C^{-1}). H^{-1} is the Hermitian pseudo-inverse (a singular direction gets no variance)."""
    w = jnp.ones(jac.shape[0]) if weights is None else jnp.asarray(weights)
    h_inv = jnp.linalg.pinv(jac.T @ (w[:, None] * jac), hermitian=True)
    if noise is None:
        return h_inv
    return h_inv @ (jac.T @ (w[:, None] * noise * w[None, :]) @ jac) @ h_inv


def to_json(x):
    """float, or nested lists of floats, with NaN and inf as None (JSON has no NaN)."""
    x = np.asarray(x, float)
    return [to_json(v) for v in x] if x.ndim else (float(x) if math.isfinite(x) else None)


class Estimate:
    """The one shape of a fit result (a mixin for ``equinox.Module``s and frozen dataclasses).

    A subclass provides ``names`` (parameter names), ``values`` (..., p) in that order, ``covariance``
    (..., p, p), ``chi2`` and ``dof`` (None where no fit is involved) and ``converged``; it gets the value and
    standard error of a parameter by name, all of them (``estimates``) and a JSON-ready ``to_dict``."""

    def value(self, name):
        """The estimate of parameter ``name``."""
        return self.values[..., self.names.index(name)]

    def error(self, name):
        """Standard error sqrt(covariance_ii) of parameter ``name``."""
        i = self.names.index(name)
        return jnp.sqrt(self.covariance[..., i, i])

    def estimates(self) -> dict:
        """{name: (value, standard error)}."""
        return {name: (Estimate.value(self, name), Estimate.error(self, name)) for name in self.names}

    def to_dict(self) -> dict:
        """JSON-ready summary: parameters {name: {"value", "stderr"}}, chi2, dof, p_value (Q of :func:`chi2_pvalue`),
        converged; NaN and inf are written as None (JSON null)."""
        fitted = self.chi2 is not None and self.dof is not None
        parameters = {n: {"value": to_json(v), "stderr": to_json(e)} for n, (v, e) in self.estimates().items()}
        return {"parameters": parameters,
                "chi2": to_json(self.chi2) if fitted else None, "dof": None if self.dof is None else int(self.dof),
                "p_value": to_json(chi2_pvalue(self.chi2, self.dof)) if fitted else None,
                "converged": bool(np.all(np.asarray(self.converged)))}


class LineFit(Estimate, eqx.Module):
    """Result of :func:`line_fit`: y = slope x + intercept.

    Attributes:
        values: (slope, intercept); ``slope`` and ``intercept`` name them.
        covariance: their (2, 2) covariance (A^T W A)^{-1}, A = [x, 1].
        chi2, dof, p_value: sum w (y - slope x - intercept)^2, n - 2 and Q(chi2 | dof).
    """

    values: jax.Array
    covariance: jax.Array
    chi2: jax.Array
    dof: int = eqx.field(static=True)
    p_value: jax.Array
    names = ("slope", "intercept")
    converged = True

    @property
    def slope(self):
        return self.values[0]

    @property
    def intercept(self):
        return self.values[1]


def line_fit(x, y, weights=None) -> LineFit:
    """Weighted least-squares straight line y = slope x + intercept (closed form, differentiable).

    With w = ``weights`` (1/sigma^2 for errors sigma; None: 1), x_m = sum w x / sum w, y_m likewise and
    S = sum w (x - x_m)^2: slope = sum w (x - x_m)(y - y_m) / S, intercept = y_m - slope x_m,
    var(slope) = 1/S, var(intercept) = 1/sum w + x_m^2/S, cov = -x_m/S, i.e. (A^T W A)^{-1}. The covariance is
    absolute (right when w = 1/sigma^2); chi2 is then the chi^2 of the fit."""
    x, y = jnp.asarray(x, float), jnp.asarray(y, float)
    if x.ndim != 1 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(f"x and y must be 1D arrays of the same length >= 2, got {x.shape} and {y.shape}.")
    w = jnp.ones_like(x) if weights is None else jnp.asarray(weights, float)
    sw = jnp.sum(w)
    mx, my = jnp.sum(w * x) / sw, jnp.sum(w * y) / sw
    sxx = jnp.sum(w * (x - mx) ** 2)
    slope = jnp.sum(w * (x - mx) * (y - my)) / sxx
    intercept = my - slope * mx
    cov = jnp.array([[1.0, -mx], [-mx, sxx / sw + mx**2]]) / sxx
    chi2 = jnp.sum(w * (y - slope * x - intercept) ** 2)
    return LineFit(jnp.stack([slope, intercept]), cov, chi2, x.shape[0] - 2, chi2_pvalue(chi2, x.shape[0] - 2))
