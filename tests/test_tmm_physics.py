"""Statistical transfer-matrix physics: DMPK localization-length ratios of one quasi-1D strip in the three
Wigner-Dyson classes, the 2D symplectic (SU(2)) critical point, and the 3D Anderson Lambda crossing.

Every test states (a) its comparator, fixed before the data were looked at (a literature value or DMPK), (b) how
its standard error is obtained, (c) the nearest wrong answer its window excludes, and it asserts a cap on the
standard error so that the window does exclude it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._core.tmm import lyapunov_exponents

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------------------------
# DMPK (docs/physics.md#dmpk-localization-length): xi = (beta N + 2 - beta) l, gamma_n = (1 + beta (n - 1)) / xi.
#
# One strip for the three classes: M = 6 hard walls, E = 1.15 (midway between the subband thresholds 0.753 and
# 1.555, so no channel is near its edge), N = 4 open channels (Kramers pairs when spinful), box disorder W = 2.5
# (l ~ 7 ~ M: the transverse motion is mixed, as DMPK's isotropy needs). N = 4 is small on purpose: the class
# ratios 2N/(N+1) = 1.6 and (4N-2)/(N+1) = 2.8 lie 25% and 14% from their nearest wrong answers (2 and
# 2 * 2N/(N+1) = 3.2).
#   beta = 2: flux phi = 0.025 threads phi xi_2 M ~ 6 flux quanta through the localization area; the magnetic
#     length 1/sqrt(2 pi phi) = 2.5 stays above M/3 and the cyclotron radius (~ 2M) above M, so the field bends
#     no trajectory across the strip and leaves l unchanged (to O((M / r_c)^2)).
#   beta = 4: uniform Rashba alpha = 0.3 (docs/physics.md#rashba-lattice), not the SU(2) model: random SU(2)
#     hopping is itself a strong scatterer (l of a few sites, docs/physics.md#su2-model) and would change l,
#     while uniform Rashba does not scatter momentum (l changes at O(alpha^2)); its spin-orbit length
#     t / alpha ~ 3 sites gives a D'yakonov-Perel spin-relaxation length (suppressed ~ L_so^2 / M in a narrow
#     wire) of order 10 sites, below xi_4 ~ 90.
# Standard errors: 16 independent chains (keys) of 2^16 slices per class (each ~ 600 xi long), the same keys in
# every class; the error of a ratio of means is the jackknife over chains (it includes the correlation of the
# paired chains).

DMPK_STRIP, DMPK_ENERGY, DMPK_W, DMPK_N = dt.strip(6), 1.15, 2.5, 4
DMPK_FLUX, DMPK_RASHBA = 0.025, (0.3, 0.5)
DMPK_KEYS = jax.random.split(jax.random.key(5), 16)


@pytest.fixture(scope="module")
def dmpk_spectra():
    """Open-channel exponents (chains, N), ascending (gamma_1 = 1 / xi first), per class: "orthogonal",
    "unitary", and "symplectic" for each Rashba alpha (one exponent per Kramers pair)."""
    kw = dict(strength=DMPK_W, rtol=None, chunk=4096, warmup=4096, qr_every=16)
    n = DMPK_N

    def spinless(key, flux):
        return lyapunov_exponents(key, dt.Sample(DMPK_STRIP, 2**16), dt.Model(energy=DMPK_ENERGY, flux=flux), **kw)

    def spinful(key, alpha):
        sample = dt.Sample(DMPK_STRIP, 2**16, spinful=True)
        return lyapunov_exponents(key, sample, dt.Model(energy=DMPK_ENERGY, rashba=alpha), **kw)

    flux = jnp.array([0.0, DMPK_FLUX])
    plain = jax.jit(jax.vmap(jax.vmap(spinless, in_axes=(None, 0)), in_axes=(0, None)))(DMPK_KEYS, flux)
    rashba = jax.jit(jax.vmap(jax.vmap(spinful, in_axes=(None, 0)), in_axes=(0, None)))(
        DMPK_KEYS, jnp.array(DMPK_RASHBA))
    g, g4 = np.asarray(plain.exponents), np.asarray(rashba.exponents)
    out = {"orthogonal": g[:, 0, -n:][:, ::-1], "unitary": g[:, 1, -n:][:, ::-1]}
    for i, alpha in enumerate(DMPK_RASHBA):
        np.testing.assert_allclose(g4[:, i, 0::2], g4[:, i, 1::2], rtol=1e-8)  # Kramers pairs
        out[f"symplectic {alpha}"] = g4[:, i, -2 * n::2][:, ::-1]
    return out


def _jackknife(statistic, *samples):
    """statistic(*column means) and its jackknife standard error over the chains (rows)."""
    full = statistic(*(s.mean(axis=0) for s in samples))
    k = samples[0].shape[0]
    loo = np.array([statistic(*(np.delete(s, j, axis=0).mean(axis=0) for s in samples)) for j in range(k)])
    return full, math.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2))


def test_dmpk_open_channels():
    """N = 4 distinct channels in every class (Kramers pairs: 8 spinful channels), so DMPK's N is the same: the
    hard-wall count #{m : |E - eps_m| < 2}, eps_m = -2 cos(m pi / 7) (docs/physics.md#clean-quantization), and the
    lead solver's count with the field and with Rashba."""
    eps = -2 * np.cos(np.arange(1, 7) * np.pi / 7)
    assert np.sum(np.abs(DMPK_ENERGY - eps) < 2) == DMPK_N
    assert np.min(np.abs(np.abs(DMPK_ENERGY - eps) - 2)) > 0.3  # no subband edge within 0.3
    sample = dt.Sample(DMPK_STRIP, 2)
    assert float(dt.open_channels(sample, dt.Model(energy=DMPK_ENERGY, flux=DMPK_FLUX))) == DMPK_N
    for alpha in DMPK_RASHBA:
        sample = dt.Sample(DMPK_STRIP, 2, spinful=True)
        assert float(dt.open_channels(sample, dt.Model(energy=DMPK_ENERGY, rashba=alpha))) == 2 * DMPK_N


