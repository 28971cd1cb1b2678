"""Finite-size scaling of the Anderson transition and the scaling function beta(g).

Two fits, both least squares by Levenberg-Marquardt (optimistix) with parameter errors from the Fisher
matrix J^T J of the normalized residuals (and optionally a parametric bootstrap, vmapped):

1. Transfer-matrix data Lambda(W, M) = lambda_M / M (Slevin & Ohtsuki, PRL 82, 382 (1999), Eqs. 4-7):

       ln Lambda = F(u_r M^{1/nu}, u_i M^y),   F(x, z) = sum_{i <= n_r, j <= n_i} a_ij x^i z^j,
       u_r(w) = sum_{k=1}^{m_r} b_k w^k,        u_i(w) = sum_{k=0}^{m_i} c_k w^k,      w = (W - W_c) / W_c,

   normalized by a_10 = a_01 = 1; Lambda_c = exp(a_00) and y < 0 is the leading irrelevant exponent
   (n_i = 0: no correction to scaling). The data collapse plots Lambda with the irrelevant part removed
   against M / xi with xi = |u_r|^{-nu}.

2. Conductance ensembles <ln g>(L, W) under single-parameter scaling: every disorder curve x_W(t) = <ln g>
   at t = ln L solves the same ODE dx/dt = beta(x) (Abrahams, Anderson, Licciardello & Ramakrishnan, PRL 42,
   673 (1979)). beta is a cubic B-spline in x = ln g with a second-difference penalty (a P-spline, Eilers &
   Marx, Stat. Sci. 11, 89 (1996)); the curves' starting values and the spline are fitted together, the ODE
   integrated by RK4 (differentiable). One-loop asymptotes (docs/physics.md#beta-function; Evers & Mirlin, RMP 80, 1355
   (2008)), with g the conductance in e^2/h summed over all channels:
   orthogonal (spinless) beta = -1/(pi g); symplectic (spin-1/2, total g) beta = +1/(pi g);
   unitary (spinless) beta = -1/(2 pi^2 g^2). Deep in the insulator <ln g> = -2L/xi + c, so
   beta = ln g - c: a line of slope 1 in ln g.

No I/O here; ``difftransport scale`` (``_cli/scale.py``) runs studies and writes files.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float

from .lattice import Sample
from .model import Model, draw_disorder
from .observables import buttiker_currents, conductance, ensemble_conductances, map_realizations, open_channels
from .stats import Estimate, chi2_pvalue, confidence_z, gauss_newton_covariance, jackknife, mean_stderr
from .theory import cooperon_slope_fraction, diffusive_cutoff, intrinsic_conductance, lattice_wl_correction


def _float_data(name, value, ndim=None):
    array = np.asarray(value, dtype=float)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}.")
    return array


# ---------------------------------------------------------------------------------------------------------
# 1. Finite-size scaling of Lambda(W, M)


class ScalingModel(eqx.Module):
    """Orders of the Slevin-Ohtsuki expansion (static).

    Attributes:
        relevant_order: n_r, the order of F in the relevant variable x = u_r M^{1/nu} (>= 1).
        irrelevant_order: n_i, the order in the irrelevant variable z = u_i M^y (0: no correction).
        relevant_field_order: m_r, the order of u_r in w (>= 1).
        irrelevant_field_order: m_i, the order of u_i in w (>= 0).
        irrelevant_exponent: a fixed value of y (< 0), or None to fit it. With data of moderate precision
            and few widths, y is often poorly determined (it can run to 0, where the correction mimics a
            constant); fixing it to a literature value is then the usual remedy.
    """

    relevant_order: int = eqx.field(static=True, default=3)
    irrelevant_order: int = eqx.field(static=True, default=0)
    relevant_field_order: int = eqx.field(static=True, default=1)
    irrelevant_field_order: int = eqx.field(static=True, default=0)
    irrelevant_exponent: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        y = self.irrelevant_exponent
        if y is not None and (isinstance(y, bool) or not isinstance(y, (int, float)) or not y < 0):
            raise ValueError(f"irrelevant_exponent must be a negative number or None, got {y!r}.")
        for name, low in (("relevant_order", 1), ("irrelevant_order", 0), ("relevant_field_order", 1),
                          ("irrelevant_field_order", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")

    @property
    def terms(self) -> tuple[tuple[int, int], ...]:
        """Free expansion coefficients a_ij: all (i, j) except the normalized a_10 and a_01."""
        fixed = {(1, 0), (0, 1)}
        return tuple((i, j) for j in range(self.irrelevant_order + 1) for i in range(self.relevant_order + 1)
                     if (i, j) not in fixed)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the fitted parameters, in the order of ``ScalingFit.params``."""
        names = ["W_c", "nu"] + (["y"] if self.irrelevant_order and self.irrelevant_exponent is None else [])
        names += [f"a{i}{j}" for i, j in self.terms]
        names += [f"b{k}" for k in range(1, self.relevant_field_order + 1)]
        if self.irrelevant_order:
            names += [f"c{k}" for k in range(self.irrelevant_field_order + 1)]
        return tuple(names)

    def unpack(self, theta):
        """Flat parameter vector -> dict of named parameters."""
        return {name: theta[i] for i, name in enumerate(self.names)}

    def fields(self, theta, disorder):
        """(u_r, u_i) at disorder W."""
        p = self.unpack(theta)
        w = (disorder - p["W_c"]) / p["W_c"]
        u_r = sum(p[f"b{k}"] * w**k for k in range(1, self.relevant_field_order + 1))
        u_i = (sum(p[f"c{k}"] * w**k for k in range(self.irrelevant_field_order + 1))
               if self.irrelevant_order else jnp.zeros_like(w))
        return u_r, u_i

    def expansion(self, theta, x, z):
        """F(x, z) = sum a_ij x^i z^j with a_10 = a_01 = 1."""
        p = self.unpack(theta)
        out = x + (z if self.irrelevant_order else 0.0)
        for i, j in self.terms:
            out = out + p[f"a{i}{j}"] * x**i * z**j
        return out

    def log_lambda(self, theta, disorder, width):
        """ln Lambda(W, M) of the model."""
        p = self.unpack(theta)
        u_r, u_i = self.fields(theta, disorder)
        x = u_r * width ** (1.0 / p["nu"])
        z = u_i * width ** self.y(theta) if self.irrelevant_order else jnp.zeros_like(x)
        return self.expansion(theta, x, z)

    def y(self, theta):
        """The irrelevant exponent: fitted, or the fixed value."""
        if self.irrelevant_exponent is not None:
            return jnp.asarray(self.irrelevant_exponent, float)
        return self.unpack(theta)["y"]


