"""Quasi-1D universal numbers from disorder ensembles (docs/physics.md#dmpk): the small, fast versions of
experiments/universal_numbers.py and experiments/magnetic_impurities.py.

Every realization is evaluated at flux 0 and at a flux that breaks time reversal (paired), so field-induced
changes of <g> have small errors. Rules of every test here: (a) its comparator was fixed before the data were
looked at (a universal value with its reference, or a finite-size formula whose inputs follow a stated rule);
(b) its standard error (SE) is stated: a sample variance's from the fourth central moment (no normality
assumed), a mean difference's from the paired spread, a ratio of means' by the delta method; (c) it names the
nearest wrong answer and caps the SE so that the 3-SE window around the comparator excludes it. Measured values
quoted in docstrings are from the seeds used here.
"""

import math

import numpy as np
import pytest

import difftransport as dt
from conftest import paired_ensemble as _ensemble

pytestmark = pytest.mark.slow  # every test here draws ensembles of hundreds of realizations


def _variance(x):
    """Sample variance and its standard error, SE^2 = (m4 - s^4 (n - 3)/(n - 1)) / n."""
    n, d = len(x), x - x.mean()
    s2 = d.var(ddof=1)
    return s2, math.sqrt((np.mean(d**4) - s2**2 * (n - 3) / (n - 1)) / n)


def _mean(x):
    return x.mean(), x.std(ddof=1) / math.sqrt(len(x))


def _ratio(p, g):
    """Ratio of ensemble means R = <p>/<g> and its SE by the delta method: SE = sd(p - R g)/(sqrt(n) <g>)."""
    r = p.sum() / g.sum()
    return r, (p - r * g).std(ddof=1) / (math.sqrt(len(g)) * g.mean())


def _wl_amplitude(ensemble, channels):
    """Field-induced change of the weak-localization term, separated by the shot noise from the classical change of
    the Drude conductance, with its paired SE. ``ensemble``: (realization, [0, phi], [g, F]); ``channels``: N, all
    orbitals. Removing a fraction w of the WL term (beta = 1 -> 2, or of the WAL term, 4 -> 2) changes <g> by
    +-w/3 and <p> = <sum T(1 - T)> by +-w/45 (test_fano_factor_weak_localization); a classical change dg0 of the
    Drude conductance changes <p> by (c/3) dg0 (the Drude Fano factor c/3, c = 1 - (1 + s)^-3, s = N/<g(phi)> - 1).
    So [dg - (3/c) dp]/(1 - 1/(5c)) = +-w/3 realization by realization, whatever dg0 is."""
    g, p = ensemble[..., 0], ensemble[..., 0] * ensemble[..., 1]
    c = 1 - (channels / g[:, 1].mean()) ** -3
    return _mean(((g[:, 1] - g[:, 0]) - 3 / c * (p[:, 1] - p[:, 0])) / (1 - 1 / (5 * c)))


@pytest.fixture(scope="module")
def orthogonal_fano():
    """Spinless 32 x 200 strip, W = 1, E = 0.5 (N = 25 channels, g ~ 3.4; docs/physics.md#independent-checks), 800
    realizations, flux 0 and 0.002: (realization, flux, [g, F])."""
    return _ensemble(dt.Sample(dt.strip(32), 200), 800, 7, (0.0, 0.002), 1.0, energy=0.5,
                     observables=("conductance", "fano_factor"))


@pytest.fixture(scope="module")
def orthogonal(orthogonal_fano):
    """The conductances of ``orthogonal_fano``: (realization, flux)."""
    return orthogonal_fano[..., 0]