def test_magnetic_field_doubles_quasi1d_localization_length(dmpk_spectra):
    """Breaking time reversal at fixed l: xi_2 / xi_1 = 2N / (N + 1) = 1.6 for N = 4 (DMPK,
    docs/physics.md#dmpk-localization-length). Window: half the distance to the nearest wrong answer, the
    large-N limit 2 (+25%): |ratio / 1.6 - 1| < 12.5%. The other wrong answer, no effect (ratio 1), is 37% away.
    Standard error: jackknife over 16 paired chains (see above), capped at 1.5%, so that 2 is excluded by
    > 5 standard errors from anywhere in the window ((2 - 1.8) / (0.015 * 1.8) = 7.4)."""
    ratio, se = _jackknife(lambda a, b: a[0] / b[0], dmpk_spectra["orthogonal"], dmpk_spectra["unitary"])
    expected = 2 * DMPK_N / (DMPK_N + 1)
    assert se / ratio < 0.015, (ratio, se)
    assert abs(ratio / expected - 1) < 0.125, (ratio, se, expected)


@pytest.mark.xfail(strict=True, reason=(
    "pre-registered comparison fails: xi_4/xi_1 = 2.50 +- 0.03 (alpha = 0.3: spin relaxation incomplete) and "
    "3.15 +- 0.03 (alpha = 0.5: Rashba lengthens l by ~23%) against DMPK's 2.8"))
