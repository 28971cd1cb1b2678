"""Temperature: the Fermi window, averages over it, and a power law for the dephasing time.

Units: k_B = hbar = 1; a temperature is k_B T in units of the energy scale (the hopping t), a time is in units of
hbar / t. Conventions (``docs/physics.md#temperature``):

* The Fermi window is W(E) = -df/dE = 1 / (4 T cosh^2((E - mu) / 2T)), f(E) = 1 / (exp((E - mu)/T) + 1); it is
  normalized, even in E - mu, and has the moments int x^2 W = pi^2/3 and int x^4 W = 7 pi^4/15 in x = (E - mu)/T.
* The linear-response conductance at temperature T is the thermal average G_T(mu) = int dE W(E) G(E) of the
  zero-temperature conductance (Landauer-Buttiker; Datta, *Electronic Transport in Mesoscopic Systems* (1995),
  eq. 2.5.15). Averaged over disorder it differs from G(mu) only through the curvature of <G>(E) (Sommerfeld:
  G_T = G + (pi^2/6) T^2 G'' + ...); for one sample it also averages the conductance fluctuations over the
  ~3.5 T wide window once T exceeds their correlation energy.

The average is a fixed quadrature in x, E_k = mu + T x_k: the nodes do not depend on mu or T, so the result is
differentiable in both (and in whatever the integrand closes over), and T = 0 returns the integrand at mu exactly.
Two rules (:func:`fermi_quadrature`):

* ``"tanh-sinh"`` (default): the substitution u = tanh(x/2) turns W dE into du/2 on (-1, 1), and the tanh-sinh
  rule u = tanh((pi/2) sinh s) (Takahasi & Mori, Publ. RIMS 9, 721 (1974)) is the trapezoidal rule in s with
  x = pi sinh s, |s| <= 3 (|x| <= 31.5: the neglected weight 2/(1 + e^31.5) is 4e-14). The integrand decays
  doubly exponentially in s; for an integrand analytic and bounded within |Im x| < pi the error falls as
  exp(-pi^2/h), h = 6/(count - 1) (1e-13 at 21 nodes). An integrand with structure on an energy scale Gamma
  converges once h is well below ~Gamma/T: 41 nodes (the default) give 1e-10 for a Lorentzian of half-width 2T
  and 4e-3 for one of half-width T/2.
* ``"gauss"``: the Gauss rule of the weight W itself, exact for polynomials of degree 2 count - 1, i.e. the
  Sommerfeld expansion through T^(2 count - 2). Its Jacobi matrix is known in closed form: zero diagonal and
  off-diagonal b_n = pi n^2 / sqrt(4 n^2 - 1) (b_n^2 = pi^2 n^4/(4n^2 - 1) reproduces the moments
  (2 - 2^(2-2k)) (2k)! zeta(2k) of W; Golub & Welsch, Math. Comp. 23, 221 (1969)). It is the rule for
  integrands smooth on the scale T, such as a disorder-averaged conductance: 3 nodes (x = 0, +-3.72) are exact
  through T^4. It converges slowly for an integrand with structure finer than T (a single sample's resonances).

A disorder average commutes with the quadrature (both are linear), so the ensemble mean of per-sample thermal
averages is unbiased with any rule that integrates the smooth <G>(E): per-sample quadrature errors only add noise.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import real_array as _real_array
from .lattice import Sample
from .model import Disorder, Model
from .observables import Dephasing, Method, conductance

RULES = ("tanh-sinh", "gauss")
DEFAULT_NODES = 41
_TANH_SINH_EXTENT = 3.0  # |s| <= 3: |x| <= pi sinh 3 = 31.47, neglected weight 2 / (1 + e^31.47) = 4e-14


def _window(x):
    """-df/dx = e^-|x| / (1 + e^-|x|)^2 (= 1/(4 cosh^2(x/2)), without overflow at large |x|)."""
    e = jnp.exp(-jnp.abs(x))
    return e / (1 + e) ** 2


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _checked(name: str, x, rule: str, ok):
    """``x`` (a float array) if ``ok(x)`` holds everywhere: a ValueError for a concrete ``x``, equinox.error_if
    (EquinoxRuntimeError, also under jit and vmap) for a traced one."""
    x = _real_array(x, name, required=True)
    if _is_tracer(x):
        return eqx.error_if(x, ~ok(x), f"{name} must be {rule}.")
    if not bool(np.all(ok(np.asarray(x)))):
        raise ValueError(f"{name} must be {rule}, got {np.asarray(x).tolist()!r}.")
    return x


def _temperature(t):
    return _checked("temperature", t, "finite and >= 0 (k_B T in units of t)", lambda v: (v >= 0) & (v < np.inf))


def _scalar(name: str, x):
    if jnp.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar (vmap over a sweep), got shape {jnp.shape(x)}.")
    return x


def fermi_window(energy, mu, temperature):
    """The Fermi window -df/dE = 1 / (4 T cosh^2((E - mu) / 2T)) (k_B = 1), in 1/(energy unit).

    Args:
        energy: E (units of t), any shape.
        mu: chemical potential (the Fermi energy, ``Model.energy``), broadcast with ``energy``.
        temperature: k_B T in units of t, > 0 (at T = 0 the window is a delta function: use
            :func:`thermal_average`, which returns the integrand at mu there).

    Raises:
        ValueError: a concrete temperature that is not positive and finite (a traced one: equinox.error_if).
    """
    temperature = _checked("temperature", temperature, "finite and > 0 (k_B T in units of t; the T = 0 window "
                           "is a delta function)", lambda v: (v > 0) & (v < np.inf))
    energy, mu = _real_array(energy, "energy", required=True), _real_array(mu, "mu", required=True)
    return _window((energy - mu) / temperature) / temperature


@functools.lru_cache(maxsize=None)
def _rule(count: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    if rule == "tanh-sinh":
        s = np.linspace(-_TANH_SINH_EXTENT, _TANH_SINH_EXTENT, count)
        s[count // 2] = 0.0  # exactly on the Fermi level
        x = math.pi * np.sinh(s)
        # du/2 = (pi/4) cosh s sech^2((pi/2) sinh s) ds, with sech^2(y) = 4 e^-2|y| / (1 + e^-2|y|)^2
        e = np.exp(-math.pi * np.abs(np.sinh(s)))
        w = (s[1] - s[0]) * (math.pi / 4) * np.cosh(s) * 4 * e / (1 + e) ** 2
    else:
        n = np.arange(1, count, dtype=float)
        b = math.pi * n**2 / np.sqrt(4 * n**2 - 1)
        x, vectors = np.linalg.eigh(np.diag(b, 1) + np.diag(b, -1))
        w = vectors[0] ** 2
        x = 0.5 * (x - x[::-1])  # symmetric to rounding; the middle node is x = 0
        w = 0.5 * (w + w[::-1])
    w = w / w.sum()  # a constant is averaged exactly
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def fermi_quadrature(count: int = DEFAULT_NODES, *, rule: str = "tanh-sinh") -> tuple[np.ndarray, np.ndarray]:
    """Nodes x_k and weights w_k with sum_k w_k g(x_k) ~ int dx W(x) g(x), W(x) = 1/(4 cosh^2(x/2)) the Fermi
    window in x = (E - mu)/T. Host NumPy arrays of shape (count,), symmetric, weights normalized to sum 1, the
    middle node exactly x = 0.

    Args:
        count: number of nodes, odd and >= 3 (the middle node is the Fermi level).
        rule: ``"tanh-sinh"`` (robust, for any smooth integrand) or ``"gauss"`` (exact for polynomials of degree
            2 count - 1; for integrands smooth on the scale T). Accuracy: module docstring.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 3 or count % 2 == 0:
        raise ValueError(f"count must be an odd integer >= 3 (the middle node is the Fermi level), got {count!r}.")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}.")
    return _rule(int(count), rule)


