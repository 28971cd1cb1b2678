"""Analytic weak-localization theory: magnetoconductance formulas, unit conversions and Drude transport.

Every function is a pure ``jax.numpy`` function of arrays: it broadcasts over its arguments (vectorized) and is
differentiable (``jax.grad``, ``jax.jacfwd``) everywhere inside its domain, including zero field, where the
magnetoconductance is quadratic in B. The exception is :func:`lattice_wl_correction`, whose sample size is static
and whose field and L_phi are scalars (``jax.vmap`` it for a sweep). Digamma is ``jax.scipy.special.digamma``.
Conventions follow ``docs/theory.md#conventions`` (formulas and values: ``docs/theory.md#reference-formulas``):

* **Sign.** Every magnetoconductance is Delta sigma(B) = sigma(B) - sigma(0). Weak localization (WL) means
  sigma *rises* with B: Delta sigma > 0. Weak antilocalization (WAL) gives Delta sigma < 0.
* **Units.** Conductances are returned in units of e^2/h (multiply by :data:`CONDUCTANCE_QUANTUM` for siemens):
  sheet conductance (per square) in 2D, conductance in quasi-1D, conductance per metre in 3D. Note
  e^2/(2 pi^2 hbar) = (1/pi) e^2/h.
* **Fields.** The 2D formulas depend only on ratios B_i/B, so any field unit works if B and the characteristic
  fields B_i share it (tesla, or flux quanta per plaquette on a lattice). Formulas that need an absolute length
  scale (quasi-1D, 3D) take fields in tesla and lengths in metres. B_i = hbar/(4 e L_i^2).
* **Spin.** ``hln`` is the total conductivity of spin-1/2 electrons (both spin projections). ``hln_alpha`` has
  a prefactor alpha: +1 orthogonal spin-degenerate, +1/2 spinless lattice model (what a spinless RGF code
  computes), 0 unitary, -1/2 symplectic (strong spin-orbit) or one Dirac cone. ``mccann`` (graphene) takes
  ``spin_degeneracy``: 2 is the published formula, 1 the spinless honeycomb lattice model. ``ilp`` (Rashba plus linear
  and cubic Dresselhaus) is the spin-1/2 total like ``hln``.
* **Lattice units.** With lattice constant a = 1, hbar = 1 and energies in units of the hopping t, a field is a
  flux per plaquette phi = B a^2/(h/e) and B_i/B = a^2/(8 pi phi L_i^2) (:func:`flux_from_length`).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, polygamma

from .checks import nonnegative as _nonnegative, positive as _positive, real_float as _float
from .stats import line_fit

# CODATA 2018 exact SI values.
ELEMENTARY_CHARGE = 1.602176634e-19  # C
PLANCK = 6.62607015e-34  # J s
HBAR = PLANCK / (2 * math.pi)  # J s
CONDUCTANCE_QUANTUM = ELEMENTARY_CHARGE**2 / PLANCK  # e^2/h in siemens (3.874e-5 S)
FLUX_QUANTUM = PLANCK / ELEMENTARY_CHARGE  # h/e in T m^2 (4.136e-15)

# Below u = B/B_i = 1/15 the HLN function is summed from its asymptotic series (cancellation-free, exact zero at
# B = 0); above it from digamma. Both branches agree to < 1e-11 relative at the switch (tests/test_theory.py).
_HLN_SWITCH = 1.0 / 15.0
# f(x) = psi(1/2 + x) - ln x ~ sum_k c_k x^(-2k), c_k = (1 - 2^(1-2k)) B_2k / (2k) (Bernoulli numbers B_2k).
_HLN_SERIES = tuple(
    (1 - 2.0 ** (1 - 2 * k)) * b / (2 * k)
    for k, b in enumerate((1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730), start=1)
)
# Kawabata: g3(u) = sqrt(u) f3(1/u) ~ u^2/48 - 7 u^4/3072 for small u = B/B_phi (derived in docs/theory.md).
_KAWABATA_SWITCH = 1e-3
_KAWABATA_TERMS = 12  # explicit terms of the Hurwitz-zeta Euler-Maclaurin sum


# ---------------------------------------------------------------------------------------------------------
# 2D: Hikami-Larkin-Nagaoka


def _hln_of_ratio(u):
    """f(1/u) for u = |B|/B_i >= 0 (u = 0 gives 0; u = inf gives inf).

    Series branch in u^2 for u < 1/15, digamma branch above; the double ``where`` keeps both branches' gradients
    finite everywhere (the unused branch is evaluated at a safe point).
    """
    small = u < _HLN_SWITCH
    us = jnp.where(small, u, 0.0)
    u2 = us * us
    series = sum(c * u2 ** (k + 1) for k, c in enumerate(_HLN_SERIES))
    x = 1.0 / jnp.where(small, 1.0, u)
    exact = digamma(0.5 + x) - jnp.log(x)
    return jnp.where(small, series, exact)


def hln_function(x):
    """HLN function f(x) = psi(1/2 + x) - ln x for x > 0 (x = B_i/B; x = inf gives 0).

    f > 0 for all x, f(x) ~ 1/(24 x^2) for x >> 1 and ln(1/x) + psi(1/2) for x << 1 (Hikami, Larkin, Nagaoka,
    Prog. Theor. Phys. 63, 707 (1980); docs/theory.md#hln-function). Reference values: f(1) = 0.036490,
    f(0.1) = 0.761966. For x > 15 the asymptotic series is used instead of digamma, which would cancel
    catastrophically against ln x.
    """
    x = _positive("x", _float(x))
    return _hln_of_ratio(1.0 / x)


def _ratio(field, scale):
    return jnp.abs(field) / scale


def hln(field, b_phi, b_so=0.0, b_s=0.0, *, b_e=None):
    """Full Hikami-Larkin-Nagaoka magnetoconductance of spin-1/2 electrons in 2D, in e^2/h (per square).

        Delta sigma(B) = sigma(B) - sigma(0) = -(1/pi) [ f(B1/B) - (3/2) f(B2/B) + (1/2) f(B3/B) ]  (e^2/h)

    with B1 = B_e + B_so + B_s, B2 = B_phi + (4/3) B_so + (2/3) B_s (triplet), B3 = B_phi + 2 B_s (singlet),
    f = :func:`hln_function`; -(1/pi) e^2/h = -e^2/(2 pi^2 hbar). HLN, Prog. Theor. Phys. 63, 707 (1980), in
    the form of Bergmann, Phys. Rep. 107, 1 (1984); docs/theory.md#hln. The f(B1/B) term is ~0 for B << B_e
    and is dropped unless ``b_e`` is given. Total conductivity (both spin projections).

    Limits: B_so = B_s = 0 gives +(1/pi) f(B_phi/B) > 0 (WL, sigma rises with B); B_so -> inf gives
    -(1/2 pi) f(B_phi/B) < 0 (WAL); B_s -> inf gives 0. The factors 4/3 and 2/3 depend on how tau_so and tau_s
    are defined (sum over the three spin components).

    Args:
        field: B, any unit shared with the characteristic fields (tesla, or flux per plaquette); even in B.
        b_phi: phase-coherence field B_phi = hbar/(4 e L_phi^2) > 0.
        b_so: spin-orbit field B_so = hbar/(4 e D tau_so) >= 0.
        b_s: magnetic (spin-flip) scattering field B_s = hbar/(4 e D tau_s) >= 0.
        b_e: elastic field B_e = hbar/(4 e D tau_e) (keyword; None drops the f(B1/B) term).

    Returns:
        Delta sigma in e^2/h, the broadcast shape of the arguments.
    """
    field, b_phi, b_so, b_s = map(_float, (field, b_phi, b_so, b_s))
    b_phi = _positive("b_phi", b_phi)
    b_so = _nonnegative("b_so", b_so)
    b_s = _nonnegative("b_s", b_s)
    b2 = b_phi + (4.0 / 3.0) * b_so + (2.0 / 3.0) * b_s
    b3 = b_phi + 2.0 * b_s
    value = -1.5 * _hln_of_ratio(_ratio(field, b2)) + 0.5 * _hln_of_ratio(_ratio(field, b3))
    if b_e is not None:
        b1 = _positive("b_e", _float(b_e)) + b_so + b_s
        value = value + _hln_of_ratio(_ratio(field, b1))
    return -value / math.pi


def hln_alpha(field, b_phi, alpha):
    """Simplified HLN magnetoconductance with a prefactor alpha, in e^2/h (per square):

        Delta sigma(B) = +alpha (e^2/2 pi^2 hbar) [psi(1/2 + B_phi/B) - ln(B_phi/B)] = (alpha/pi) f(B_phi/B)  (e^2/h)

    docs/theory.md#hln-alpha. **Sign convention:** no leading minus sign, so alpha > 0 is WL (sigma rises with B) and
    alpha < 0 is WAL. alpha = +1: orthogonal, spin-degenerate electrons (total); +1/2: spinless lattice model;
    0: unitary; -1/2: symplectic (strong spin-orbit, total) or a single Dirac cone. The often quoted form
    -alpha e^2/(2 pi^2 hbar)[...] with alpha = 1 has the opposite sign.

    Args:
        field: B (same unit as ``b_phi``); even in B, quadratic at B = 0.
        b_phi: B_phi = hbar/(4 e L_phi^2) > 0.
        alpha: prefactor (dimensionless, any sign).
    """
    field, b_phi, alpha = map(_float, (field, b_phi, alpha))
    b_phi = _positive("b_phi", b_phi)
    return alpha / math.pi * _hln_of_ratio(_ratio(field, b_phi))


def hln_cubic(field, b_phi, b_so):
    """HLN-type closed form for a split triplet (cubic Dresselhaus / D'yakonov-Perel), in e^2/h per square:

        Delta sigma = (1/pi) [ f((B_phi + B_so)/B) + (1/2) f((B_phi + 2 B_so)/B) - (1/2) f(B_phi/B) ]

    Total conductivity of spin-1/2 electrons; the limit of the Iordanskii-Lyanda-Geller-Pikus theory without
    linear-in-k spin-orbit terms (Knap et al., PRB 53, 3912 (1996); docs/theory.md#hln-cubic). Same limits as
    :func:`hln`: +f(B_phi/B)/pi at B_so = 0 (WL), -f(B_phi/B)/(2 pi) for B_so -> inf (WAL).
    """
    field, b_phi, b_so = map(_float, (field, b_phi, b_so))
    b_phi = _positive("b_phi", b_phi)
    b_so = _nonnegative("b_so", b_so)
    value = (
        _hln_of_ratio(_ratio(field, b_phi + b_so))
        + 0.5 * _hln_of_ratio(_ratio(field, b_phi + 2.0 * b_so))
        - 0.5 * _hln_of_ratio(_ratio(field, b_phi))
    )
    return value / math.pi


def mccann(field, b_phi, b_i, b_star, *, spin_degeneracy=2):
    """Weak localization of graphene (McCann et al.), in e^2/h per square:

        Delta sigma(B) = (g_s/2) (1/pi) [ F(B/B_phi) - F(B/(B_phi + 2 B_i)) - 2 F(B/(B_phi + B_i + B_*)) ]  (e^2/h)

    with F(z) = ln z + psi(1/2 + 1/z) = f(1/z), f = :func:`hln_function` (F(z) ~ z^2/24 for z << 1, ln z + psi(1/2)
    for z >> 1). McCann, Kechedzhi, Fal'ko, Suzuura, Ando & Altshuler, PRL 97, 146805 (2006), Eq. (1):
    Delta sigma = (e^2/pi h)[...]; docs/theory.md#mccann. Same sign as the library: WL is Delta sigma > 0.

    **Degeneracy.** The published prefactor e^2/(pi h) is for graphene with spin and valley degeneracy 4 in the
    Drude conductivity; it contains the spin degeneracy g_s = 2 (each F term counts both spin projections), the
    valleys being the Cooperons' own structure. ``spin_degeneracy=2`` (default) is the published formula, for
    measured data; the library's spinless honeycomb model needs ``spin_degeneracy=1``, prefactor e^2/(2 pi h).

    Limits (tests/test_mccann.py): B_i -> inf gives (g_s/2) (1/pi) F(B/B_phi), ordinary WL, equal to
    :func:`hln` at B_so = B_s = 0 for g_s = 2 and to :func:`hln_alpha` with alpha = 1/2 for g_s = 1;
    B_i = B_* = 0 gives -2 times that (WAL of the decoupled Dirac cones); B_i = 0 with B_* -> inf gives 0.

    Args:
        field: B, any unit shared with the characteristic fields (tesla, or flux per plaquette); even in B.
        b_phi: dephasing field B_phi = hbar/(4 e L_phi^2) > 0.
        b_i: intervalley scattering field B_i = hbar/(4 e L_i^2) >= 0.
        b_star: intravalley symmetry-breaking field B_* = hbar/(4 e L_*^2) >= 0 (trigonal warping, intravalley
            scattering that breaks the chirality of a single valley).
        spin_degeneracy: 2 (published, real graphene) or 1 (spinless lattice model); keyword, static.

    Returns:
        Delta sigma in e^2/h, the broadcast shape of the arguments; exactly 0 at B = 0 with finite gradients.
    """
    if isinstance(spin_degeneracy, bool) or spin_degeneracy not in (1, 2):
        raise ValueError(f"spin_degeneracy must be 1 (spinless lattice) or 2 (published formula), got "
                         f"{spin_degeneracy!r}.")
    field, b_phi, b_i, b_star = map(_float, (field, b_phi, b_i, b_star))
    b_phi = _positive("b_phi", b_phi)
    b_i = _nonnegative("b_i", b_i)
    b_star = _nonnegative("b_star", b_star)
    value = (
        _hln_of_ratio(_ratio(field, b_phi))
        - _hln_of_ratio(_ratio(field, b_phi + 2.0 * b_i))
        - 2.0 * _hln_of_ratio(_ratio(field, b_phi + b_i + b_star))
    )
    return spin_degeneracy / (2.0 * math.pi) * value


def warping_length(energy, mean_free_path, *, hopping=1.0):
    """Intravalley symmetry-breaking length L_* of graphene's trigonal warping, in units of the lattice constant
    a (the honeycomb model of this library: nearest-neighbour hopping t, C-C distance a/sqrt(3)):

        L_* = sqrt(12) l / (k_F l * k_F a),      k_F a = 2 E / (sqrt(3) t)

    Near a valley the band is E(k, theta) = hbar v k - eps_w cos 3 theta with hbar v = sqrt(3) t a / 2 and
    eps_w = t a^2 k^2 / 8, so eps_w / E = k_F a / (4 sqrt(3)) (tests/test_mccann.py checks this against the exact
    nearest-neighbour band). McCann et al. (PRL 97, 146805 (2006)) give the warping rate 1/tau_w = 2 tau
    (eps_w / hbar)^2; with D = v l / 2 and tau_* = tau_w, L_*^2 = D tau_w = (l^2 / 2) tau_w / tau, which is the
    formula above. An estimate for designing and reading simulations (docs/physics.md#graphene-warping):
    antilocalization needs the Cooperon's cutoff (L_phi, or the coherent sample) below L_*.

    Args:
        energy: Fermi energy E measured from the Dirac point, in units of t (|E| << t).
        mean_free_path: transport mean free path l in units of a (from sigma = k_F l e^2/h for the spinless
            two-valley model).
        hopping: t (default 1).

    Returns:
        L_* in units of a; ``flux_from_length(L_*)`` is B_* in flux per a^2.
    """
    energy = _positive("|energy|", jnp.abs(_float(energy)))
    ell = _positive("mean_free_path", _float(mean_free_path))
    k_f = 2.0 * energy / (math.sqrt(3.0) * _positive("hopping", _float(hopping)))
    return math.sqrt(12.0) * ell / (k_f * ell * k_f)


# ---------------------------------------------------------------------------------------------------------
# Quasi-1D wires


def coherent_wire_function(x):
    """F(x) = coth(x)/x - 1/x^2 = sum_{n>=1} 2/(n^2 pi^2 + x^2), for x >= 0.

    The Cooperon of a wire of length L between ideal leads (absorbing boundaries) with x = L/L_e gives
    delta g = -F(x) (spinless, e^2/h); F(0) = 1/3 (the random-matrix value) and F(x) ~ 1/x - 1/x^2 for
    x >> 1 (the long-wire limit). docs/theory.md#wire; table F(1) = 0.3130, F(10) = 0.0900. Below x = 0.1
    the series 1/3 - x^2/45 + 2 x^4/945 - x^6/4725 is used (cancellation-free, exact gradient at 0).
    """
    x = _nonnegative("x", _float(x))
    small = x < 0.1
    xs = jnp.where(small, x, 0.0) ** 2
    series = 1.0 / 3.0 - xs / 45.0 + 2.0 * xs**2 / 945.0 - xs**3 / 4725.0
    xl = jnp.where(small, 1.0, x)
    # coth(x)/x without overflow: coth(x) = 1 + 2/(e^{2x} - 1).
    exact = (1.0 + 2.0 / jnp.expm1(2.0 * xl)) / xl - 1.0 / xl**2
    return jnp.where(small, series, exact)


def magnetic_length(field):
    """Magnetic length l_m = sqrt(hbar/(e |B|)) in metres for B in tesla (inf at B = 0). On a lattice with flux
    phi per plaquette (a = 1), l_m = 1/sqrt(2 pi phi)."""
    field = _float(field)
    return jnp.sqrt(HBAR / (ELEMENTARY_CHARGE * jnp.abs(field)))


_WIRE_BOUNDARIES = {"specular": (9.5, 24.0 / 5.0), "diffuse": (4.0 * math.pi, 3.0)}


def wire_field_length(field, width, *, mean_free_path=None, boundary="dirty"):
    """Magnetic dephasing length L_B of a quasi-1D wire (metres), for B in tesla and lengths in metres.

    ``boundary="dirty"`` (l << W): L_B = sqrt(3) l_m^2 / W (Altshuler & Aronov, JETP Lett. 33, 499 (1981);
    Beenakker & van Houten, PRB 38, 3232 (1988)). With flux cancellation in a clean channel (l >> W),
    L_B^2 = C1 l_m^4 l / W^3 + C2 l_m^2 l^2 / W^2 with (C1, C2) = (9.5, 24/5) for ``"specular"`` walls (hard-wall
    lattice strips are close to this) and (4 pi, 3) for ``"diffuse"`` walls (Beenakker & van Houten 1988;
    docs/theory.md#flux-cancellation, moderate confidence). L_B = inf at B = 0.
    """
    field, width = _float(field), _positive("width", _float(width))
    lm2 = HBAR / (ELEMENTARY_CHARGE * jnp.abs(field))
    if boundary == "dirty":
        return math.sqrt(3.0) * lm2 / width
    if boundary not in _WIRE_BOUNDARIES:
        raise ValueError(f"boundary must be one of ('dirty', 'specular', 'diffuse'), got {boundary!r}.")
    if mean_free_path is None:
        raise ValueError(f"boundary={boundary!r} (flux cancellation) needs mean_free_path.")
    ell = _positive("mean_free_path", _float(mean_free_path))
    c1, c2 = _WIRE_BOUNDARIES[boundary]
    return jnp.sqrt(c1 * lm2**2 * ell / width**3 + c2 * lm2 * ell**2 / width**2)


_SPINS = ("spinless", "spin-orbit")


def wire_correction(length, l_phi, *, l_field=jnp.inf, l_so=jnp.inf, spin="spinless"):
    """Weak-localization correction delta g (e^2/h) of a diffusive wire of length L between ideal leads.

    With 1/L_e^2 = 1/L_phi^2 + 1/L_B^2 and F = :func:`coherent_wire_function` (docs/theory.md#wire):

    * ``spin="spinless"`` (one orbital per site, beta = 1): delta g = -F(L/L_e).
    * ``spin="spin-orbit"`` (spin-1/2 total g): delta g = -2 [ (3/2) F(x_t) - (1/2) F(x_s) ] with
      x_s = L/L_e (singlet) and x_t = L sqrt(1/L_e^2 + 1/L_so^2) (triplet). L_so = inf gives twice the spinless
      value (spin-degenerate WL, -(2/3) at L_e = inf); L_so -> 0 gives +F(x_s) (WAL, +1/3 at L_e = inf).

    F(x) ~ 1/x for L >> L_e reproduces the long-wire result delta g = -(L_e/L) (spinless; Altshuler-Aronov).
    Leading order in 1/g and l/L. Lengths in any common unit; ``l_field`` = L_B (inf: no field).
    """
    if spin not in _SPINS:
        raise ValueError(f"spin must be one of {_SPINS}, got {spin!r}.")
    length = _positive("length", _float(length))
    l_phi = _positive("l_phi", _float(l_phi))
    l_field = _positive("l_field", _float(l_field))
    inv_le2 = 1.0 / l_phi**2 + 1.0 / l_field**2
    x_s = length * jnp.sqrt(inv_le2)
    if spin == "spinless":
        return -coherent_wire_function(x_s)
    l_so = _positive("l_so", _float(l_so))
    x_t = length * jnp.sqrt(inv_le2 + 1.0 / l_so**2)
    return -3.0 * coherent_wire_function(x_t) + coherent_wire_function(x_s)


def wire_magnetoconductance(field, length, width, l_phi, *, l_so=jnp.inf, spin="spinless", mean_free_path=None,
                            boundary="dirty"):
    """Magnetoconductance Delta g(B) = g(B) - g(0) (e^2/h) of a quasi-1D wire, B in tesla, lengths in metres.

    :func:`wire_correction` at L_B = :func:`wire_field_length` (``boundary``, ``mean_free_path``) minus its value
    at B = 0. Positive for WL. Flux cancellation (docs/theory.md#flux-cancellation): narrow clean strips need
    ``boundary="specular"``.
    """
    l_field = wire_field_length(field, width, mean_free_path=mean_free_path, boundary=boundary)
    kw = dict(l_so=l_so, spin=spin)
    return wire_correction(length, l_phi, l_field=l_field, **kw) - wire_correction(length, l_phi, **kw)


# ---------------------------------------------------------------------------------------------------------
# Finite 2D and 3D samples: the one-loop correction from the lattice Cooperon


DIFFUSIVE_CUTOFF = math.sqrt(3) / 2
"""l_c / l for the ``cutoff`` of :func:`lattice_wl_correction`: the Pauli-Villars cutoff that matches the small-q
expansion of the 2D ballistic kernel P^3/(1 - P), 2/(q l)^2 - 3/2. In 2D the mean free path follows from the lead
extrapolation length, l = 4 z0 / pi (z0 = sigma W / 2N): :func:`diffusive_cutoff`."""


def diffusive_cutoff(extrapolation):
    """The ``cutoff`` l_c of :func:`lattice_wl_correction` for a 2D sample whose leads absorb the Cooperon
    ``extrapolation`` z0 beyond the interfaces: l = 4 z0 / pi (the 2D Milne length z0 = pi l / 4, which also
    reproduces the Sharvin resistance, z0 = sigma W / 2N), l_c = DIFFUSIVE_CUTOFF * l (lattice constants)."""
    return DIFFUSIVE_CUTOFF * 4.0 * _float(extrapolation) / math.pi


def lattice_wl_correction(length: int, width: int, *, height: int | None = None, flux=0.0, l_phi=jnp.inf,
                          periodic: bool = False, extrapolation=0.5, cutoff=None):
    """One-loop weak-localization correction delta G (e^2/h, one spinless orthogonal species) of a two-terminal
    ``length`` x ``width`` sample between ideal leads, from the Cooperon of the sample's own geometry.

    delta G = -(2/L^2) Tr C,   C = [-Lap_2e + 1/L_phi^2]^(-1),

    with Lap_2e the nearest-neighbour Laplacian of the L x W square lattice (lattice constant 1) carrying the
    Peierls phases of charge 2e in ``flux`` flux quanta h/e per plaquette (Landau gauge; the trace is gauge
    invariant), absorbing (Dirichlet) at the two lead interfaces and reflecting (Neumann: hard walls) or periodic
    across the width. The normalization is fixed by the quasi-1D limit: W = 1 gives exactly -(1 + 2/L)/3, and a
    square at zero field grows as -(1/pi) ln L. A field whose magnetic length l_B is below L_phi and L reproduces
    HLN (:func:`hln_alpha` with alpha = 1/2) in the bulk.

    ``extrapolation`` z0 (lattice constants) places the zero of C a distance z0 beyond each lead interface (the
    Milne extrapolation length of a diffusive sample against an ideal lead; a Robin condition on the end slices,
    exact for the longitudinal Laplacian). The default 1/2 is a Dirichlet condition on the first lead slice. The
    z0 that reproduces the Sharvin resistance, 1/N = 2 z0 / (sigma W), is z0 = sigma W / (2N) (~ pi l / 4 in 2D).
    The trace runs over the sample only, and the normalization 1/L^2 makes delta G the correction to the
    contact-corrected conductance 1/(1/G - 1/N) (delta sigma = (L/W) delta G; for a square they are equal).

    What it predicts: the dependence on L, W, flux and L_phi, the finite-size crossovers included (a square with
    L ~ pi l_B is not yet in the ln L regime). What it does not: the absolute level, whose ultraviolet cutoff is
    the lattice constant instead of the mean free path l. Compare differences (between sizes or fields) of
    samples with l << l_B, L_phi, L.

    ``cutoff`` l_c (lattice constants; default none: the lattice constant) removes the modes that are not
    diffusive, q >~ 1/l, with a Pauli-Villars subtraction, C -> C - [-Lap_2e + 1/L_phi^2 + 1/l_c^2]^(-1). Near a
    lead with z0 ~ l the unregularized Cooperon keeps modes between 1/l and 1/a that do not exist in the sample,
    and its approach to the ln L regime is too slow. l_c = (sqrt(3)/2) l (:data:`DIFFUSIVE_CUTOFF`,
    :func:`diffusive_cutoff`) matches the small-q expansion of the 2D ballistic kernel P^3/(1 - P),
    P = (1 + (q l)^2)^(-1/2): 2/(q l)^2 - 3/2. Differences between sizes much larger than l_c, and the whole
    ln L_phi and field dependence for l_B, L_phi >> l_c, do not depend on it. Differentiable in ``cutoff`` too.

    ``height`` H turns the sample into a 3D bar with a W x H cross-section (the cubic lattice of
    :func:`difftransport.bar`; the field along z, ``periodic`` closing both transverse directions). The same
    normalization holds, delta sigma = (L / W H) delta G, and the bulk gives the mass-regularized 3D result
    delta sigma = const + 1/(2 pi L_phi) (e^2/h, spinless), the L_phi term of Kawabata's formula; the
    sharp-cutoff estimate (1/pi^2)(1/l - 1/L_phi) of docs/theory.md#wl-dimensions is pi/2 smaller.

    ``length``, ``width`` and ``height`` are static integers (sites); cost O(L (W H)^3). Differentiable in
    ``flux``, ``l_phi`` and ``extrapolation``.
    """
    if cutoff is not None:
        lc = _positive("cutoff", _float(cutoff))
        if lc.ndim:
            raise ValueError("cutoff must be a scalar.")
        heavy = 1.0 / (1.0 / _positive("l_phi", _float(l_phi)) ** 2 + 1.0 / lc**2) ** 0.5
        kw = dict(height=height, flux=flux, periodic=periodic, extrapolation=extrapolation)
        return lattice_wl_correction(length, width, l_phi=l_phi, **kw) - lattice_wl_correction(
            length, width, l_phi=heavy, **kw)
    dims = (length, width, 1 if height is None else height)
    if any(int(d) != d or d < 1 for d in dims):
        raise ValueError(f"length, width and height must be positive integers (sites), got {dims!r}.")
    if periodic and 2 in dims[1:]:
        raise ValueError(f"a periodic cross-section needs width and height >= 3 (or 1), got {dims[1:]!r}.")
    length, width, height = (int(d) for d in dims)
    flux = _float(flux)
    mass = 1.0 / _positive("l_phi", _float(l_phi)) ** 2
    if flux.ndim or mass.ndim:
        raise ValueError("flux and l_phi must be scalars: vmap lattice_wl_correction for a sweep.")
    z0 = _positive("extrapolation", _float(extrapolation))
    if z0.ndim:
        raise ValueError("extrapolation must be a scalar.")
    return _cooperon_trace(length, width, height, periodic, flux, mass, z0)


def wl_dephasing_slope(length: int, width: int, *, diffusion, tau_phi, flux=0.0, extrapolation=0.5, cutoff=None,
                       periodic: bool = False):
    """d delta G / d ln tau_phi of :func:`lattice_wl_correction` (e^2/h, spinless orthogonal, one loop) with
    L_phi = sqrt(diffusion tau_phi): the Cooperon's part of the dephasing slope of a two-terminal sample, the
    comparator of :func:`difftransport.scaling` ``dephasing_slopes`` (contact-corrected conductances). In the
    bulk (L >> L_phi >> l) it is -1/(2 pi) at zero field and -(1/2 pi) x psi'(1/2 + x), x = 1/(8 pi L_phi^2
    flux), in a field, so the zero-field slope minus the slope in a field is -(1/2 pi)[1 - x psi'(1/2 + x)]."""
    def correction(log_tau):
        l_phi = jnp.sqrt(_positive("diffusion", _float(diffusion)) * jnp.exp(log_tau))
        return lattice_wl_correction(length, width, flux=flux, l_phi=l_phi, extrapolation=extrapolation,
                                     cutoff=cutoff, periodic=periodic)

    return jax.grad(correction)(jnp.log(_positive("tau_phi", _float(tau_phi))))


def cooperon_slope_fraction(l_phi, flux):
    """1 - x psi'(1/2 + x), x = 1/(8 pi L_phi^2 flux): the fraction of the bulk 2D Cooperon's dependence on
    ln L_phi (or ln tau_phi) that a field of ``flux`` flux quanta per plaquette removes (lengths in lattice
    constants). The one-loop correction in a field, -(1/2 pi)[psi(1/2 + B_tr/B) - psi(1/2 + B_phi/B)] with
    B_phi/B = x, has d/d ln tau_phi = -(1/2 pi) x psi'(1/2 + x): -1/(2 pi) at zero field (x -> infinity) and
    -> 0 as B >> B_phi. So slope(0) - slope(B) = -(1/2 pi) times this fraction, which tends to 1 for
    L_phi >> l_B and is 0.84 at L_phi = 15, flux = 0.005. Differentiable. docs/physics.md#beta-function."""
    x = 1.0 / (8 * jnp.pi * _positive("l_phi", _float(l_phi)) ** 2 * _positive("flux", _float(flux)))
    return 1.0 - x * polygamma(1, 0.5 + x)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _cooperon_trace(length, width, height, periodic, flux, mass, z0):
    """-(2/L^2) Tr of the inverse lattice Cooperon operator (block-tridiagonal in slices, O(L (W H)^3)): the degree
    plus the lattice Hamiltonian of :func:`difftransport.bar` with hopping 1 and charge 2e (flux 2 phi, the
    library's gauge: phases on the x bonds). A periodic y seam also carries exp(2 pi i (2 phi) W x), so that its
    plaquettes hold the same flux as the others (trivial when 2 phi W is an integer, as the library's samples need)."""
    from .build import _bond_values
    from .hamiltonian import scatter_bonds
    from .lattice import Sample, bar
    from .model import Model

    lat = bar(width, height, boundary="periodic" if periodic else "hardwall")
    sample, model = Sample(lat, length), Model(energy=0.0, flux=2 * flux)
    bonds = np.asarray(lat.intra_bonds, int).reshape(-1, 2)
    y = lat.position_array()[:, 1]
    seam = np.round((y[bonds[:, 0]] + np.asarray(lat.intra_vectors).reshape(-1, 3)[:, 1] - y[bonds[:, 1]]) / width)
    intra = _bond_values(model, sample, lat.intra_bonds, lat.intra_vectors)
    hop = _bond_values(model, sample, lat.inter_bonds, lat.inter_vectors)[:, 0, 0]  # H[x+1, x], site-diagonal
    # number of transverse neighbours (Neumann walls) plus the two longitudinal ones (Dirichlet at the leads)
    degree = 2.0 + np.bincount(bonds.ravel(), minlength=lat.sites)

    # Robin ends: C vanishes z0 beyond the lead interface (half a site outside the end slice), so the ghost site
    # outside carries C_end (d - 1)/d with d = z0 + 1/2; z0 = 1/2 is Dirichlet on the first lead slice.
    end = 1.0 - 1.0 / (z0 + 0.5)

    def block(x):
        twist = jnp.exp(2j * jnp.pi * (2 * flux) * width * seam * x)[:, None, None]
        ends = end * ((x == 0).astype(float) + (x == length - 1).astype(float))
        return jnp.diag(degree + mass - ends).astype(complex) + scatter_bonds(intra * twist, lat.intra_bonds, lat.sites)

    blocks = jax.vmap(block)(jnp.arange(length, dtype=float))

    def sweep(u, w):  # self-energy u g w of the part already eliminated, for the next slice
        def step(sigma, a):
            g = jnp.linalg.inv(a - sigma)
            return u[:, None] * g * w[None, :], sigma
        return step

    zero = jnp.zeros((width * height, width * height), complex)
    _, sigma_l = jax.lax.scan(sweep(hop, jnp.conj(hop)), zero, blocks)
    _, sigma_r = jax.lax.scan(sweep(jnp.conj(hop), hop), zero, blocks, reverse=True)
    diag = jnp.linalg.inv(blocks - sigma_l - sigma_r)
    trace = jnp.sum(jnp.real(jnp.trace(diag, axis1=1, axis2=2)))
    return -2.0 * trace / length**2


# ---------------------------------------------------------------------------------------------------------
# 3D: Kawabata


def _kawabata_direct(delta):
    """f3(delta) = -2 sqrt(delta) - zeta(1/2, 1/2 + delta), written to avoid cancelling the large square roots."""
    a = 0.5 + delta
    n = jnp.arange(_KAWABATA_TERMS, dtype=delta.dtype)
    b = a + _KAWABATA_TERMS
    # -2 sqrt(delta) + 2 sqrt(b) = 2 (b - delta)/(sqrt(b) + sqrt(delta)) = (2 N + 1)/(sqrt(b) + sqrt(delta))
    lead = (2 * _KAWABATA_TERMS + 1) / (jnp.sqrt(b) + jnp.sqrt(delta))
    head = jnp.sum((a[..., None] + n) ** -0.5, axis=-1)
    return lead - head - 0.5 * b**-0.5 - b**-1.5 / 24 + b**-3.5 / 384 - b**-5.5 / 1024


def kawabata_function(delta):
    """Kawabata's function f3(delta) = sum_{n>=0} [2 (sqrt(n + 1 + delta) - sqrt(n + delta)) - 1/sqrt(n + 1/2 + delta)].

    Summed in closed form as f3 = -2 sqrt(delta) - zeta(1/2, 1/2 + delta) (Hurwitz zeta, Euler-Maclaurin), so
    f3(0) = (1 - sqrt 2) zeta(1/2) = 0.604899 (docs/theory.md#kawabata: 0.605). f3(delta) ~ delta^(-3/2)/48 for
    delta >> 1. Kawabata, Solid State Commun. 34, 431 (1980).
    """
    delta = _nonnegative("delta", _float(delta))
    big = delta > 1.0 / _KAWABATA_SWITCH
    d = jnp.where(big, 1.0, delta)
    db = jnp.where(big, delta, 1.0)
    series = db**-1.5 / 48 - 7 * db**-3.5 / 3072
    return jnp.where(big, series, _kawabata_direct(d))


def kawabata(field, b_phi, alpha=1.0):
    """3D weak-localization magnetoconductivity (Kawabata, Solid State Commun. 34, 431 (1980)), in e^2/h per
    metre (multiply by :data:`CONDUCTANCE_QUANTUM` for S/m):

        Delta sigma(B) = alpha (e^2/2 pi^2 hbar) sqrt(e|B|/hbar) f3(B_phi/|B|) = (alpha/pi) sqrt(e|B|/hbar) f3  (e^2/h)

    docs/theory.md#kawabata. alpha = 1: spin-degenerate orthogonal (WL, sigma rises with B); -1/2: symplectic.
    B and B_phi in tesla. Quadratic at small field: (alpha/pi) sqrt(e B_phi/hbar) (B/B_phi)^2/48.
    """
    field, b_phi, alpha = map(_float, (field, b_phi, alpha))
    b_phi = _positive("b_phi", b_phi)
    u = jnp.abs(field) / b_phi  # B / B_phi
    small = u < _KAWABATA_SWITCH
    us = jnp.where(small, u, 0.0)
    series = us**2 / 48 - 7 * us**4 / 3072  # sqrt(u) f3(1/u)
    ul = jnp.where(small, 1.0, u)
    direct = jnp.sqrt(ul) * kawabata_function(1.0 / ul)
    g3 = jnp.where(small, series, direct)
    return alpha / math.pi * jnp.sqrt(ELEMENTARY_CHARGE * b_phi / HBAR) * g3


# ---------------------------------------------------------------------------------------------------------
# Units: lattice <-> SI, characteristic fields and lengths


def field_from_flux(flux, lattice_constant):
    """B (tesla) of a flux ``flux`` per plaquette (flux quanta h/e) on a lattice of constant a (metres):
    B = phi h/(e a^2). E.g. phi = 0.001 at a = 5 nm is 0.165 T."""
    return _float(flux) * FLUX_QUANTUM / _positive("lattice_constant", _float(lattice_constant)) ** 2


def flux_from_field(field, lattice_constant):
    """Flux per plaquette phi = B a^2/(h/e) (flux quanta h/e) of a field B (tesla), a in metres."""
    return _float(field) * _positive("lattice_constant", _float(lattice_constant)) ** 2 / FLUX_QUANTUM


def field_from_length(length):
    """Characteristic field B_x = hbar/(4 e L_x^2) in tesla of a length L_x in metres (e.g. B_phi of L_phi)."""
    return HBAR / (4 * ELEMENTARY_CHARGE * _positive("length", _float(length)) ** 2)


def length_from_field(field):
    """Inverse of :func:`field_from_length`: L = sqrt(hbar/(4 e B)) in metres for B in tesla."""
    return jnp.sqrt(HBAR / (4 * ELEMENTARY_CHARGE * _positive("field", _float(field))))


def flux_from_length(length):
    """Characteristic field in lattice units: B_x as flux per plaquette, phi_x = a^2/(8 pi L_x^2), for L_x in
    lattice constants (docs/theory.md#lattice-units: B_phi/B = a^2/(8 pi phi L_phi^2))."""
    return 1.0 / (8 * math.pi * _positive("length", _float(length)) ** 2)


def length_from_flux(flux):
    """Inverse of :func:`flux_from_length`: L_x = 1/sqrt(8 pi phi_x) in lattice constants."""
    return 1.0 / jnp.sqrt(8 * math.pi * _positive("flux", _float(flux)))


def coherence_length(diffusion, tau_phi):
    """L_phi = sqrt(D tau_phi) (any consistent units; lattice: D in a^2 t/hbar, tau_phi in hbar/t, L in a).

    On the lattice, ``Model(tau_phi=...)`` adds the absorption -i hbar/(2 tau_phi) on every site
    (docs/physics.md#dephasing), so the Cooperon decays at the rate 1/tau_phi."""
    return jnp.sqrt(_positive("diffusion", _float(diffusion)) * _positive("tau_phi", _float(tau_phi)))


def diffusion_constant(conductivity, density_of_states):
    """Einstein relation sigma = e^2 rho D in lattice units: D = sigma/(2 pi rho).

    Args:
        conductivity: sheet conductance sigma in e^2/h, summed over all orbitals (as ``conductance`` returns it).
        density_of_states: rho per site and unit energy (1/t), summed over the same orbitals.

    Returns:
        D in a^2 t/hbar (hbar = a = t = 1). Derivation: e^2/h = e^2/(2 pi hbar), so sigma/(e^2/h) = 2 pi hbar rho D.
        Check: 2D free electrons, rho = m/(2 pi hbar^2), D = v_F l/2 give sigma = (e^2/h) k_F l/2.
    """
    return _float(conductivity) / (2 * math.pi * _positive("density_of_states", _float(density_of_states)))


def drude_conductivity(fermi_wavevector, mean_free_path, *, degeneracy=1):
    """2D Drude (Boltzmann) sheet conductance sigma = g (e^2/h) k_F l/2 in e^2/h, with g = ``degeneracy`` (1 for
    spinless, 2 for spin-degenerate electrons). Same as :func:`diffusion_constant` with rho = g m/(2 pi hbar^2)."""
    return degeneracy * _float(fermi_wavevector) * _float(mean_free_path) / 2


def transport_field(mobility, density, *, degeneracy=2):
    """Transport field B_tr = hbar/(2 e l^2) in tesla of a 2D electron gas, above which the diffusive
    magnetoconductance formulas fail (B_tr = hbar/(4 e D tau) with D = v_F l/2: the field whose magnetic length
    is l/sqrt(2)).

    Args:
        mobility: mu in m^2/(V s) (1 cm^2/(V s) = 1e-4 m^2/(V s)).
        density: sheet density n in m^-2 (1e12 cm^-2 = 1e16 m^-2).
        degeneracy: spin (x valley) degeneracy g of the Fermi surface: k_F = sqrt(4 pi n/g) (2 for a spin-degenerate
            2DEG, 4 for graphene).

    The mean free path is l = hbar k_F mu/e (Drude, sigma = n e mu = g (e^2/h) k_F l/2)."""
    k_f = jnp.sqrt(4 * math.pi * _positive("density", _float(density)) / degeneracy)
    ell = HBAR * k_f * _positive("mobility", _float(mobility)) / ELEMENTARY_CHARGE
    return HBAR / (2 * ELEMENTARY_CHARGE * ell**2)


def mean_free_path(diffusion, fermi_velocity, *, dimension=2):
    """Transport mean free path l = d D/v_F in ``dimension`` d (D = v_F l/d)."""
    if dimension not in (1, 2, 3):
        raise ValueError(f"dimension must be 1, 2 or 3, got {dimension!r}.")
    return dimension * _float(diffusion) / _positive("fermi_velocity", _float(fermi_velocity))


def ohmic_fit(length, conductance, width, *, weights=None):
    """Drude sheet conductance from the length dependence of the mean conductance (Ohm's law with contacts):

        1/G = R_c + L/(sigma W)

    a weighted straight-line fit of 1/G against L (``stats.line_fit``: closed form, differentiable). Use it where
    the one-loop WL correction vanishes (broken time-reversal symmetry, unitary class) and l << L << localization length.

    Args:
        length: sample lengths L (lattice constants), shape (n,), n >= 2 distinct values.
        conductance: mean conductances <G> in e^2/h, shape (n,).
        width: sample width W (lattice constants).
        weights: optional weights of the points in 1/G (e.g. 1/var(1/G)); default equal.

    Returns:
        (sigma, contact_resistance): sigma in e^2/h per square, R_c in h/e^2.
    """
    length, conductance = _float(length), _float(conductance)
    if length.ndim != 1 or length.shape != conductance.shape or length.shape[0] < 2:
        raise ValueError(
            f"length and conductance must be 1D arrays of the same length >= 2, got {length.shape} and "
            f"{conductance.shape}."
        )
    fit = line_fit(length, 1.0 / conductance, None if weights is None else _float(weights))
    return 1.0 / (fit.slope * _float(width)), fit.intercept


def intrinsic_conductance(conductance, channels):
    """Conductance with the contact (Sharvin) resistance of ideal leads removed, in e^2/h:

        G_int = 1 / (1/G - 1/N),  N the open channels of the leads (all spin projections)

    (multiply by L/W for the sheet conductance). NaN where G >= N (1 - 1e-9): a ballistic sample has no intrinsic
    resistance to resolve. Gradients stay finite (double ``where``)."""
    g, n = _float(conductance), _float(channels)
    ok = g < n * (1 - 1e-9)
    return jnp.where(ok, 1.0 / (1.0 / jnp.where(ok, g, 0.5) - 1.0 / jnp.where(ok, n, 1.0)), jnp.nan)


def _ellipk(m):
    """Complete elliptic integral K(m) = pi / (2 AGM(1, sqrt(1 - m))) for 0 <= m <= 1 (parameter m = k^2;
    K(1) = inf)."""
    a, b = jnp.ones_like(m), jnp.sqrt(1.0 - m)
    for _ in range(10):  # quadratic convergence: 10 steps reach double precision down to sqrt(1 - m) = 1e-16
        a, b = 0.5 * (a + b), jnp.sqrt(a * b)
    return jnp.where(m < 1.0, math.pi / (2 * a), jnp.inf)


def square_lattice_dos(energy, hopping=1.0):
    """Density of states per site (spinless) of the clean square lattice, in 1/energy:

        rho(E) = K(1 - E^2/(16 t^2)) / (2 pi^2 t)  for |E| < 4t, 0 outside

    (K: complete elliptic integral of the first kind, parameter m = k^2; Economou, Green's Functions in Quantum
    Physics, ch. 5). Normalized to 1 over the band; logarithmic van Hove singularity at E = 0 (returns inf there).
    """
    energy, t = _float(energy), jnp.abs(_float(hopping))
    inside = jnp.abs(energy) < 4 * t
    m = 1.0 - (jnp.where(inside, energy, 0.0) / (4 * t)) ** 2
    return jnp.where(inside, _ellipk(jnp.where(inside, m, 0.5)) / (2 * math.pi**2 * t), 0.0)


def density_of_states(eigenvalues, energy, *, broadening, sites):
    """DOS per site at ``energy`` from the eigenvalues of closed samples, with a Gaussian kernel:

        rho(E) = sum_i exp(-(E - e_i)^2/(2 s^2)) / (sqrt(2 pi) s) / sites

    ``eigenvalues`` may be stacked over realizations (any shape); ``sites`` is the total number of sites over which
    they were collected (realizations x sites per sample, times orbitals if the DOS per orbital is wanted).
    ``broadening`` s should exceed the level spacing and stay below the scale on which rho varies.
    """
    ev = _float(eigenvalues).reshape(-1)
    s = _positive("broadening", _float(broadening))
    energy = _float(energy)
    weights = jnp.exp(-((energy[..., None] - ev) ** 2) / (2 * s**2))
    return jnp.sum(weights, axis=-1) / (math.sqrt(2 * math.pi) * s) / sites


# ---------------------------------------------------------------------------------------------------------
# 2D: Iordanskii-Lyanda-Geller-Pikus (linear Rashba, linear and cubic Dresselhaus)
#
# The triplet Cooperon in a field, in field units (every rate 1/tau_x as B_x = hbar/(4 e D tau_x)), is
#     H = B (n + 1/2) + B_phi + (B_r + B_d1 + B_d3)(Sx^2 + Sy^2) - 2 sqrt(B_r B_d1){Sx, Sy}
#         + sqrt(B) [a^dag (-i sqrt(B_r) S- + sqrt(B_d1) S+) + h.c.]
# (S the pair's spin 1, a the Landau ladder of charge 2e; docs/theory.md#ilp). The phases exp(i pi (m - n)/4) on
# the (n, m) basis make it real: hopping n -> n+1 sqrt(n+1) sqrt(B)(sqrt(B_r) S- + sqrt(B_d1) S+), cross term
# +sqrt(B_r B_d1)(S+^2 + S-^2). A diagonal similarity transform by B_r^((n-m)/4) B_d1^((n+m)/4) then leaves
# Tr H^-1 unchanged and makes every entry a polynomial in (B_r, B_d1) (hopping up B_r S- + B_d1 S+, down S+ + S-,
# cross term B_d1 S+^2 + B_r S-^2): no square roots, so the derivatives at B_r = 0 or B_d1 = 0 are exact.

_SQ2 = math.sqrt(2.0)
_S_PLUS = np.array([[0.0, _SQ2, 0.0], [0.0, 0.0, _SQ2], [0.0, 0.0, 0.0]])  # spin 1, basis m = +1, 0, -1
_S_MINUS = _S_PLUS.T.copy()
_S_PERP2 = np.diag([1.0, 2.0, 1.0])  # Sx^2 + Sy^2
_ILP_UP = _S_PLUS + _S_MINUS  # hopping n+1 -> n in the polynomial basis (Rashba and Dresselhaus parts)
# Fields with (B_r + B_d1)/|B| above levels/_ILP_RESOLUTION cannot be resolved: 16 exact levels per unit of
# (B_r + B_d1)/|B| put the tail fit where its series converges (error < 3e-9 at the limit, < 1e-12 at twice it;
# tests/test_ilp.py). The tail series c_k/(n + 1/2)^k, k = 3..12, is fitted to the last 2/3 of the exact levels.
_ILP_RESOLUTION = 16.0
_ILP_MARGIN = 24  # extra levels above the last summed one: the truncation's effect decays within a few levels
_ILP_TAIL_ORDERS = 10
_ILP_TAIL_START = 0.33
_ILP_TAIL_POINTS = 64
_ILP_DECIMATIONS = 18  # doublings of the angular-harmonic chain: 2^18 harmonics, converged for B_phi/B_so > 1e-7
_ILP_GAUSS = 10
_ILP_MIN_LEVELS = 256


def _mm3(a, b):
    """Batched 3x3 product (einsum: faster than broadcast-and-sum or a written-out product under jit, grad and
    jacfwd together, and quicker to compile)."""
    return jnp.einsum("...ij,...jk->...ik", a, b)


def _inv3(a):
    """Inverse of a batch of general 3x3 matrices by cofactors (..., 3, 3)."""
    a00, a01, a02 = a[..., 0, 0], a[..., 0, 1], a[..., 0, 2]
    a10, a11, a12 = a[..., 1, 0], a[..., 1, 1], a[..., 1, 2]
    a20, a21, a22 = a[..., 2, 0], a[..., 2, 1], a[..., 2, 2]
    rows = (
        (a11 * a22 - a12 * a21, a02 * a21 - a01 * a22, a01 * a12 - a02 * a11),
        (a12 * a20 - a10 * a22, a00 * a22 - a02 * a20, a02 * a10 - a00 * a12),
        (a10 * a21 - a11 * a20, a01 * a20 - a00 * a21, a00 * a11 - a01 * a10),
    )
    det = a00 * rows[0][0] + a01 * rows[1][0] + a02 * rows[2][0]
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2) / det[..., None, None]


def _ilp_spin(b_phi, b_r, b_d, b_3):
    """Spin part M and the coupling n -> n+1 (without sqrt(n+1) sqrt(B)) in the polynomial basis, (..., 3, 3)."""
    e = lambda v: v[..., None, None]
    m = (e(b_phi) * np.eye(3) + e(b_r + b_d + b_3) * _S_PERP2 + e(b_d) * (_S_PLUS @ _S_PLUS)
         + e(b_r) * (_S_MINUS @ _S_MINUS))
    return m, e(b_r) * _S_MINUS + e(b_d) * _S_PLUS


def _ilp_reference(e, b_phi, b_lin, b_3):
    """r(E) = 2/(E + a1) + 1/(E + a0) + (8 b_lin/a1)[1/(E + a1) - 1/(E + 2 a1)]: the decoupled triplet plus the
    second-order spin-orbit term, so that g(E) - r(E) and the per-level remainder fall off as E^-3."""
    a1 = b_phi + b_3 + b_lin
    a0 = b_phi + 2 * b_3 + 2 * b_lin
    return 2 / (e + a1) + 1 / (e + a0) + 8 * b_lin / a1 * (1 / (e + a1) - 1 / (e + 2 * a1))


def _hurwitz_zeta(s, q):
    """zeta(s, q) = sum_n (q + n)^-s for s > 1, q >= 1 (host, float64; Euler-Maclaurin after 40 terms)."""
    head = np.sum((q + np.arange(40.0)) ** -s)
    b = q + 40.0
    tail = b ** (1 - s) / (s - 1) + 0.5 * b**-s
    poch, fact = s, 1.0
    for j, b2j in enumerate((1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730), start=1):
        fact *= (2 * j - 1) * (2 * j)
        tail += b2j / fact * poch * b ** (-s - 2 * j + 1)
        poch *= (s + 2 * j - 1) * (s + 2 * j)
    return head + tail


@functools.lru_cache(maxsize=None)
def _ilp_tail_weights(levels):
    """Sample levels and weights w with sum_{n >= levels} t_n = w . t[samples] for t_n = sum_k c_k/(n + 1/2)^k,
    k = 3 .. 12, the c_k fitted by least squares to t on [levels/3, levels) (static; host numpy)."""
    orders = np.arange(3.0, 3.0 + _ILP_TAIL_ORDERS)
    idx = np.unique(np.round(np.linspace(int(levels * _ILP_TAIL_START), levels - 1, _ILP_TAIL_POINTS)).astype(int))
    design = (levels / (idx + 0.5))[:, None] ** orders  # scaled columns (N/E)^k, entries in [1, 3^k]
    zeta = np.array([_hurwitz_zeta(k, levels + 0.5) * float(levels) ** k for k in orders])
    return idx, np.linalg.pinv(design).T @ zeta


def _ilp_landau(levels, x_phi, x_r, x_d, x_3):
    """sum_{n >= 0} [Tr G_nn - r(n + 1/2)] of the Landau-level chain, fields in units of |B| (x = b/|B|, shape (P,)).

    Block-tridiagonal Schur recursions from both ends over ``levels + _ILP_MARGIN`` levels (3x3 blocks), the levels
    n < ``levels`` summed, the rest from the fitted tail series."""
    m, x_lo = _ilp_spin(x_phi, x_r, x_d, x_3)
    size = levels + _ILP_MARGIN
    up = jnp.asarray(_ILP_UP)
    ns = jnp.arange(size, dtype=m.dtype)
    eye = jnp.eye(3, dtype=m.dtype)

    def forward(sigma, n):  # self-energy of the levels below n + 1
        a = _inv3((n + 0.5) * eye + m - sigma)
        return (n + 1.0) * _mm3(_mm3(x_lo, a), up), sigma

    def backward(sigma, n):  # self-energy of the levels above n - 1
        a = _inv3((n + 0.5) * eye + m - sigma)
        return n * _mm3(_mm3(up, a), x_lo), sigma

    _, sig_l = jax.lax.scan(forward, jnp.zeros_like(m), ns)
    _, sig_r = jax.lax.scan(backward, jnp.zeros_like(m), ns, reverse=True)
    e = (ns[:levels] + 0.5)[:, None]
    g = _inv3(e[..., None, None] * eye + m - sig_l[:levels] - sig_r[:levels])
    t = jnp.trace(g, axis1=-2, axis2=-1) - _ilp_reference(e, x_phi, x_r + x_d, x_3)
    idx, w = _ilp_tail_weights(levels)
    return jnp.sum(t, axis=0) + jnp.tensordot(jnp.asarray(w), t[idx], axes=1)


def _ilp_mesh():
    """Gauss-Legendre nodes in u = ln(E/E*), E* = 2 (B_r + B_d1) + B_phi + B_d3: panels graded by factors of 3
    down to 3^-7 around u = 0 (the soft triplet mode near the persistent spin helix sits at E = 2 (B_r + B_d1),
    width ~ sqrt(B_phi/E*) in u, sharp only when B_phi << B_r + B_d1), width 2 up to |u| = 12 (smooth steps at
    E ~ B_phi have poles at Im u = +-pi), coarser beyond (exponential decay)."""
    x, w = np.polynomial.legendre.leggauss(_ILP_GAUSS)
    g = 3.0 ** np.arange(-7, 1)
    edges = np.concatenate([[-40.0, -28.0, -20.0, -16.0], -np.arange(12.0, 1.0, -2.0), -g[::-1], g,
                            np.arange(2.0, 16.0, 2.0)])
    lo, hi = edges[:-1], edges[1:]
    u = (0.5 * (hi - lo)[:, None] * x + 0.5 * (hi + lo)[:, None]).ravel()
    return u, (0.5 * (hi - lo)[:, None] * w).ravel(), float(edges[0])


_ILP_MESH = _ilp_mesh()


def _ilp_zero_field(b_phi, b_r, b_d, b_3):
    """Z = int_0^inf [g(E) - r(E)] dE, g(E) the angle average of Tr H(q)^-1 at q^2 = E (fields in any unit).

    H(q, phi) = E + M + sqrt(E)(e^{i phi} X + e^{-i phi} X^T) is the harmonic chain in the angle: its average is the
    bulk diagonal block of that infinite block-tridiagonal Toeplitz matrix, found by decimation (each step doubles
    the decimated range; the hoppings are rescaled by a constant at each step, which the recursion ignores, so that
    the two directions of the non-symmetric basis neither overflow nor underflow)."""
    u, wu, u_lo = _ILP_MESH
    b_lin = b_r + b_d
    centre = 2 * b_lin + b_phi + b_3  # the helix peak (2 b_lin) when it is sharp, else the scale of the steps
    e = centre[..., None] * jnp.exp(jnp.asarray(u))  # (..., nodes)
    ex = lambda v: jnp.broadcast_to(v[..., None], e.shape)
    m, x_lo = _ilp_spin(ex(b_phi), ex(b_r), ex(b_d), ex(b_3))
    root = jnp.sqrt(e)[..., None, None]
    eps = e[..., None, None] * jnp.eye(3) + m

    def decimate(carry, _):
        eps, up, lo = carry
        g = _inv3(eps)
        gu, gl = _mm3(g, up), _mm3(g, lo)
        eps = eps - _mm3(up, gl) - _mm3(lo, gu)
        up, lo = _mm3(up, gu), _mm3(lo, gl)
        nu = jnp.max(jnp.abs(up), axis=(-2, -1), keepdims=True)
        nl = jnp.max(jnp.abs(lo), axis=(-2, -1), keepdims=True)
        both = (nu > 0) & (nl > 0)
        # balance the two; if one side vanished (at B_r = 0 or B_d1 = 0 the lower hopping is nilpotent), normalize
        # the other, whose products with the tangents of the vanished side still carry the derivatives
        c = jnp.where(both, jnp.sqrt(nl / jnp.where(both, nu, 1.0)),
                      jnp.where(nu > 0, 1.0 / jnp.where(nu > 0, nu, 1.0), jnp.where(nl > 0, nl, 1.0)))
        c = jax.lax.stop_gradient(c)
        return (eps, up * c, lo / c), None

    (eps, _, _), _ = jax.lax.scan(decimate, (eps, root * _ILP_UP, root * x_lo), None, length=_ILP_DECIMATIONS)
    h = jnp.trace(_inv3(eps), axis1=-2, axis2=-1) - _ilp_reference(e, ex(b_phi), ex(b_lin), ex(b_3))
    # below the first node h is constant to O(E): int_0^{E_lo} h dE = h(E_lo) E_lo
    return jnp.sum(jnp.asarray(wu) * h * e, axis=-1) + h[..., 0] * centre * math.exp(u_lo)


def ilp(field, b_phi, b_r, b_d1, b_d3=0.0, *, levels=4096):
    """Iordanskii-Lyanda-Geller-Pikus magnetoconductance of a 2D electron gas with linear Rashba, linear and cubic
    Dresselhaus spin-orbit coupling, in e^2/h per square (total of spin-1/2 electrons, WL is Delta sigma > 0):

        Delta sigma(B) = (1/2 pi) [ T(B) - f(B_phi/B) ]  (e^2/h),   T(B) = sum over the triplet Cooperon spectrum

    where the singlet gives f(B_phi/B) (f = :func:`hln_function`) and T(B) = S_T(0) - S_T(B), S_T(B) = sum over
    Landau levels n of B Tr[H_T^-1]_nn, S_T(0) = int dE Tr[H_T(q)^-1] (angle-averaged, E = hbar q^2/(4e)), the
    triplet Cooperon in field units:

        H_T = B (n + 1/2) + B_phi + (B_r + B_d1 + B_d3)(Sx^2 + Sy^2) - 2 sqrt(B_r B_d1) {Sx, Sy}
              + sqrt(B) [a^dag (-i sqrt(B_r) S- + sqrt(B_d1) S+) + h.c.]

    (S the pair's spin 1, a the Landau ladder of charge 2e). Rashba couples (n, m) to (n +- 1, m -+ 1), linear
    Dresselhaus (n, m) to (n +- 1, m +- 1); with both, the levels do not decouple (Pikus & Pikus, PRB 51, 16928
    (1995)) and T(B) is computed numerically (docs/theory.md#ilp). Iordanskii, Lyanda-Geller & Pikus, JETP Lett. 60,
    206 (1994); Knap et al., PRB 53, 3912 (1996), diffusion approximation (B, B_x << B_tr). The transport cutoff
    cancels: this is the B_tr -> infinity limit of sigma(B) - sigma(0) taken with the same cutoff on both sides.

    **Fields.** B_x = hbar/(4 e D tau_x), any unit shared with ``field`` (only ratios enter):

    * ``b_phi``: B_phi = hbar/(4 e L_phi^2), as in :func:`hln`.
    * ``b_r``: 1/tau_r = tau Omega_R^2/2, Omega_R = 2 alpha k_F/hbar the Rashba precession frequency (splitting
      2 alpha k_F for H_R = alpha(sigma_x k_y - sigma_y k_x)), tau the transport time; 1/tau_r is the D'yakonov-Perel
      rate of an in-plane spin with Rashba alone (2/tau_r for s_z). Equivalently B_r = hbar/(4 e L_R^2) with the
      precession length L_R = hbar^2/(2 m alpha), independent of D. Knap et al.: B_r = H_SO = H'_SO with their
      Omega_1 = Omega_R/2 (they write H = hbar sigma.Omega).
    * ``b_d1``: the same for the first-harmonic linear Dresselhaus term beta1 (sigma_x k_x - sigma_y k_y), beta1
      including the cubic term's first harmonic (gamma(<k_z^2> - k_F^2/4) for bulk constant gamma).
    * ``b_d3``: 1/tau_3 = tau' Omega_3^2/2 for the third angular harmonic of the cubic Dresselhaus precession
      (Omega_3 = gamma k_F^3/(2 hbar); tau' = tau for isotropic scattering, else the relaxation time of the third
      harmonic of the distribution, Knap et al.'s tau_3); it only relaxes (no gauge-field part). Knap et al.: H_SO = B_r + B_d3 with one
      linear term. With B_r = B_d1 = 0 this is :func:`hln_cubic` with b_so = b_d3 exactly.

    The fields B_so, B_s of :func:`hln` describe isotropic (Elliott-Yafet-like) relaxation, a different triplet:
    only the limits are shared (B_r = B_d1 = B_d3 = 0 gives hln(B, B_phi) = +f(B_phi/B)/pi, weak localization).

    **Limits** (tests/test_ilp.py): no spin-orbit: :func:`hln` at b_so = b_s = 0; only cubic: :func:`hln_cubic`;
    B_r = B_d1, B_d3 = 0 (persistent spin helix: an abelian gauge field, removed by a gauge transformation): exactly
    hln(B, B_phi), weak localization for any B_r; only B_r (or only B_d1): Knap et al.'s 3x3-block series.

    **Symmetry.** Delta sigma is symmetric in B_r <-> B_d1 (and even in the signs of alpha, beta1): magnetoconductance
    cannot tell Rashba from Dresselhaus, only the unordered pair.

    **Numerics.** Exact block-tridiagonal Schur recursion over the first ``levels`` Landau levels; the remaining
    levels from an asymptotic series c_k/(n + 1/2)^k fitted to the last two thirds of them; S_T(0) by Gauss-Legendre
    quadrature in ln E of the zero-field trace, whose angle average is found by decimation. Both sides subtract the
    same closed-form reference, whose contribution is a combination of f's. Accuracy ~1e-9 absolute or better for
    (b_r + b_d1)/|B| <= levels/16 and b_phi >= 1e-6 (b_r + b_d1). Cost O(levels) per field (50 fields at 4096
    levels: ~0.1 s after jit). Differentiable in every argument (jax.grad, jacfwd), including at B = 0 and at
    b_r = 0 or b_d1 = 0.

    Args:
        field: B (any unit shared with the characteristic fields); even in B. Delta sigma(0) = 0.
        b_phi: B_phi > 0.
        b_r, b_d1: linear Rashba and linear Dresselhaus fields >= 0.
        b_d3: cubic (third-harmonic) Dresselhaus field >= 0.
        levels: number of Landau levels summed exactly (static int >= 256). A nonzero |B| below
            16 (b_r + b_d1)/levels raises an error (the Landau basis cannot resolve it): raise ``levels``.

    Returns:
        Delta sigma in e^2/h, the broadcast shape of the arguments.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < _ILP_MIN_LEVELS:
        raise ValueError(f"levels must be an integer >= {_ILP_MIN_LEVELS}, got {levels!r}.")
    field, b_phi, b_r, b_d1, b_d3 = map(_float, (field, b_phi, b_r, b_d1, b_d3))
    b_phi = _positive("b_phi", b_phi)
    b_r, b_d1, b_d3 = (_nonnegative(n, v) for n, v in (("b_r", b_r), ("b_d1", b_d1), ("b_d3", b_d3)))
    pshape = jnp.broadcast_shapes(b_phi.shape, b_r.shape, b_d1.shape, b_d3.shape)
    params = [jnp.broadcast_to(v, pshape) for v in (b_phi, b_r, b_d1, b_d3)]
    return _ilp_core(int(levels), jnp.broadcast_to(field, jnp.broadcast_shapes(field.shape, pshape)), *params)


@eqx.filter_jit  # levels (a Python int) is static; filter_jit also gives readable runtime errors
def _ilp_core(levels, field, b_phi, b_r, b_d1, b_d3):
    """:func:`ilp` for ``field`` of the full broadcast shape and the fields of the parameters' shape."""
    shape = field.shape
    zero_field = _ilp_zero_field(b_phi, b_r, b_d1, b_d3)  # once per parameter set, not per field
    flat = lambda v: jnp.broadcast_to(v, shape).reshape(-1)
    b = jnp.abs(flat(field))
    b_phi, b_r, b_d1, b_d3, zero_field = map(flat, (b_phi, b_r, b_d1, b_d3, zero_field))
    b_lin = b_r + b_d1
    b = eqx.error_if(b, (b > 0) & (b * levels < _ILP_RESOLUTION * b_lin),
                     "ilp: a nonzero |B| is below 16 (b_r + b_d1)/levels, which the Landau levels cannot resolve; "
                     "pass a larger levels.")
    nonzero = b > 0
    unit = jnp.where(nonzero, b, 1.0)
    landau = _ilp_landau(levels, b_phi / unit, b_r / unit, b_d1 / unit, b_d3 / unit)
    rest = jnp.where(nonzero, zero_field - landau, 0.0)
    a1 = b_phi + b_d3 + b_lin
    # f at the five scales of the reference and the singlet, in one call
    f = _hln_of_ratio(b / jnp.stack([a1, a1 + b_lin + b_d3, 2 * a1, b_phi]))
    triplet = 2 * f[0] + f[1] + 8 * b_lin / a1 * (f[0] - f[2]) + rest
    return ((triplet - f[3]) / (2 * math.pi)).reshape(shape)