def test_spin_orbit_quadruples_quasi1d_localization_length(dmpk_spectra):
    """Strong spin-orbit coupling at fixed l: xi_4 / xi_1 = (4N - 2) / (N + 1) = 2.8 for N = 4 Kramers-degenerate
    channels (DMPK, docs/physics.md#dmpk-localization-length), with Rashba alpha = 0.3 (the pre-registered
    choice, argued above). Window: half the distance to the nearest wrong answer 2 * 2N / (N + 1) = 3.2 (+14.3%):
    |ratio / 2.8 - 1| < 7.1%; the large-N limit 4 and the unitary value 1.6 are further. Standard error:
    jackknife over 16 paired chains, capped at 1.5%, so that 3.2 is excluded by > 4.5 standard errors from
    anywhere in the window ((3.2 - 3.0) / (0.015 * 3.0)).

    It fails, and is kept as a strict xfail with the measured numbers: 2.50 +- 0.03 at alpha = 0.3 (-10 SE).
    The investigation, stronger spin-orbit alpha = 0.5 (L_so ~ t / alpha = 2, to complete the spin relaxation),
    gives 3.15 +- 0.03 (+12 SE; within 2 SE of the wrong answer 3.2). The spectra explain both: at alpha = 0.3
    gamma_1 / (gamma_2 - gamma_1) ~ 0.30 (one chain of 2^21 slices), not the symplectic 1/4, so spin relaxation is
    incomplete on the scale of xi; at alpha = 0.5 the symplectic spectrum is complete (0.265, next test), but
    l from the spacing gamma_2 - gamma_1 is 23% longer than without Rashba (the field changes it by < 1%). Uniform
    Rashba in this strip does not give xi_4 at fixed l; the class itself is checked without l below."""
    expected = (4 * DMPK_N - 2) / (DMPK_N + 1)
    ratios = {alpha: _jackknife(lambda a, b: a[0] / b[0], dmpk_spectra["orthogonal"],
                                dmpk_spectra[f"symplectic {alpha}"]) for alpha in DMPK_RASHBA}
    assert all(se / ratio < 0.015 for ratio, se in ratios.values()), ratios
    assert all(abs(ratio / expected - 1) < 0.071 for ratio, _ in ratios.values()), ratios


@pytest.mark.parametrize("symmetry, beta", [("orthogonal", 1), ("unitary", 2), ("symplectic 0.5", 4)])
def test_dmpk_smallest_exponent_against_spacing(dmpk_spectra, symmetry, beta):
    """A check of the class that needs no l (added after the xi_4 / xi_1 comparison above failed): DMPK spaces the
    exponents by beta / xi, gamma_n = (1 + beta (n - 1)) / xi, so gamma_1 / (gamma_2 - gamma_1) = 1 / beta exactly,
    whatever l is (docs/physics.md#dmpk-localization-length). Window +-10% of 1 / beta; the nearest wrong answers
    are the neighbouring classes (1/2 for beta = 1 and 4, 1 and 1/4 for beta = 2: >= 50% away) and, for beta = 4,
    incomplete spin relaxation (0.30 at alpha = 0.3, +20%). Standard error: jackknife over 16 chains, capped at 2%,
    so the neighbouring classes are > 15 standard errors outside the window, 0.30 (beta = 4) > 4."""
    ratio, se = _jackknife(lambda g: g[0] / (g[1] - g[0]), dmpk_spectra[symmetry])
    assert se / ratio < 0.02, (symmetry, ratio, se)
    assert abs(ratio * beta - 1) < 0.10, (symmetry, ratio, se)


# ---------------------------------------------------------------------------------------------------------
# Critical points (docs/physics.md#anderson-critical).


def _reduced_length(lattice, width, model, w, *, spinful=False, su2=False, slices, key, **kw):
    """Lambda = lambda_M / M and its batch-means standard error."""
    res = lyapunov_exponents(key, dt.Sample(lattice, slices, spinful=spinful), model, strength=w, su2=su2, **kw)
    value = float(res.localization_length) / width
    return value, value * float(res.relative_error), bool(res.converged)