def test_ucf_orthogonal_and_unitary(orthogonal):
    """Comparators (docs/physics.md#dmpk, Beenakker RMP 69, 731 (1997)): var g = 2/15 at phi = 0 (beta = 1) and
    1/15 at phi = 0.002 (beta = 2), spinless, g in e^2/h. SE: fourth central moment. Nearest wrong answers: the
    other class's value (1/15 resp. 2/15, 0.067 away); the caps e1 < 0.012 and e2 < 0.007 put it > 5.5 SE from
    the comparator (~ var sqrt(2/n): 0.0067 and 0.0033 for 800 realizations). Pass: |var - comparator| < 3 SE.
    Measured 0.1268 +- 0.0066 (-1.0 SE; 1/15 at +9.1 SE) and 0.0708 +- 0.0035 (+1.2 SE; 2/15 at -18 SE)."""
    v1, e1 = _variance(orthogonal[:, 0])
    v2, e2 = _variance(orthogonal[:, 1])
    assert e1 < 0.012 and e2 < 0.007, (e1, e2)
    assert abs(v1 - 2 / 15) < 3 * e1, (v1, e1)
    assert abs(v2 - 1 / 15) < 3 * e2, (v2, e2)
    assert v1 / v2 > 1.4  # the factor 2 between the classes, beyond the errors


def test_weak_localization_is_positive_magnetoconductance(orthogonal):
    """Comparator: the sign of WL, <g(phi)> - <g(0)> > 0; nearest wrong answer 0 (no WL), excluded by > 5 SE (SE:
    paired spread, capped at 0.03). Upper bound: the saturated DMPK value 1/3 (docs/physics.md#dmpk) + 3 SE. Not a
    comparison with 1/3: at this size the raw change is about half of it (measured +0.154 +- 0.015, -12 SE from
    1/3), far below what the residual Cooperon of flux cancellation leaves (docs/theory.md#flux-cancellation:
    1/3 - F(L/L_B) ~ 0.26). The shot noise shows the deficit as a fall of g and <sum T(1 - T)> in the Drude ratio
    (-0.11 to -0.16 +- 0.03 at phi = 0.001 - 0.002, -0.26 at 0.004; not the (omega_c tau)^2 law of classical
    magnetoresistance, so its origin is open); without it the WL term is 1/3
    (test_weak_localization_amplitude_from_shot_noise). Twice the size (64 x 400, 150 realizations) the raw change
    is +0.203 +- 0.034 at phi = 0.000364 (L_B = L/20; 1/3 - F = 0.287 predicted, -2.5 SE) and +0.242 +- 0.038 at
    0.002.
    The floor 0.08 is a regression guard set from the measurement, not a physics comparator."""
    m, e = _mean(orthogonal[:, 1] - orthogonal[:, 0])
    assert e < 0.03, e
    assert m > 5 * e, (m, e)
    assert 0.08 < m < 1 / 3 + 3 * e, (m, e)