class ScalingFit(Estimate, eqx.Module):
    """Result of :func:`fit_scaling`.

    Attributes:
        model: the :class:`ScalingModel` (orders).
        params: best-fit parameter vector, names in ``model.names``.
        covariance: (J^T J)^{-1} of the normalized residuals.
        chi2, dof: minimum chi^2 and degrees of freedom; ``p_value`` = Q(chi^2 | dof), the goodness of fit.
        bootstrap: (samples, params) refits of resampled data (empty if none was asked for).
        converged: whether the Levenberg-Marquardt solve succeeded.

    An :class:`~difftransport.stats.Estimate`: ``names`` = ``model.names``, ``values`` = ``params``;
    ``stderr(name)`` is ``error(name)``.
    """

    model: ScalingModel
    params: Float[Array, " p"]
    covariance: Float[Array, "p p"]
    chi2: Float[Array, ""]
    dof: int = eqx.field(static=True)
    p_value: Float[Array, ""]
    bootstrap: Float[Array, "samples p"]
    converged: Array

    def value(self, name):
        if name == "y" and self.model.irrelevant_exponent is not None:
            return jnp.asarray(self.model.irrelevant_exponent, float)
        return self.params[self.model.names.index(name)]

    names = property(lambda self: self.model.names)
    values = property(lambda self: self.params)
    stderr = Estimate.error

    def interval(self, name, confidence=0.95):
        """Confidence interval: bootstrap percentiles if there is a bootstrap, else +- z sigma (Gaussian)."""
        i = self.model.names.index(name)
        if self.bootstrap.shape[0]:
            lo, hi = np.percentile(np.asarray(self.bootstrap[:, i]), [50 * (1 - confidence), 50 * (1 + confidence)])
            return float(lo), float(hi)
        z = confidence_z(confidence)
        v, s = float(self.params[i]), float(self.stderr(name))
        return v - z * s, v + z * s

    @property
    def critical_disorder(self):
        return self.value("W_c")

    @property
    def exponent(self):
        return self.value("nu")

    @property
    def critical_lambda(self):
        """Lambda_c = exp(a_00)."""
        return jnp.exp(self.value("a00"))

    @property
    def critical_lambda_stderr(self):
        return self.critical_lambda * self.stderr("a00")

    def predict(self, disorder, width):
        """Lambda(W, M) of the fitted model."""
        return jnp.exp(self.model.log_lambda(self.params, jnp.asarray(disorder, float), jnp.asarray(width, float)))

    def collapse(self, disorder, width, lam):
        """Data collapse: (M / xi, Lambda with the irrelevant correction removed, sign of W - W_c).

        xi = |u_r|^{-nu} is the correlation (localization) length in lattice constants."""
        disorder, width, lam = (jnp.asarray(a, float) for a in (disorder, width, lam))
        u_r, u_i = self.model.fields(self.params, disorder)
        nu = self.exponent
        x = u_r * width ** (1.0 / nu)
        if self.model.irrelevant_order:
            z = u_i * width ** self.model.y(self.params)
            shift = self.model.expansion(self.params, x, z) - self.model.expansion(self.params, x, jnp.zeros_like(z))
        else:
            shift = 0.0
        return jnp.abs(u_r) ** nu * width, lam * jnp.exp(-shift), jnp.sign(disorder - self.critical_disorder)


def _fss_residuals(model: ScalingModel):
    def residuals(theta, data):
        disorder, width, log_lam, sigma = data
        return (model.log_lambda(theta, disorder, width) - log_lam) / sigma

    return residuals


def _fss_initial(model: ScalingModel, disorder, width, lam, critical_guess, exponent_guess, irrelevant_guess):
    """A starting point: W_c, nu from the guesses; a_00 and b_1 from a straight line through the largest
    width's data; c_0 = -1 so that the irrelevant direction is not degenerate; everything else 0."""
    big = width == width.max()
    slope, intercept = np.polyfit(disorder[big] - critical_guess, np.log(lam[big]), 1)
    p = {name: 0.0 for name in model.names}
    p["W_c"], p["nu"] = critical_guess, exponent_guess
    p["a00"] = intercept
    p["b1"] = slope * critical_guess / width.max() ** (1.0 / exponent_guess)
    if model.irrelevant_order:
        p["c0"] = -0.1
        if "y" in p:
            p["y"] = irrelevant_guess
    return np.array([p[n] for n in model.names])


def _solve_fss(model, residuals, theta0, data, max_steps):
    solver = optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10)
    sol = optx.least_squares(residuals, solver, theta0, args=data, max_steps=max_steps, throw=False)
    return sol.value, sol.result == optx.RESULTS.successful


