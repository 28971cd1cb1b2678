"""Quasi-1D universal numbers from disorder ensembles (docs/physics.md#dmpk): the small, fast versions of
experiments/universal_numbers.py and experiments/magnetic_impurities.py.

Every realization is evaluated at flux 0 and at a flux that breaks time reversal (paired), so field-induced
changes of <g> have small errors. Tolerances are stated in standard errors: the sample variance's error is
from the fourth central moment (no normality assumed), the mean difference's from the paired spread.
"""

import math

import numpy as np
import pytest

import difftransport as dt
from conftest import paired_ensemble as _ensemble


def _variance(x):
    """Sample variance and its standard error, SE^2 = (m4 - s^4 (n - 3)/(n - 1)) / n."""
    n, d = len(x), x - x.mean()
    s2 = d.var(ddof=1)
    return s2, math.sqrt((np.mean(d**4) - s2**2 * (n - 3) / (n - 1)) / n)


def _mean(x):
    return x.mean(), x.std(ddof=1) / math.sqrt(len(x))


@pytest.fixture(scope="module")
def orthogonal():
    """Spinless 32 x 200 strip, W = 1, E = 0.5 (g ~ 3.4; docs/physics.md#independent-checks), 400 realizations,
    flux 0 and 0.002."""
    return _ensemble(dt.Sample(dt.strip(32), 200), 400, 7, (0.0, 0.002), 1.0, energy=0.5)


def test_ucf_orthogonal_and_unitary(orthogonal):
    """var g = 2/15 at phi = 0 (beta = 1) and 1/15 in a field (beta = 2), within 3 standard errors."""
    v1, e1 = _variance(orthogonal[:, 0])
    v2, e2 = _variance(orthogonal[:, 1])
    assert e1 < 0.012 and e2 < 0.007  # ~ var sqrt(2/n) for 400 realizations: 0.0095 and 0.0047
    assert abs(v1 - 2 / 15) < 3 * e1, (v1, e1)
    assert abs(v2 - 1 / 15) < 3 * e2, (v2, e2)
    assert v1 / v2 > 1.4  # the factor 2 between the classes, beyond the errors


def test_weak_localization_is_positive_magnetoconductance(orthogonal):
    """<g(phi)> - <g(0)> > 0 (WL) by many standard errors, and below the saturated 1/3 (a finite wire keeps
    a residual Cooperon, docs/theory.md#flux-cancellation; measured +0.17..+0.22 at this size)."""
    m, e = _mean(orthogonal[:, 1] - orthogonal[:, 0])  # measured +0.166 +- 0.021
    assert m > 5 * e, (m, e)
    assert 0.08 < m < 1 / 3 + 3 * e, (m, e)


@pytest.fixture(scope="module")
def symplectic():
    """Rashba 24 x 300 strip, alpha = 0.577 (strong spin-orbit), W = 1, E = 0.5 (g ~ 4.2 total; 9-E3/F2), 400
    realizations, flux 0 and 0.002 (above it classical magnetoresistance sets in). The mean free path is ~50
    sites, so the wire must be several l long for universal fluctuations: a 24 x 150 strip (L ~ 3 l) gives var g
    = 0.163 +- 0.012 and, in the field, 0.095 +- 0.006 (+4.4 SE above 1/15, at every flux up to 0.008)."""
    return _ensemble(dt.Sample(dt.strip(24), 300, spinful=True), 400, 8, (0.0, 0.002), 1.0, energy=0.5,
                     rashba=0.577)


def test_ucf_symplectic(symplectic):
    """Kramers pairs: var g_total = 4 var(G/G0) = 2/15 at phi = 0, within 3 standard errors (~0.010); the field
    lifts the degeneracy and the variance falls. Measured 0.146 +- 0.010 (+1.2 SE) and 0.073 +- 0.005."""
    v4, e4 = _variance(symplectic[:, 0])
    v2, e2 = _variance(symplectic[:, 1])
    assert abs(v4 - 2 / 15) < 3 * e4, (v4, e4)
    assert v4 / v2 > 1.2 and v4 - v2 > 3 * math.hypot(e4, e2), (v4, e4, v2, e2)


def test_ucf_rashba_in_field_is_unitary(symplectic):
    """Unitary class (spin-orbit and a field): var g = 1/15 within 3 standard errors. Measured 0.073 +- 0.005
    (+1.2 SE)."""
    v2, e2 = _variance(symplectic[:, 1])
    assert abs(v2 - 1 / 15) < 3 * e2, (v2, e2)


def test_weak_antilocalization_is_negative_magnetoconductance(symplectic):
    """Strong spin-orbit coupling turns the sign: <g(phi)> - <g(0)> < 0 by many standard errors."""
    m, e = _mean(symplectic[:, 1] - symplectic[:, 0])  # measured -0.294 +- 0.022
    assert m < -5 * e, (m, e)
    assert -1 / 3 - 3 * e < m < -0.08, (m, e)


def test_magnetic_impurities_change_the_class_without_dephasing():
    """Spinful 24 x 100 wire, W = 1, E = 0.5, no spin-orbit (the small version of
    experiments/magnetic_impurities.py). J = 0: two identical spin copies, var g = 4 x 2/15 = 8/15, and WL.
    Strong static exchange J m.sigma (random unit moments, J = 0.45): one mixed unitary species, var g = 1/15
    (finite: static spins do not dephase) and no WL left for a field to remove. The full run (1500
    realizations) measures 0.574 +- 0.022 and 0.069 +- 0.003; here 400 realizations (standard errors ~0.04 and
    ~0.005)."""
    sample = dt.Sample(dt.strip(24), 100, spinful=True)
    free = _ensemble(sample, 400, 9, (0.0, 0.0015), 1.0, moments=True, energy=0.5, exchange=0.0)
    magnetic = _ensemble(sample, 400, 9, (0.0, 0.0015), 1.0, moments=True, energy=0.5, exchange=0.45)
    v0, e0 = _variance(free[:, 0])
    vj, ej = _variance(magnetic[:, 0])
    assert abs(v0 - 8 / 15) < 3 * e0, (v0, e0)
    assert abs(vj - 1 / 15) < 3 * ej, (vj, ej)
    assert v0 / vj > 5
    wl0, wl0_err = _mean(free[:, 1] - free[:, 0])
    wlj, wlj_err = _mean(magnetic[:, 1] - magnetic[:, 0])
    assert wl0 > 3 * wl0_err, (wl0, wl0_err)
    assert abs(wlj) < 3 * wlj_err, (wlj, wlj_err)