def _nodes(nodes):
    """(x, w) as NumPy arrays from an int (tanh-sinh count) or an (x, w) pair, with a node at x = 0 (weight 0 if
    the pair has none) and its index."""
    if isinstance(nodes, (int, np.integer)) and not isinstance(nodes, bool):
        x, w = fermi_quadrature(nodes)
    else:
        try:
            x, w = (np.asarray(a, float) for a in nodes)
        except (TypeError, ValueError):
            raise ValueError("nodes must be an odd node count (int) or a pair (x, w) of 1D arrays, e.g. "
                             f"fermi_quadrature(5, rule='gauss'); got {nodes!r:.60}.") from None
        if x.ndim != 1 or x.shape != w.shape or x.size == 0 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(w))):
            raise ValueError(f"nodes (x, w) must be finite 1D arrays of one length, got shapes {x.shape} and {w.shape}.")
    zero = np.flatnonzero(x == 0)
    if zero.size == 0:
        x, w = np.append(x, 0.0), np.append(w, 0.0)
        zero = [x.size - 1]
    return x, w, int(zero[0])


def thermal_average(fn, mu, temperature, *, nodes=DEFAULT_NODES):
    """int dE (-df/dE) fn(E): ``fn`` averaged over the Fermi window of chemical potential ``mu`` at temperature T.

    Evaluated as sum_k w_k fn(mu + T x_k) with fixed nodes x_k in x = (E - mu)/T (``fermi_quadrature``; module
    docstring for the rules and their accuracy); ``fn`` is called once, ``jax.vmap``-ed over the vector of
    energies. Differentiable in ``mu``, ``temperature`` and anything ``fn`` closes over. At T = 0 it returns
    ``fn(mu)`` exactly (its T-derivative there is 0, the Sommerfeld expansion starting at T^2).

    Args:
        fn: E -> a pytree of arrays (e.g. a conductance), for a scalar float E; pure and vmappable.
        mu: chemical potential (units of t), a scalar; ``vmap`` for a sweep.
        temperature: k_B T in units of t, a scalar >= 0.
        nodes: the quadrature: a node count for the tanh-sinh rule (odd, >= 3; default 41), or a pair (x, w) of
            nodes and weights in x, e.g. ``fermi_quadrature(3, rule="gauss")``.

    Returns:
        The pytree of ``fn``'s output, averaged.

    Raises:
        ValueError: ``mu`` or ``temperature`` not scalars, a concrete temperature that is negative, infinite or
            NaN (traced: equinox.error_if, EquinoxRuntimeError), bad ``nodes``.
    """
    x, w, zero = _nodes(nodes)
    mu = _scalar("mu", _real_array(mu, "mu", required=True))
    temperature = _scalar("temperature", _temperature(temperature))
    dtype = jnp.result_type(mu, temperature)
    energies = mu + temperature * jnp.asarray(x, dtype)
    values = jax.vmap(fn)(energies)
    weights = jnp.asarray(w, dtype)
    cold = temperature == 0

    def average(v):
        return jnp.where(cold, v[zero], jnp.tensordot(weights, v, axes=1))

    return jax.tree.map(average, values)