def fit_scaling(
    disorder,
    width,
    lam,
    lam_stderr,
    *,
    model: ScalingModel = ScalingModel(),
    critical_guess: float,
    exponent_guess: float,
    irrelevant_guess: float = -2.0,
    bootstrap: int = 0,
    key=None,
    max_steps: int = 2000,
) -> ScalingFit:
    """Fit the Slevin-Ohtsuki finite-size-scaling form to Lambda(W, M) (see the module docstring).

    Args:
        disorder, width, lam, lam_stderr: 1D arrays of the same length: W, M, Lambda = lambda_M / M and its
            standard error (from :func:`lyapunov_exponents`). Residuals are (ln Lambda - F) / (sigma / Lambda).
        model: expansion orders (:class:`ScalingModel`).
        critical_guess, exponent_guess: starting W_c and nu; irrelevant_guess: starting y (< 0).
            With corrections, the fit without them is done first and used as the start.
        bootstrap: number of parametric-bootstrap refits (each datum redrawn from N(Lambda, sigma^2)),
            vmapped; 0 for none. Needs ``key``.
        max_steps: Levenberg-Marquardt iteration limit.

    Returns:
        :class:`ScalingFit` with W_c, nu, Lambda_c (``critical_disorder``, ``exponent``, ``critical_lambda``),
        their standard errors (``stderr(name)``), confidence intervals (``interval(name)``), chi^2, dof and
        the goodness of fit Q.
    """
    disorder = _float_data("disorder", disorder, 1)
    width = _float_data("width", width, 1)
    lam = _float_data("lam", lam, 1)
    sigma = _float_data("lam_stderr", lam_stderr, 1)
    if not (disorder.shape == width.shape == lam.shape == sigma.shape):
        raise ValueError(
            f"disorder, width, lam and lam_stderr must have the same shape, got {disorder.shape}, {width.shape}, "
            f"{lam.shape}, {sigma.shape}."
        )
    if not isinstance(model, ScalingModel):
        raise ValueError(f"model must be a ScalingModel, got {type(model).__name__}.")
    if np.any(~np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("lam must be finite and positive.")
    if np.any(~np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ValueError("lam_stderr must be finite and positive.")
    if len(np.unique(width)) < 2:
        raise ValueError(f"finite-size scaling needs at least two widths, got {np.unique(width).tolist()}.")
    if bootstrap and key is None:
        raise ValueError("bootstrap > 0 needs a PRNG key (key=...).")
    dof = lam.size - len(model.names)
    if dof < 1:
        raise ValueError(f"{lam.size} data points cannot fit {len(model.names)} parameters ({model.names}).")
    if not irrelevant_guess < 0:
        raise ValueError(f"irrelevant_guess must be negative, got {irrelevant_guess}.")

    theta0 = _fss_initial(model, disorder, width, lam, critical_guess, exponent_guess, irrelevant_guess)
    if model.irrelevant_order:  # start from the fit without corrections
        plain = ScalingModel(model.relevant_order, 0, model.relevant_field_order, 0)
        first = fit_scaling(disorder, width, lam, sigma, model=plain, critical_guess=critical_guess,
                            exponent_guess=exponent_guess, max_steps=max_steps)
        named = dict(zip(plain.names, np.asarray(first.params)))
        theta0 = np.array([named.get(n, t) for n, t in zip(model.names, theta0)])
    data = tuple(jnp.asarray(a) for a in (disorder, width, np.log(lam), sigma / lam))
    return _fit_scaling(model, jnp.asarray(theta0), data, bootstrap, key, max_steps, dof)


@eqx.filter_jit
def _fit_scaling(model, theta0, data, bootstrap, key, max_steps, dof):
    residuals = _fss_residuals(model)
    theta, ok = _solve_fss(model, residuals, theta0, data, max_steps)
    r = residuals(theta, data)
    cov = gauss_newton_covariance(jax.jacfwd(residuals)(theta, data))
    chi2 = jnp.sum(r**2)
    if bootstrap:
        disorder, width, log_lam, sig = data
        noise = jax.random.normal(key, (bootstrap, log_lam.size))
        # Lambda* = Lambda + sigma_Lambda * N(0, 1)  =>  ln Lambda* = ln(Lambda (1 + sigma_ln N)).
        redrawn = jnp.log(jnp.exp(log_lam) * (1 + sig * noise))
        boot = jax.vmap(lambda ll: _solve_fss(model, residuals, theta, (disorder, width, ll, sig), max_steps)[0])(
            redrawn
        )
    else:
        boot = jnp.zeros((0, theta.size))
    return ScalingFit(model=model, params=theta, covariance=cov, chi2=chi2, dof=dof,
                      p_value=chi2_pvalue(chi2, dof), bootstrap=boot, converged=ok)


# ---------------------------------------------------------------------------------------------------------
# 2. beta(g) from <ln g>(L) under single-parameter scaling


def beta_one_loop(g, symmetry: str):
    """One-loop (weak-localization) beta = d ln g / d ln L in 2D, g in e^2/h summed over all channels.

    ``"orthogonal"`` (spinless, time-reversal invariant): -1/(pi g). ``"symplectic"`` (spin-1/2 with strong
    spin-orbit coupling, total g over both spins): +1/(pi g). ``"unitary"`` (spinless, broken time reversal):
    -1/(2 pi^2 g^2), the first non-vanishing (two-loop) term. docs/physics.md#beta-function (Evers & Mirlin,
    RMP 80, 1355, Eqs. for beta(t) with t = 1/(2 pi g) per spin)."""
    g = jnp.asarray(g, float)
    if symmetry == "orthogonal":
        return -1.0 / (math.pi * g)
    if symmetry == "symplectic":
        return 1.0 / (math.pi * g)
    if symmetry == "unitary":
        return -1.0 / (2 * math.pi**2 * g**2)
    raise ValueError(f"symmetry must be 'orthogonal', 'symplectic' or 'unitary', got {symmetry!r}.")


def finite_difference_beta(lengths, log_g, log_g_stderr):
    """Raw slopes between successive lengths: (x_mid, beta, sigma_beta), each (curves, lengths - 1), with
    x_mid the mean of the two <ln g> and beta = Delta <ln g> / Delta ln L (errors of the two means added in
    quadrature; the curves' points are independent ensembles)."""
    t = np.log(_float_data("lengths", lengths, 1))
    x = _float_data("log_g", log_g, 2)
    s = _float_data("log_g_stderr", log_g_stderr, 2)
    dt_ = np.diff(t)
    return 0.5 * (x[:, 1:] + x[:, :-1]), np.diff(x, axis=1) / dt_, np.hypot(s[:, 1:], s[:, :-1]) / dt_


def beta_conductances(sample: Sample, model: Model, seed: int, indices, strength_index, strength, *,
                      distribution: str = "box", su2: bool = False, method: str = "rgf", batch: int | None = None):
    """Conductances g (e^2/h, all channels), shape (len(indices),), of realizations ``indices`` of the L x L
    (x L) ``sample`` at disorder ``strength`` (the ``strength_index``-th of its study). Realization j draws its
    disorder from fold_in(fold_in(fold_in(key(seed), L), strength_index), j), so it depends on nothing else
    (not on the chunk, the device or the other realizations). ``method``: the solver of
    :func:`difftransport.conductance` ("rgf" or "transfer"). ``batch``: realizations vmapped at a time (None: all,
    which a sharded realization axis needs; ``cpu_vmap_width`` is faster on one CPU device). Jittable;
    ``strength_index`` and ``strength`` may be traced (one compilation per L)."""
    keys = study_keys(seed, sample.length, strength_index, indices)
    return ensemble_conductances(keys, sample, model, strength=strength, distribution=distribution, su2=su2,
                                 method=method, batch=batch or keys.shape[0])


def log_conductance_table(g, channels, *, contact_correction: bool) -> dict:
    """Ensemble statistics of ln g from conductances ``g`` (strengths, lengths, realizations) in e^2/h:
    mean_log_g, stderr_log_g (sigma / sqrt(n)) and var_log_g (ddof 1), each (strengths, lengths), mean_g, and
    dropped_ballistic. With ``contact_correction`` the contact (Sharvin) resistance of the ideal leads with
    ``channels`` (lengths,) open channels is removed, 1/g_int = 1/g - 1/N; realizations with g >= N (no
    intrinsic resistance) are dropped (counted in dropped_ballistic; ``theory.intrinsic_conductance``)."""
    g = np.asarray(g, float)
    used, dropped = g, 0
    if contact_correction:
        used = np.asarray(intrinsic_conductance(g, np.asarray(channels, float)[None, :, None]))
        dropped = int(np.isnan(used).sum())
    logs = np.log(used)
    count = np.sum(np.isfinite(logs), axis=2)
    return {"mean_g": g.mean(axis=2), "mean_log_g": np.nanmean(logs, axis=2),
            "stderr_log_g": np.nanstd(logs, axis=2, ddof=1) / np.sqrt(count),
            "var_log_g": np.nanvar(logs, axis=2, ddof=1), "dropped_ballistic": dropped}


def finite_size_one_loop(lengths, channels, mean_log_g, *, symmetry: str, periodic: bool):
    """One-loop beta of the raw slopes of finite L x L squares (2D): (curves, lengths - 1).

    Between successive lengths, [dG(L2) - dG(L1)] / ln(L2/L1) / g_mid with dG = theory.lattice_wl_correction of
    the square (its boundaries; the Cooperon vanishes z0 = g L / 2N beyond each lead, the length that reproduces
    the Sharvin resistance, g = exp<ln g> with contacts removed, N = ``channels``) and g_mid = exp of the mean
    <ln g>; the sign of the ``"symplectic"`` class (total g) is opposite to the ``"orthogonal"`` one. The modes
    beyond q ~ 1/l are not diffusive and are cut off (``theory.diffusive_cutoff``: l = 4 z0 / pi, l_c =
    (sqrt 3/2) l). At the sizes of a study the square has not reached its ln L regime: this, not -1/(pi g), is
    what the raw slopes should follow at one loop (docs/physics.md)."""
    sign = {"orthogonal": 1.0, "symplectic": -1.0}[symmetry]
    mean_log_g = np.asarray(mean_log_g, float)
    correction = np.zeros_like(mean_log_g)
    for i in range(mean_log_g.shape[0]):
        for j, (size, n) in enumerate(zip(lengths, channels)):
            z0 = float(np.exp(mean_log_g[i, j])) * size / (2 * n)
            correction[i, j] = sign * float(lattice_wl_correction(
                size, size, periodic=periodic, extrapolation=z0, cutoff=diffusive_cutoff(z0)))
    g_mid = np.exp(0.5 * (mean_log_g[:, 1:] + mean_log_g[:, :-1]))
    return np.diff(correction, axis=1) / np.diff(np.log(np.asarray(lengths, float))) / g_mid


class DephasingSlopes(eqx.Module):
    """Derivatives of the conductance with respect to ln tau_phi, per realization and field (see
    :func:`dephasing_slopes`). Arrays (realizations, fields); conductances in e^2/h.

    Attributes:
        fluxes: (fields,) the fluxes per plaquette (h/e).
        g, slope: the Buttiker-probe conductance and dg / d ln tau_phi.
        g_contact, slope_contact: the contact-corrected g_c = 1 / (1/g - 1/N) and dg_c / d ln tau_phi =
            (g_c / g)^2 dg / d ln tau_phi (N = ``channels``; NaN where g >= N).
        channels: (fields,) N, the open channels of each lead at each field.
    """

    fluxes: jax.Array
    g: jax.Array
    slope: jax.Array
    g_contact: jax.Array
    slope_contact: jax.Array
    channels: jax.Array

    @classmethod
    def from_values(cls, fluxes, g, slope, channels) -> "DephasingSlopes":
        """From g and dg/d ln tau_phi (realizations, fields) and the open channels (fields,): adds the
        contact-corrected pair."""
        g, slope, channels = (jnp.asarray(a, float) for a in (g, slope, channels))
        g_contact = intrinsic_conductance(g, channels[None, :])
        return cls(fluxes=jnp.asarray(fluxes, float), g=g, slope=slope, g_contact=g_contact,
                   slope_contact=(g_contact / g) ** 2 * slope, channels=channels)

    def _field(self, field: int) -> None:
        if float(self.fluxes[0]) != 0.0 or not 0 < field < self.fluxes.shape[0]:
            raise ValueError(f"a comparison with zero field needs fluxes[0] = 0 and 0 < field < "
                             f"{self.fluxes.shape[0]}, got field {field!r} with fluxes "
                             f"{np.asarray(self.fluxes).tolist()}.")

    def subtracted(self, field: int, *, contact: bool = True):
        """(mean, standard error) over the realizations of slope(B = 0) - slope(fluxes[field]): the Cooperon's
        ln tau_phi derivative with the momentum-relaxation (Drude) part of the probes removed. Needs
        ``fluxes[0] == 0``."""
        self._field(field)
        slope = self.slope_contact if contact else self.slope
        mean, stderr = mean_stderr(np.asarray(slope[:, 0] - slope[:, field]))
        return float(mean), float(stderr)

    def magnetoconductance(self, field: int, *, contact: bool = True):
        """(mean, standard error) over the realizations of g(fluxes[field]) - g(B = 0) (e^2/h; contact-corrected
        by default): the field response of the same Cooperon whose ln tau_phi dependence :meth:`subtracted`
        measures, paired realization by realization. Its one loop for the sample is a difference of
        :func:`difftransport.theory.lattice_wl_correction` (docs/physics.md#beta-function). Needs
        ``fluxes[0] == 0``."""
        self._field(field)
        g = np.asarray(self.g_contact if contact else self.g)
        mean, stderr = mean_stderr(g[:, field] - g[:, 0])
        return float(mean), float(stderr)

    def beta(self, field: int | None, *, contact: bool = True, blocks: int = 32, l_phi=None):
        """(beta_phi, standard error) in 2D: d ln g / d ln L_phi = 2 <dg/d ln tau_phi> / <g> at zero field
        (L_phi = sqrt(D tau_phi)), with the slope subtracted at ``fluxes[field]`` (:meth:`subtracted`; None: the
        raw zero-field slope, Drude term included). The error is a delete-a-block jackknife over the
        realizations (:func:`difftransport.stats.jackknife`, ``blocks`` blocks), so the correlation of the
        slope with g in the ratio is kept.

        A field removes only the fraction :func:`difftransport.theory.cooperon_slope_fraction` of the Cooperon's
        ln L_phi dependence (0.84 at L_phi = 15 and 0.005 flux quanta per plaquette), so the subtracted slope
        underestimates |beta| by that factor. Given ``l_phi`` (lattice constants; from a stated rule for D),
        the estimate is divided by it: the field-residual correction, exact in the bulk at one loop.
        docs/physics.md#beta-function."""
        if field is not None:
            self._field(field)
        elif l_phi is not None:
            raise ValueError("l_phi corrects a field-subtracted beta; with field=None there is nothing to correct.")
        fraction = 1.0 if l_phi is None else float(cooperon_slope_fraction(l_phi, self.fluxes[field]))
        g = np.asarray(self.g_contact if contact else self.g)[:, 0]
        slope = np.asarray(self.slope_contact if contact else self.slope)
        d = slope[:, 0] - (slope[:, field] if field is not None else 0.0)
        value, error = jackknife(lambda rows: 2 * rows[:, 0].mean() / rows[:, 1].mean(), np.stack([d, g], 1),
                                 blocks=blocks)
        return float(value) / fraction, float(error) / fraction

    def beta_einstein(self, *, contact: bool = True, blocks: int = 32):
        """(beta, standard error) in 3D with L_phi from the Einstein relation: L_phi^2 = D tau_phi, D = sigma /
        (2 pi rho), g = sigma L_phi (sigma = <g_c> / L for an L^3 cube, rho the density of states per site). With
        s = d ln <g> / d ln tau_phi at zero field (rho held), d ln L_phi = (d ln sigma + d ln tau_phi) / 2, so

            beta = 1 + d ln sigma / d ln L_phi = (1 + 3 s) / (1 + s):

        rho drops out of beta (it enters only g), and beta = 0 is the critical s = -1/3 (sigma ~ tau_phi^(-1/3),
        dynamic scaling with z = d = 3). The raw zero-field slope is used: the probes' Drude term, ~ tau / tau_phi,
        is what a field would remove, and near the 3D transition (tau ~ 0.1 hbar/t) it is below 1e-3 for
        tau_phi >~ 100. Delete-a-block jackknife error over the realizations. docs/physics.md#beta-function."""
        g = np.asarray(self.g_contact if contact else self.g)[:, 0]
        slope = np.asarray(self.slope_contact if contact else self.slope)[:, 0]
        if not slope.mean() / g.mean() > -1:
            raise ValueError(f"s = d ln <g> / d ln tau_phi = {slope.mean() / g.mean():.3g} is not above -1: L_phi by "
                             "the Einstein rule does not grow with tau_phi, and beta_einstein is undefined.")

        def beta(rows):
            s = rows[:, 0].mean() / rows[:, 1].mean()
            return (1 + 3 * s) / (1 + s)

        value, error = jackknife(beta, np.stack([slope, g], 1), blocks=blocks)
        return float(value), float(error)


def _slopes(key, sample: Sample, model: Model, draw: dict, log_tau, fluxes, solver: str = "auto"):
    """(fields, 2): the Buttiker-probe g and dg/d ln tau_phi at every flux of the realization
    ``draw_disorder(key, sample, **draw)``. Forward mode (one tangent, one scalar input): 1.0-1.3x faster than
    reverse mode through the probe solve (docs/benchmarks.md#buttiker-solver), the same numbers to roundoff.
    ``solver``: the probe equations' solver of :func:`difftransport.buttiker_currents` ("auto" is what
    ``conductance(..., dephasing="buttiker")`` uses)."""
    disorder = draw_disorder(key, sample, **draw)
    log_tau = jnp.asarray(log_tau, jnp.result_type(float))

    def g(lt, flux):
        m = eqx.tree_at(lambda x: (x.tau_phi, x.flux), model, (jnp.exp(lt), flux), is_leaf=lambda x: x is None)
        return buttiker_currents(sample, m, disorder, solver=solver)[1]

    return jax.vmap(lambda f: jnp.stack(jax.jvp(lambda lt: g(lt, f), (log_tau,), (jnp.ones_like(log_tau),))))(fluxes)


def _fluxes(fluxes):
    fluxes = jnp.asarray(fluxes, jnp.result_type(float))
    if fluxes.ndim != 1 or fluxes.shape[0] < 1:
        raise ValueError(f"fluxes must be a non-empty 1D list of fluxes, got shape {fluxes.shape}.")
    return fluxes


def dephasing_slopes(keys, sample: Sample, model: Model, strength, *, fluxes, batch: int = 1,
                     distribution: str = "box", su2: bool = False, solver: str = "auto") -> DephasingSlopes:
    """d g / d ln tau_phi by forward-mode differentiation through the Buttiker-probe solve (a probe on every site,
    ``conductance(..., dephasing="buttiker")``), per realization (``draw_disorder(keys[r], sample,
    strength=strength, distribution=distribution, su2=su2)``; box disorder by default, the Anderson potential
    of :func:`difftransport.anderson_potential`) and per flux of ``fluxes`` (common random numbers:
    one realization at every field), at ``model.tau_phi``.

    The probes relax momentum as well as phase (1/tau_tot = 1/tau + 1/tau_phi), so the raw derivative holds the
    Drude term ~ sigma tau / tau_phi besides the Cooperon's -(1/2 pi) (2D orthogonal, one loop). A field whose
    magnetic length is below L_phi but with omega_c tau << 1 kills the Cooperon's dependence on tau_phi and
    leaves the Drude term nearly unchanged (to order (omega_c tau)^2), so :meth:`DephasingSlopes.subtracted`
    isolates the Cooperon. Its one-loop value for the sample: :func:`difftransport.theory.wl_dephasing_slope`.
    docs/physics.md#beta-function (the derivative route). Pure JAX per realization (vmapped over fields, mapped
    over realizations ``batch`` at a time). ``solver``: "auto", "dense" or "gmres", the probe solve of
    :func:`difftransport.buttiker_currents` (the same numbers to ~1e-9; docs/benchmarks.md#buttiker-solver)."""
    if model.tau_phi is None:
        raise ValueError("dephasing_slopes needs model.tau_phi (the probes' dephasing time).")
    keys = jnp.asarray(keys)
    if keys.ndim < 1 or keys.shape[0] < 2:
        raise ValueError(f"keys must hold at least two PRNG keys (for a standard error), got shape {keys.shape}.")
    fluxes = _fluxes(fluxes)
    strength = jnp.asarray(strength, jnp.result_type(float))
    log_tau = jnp.log(jnp.asarray(model.tau_phi, float))

    draw = dict(strength=strength, distribution=distribution, su2=su2)
    out = jax.jit(lambda k: map_realizations(lambda key: _slopes(key, sample, model, draw, log_tau, fluxes, solver),
                                             k, batch=batch))(keys)
    return DephasingSlopes.from_values(fluxes, out[..., 0], out[..., 1], _channels(sample, model, fluxes))


def _channels(sample: Sample, model: Model, fluxes):
    """(fields,) open channels of the leads at each flux."""
    return jax.vmap(lambda f: open_channels(sample, eqx.tree_at(lambda x: x.flux, model, f,
                                                                is_leaf=lambda x: x is None)))(fluxes)


def study_keys(seed: int, length: int, strength_index, indices):
    """PRNG keys of realizations ``indices`` of a scaling study's L x L (x L) samples at its
    ``strength_index``-th disorder strength: fold_in(fold_in(fold_in(key(seed), L), strength_index), j), so a
    realization depends on nothing else (not on the chunk, the device or the other realizations), and a beta
    study and a dephasing study with the same seed and L see the same disorder."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), length), strength_index)
    return jax.vmap(lambda j: jax.random.fold_in(base, j))(jnp.asarray(indices))


def study_dephasing_slopes(sample: Sample, model: Model, seed: int, indices, strength_index, strength, log_tau, *,
                           fluxes, distribution: str = "box", su2: bool = False, batch: int = 1,
                           solver: str = "auto") -> dict:
    """{"g", "slope"}, each (len(indices), fields): the Buttiker-probe conductance and dg/d ln tau_phi at
    tau_phi = exp(``log_tau``) of realizations ``indices`` (keys of :func:`study_keys`), at every flux of
    ``fluxes`` (``model.flux`` is replaced), ``batch`` realizations at a time (:func:`map_realizations`: the
    derivative through a dense probe solve holds a few (L n)^2 matrices per realization and field), with the
    probe solve ``solver`` (:func:`dephasing_slopes`). Jittable; ``strength_index``, ``strength`` and ``log_tau``
    may be traced (one compilation per sample)."""
    fluxes = _fluxes(fluxes)
    keys = study_keys(seed, sample.length, strength_index, indices)
    draw = dict(strength=strength, distribution=distribution, su2=su2)
    out = map_realizations(lambda key: _slopes(key, sample, model, draw, log_tau, fluxes, solver), keys,
                           batch=batch)
    return {"g": out[..., 0], "slope": out[..., 1]}


def one_loop_amplitude(beta, stderr, one_loop, use) -> dict:
    """Weighted least-squares amplitude a of beta = a * one_loop over the points ``use`` (a boolean mask; all
    arrays of one shape), weights 1 / stderr^2: {points, amplitude, amplitude_stderr, chi2, dof}. a = 1 is the
    one-loop prediction (:func:`finite_size_one_loop`)."""
    w = np.where(use, 1.0 / stderr**2, 0.0)
    amp = float(np.sum(w * beta * one_loop) / np.sum(w * one_loop**2))
    return {"points": int(use.sum()), "amplitude": amp, "amplitude_stderr": float(1.0 / np.sqrt(np.sum(w * one_loop**2))),
            "chi2": float(np.sum(w * (beta - amp * one_loop) ** 2)), "dof": int(use.sum() - 1)}


def zero_crossings(grid, beta, band) -> list[dict]:
    """Where beta(ln g) on ``grid`` changes sign, by linear interpolation: {log_g, g, stderr_log_g, slope} per
    crossing, with stderr_log_g = band / |d beta / d ln g| (the error of beta moved along the slope)."""
    out = []
    for k in np.nonzero(np.sign(beta[1:]) != np.sign(beta[:-1]))[0]:
        x0 = grid[k] - beta[k] * (grid[k + 1] - grid[k]) / (beta[k + 1] - beta[k])
        slope = (beta[k + 1] - beta[k]) / (grid[k + 1] - grid[k])
        out.append({"log_g": float(x0), "g": float(np.exp(x0)), "stderr_log_g": float(band[k] / abs(slope)),
                    "slope": float(slope)})
    return out


class _Spline(eqx.Module):
    """Uniform cubic B-spline on [lo, hi] with ``knots`` intervals (knots + 3 coefficients); linear
    continuation outside."""

    lo: float = eqx.field(static=True)
    hi: float = eqx.field(static=True)
    intervals: int = eqx.field(static=True)

    @property
    def size(self):
        return self.intervals + 3

    @property
    def spacing(self):
        return (self.hi - self.lo) / self.intervals

    def basis(self, x):
        """(..., size) basis values at x, with the linear continuation beyond [lo, hi]."""
        x = jnp.asarray(x, float)
        inside = jnp.clip(x, self.lo, self.hi)
        u = (inside - self.lo) / self.spacing
        idx = jnp.clip(jnp.floor(u), 0, self.intervals - 1).astype(int)
        f = u - idx
        local = jnp.stack([(1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3], -1) / 6
        dlocal = jnp.stack([-3 * (1 - f) ** 2, 9 * f**2 - 12 * f, -9 * f**2 + 6 * f + 3, 3 * f**2], -1) / 6
        onehot = jax.nn.one_hot(idx[..., None] + jnp.arange(4), self.size)  # (..., 4, size)
        value = jnp.einsum("...k,...ks->...s", local, onehot)
        slope = jnp.einsum("...k,...ks->...s", dlocal, onehot) / self.spacing
        return value + (x - inside)[..., None] * slope


class BetaFit(Estimate, eqx.Module):
    """Result of :func:`fit_beta`: beta(x), x = ln g, as a P-spline with an uncertainty band.

    Attributes:
        spline: the B-spline basis (static range and knots).
        coefficients: spline coefficients.
        starts: fitted <ln g> of every curve at the smallest length.
        covariance: covariance of (starts, coefficients), scaled by max(1, chi^2/dof) (Birge ratio).
        chi2, dof: chi^2 of the data residuals (penalty excluded) and degrees of freedom.
        lengths: the lengths of the data (for ``trajectories``).
        substeps: RK4 steps per length interval.

    An :class:`~difftransport.stats.Estimate` of ("start[0]", ..., "c[0]", ...) = (starts, coefficients);
    ``stderr(log_g)`` is the band of beta, not a parameter's error.
    """

    spline: _Spline
    coefficients: Float[Array, " k"]
    starts: Float[Array, " curves"]
    covariance: Float[Array, "p p"]
    chi2: Float[Array, ""]
    dof: int = eqx.field(static=True)
    lengths: Float[Array, " lengths"]
    substeps: int = eqx.field(static=True)
    converged: Array

    names = property(lambda self: tuple(f"start[{i}]" for i in range(self.starts.shape[0]))
                     + tuple(f"c[{k}]" for k in range(self.coefficients.shape[0])))
    values = property(lambda self: jnp.concatenate([self.starts, self.coefficients]))

    @property
    def range(self):
        """The range of ln g covered by the spline's knots (the data range plus a margin)."""
        return self.spline.lo, self.spline.hi

    def __call__(self, log_g):
        """beta at x = ln g."""
        return self.spline.basis(log_g) @ self.coefficients

    def stderr(self, log_g):
        """1-sigma band of beta(x) from the parameter covariance (linear propagation)."""
        basis = self.spline.basis(log_g)
        k = self.coefficients.size
        cov = self.covariance[-k:, -k:]
        return jnp.sqrt(jnp.einsum("...i,ij,...j->...", basis, cov, basis))

    def trajectories(self):
        """Fitted <ln g>(L) of every curve, shape (curves, lengths)."""
        return _integrate(self.spline, self.coefficients, self.starts, jnp.log(self.lengths), self.substeps)


def _integrate(spline: _Spline, coefficients, starts, t, substeps):
    """RK4 solution of dx/dt = beta(x) from x(t_0) = starts at the times t, shape (curves, len(t))."""
    beta = lambda x: spline.basis(x) @ coefficients

    def interval(x, dt_):
        h = dt_ / substeps

        def rk4(x, _):
            k1 = beta(x)
            k2 = beta(x + 0.5 * h * k1)
            k3 = beta(x + 0.5 * h * k2)
            k4 = beta(x + h * k3)
            return x + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6, None

        x, _ = jax.lax.scan(rk4, x, None, length=substeps)
        return x, x

    _, xs = jax.lax.scan(interval, starts, jnp.diff(t))
    return jnp.concatenate([starts[:, None], xs.T], axis=1)


def fit_beta(
    lengths,
    log_g,
    log_g_stderr,
    *,
    knots: int = 8,
    smoothing: float = 1.0,
    substeps: int = 8,
    margin: float = 0.1,
    max_steps: int = 2000,
) -> BetaFit:
    """Fit one scaling function beta(ln g) shared by all disorder curves (single-parameter scaling).

    Args:
        lengths: (n,) sample sizes L (increasing), common to all curves.
        log_g: (curves, n) ensemble means <ln g> (g in e^2/h); NaN marks a missing point.
        log_g_stderr: (curves, n) their standard errors.
        knots: spline intervals over the data range of ln g (widened by ``margin`` times the range).
        smoothing: weight lambda of the second-difference penalty sqrt(lambda) Delta^2 c, appended to the
            residuals (a Gaussian prior on the curvature; larger is smoother).
        substeps: RK4 steps per length interval.

    Returns:
        :class:`BetaFit`: callable beta(x), ``stderr(x)`` band, fitted ``trajectories()``, chi^2 and dof.

    Each curve's starting value x_W(L_0) and the spline coefficients are fitted together: residuals
    (x_W(ln L) - <ln g>) / sigma, solved by Levenberg-Marquardt; the covariance is (J^T J)^{-1} including the
    penalty rows, scaled by the Birge ratio max(1, chi^2/dof).
    """
    lengths = _float_data("lengths", lengths, 1)
    x = _float_data("log_g", log_g, 2)
    s = _float_data("log_g_stderr", log_g_stderr, 2)
    if x.shape != s.shape or x.shape[1] != lengths.size:
        raise ValueError(
            f"log_g and log_g_stderr must both have shape (curves, {lengths.size}), got {x.shape} and {s.shape}."
        )
    if lengths.size < 2 or np.any(np.diff(lengths) <= 0) or np.any(lengths <= 0):
        raise ValueError(f"lengths must be positive and increasing, got {lengths.tolist()}.")
    valid = np.isfinite(x)
    if np.any(~valid[:, 0]):
        raise ValueError("every curve needs a value at the smallest length (log_g[:, 0] must be finite).")
    if np.any(~np.isfinite(s[valid])) or np.any(s[valid] <= 0):
        raise ValueError("log_g_stderr must be finite and positive where log_g is given.")
    for name, value, low in (("knots", knots, 1), ("substeps", substeps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if not smoothing >= 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing!r}.")
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    pad = margin * (hi - lo) + 1e-3
    spline = _Spline(lo - pad, hi + pad, knots)
    curves = x.shape[0]
    dof = int(valid.sum()) - curves - spline.size
    if dof < 1:
        raise ValueError(f"{int(valid.sum())} data points cannot fit {curves + spline.size} parameters.")

    # Start: the spline by linear least squares on the raw finite-difference slopes.
    xm, bm, sm = finite_difference_beta(lengths, np.where(valid, x, 0.0), np.where(valid, s, 1.0))
    ok = valid[:, 1:] & valid[:, :-1]
    basis = np.asarray(spline.basis(xm[ok]))
    penalty = np.diff(np.eye(spline.size), 2, axis=0)
    a = np.vstack([basis / sm[ok][:, None], math.sqrt(max(smoothing, 1e-6)) * penalty])
    b = np.concatenate([bm[ok] / sm[ok], np.zeros(penalty.shape[0])])
    coef0 = np.linalg.lstsq(a, b, rcond=None)[0]
    theta0 = jnp.asarray(np.concatenate([x[:, 0], coef0]))
    data = (jnp.log(jnp.asarray(lengths)), jnp.asarray(np.where(valid, x, 0.0)),
            jnp.asarray(np.where(valid, 1.0 / s, 0.0)), jnp.asarray(penalty), jnp.sqrt(float(smoothing)))
    theta, cov, chi2, ok_ = _fit_beta(spline, substeps, curves, theta0, data, max_steps, dof)
    return BetaFit(spline=spline, coefficients=theta[curves:], starts=theta[:curves], covariance=cov,
                   chi2=chi2, dof=dof, lengths=jnp.asarray(lengths), substeps=substeps, converged=ok_)


@eqx.filter_jit
def _fit_beta(spline, substeps, curves, theta0, data, max_steps, dof):
    def data_residuals(theta, data):
        t, x, weight, _, _ = data
        model = _integrate(spline, theta[curves:], theta[:curves], t, substeps)
        return ((model - x) * weight).ravel()

    def residuals(theta, data):
        _, _, _, penalty, root = data
        return jnp.concatenate([data_residuals(theta, data), root * (penalty @ theta[curves:])])

    solver = optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10)
    sol = optx.least_squares(residuals, solver, theta0, args=data, max_steps=max_steps, throw=False)
    theta = sol.value
    chi2 = jnp.sum(data_residuals(theta, data) ** 2)
    cov = gauss_newton_covariance(jax.jacfwd(residuals)(theta, data)) * jnp.maximum(1.0, chi2 / dof)
    return theta, cov, chi2, sol.result == optx.RESULTS.successful