def test_fano_factor_weak_localization(orthogonal_fano):
    """Shot noise of the diffusive wire with its weak-localization correction (de Jong & Beenakker, PRB 46, 13400
    (1992); Beenakker RMP 69, 731 (1997)). Comparator, fixed before the run: to O(1) in g_0 = N l/L, over N
    distinct (spin- or Kramers-degenerate counted once) channels, <sum T> = g_0 + (1/3)(1 - 2/beta) and
    <sum T(1 - T)> = g_0/3 + (1/45)(1 - 2/beta) (the weak-localization correction of a linear statistic,
    (1 - 2/beta)[a(1)/4 + int_0^inf dx a(1/cosh^2 x)/(4x^2 + pi^2)], is 1/3 for a = T and 1/45 for a = T(1 - T);
    for a = 2T^2/(2 - T)^2 it gives the NS-wire value 1 - 4/pi^2, a check of the formula).
    Their ratio is exactly F = <sum T(1 - T)>/<sum T> = 1/3 - (4/45)(1 - 2/beta)/<sum T> with the measured
    <sum T> (here <g>: spinless, every channel distinct); expanding in 1/g_0 instead changes it at O(1/g_0^2).
    Finite length multiplies the 1/3 by c = 1 - (1 + s)^-3 (the same DMPK density at s = L/l, N -> inf), s fixed
    by the rule N/(1 + s) = <g(phi)> (DMPK l, docs/physics.md#dmpk-localization-length): c/3 = 0.3324, a 0.001
    shift. So F_1 = c/3 + (4/45)/<g(0)> (~0.359) at phi = 0 and F_2 = c/3 at phi = 0.002 (beta = 2: no 1/g term).
    The Fano factor compared is the ratio of ensemble means sum_r g_r F_r / sum_r g_r (what the theory averages),
    its SE by the delta method, capped at 0.003.
    Nearest wrong answers: for F_1, c/3 (no correction; 0.026 away, > 8 SE at the cap) and the correction with
    g counted in units of 2e^2/h (half of it, 0.013 away, > 4 SE); for F_2, the zero-field value F_1 (the field
    changing nothing, 0.026 away); far beyond both: 1/4 (chaotic cavity), 1/2 (double barrier), 1 (Poisson).
    Pass: |F - comparator| < 3 SE for both. Measured (800): F = 0.3561 +- 0.0018 against F_1 = 0.3584 (-1.3 SE; c/3
    at +13.6 SE, the half correction at +6.1 SE) and 0.3318 +- 0.0012 against F_2 = 0.3324 (-0.5 SE; F_1 at -21 SE).
    """
    n_channels = 25  # dt.open_channels of this strip at E = 0.5, phi = 0 and 0.002
    g, fano = orthogonal_fano[..., 0], orthogonal_fano[..., 1]
    s = n_channels / g[:, 1].mean() - 1
    c = 1 - (1 + s) ** -3
    f1, e1 = _ratio(fano[:, 0] * g[:, 0], g[:, 0])
    f2, e2 = _ratio(fano[:, 1] * g[:, 1], g[:, 1])
    theory1 = c / 3 + (4 / 45) / g[:, 0].mean()
    assert e1 < 0.003 and e2 < 0.003, (e1, e2)
    assert abs(f1 - theory1) < 3 * e1, (f1, e1, theory1)
    assert abs(f2 - c / 3) < 3 * e2, (f2, e2, c / 3)


def test_weak_localization_amplitude_from_shot_noise(orthogonal_fano):
    """Comparator: the full DMPK weak-localization term, +1/3 (docs/physics.md#dmpk), for the field-induced change
    of the WL term separated by the shot noise from a Drude-like change (``_wl_amplitude``). The raw <g(phi)> -
    <g(0)> is about half of 1/3 (test_weak_localization_is_positive_magnetoconductance): the field also lowers g and
    <p> in the Drude ratio (<p> falls where the WL term alone raises it by 1/45).
    SE: paired spread, capped at 0.035 so that the 3-SE window around 1/3 excludes 1/6 (what the raw difference
    gives) and 0 (no WL). Pass: |w/3 - 1/3| < 3 SE, and w/3 more than 3 SE above 1/6. The estimator was set up
    after a first look at 400 of these realizations (0.328 +- 0.038), then pre-registered on an independent seed
    (17, 400 realizations): 0.239 +- 0.037 at this flux (-2.5 SE from 1/3, but 1/6 only 1.9 SE away), 0.281 +-
    0.038 at phi = 0.001 and 0.314 +- 0.040 at 0.004; a 64 x 400 strip (150): 0.329 +- 0.060 at 0.000364 and
    0.002. Measured here (800): 0.312 +- 0.027 (-0.8 SE; 1/6 at +5.4 SE, 0 at +11 SE)."""
    amplitude, e = _wl_amplitude(orthogonal_fano, 25)
    assert e < 0.035, e
    assert abs(amplitude - 1 / 3) < 3 * e and amplitude - 1 / 6 > 3 * e, (amplitude, e)


@pytest.fixture(scope="module")
def symplectic_fano():
    """Rashba 24 x 300 strip, alpha = 0.577 (strong spin-orbit), W = 1, E = 0.5 (N = 36 channels in total, g ~ 4.2
    total; 9-E3/F2), 400 realizations, flux 0 and 0.002 (above it classical magnetoresistance sets in):
    (realization, flux, [g, F]). The mean free path is ~50 sites, so the wire must be several l long for universal
    fluctuations: a 24 x 150 strip (L ~ 3 l) gives var g = 0.163 +- 0.012 and, in the field, 0.095 +- 0.006 (+4.4
    SE above 1/15, at every flux up to 0.008)."""
    return _ensemble(dt.Sample(dt.strip(24), 300, spinful=True), 400, 8, (0.0, 0.002), 1.0, energy=0.5,
                     rashba=0.577, observables=("conductance", "fano_factor"))