def thermal_conductance(sample: Sample, model: Model, disorder: Disorder | None, temperature, *,
                        dephasing: Dephasing = "probe", method: Method = "rgf", nodes=DEFAULT_NODES):
    """Linear-response conductance at temperature T, G_T = int dE (-df/dE) G(E) in e^2/h, with the Fermi energy
    ``model.energy`` as the chemical potential mu (:func:`thermal_average` of :func:`conductance` over the
    energy, every other parameter of ``model`` fixed; the leads are at the same E).

    Args:
        sample, model, disorder, dephasing, method: as for :func:`conductance` (``model.tau_phi`` is whatever the
            model holds: pass ``tau_phi_law(temperature, ...)`` into the model for a temperature-dependent
            dephasing).
        temperature: k_B T in units of t, a scalar >= 0 (0: the conductance at E = mu).
        nodes: the quadrature (:func:`thermal_average`). A single sample's G(E) has structure on the scale of its
            Thouless energy (or hbar/tau_phi), so averaging one sample at k_B T above that scale needs many
            nodes; a disorder average is smooth and ``fermi_quadrature(3, rule="gauss")`` suffices there.

    Returns:
        A scalar array, differentiable in ``model`` (a ``Model`` of gradients) and ``temperature``.
    """

    def at(energy):
        return conductance(sample, eqx.tree_at(lambda m: m.energy, model, energy), disorder, dephasing=dephasing,
                           method=method)

    return thermal_average(at, model.energy, temperature, nodes=nodes)


def tau_phi_law(temperature, a, p, *, tau_sat=jnp.inf):
    """Dephasing time of a power law in temperature: 1/tau_phi = 1/tau_sat + a T^p.

    Units: hbar = k_B = 1, T = k_B T in units of t, tau_phi and tau_sat in units of hbar/t; then hbar/tau_phi =
    hbar/tau_sat + a t (k_B T/t)^p, and ``a`` is dimensionless for p = 1 (a = 1: hbar/tau_phi = k_B T, the
    Planckian rate). Electron-electron (Nyquist) dephasing in a 2D film has p = 1 and
    a = ln(pi g)/(2 pi g), g the sheet conductance in e^2/h (Altshuler, Aronov & Khmelnitsky, J. Phys. C 15,
    7367 (1982)); electron-phonon dephasing p = 2-4; tau_sat a saturation (e.g. magnetic impurities).
    At T = 0 (and tau_sat = inf) tau_phi = inf, which ``Model.tau_phi`` reads as coherent.

    Args:
        temperature: T >= 0, any shape (broadcast with the others).
        a: prefactor > 0.
        p: exponent > 0.
        tau_sat: saturation time > 0 (default inf: none).

    Returns:
        tau_phi, differentiable in every argument where it is finite.

    Raises:
        ValueError: a concrete argument outside its range or NaN (traced: equinox.error_if).
    """
    temperature = _temperature(temperature)
    a = _checked("a", a, "finite and > 0", lambda v: (v > 0) & (v < np.inf))
    p = _checked("p", p, "finite and > 0", lambda v: (v > 0) & (v < np.inf))
    tau_sat = _checked("tau_sat", tau_sat, "> 0 (inf: no saturation)", lambda v: v > 0)
    rate = 1 / tau_sat + a * temperature**p
    return 1 / rate