def test_su2_model_critical_lambda_is_scale_invariant():
    """2D symplectic class, SU(2) model (docs/physics.md#su2-model): periodic spinful strips M = 8 and 16, E = 1,
    box disorder at W_c = 5.95. Comparator: Lambda_c ~ 1.84 (Asada, Slevin & Ohtsuki, PRL 89, 256601 (2002);
    PRB 70, 035115 (2004), docs/physics.md#anderson-critical), scale invariant at W_c.

    Pass rule: |Lambda_M - 1.84| <= 3 SE_M + 0.02 for each M (0.02: the rounding of the literature Lambda_c plus
    the finite-size corrections, which Asada et al. find negligible for this model), and |Lambda_16 - Lambda_8| <=
    3 SE of the difference. Standard errors: batch means of one long chain per width (1024-slice batches,
    ~35 lambda_M), capped at 1.5% of Lambda. Nearest wrong answers: Lambda at W = 5.5 (2.18, 2.33) and 6.5
    (1.56, 1.46) (docs/physics.md#independent-checks), >= 0.28 from 1.84, i.e. >= 0.17 outside the window,
    > 5 standard errors; and a drift Lambda_16 - Lambda_8 of at least 3 SE (~0.1), as at |W - W_c| ~ 0.5
    (+0.15 at W = 5.5, -0.10 at 6.5)."""
    model, w, lam_c = dt.Model(energy=1.0), 5.95, 1.84
    values = {}
    for width, slices in ((8, 2**17), (16, 2**17)):
        lam, se, _ = _reduced_length(dt.strip(width, boundary="periodic"), width, model, w, spinful=True, su2=True,
                                     slices=slices, key=jax.random.key(width), rtol=None, chunk=1024, warmup=1024,
                                     qr_every=8)
        values[width] = (lam, se)
        assert se < 0.015 * lam, (width, lam, se)
        assert abs(lam - lam_c) <= 3 * se + 0.02, (width, lam, se)
    (l8, e8), (l16, e16) = values[8], values[16]
    assert abs(l16 - l8) <= 3 * math.hypot(e8, e16), values


def test_anderson_3d_lambda_crossing():
    """3D Anderson model, E = 0, periodic M x M bars, M = 4 and 6. Comparator: W_c = 16.54, Lambda_c = 0.576
    (Slevin & Ohtsuki, PRL 82, 382 (1999); docs/physics.md#anderson-critical): Lambda grows with M for W < W_c and
    shrinks for W > W_c, and at W = 16.5 (W_c within 0.04, a shift of Lambda by < 0.003) both widths give Lambda_c.

    Pass rules: (i) at W = 14.5 and 18.5 the sign of Lambda_6 - Lambda_4 is that of W_c - W, by more than 3 SE of
    the difference; the nearest wrong answer, no M dependence (as in a system without a transition at the
    crossing), is thereby excluded by > 3 SE. (ii) At W = 16.5, |Lambda_M - 0.576| <= 3 SE + 0.012 (0.012: the
    corrections to scaling at M = 4, Lambda_4 = 0.587 in docs/physics.md#independent-checks). Standard errors:
    batch means of one chain per (M, W), run to 0.5% of Lambda (asserted), capped at 0.003 at W = 16.5. Nearest
    wrong answers of (ii): Lambda_6 at W = 15.5 (0.671) and 17.5 (0.515) (docs/physics.md#independent-checks), both
    >= 0.04 outside the window (> 13 standard errors)."""
    model = dt.Model(energy=0.0)

    def lam(width, w):
        value, se, converged = _reduced_length(dt.bar(width, width, boundary="periodic"), width, model, w,
                                               slices=2**19, key=jax.random.key(width), rtol=0.005, chunk=1024,
                                               warmup=1024, qr_every=16, min_batches=16)
        assert converged and se <= 0.005 * value, (width, w, value, se)
        return value, se

    for w, sign in ((14.5, 1), (18.5, -1)):
        (l4, e4), (l6, e6) = lam(4, w), lam(6, w)
        assert sign * (l6 - l4) > 3 * math.hypot(e4, e6), (w, l4, e4, l6, e6)
    for width in (4, 6):
        value, se = lam(width, 16.5)
        assert se < 0.003, (width, value, se)
        assert abs(value - 0.576) <= 3 * se + 0.012, (width, value, se)