@pytest.fixture(scope="module")
def symplectic(symplectic_fano):
    """The conductances of ``symplectic_fano``: (realization, flux)."""
    return symplectic_fano[..., 0]


def test_ucf_symplectic(symplectic):
    """Comparator (docs/physics.md#dmpk): Kramers pairs, var g_total = 4 var(G/G0) = 4/30 = 2/15 at phi = 0 (beta =
    4). SE: fourth central moment, capped at 0.012. Nearest wrong answers: 1/15 (unitary: the symplectic class not
    realized) 0.067 away, > 5.5 SE at the cap; 1/30 (the factor 4 forgotten) and 8/15 (no spin-orbit: two identical
    orthogonal copies) farther. Pass: |var - 2/15| < 3 SE. The field lifts the Kramers degeneracy: the variance
    must fall by > 3 combined SE (wrong answer: no change). Measured 0.146 +- 0.010 (+1.2 SE; 1/15 at +7.8 SE) and
    0.073 +- 0.005 (the fall: +6.3 combined SE)."""
    v4, e4 = _variance(symplectic[:, 0])
    v2, e2 = _variance(symplectic[:, 1])
    assert e4 < 0.012, e4
    assert abs(v4 - 2 / 15) < 3 * e4, (v4, e4)
    assert v4 / v2 > 1.2 and v4 - v2 > 3 * math.hypot(e4, e2), (v4, e4, v2, e2)


def test_ucf_rashba_in_field_is_unitary(symplectic):
    """Comparator: unitary class (spin-orbit and a field), var g = 1/15 (docs/physics.md#dmpk). SE: fourth central
    moment, capped at 0.007. Nearest wrong answer: 2/15 (the field leaving the symplectic class, or two independent
    unitary species) 0.067 away, > 9 SE at the cap. Pass: |var - 1/15| < 3 SE. Measured 0.073 +- 0.005 (+1.2 SE;
    2/15 at -11 SE)."""
    v2, e2 = _variance(symplectic[:, 1])
    assert e2 < 0.007, e2
    assert abs(v2 - 1 / 15) < 3 * e2, (v2, e2)


def test_weak_antilocalization_is_negative_magnetoconductance(symplectic):
    """Comparator: the sign of WAL, <g(phi)> - <g(0)> < 0; nearest wrong answer 0, excluded by > 5 SE (SE: paired
    spread, capped at 0.03). Lower bound: the saturated DMPK value -1/3 (+1/6 per Kramers pair, docs/physics.md#dmpk)
    - 3 SE; the ceiling -0.08 is a regression guard set from the measurement, not a physics comparator. Measured
    -0.294 +- 0.022 (-13 SE from 0, +1.8 SE from -1/3)."""
    m, e = _mean(symplectic[:, 1] - symplectic[:, 0])
    assert e < 0.03, e
    assert m < -5 * e, (m, e)
    assert -1 / 3 - 3 * e < m < -0.08, (m, e)


def test_shot_noise_weak_antilocalization(symplectic_fano):
    """Comparators fixed before the run, from the formulas of test_fano_factor_weak_localization at beta = 4 with N
    distinct = Kramers pairs (<sum T> over pairs = <g>/2, g total): F_4 = c/3 - (4/45)/<g(0)> at phi = 0 (~0.311)
    and F_2 = c/3 at phi = 0.002 (c from s = N/<g(phi)> - 1, N = 36 in total); and the WAL term removed by the field,
    separated from the classical magnetoresistance by the noise (``_wl_amplitude``), -1/3. SEs: delta method (ratios
    of ensemble means), paired spread; caps 0.003 and 0.045. Nearest wrong answers: for F_4, c/3 (no correction,
    ~0.021 away, > 7 SE) and the orthogonal sign c/3 + (4/45)/<g> farther; for F_2, F_4 (field changing nothing);
    for -1/3, -1/6 and 0 (1/6 away: > 3.7 SE at the cap). Pass: each within 3 SE of its comparator. Measured F_4 =
    0.3083 +- 0.0020 (~-1.8 SE; c/3 at -12 SE), F_2 = 0.3324 +- 0.0016 (~-0.3 SE; F_4 at +15 SE), WAL term -0.380
    +- 0.040 (-1.2 SE; -1/6 at -5.3 SE, 0 at -9.4 SE)."""
    g, fano = symplectic_fano[..., 0], symplectic_fano[..., 1]
    c = 1 - (36 / g[:, 1].mean()) ** -3
    f4, e4 = _ratio(fano[:, 0] * g[:, 0], g[:, 0])
    f2, e2 = _ratio(fano[:, 1] * g[:, 1], g[:, 1])
    theory4 = c / 3 - (4 / 45) / g[:, 0].mean()
    amplitude, e = _wl_amplitude(symplectic_fano, 36)
    assert e4 < 0.003 and e2 < 0.003 and e < 0.045, (e4, e2, e)
    assert abs(f4 - theory4) < 3 * e4, (f4, e4, theory4)
    assert abs(f2 - c / 3) < 3 * e2, (f2, e2, c / 3)
    assert abs(amplitude + 1 / 3) < 3 * e, (amplitude, e)


def test_magnetic_impurities_change_the_class_without_dephasing():
    """Spinful 24 x 100 wire, W = 1, E = 0.5, no spin-orbit (the small version of experiments/magnetic_impurities.py),
    400 realizations, flux 0 and 0.0015. Comparators (docs/physics.md#dmpk): J = 0, two identical spin copies of an
    orthogonal wire: var g = 4 x 2/15 = 8/15, and WL > 0. Strong static exchange J m.sigma (random unit moments,
    J = 0.45): one mixed unitary species, var g = 1/15 (finite: static spins do not dephase) and no WL left for a
    field to remove (comparator 0). SEs: fourth central moment; paired spread. Nearest wrong answers and caps: for
    8/15, 4/15 (two independent orthogonal species) 0.27 away, cap 0.05 (> 5 SE); for 1/15, 2/15 (two independent
    unitary species, or one orthogonal) 0.067 away, cap 0.008 (> 8 SE); for WL(J = 0) > 0, zero (> 3 SE); for
    WL(J = 0.45) = 0, the spin-degenerate saturated WL +2/3, cap 0.03 (> 20 SE). Pass: each within 3 SE of its
    comparator, and var g falling by more than a factor 5. Measured 0.590 +- 0.044 (+1.3 SE; 4/15 at +7.4 SE),
    0.0725 +- 0.0051 (+1.1 SE; 2/15 at -12 SE), WL +0.219 +- 0.038 (+5.8 SE) and +0.019 +- 0.017 (+1.1 SE; 2/3 at
    -38 SE); the full run (1500 realizations) measures 0.574 +- 0.022 and 0.069 +- 0.003."""
    sample = dt.Sample(dt.strip(24), 100, spinful=True)
    free = _ensemble(sample, 400, 9, (0.0, 0.0015), 1.0, moments=True, energy=0.5, exchange=0.0)
    magnetic = _ensemble(sample, 400, 9, (0.0, 0.0015), 1.0, moments=True, energy=0.5, exchange=0.45)
    v0, e0 = _variance(free[:, 0])
    vj, ej = _variance(magnetic[:, 0])
    assert e0 < 0.05 and ej < 0.008, (e0, ej)
    assert abs(v0 - 8 / 15) < 3 * e0, (v0, e0)
    assert abs(vj - 1 / 15) < 3 * ej, (vj, ej)
    assert v0 / vj > 5
    wl0, wl0_err = _mean(free[:, 1] - free[:, 0])
    wlj, wlj_err = _mean(magnetic[:, 1] - magnetic[:, 0])
    assert wlj_err < 0.03, wlj_err
    assert wl0 > 3 * wl0_err, (wl0, wl0_err)
    assert abs(wlj) < 3 * wlj_err, (wlj, wlj_err)
