"""Coherent backscattering in momentum space (difftransport._core.backscattering): speckle statistics, packets,
momentum distributions, the contrast estimator on synthetic data, and small physics checks (CBS contrast, its
removal by a field, the spin-orbit dip)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport  # noqa: F401  (switches JAX to float64)
from difftransport._core.backscattering import (
    backscattering_contrast,
    band_energy,
    ensemble_momentum_distribution,
    ensemble_spreading,
    momentum_distribution,
    momentum_grid,
    nearest_grid_momentum,
    peak_pixels,
    peak_profile,
    plane_wave_packet,
    speckle_potential,
    symmetric_gauge_phase,
    width_law,
)
from difftransport._core.evolution import evolution_hamiltonian, evolve
from difftransport._core.lattice import Sample, strip
from difftransport._core.model import Model, anderson_potential, draw_disorder


def box(length, *, spinful=False):
    return Sample(strip(length, boundary="periodic"), length, periodic=True, spinful=spinful)


# ---------------------------------------------------------------------------------------------------------
# Evolution with a given disorder


def test_disorder_keyword_reproduces_the_draw():
    """evolution_hamiltonian(disorder=draw_disorder(key, ...)) is the Hamiltonian drawn from the key, and a bare
    potential array gives the same H."""
    sample = box(8)
    model = Model(energy=0.0)
    key = jax.random.key(3)
    drawn = evolution_hamiltonian(key, sample, model, strength=2.0)
    disorder = draw_disorder(key, sample, strength=2.0)
    given = evolution_hamiltonian(None, sample, model, disorder=disorder, half_width=drawn.half_width)
    array = evolution_hamiltonian(None, sample, model, disorder=disorder.potential, half_width=drawn.half_width)
    psi = plane_wave_packet(sample, [0.3, -1.1], 2.0)
    np.testing.assert_allclose(given(psi), drawn(psi), atol=1e-14)
    np.testing.assert_allclose(array(psi), drawn(psi), atol=1e-14)
    # the default bound with a given potential: 4 + max |V| (the spectral_half_width of strength 2 max |V|)
    bound = evolution_hamiltonian(None, sample, model, disorder=disorder.potential).half_width
    assert bound == pytest.approx(4 + float(jnp.max(jnp.abs(disorder.potential))))


def test_disorder_keyword_errors():
    sample = box(8)
    with pytest.raises(ValueError, match="disorder must be a Disorder or a potential array of shape"):
        evolution_hamiltonian(None, sample, Model(energy=0.0), disorder=jnp.zeros((8, 7)))
    with pytest.raises(ValueError, match="disorder potential must be real"):
        evolution_hamiltonian(None, sample, Model(energy=0.0), disorder=jnp.zeros((8, 8), complex))


# ---------------------------------------------------------------------------------------------------------
# States and momentum distributions


def test_clean_plane_wave_stays_at_k0():
    """Exact oracle: on the clean periodic box a grid plane wave is an eigenstate, so n(k, t) = delta_{k, k0}."""
    sample = box(16)
    k0 = nearest_grid_momentum(sample, [0.8, -0.4])
    ham = evolution_hamiltonian(None, sample, Model(energy=0.0), disorder=jnp.zeros(sample.potential_shape))
    n = evolve(plane_wave_packet(sample, k0), ham, np.array([0.0, 3.0, 10.0]),
               observable=lambda s: momentum_distribution(sample, s))
    k = momentum_grid(sample)
    at_k0 = np.all(np.isclose(np.asarray(k), k0[:, None, None]), axis=0)
    assert at_k0.sum() == 1
    np.testing.assert_allclose(n[:, at_k0][:, 0], 1.0, atol=1e-10)
    assert band_energy(Model(energy=0.0), k0) == pytest.approx(-2 * np.cos(k0).sum())


@pytest.mark.parametrize("spinful", [False, True])
def test_packet_momentum_moments(spinful):
    """A Gaussian packet of width w: n(k) sums to 1, has mean k0 and standard deviation 1 / (2 w) per axis
    (continuum values; the grid of a 64 box resolves them to < 1e-3 for w = 4)."""
    sample = box(64, spinful=spinful)
    k0, width = np.array([0.6, -0.9]), 4.0
    psi = plane_wave_packet(sample, k0, width, spin=[1.0, 1.0j] if spinful else None)
    assert float(jnp.sum(jnp.abs(psi) ** 2)) == pytest.approx(1.0, abs=1e-12)
    n = momentum_distribution(sample, psi)
    k = np.asarray(momentum_grid(sample))
    assert float(n.sum()) == pytest.approx(1.0, abs=1e-12)
    mean = (k * n).sum(axis=(1, 2))
    np.testing.assert_allclose(mean, k0, atol=1e-3)
    np.testing.assert_allclose(np.sqrt(((k - k0[:, None, None]) ** 2 * n).sum(axis=(1, 2))), 1 / (2 * width),
                               rtol=1e-3)


@pytest.mark.slow
def test_symmetric_gauge_keeps_a_clean_packet_at_k0():
    """In a field the FFT of the Landau-gauge state is shifted by 2 pi flux y; in the symmetric gauge about the
    packet centre c the clean packet's mean momentum is k0 at t = 0. Later the FFT momentum is the kinetic one
    plus pi flux z x (r - c) at the packet's mean position r; the kinetic momentum rotates clockwise by the
    cyclotron angle omega_c t, omega_c = 4 pi flux cos|k0| (band mass 1 / (2 cos k) along k0; 8 % window for the
    packet's momentum spread and the band's non-parabolicity). The nearest wrong answer, the uncorrected FFT
    momentum, rotates by half the angle."""
    sample = Sample(strip(48), 48)
    flux, center, k0 = 0.005, (23.5, 23.5), np.array([0.4, 0.0])
    gauge = symmetric_gauge_phase(sample, flux, center)
    psi = jnp.conj(gauge) * plane_wave_packet(sample, k0, 5.0, center)
    k = np.asarray(momentum_grid(sample))
    n0 = momentum_distribution(sample, psi, gauge=gauge)
    np.testing.assert_allclose((k * n0).sum(axis=(1, 2)), k0, atol=2e-3)
    landau = momentum_distribution(sample, psi)
    assert abs(float((k[0] * landau).sum()) - (k0[0] - 2 * math.pi * flux * 23.5)) < 2e-3
    ham = evolution_hamiltonian(None, sample, Model(energy=0.0, flux=flux), disorder=jnp.zeros((48, 48)))
    t = 4.0
    state = evolve(psi, ham, np.array([t]))[0]
    canonical = (k * momentum_distribution(sample, state, gauge=gauge)).sum(axis=(1, 2))
    density = np.abs(np.asarray(state)) ** 2
    shift = np.array([(density.sum(1) * np.arange(48)).sum(), (density.sum(0) * np.arange(48)).sum()]) - 23.5
    kinetic = canonical - math.pi * flux * np.array([-shift[1], shift[0]])
    expected = 4 * math.pi * flux * math.cos(0.4) * t
    assert -math.atan2(kinetic[1], kinetic[0]) == pytest.approx(expected, rel=0.08)
    assert np.linalg.norm(kinetic) == pytest.approx(0.4, rel=0.01)


def test_packet_errors():
    sample = box(8)
    with pytest.raises(ValueError, match="k0 must be 2 finite real numbers"):
        plane_wave_packet(sample, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="width must be a positive number or None"):
        plane_wave_packet(sample, [0.1, 0.2], -1.0)
    with pytest.raises(ValueError, match="spin must be None on a spinless sample"):
        plane_wave_packet(sample, [0.1, 0.2], spin=0)
    with pytest.raises(ValueError, match="state has shape"):
        momentum_distribution(sample, jnp.zeros((8, 8, 2)))
    with pytest.raises(ValueError, match="symmetric_gauge_phase needs an open sample"):
        symmetric_gauge_phase(sample, 0.1, (0, 0))


# ---------------------------------------------------------------------------------------------------------
# Speckle


def _exact_correlation(xi, lag, length):
    """Normalized intensity covariance at ``lag`` along one axis of the periodic grid: |rho_E|^2, rho_E the
    normalized overlap of the discrete Gaussian kernels (exact for the construction)."""
    d = np.arange(length)
    d = np.minimum(d, length - d)
    kernel = np.exp(-d * d / (2 * xi * xi))
    return (np.sum(kernel * np.roll(kernel, lag)) / np.sum(kernel**2)) ** 2


def test_speckle_statistics():
    """Exponential intensity statistics and the Gaussian correlation, over 6 realizations of a 128 x 128 box
    with xi = 2: N_eff ~ 6 x 128^2 / (2 pi xi^2) ~ 3900 independent values, so SE(<I>) ~ 0.016,
    SE(var I) ~ sqrt(8 / N_eff) ~ 0.045, SE(P(I > 1)) ~ 0.008. Windows are 4 SE; the nearest wrong answers
    they exclude: a Gaussian (not exponential) potential has P(I > 2) = 0.16 against e^-2 = 0.135 and
    P(I > 1) = 0.5 against e^-1; a correlation of exp(-r^2 / (4 xi^2)) would give 0.78 at r = xi, not 0.61."""
    sample = box(128)
    xi, v0 = 2.0, 1.5
    keys = jax.random.split(jax.random.key(7), 6)
    v = np.asarray(jax.vmap(lambda k: speckle_potential(k, sample, v0, xi))(keys))
    intensity = v / v0 + 1
    assert abs(intensity.mean() - 1) < 0.065
    assert abs(intensity.var() - 1) < 0.18
    assert abs((intensity > 1).mean() - math.exp(-1)) < 0.035
    assert abs((intensity > 2).mean() - math.exp(-2)) < 0.025
    assert intensity.min() >= 0
    # covariance at lag xi along each axis against the exact discrete value (~ exp(-1/2) = 0.607)
    dv = v - v.mean()
    for axis in (1, 2):
        lag = int(xi)
        measured = np.mean(dv * np.roll(dv, lag, axis=axis)) / np.mean(dv * dv)
        exact = _exact_correlation(xi, lag, 128)
        assert exact == pytest.approx(math.exp(-0.5), abs=0.01)
        assert abs(measured - exact) < 0.06
    # reproducible, key-dependent; without the -1 the potential is V0 I >= 0
    once = speckle_potential(keys[0], sample, v0, xi)
    np.testing.assert_array_equal(speckle_potential(keys[0], sample, v0, xi), once)
    np.testing.assert_allclose(once, v[0], atol=1e-12)  # vmap batches the FFTs: equal to rounding
    assert not np.allclose(v[0], v[1])
    positive = speckle_potential(keys[0], sample, v0, xi, subtract_mean=False)
    np.testing.assert_allclose(positive, once + v0, atol=1e-12)


def test_speckle_near_walls_and_uncorrelated_limit():
    """Open axes: the per-site normalization keeps <I> = 1 within ~xi of a wall too (a global normalization would
    give <I> ~ 0.5 at the wall); xi = 0 is a complex white field (independent sites)."""
    sample = Sample(strip(32), 32)
    keys = jax.random.split(jax.random.key(2), 40)
    v = np.asarray(jax.vmap(lambda k: speckle_potential(k, sample, 1.0, 3.0))(keys)) + 1
    edge = v[:, :, 0].mean()  # 40 x 32 values along the wall, correlated over ~ 3 sites: SE ~ 0.05
    assert abs(edge - 1) < 0.2
    white = np.asarray(speckle_potential(jax.random.key(0), box(64), 1.0, 0.0)) + 1
    assert abs(np.mean((white[:, 1:] - 1) * (white[:, :-1] - 1))) < 0.06  # SE 1 / 64
    with pytest.raises(ValueError, match="correlation_length must be a Python number >= 0"):
        speckle_potential(jax.random.key(0), sample, 1.0, -1.0)


# ---------------------------------------------------------------------------------------------------------
# The contrast estimator on synthetic data


def _synthetic(sample, k0, contrast, realizations, key):
    """A Lorentzian ring (radius |k0| + 0.05, half width 0.15) with a peak of the given contrast at -k0 spread over
    one pixel, times per-pixel exponential speckle noise (mean 1, as in one disorder realization)."""
    k = np.asarray(momentum_grid(sample))
    radius = np.linalg.norm(k, axis=0)
    k0r = np.linalg.norm(k0)
    ring = 1 / (1 + ((radius - k0r - 0.05) / 0.15) ** 2)
    at = np.all(np.isclose(k, -k0[:, None, None]), axis=0)
    mean = ring * (1 + contrast * at)
    noise = np.asarray(jax.random.exponential(key, (realizations, *radius.shape)))
    return mean, mean * noise


def test_contrast_estimator_recovers_a_known_peak():
    """Synthetic n(k): the noiseless estimate recovers the contrast within 0.03 (the quadratic ring fit's bias on
    a Lorentzian one ~2 pixels wide); with exponential noise over 400 realizations the SE is ~1 / sqrt(400) x
    (1 + C) ~ 0.1 and the estimate lies within 3.5 SE, and the forward contrast (no peak there) within 3.5 SE of
    0. The window excludes the nearest wrong answer C = 0.5 (half the peak missed)."""
    sample = box(48)
    k0 = nearest_grid_momentum(sample, [0.72, 0.72])
    k = momentum_grid(sample)
    mean, noisy = _synthetic(sample, k0, 1.0, 400, jax.random.key(11))
    exact = backscattering_contrast(np.stack([mean, mean]), k, k0)
    assert float(exact.backward) == pytest.approx(1.0, abs=0.03)
    assert float(exact.forward) == pytest.approx(0.0, abs=0.03)
    result = backscattering_contrast(noisy, k, k0)
    assert 0.07 < float(result.backward_se) < 0.14
    assert abs(float(result.backward) - 1.0) < 3.5 * float(result.backward_se)
    assert abs(float(result.forward)) < 3.5 * float(result.forward_se)
    # leading axes (times) are kept
    stacked = backscattering_contrast(np.stack([noisy, noisy], axis=1), k, k0)
    assert stacked.backward.shape == (2,)
    np.testing.assert_allclose(stacked.backward, result.backward)


def test_contrast_estimator_standard_error_is_calibrated():
    """Over 40 independent synthetic ensembles of 50 realizations (contrast -0.5), the spread of the estimates
    matches the mean reported SE within 25 % (the SE of a standard deviation from 40 values is ~11 %)."""
    sample = box(32)
    k0 = nearest_grid_momentum(sample, [0.9, 0.6])
    k = momentum_grid(sample)
    estimates, errors = [], []
    for i in range(40):
        _, noisy = _synthetic(sample, k0, -0.5, 50, jax.random.key(100 + i))
        r = backscattering_contrast(noisy, k, k0)
        estimates.append(float(r.backward))
        errors.append(float(r.backward_se))
    assert np.std(estimates, ddof=1) == pytest.approx(np.mean(errors), rel=0.25)
    assert abs(np.mean(estimates) + 0.5) < 3 * np.mean(errors) / math.sqrt(40) + 0.03


def _gaussian_peak(sample, k0, amplitude, width, realizations, key):
    """A ring symmetric under 90-degree rotations with a Gaussian peak A exp(-|k + k0|^2 / (2 s^2)) on it, times
    per-pixel exponential speckle noise (mean 1)."""
    k = np.asarray(momentum_grid(sample))
    radius = np.linalg.norm(k, axis=0)
    ring = 1 / (1 + ((radius - np.linalg.norm(k0) - 0.05) / 0.3) ** 2)
    q = np.angle(np.exp(1j * (k + k0[:, None, None])))
    mean = ring * (1 + amplitude * np.exp(-np.sum(q**2, 0) / (2 * width**2)))
    noise = np.asarray(jax.random.exponential(key, (realizations, *radius.shape)))
    return mean, mean * noise


def test_peak_profile_recovers_a_gaussian_peak():
    """Synthetic n(k) on a 64 x 64 box (grid spacing 0.098): a ring symmetric under 90-degree rotations with a peak
    A = 1, s = 0.12 (1.2 spacings, as late in the 128^2 runs) at -k0. Noiseless: A and s to 1e-3 (the fit is
    exact up to its grid in s). With exponential noise over 300 realizations: within 3.5 jackknife SE of the
    truth; the SE of A is ~0.05, so the window excludes A = 0.5 (half the peak) and s x 1.2 (a 20 % width bias)
    at > 3.5 SE; the forward pixel (no peak there) within 3.5 SE of 0; times (leading axes) are kept."""
    sample = box(64)
    k0 = nearest_grid_momentum(sample, [0.8, 0.5])
    mean, noisy = _gaussian_peak(sample, k0, 1.0, 0.12, 300, jax.random.key(5))
    exact = peak_profile(peak_pixels(np.stack([mean, mean]), sample, k0))
    assert float(exact.amplitude) == pytest.approx(1.0, abs=1e-3)
    assert float(exact.width) == pytest.approx(0.12, rel=1e-3)
    assert float(exact.backward) == pytest.approx(1.0, abs=1e-12)
    assert float(exact.forward) == pytest.approx(0.0, abs=1e-12)
    result = peak_profile(peak_pixels(noisy, sample, k0))
    assert 0.02 < float(result.amplitude_se) < 0.08 and float(result.width_se) < 0.006
    assert abs(float(result.amplitude) - 1.0) < 3.5 * float(result.amplitude_se)
    assert abs(float(result.width) - 0.12) < 3.5 * float(result.width_se)
    assert abs(float(result.forward)) < 3.5 * float(result.forward_se)
    stacked = peak_profile(peak_pixels(np.stack([noisy, noisy], axis=1), sample, k0))
    assert stacked.amplitude.shape == (2,) and stacked.ratio.shape == (2, len(result.q))
    np.testing.assert_allclose(stacked.width, result.width)
    # means over selected times: of the per-time fits, with the error of one time (the two are the same data)
    averaged = peak_profile(peak_pixels(np.stack([noisy, noisy], axis=1), sample, k0), over=np.array([True, True]))
    assert averaged.over_amplitude == pytest.approx(float(result.amplitude), rel=1e-12)
    assert averaged.over_amplitude_se == pytest.approx(float(result.amplitude_se), rel=1e-9)
    assert averaged.over_forward == pytest.approx(float(result.forward), rel=1e-12)
    with pytest.raises(ValueError, match="over must be a boolean mask"):
        peak_profile(peak_pixels(np.stack([noisy, noisy], axis=1), sample, k0), over=np.array([False, False]))


def test_peak_profile_errors():
    sample = box(32)
    k0 = nearest_grid_momentum(sample, [0.8, 0.8])
    with pytest.raises(ValueError, match="square box periodic along both axes"):
        peak_pixels(np.ones((2, 32, 16)), Sample(strip(16, boundary="periodic"), 32, periodic=True), [0.0, 0.0])
    with pytest.raises(ValueError, match="not on the box's FFT grid"):
        peak_pixels(np.ones((2, 32, 32)), sample, [0.81, 0.8])
    with pytest.raises(ValueError, match="radius must be an integer"):
        peak_pixels(np.ones((2, 32, 32)), sample, k0, radius=8)
    with pytest.raises(ValueError, match="n_k must have shape"):
        peak_pixels(np.ones((32, 32)), sample, k0)
    with pytest.raises(ValueError, match="at least 2 realizations"):
        peak_profile(peak_pixels(np.ones((1, 32, 32)), sample, k0))
    with pytest.raises(ValueError, match="pixels must be the PeakPixels"):
        peak_profile(np.ones((2, 32, 32)))


def test_width_law_and_spreading_errors():
    sample = box(32)
    k0 = nearest_grid_momentum(sample, [0.8, 0.8])
    pixels = peak_pixels(np.ones((4, 3, 32, 32)), sample, k0)
    times = np.array([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="spread must have shape"):
        width_law(pixels, np.ones((3, 3)), times, tmin=1.0)
    with pytest.raises(ValueError, match="one time axis matching times"):
        width_law(pixels, np.ones((4, 3)), times[:2], tmin=1.0)
    with pytest.raises(ValueError, match="leaves 1 times"):
        width_law(pixels, np.ones((4, 3)), times, tmin=2.0)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="width must be a positive number"):
        ensemble_spreading(keys, sample, Model(energy=0.0), lambda k: jnp.zeros((32, 32)), k0, times, width=None)
    with pytest.raises(ValueError, match="model.flux must be None"):
        ensemble_spreading(keys, Sample(strip(32), 32), Model(energy=0.0, flux=0.01), lambda k: jnp.zeros((32, 32)),
                           k0, times, width=4.0)


def test_spreading_of_a_clean_packet_matches_exact_momentum_space_evolution():
    """Clean periodic box: H is diagonal in k, so the filtered packet is psi(k, t) = psi0(k) g(eps_k)
    exp(-i eps_k t) (g the EnergyWindow, eps_k = -2 cos k_x - 2 cos k_y) exactly; <r^2>(t) of ensemble_spreading
    (Chebyshev filter and evolution, minimal-image moments) equals that of the exact state to 1e-8, for every
    realization (zero potential)."""
    sample = box(24)
    model = Model(energy=0.0)
    k0 = nearest_grid_momentum(sample, [math.pi / 4, math.pi / 4])
    times = np.array([0.0, 2.0, 5.0])
    keys = jax.random.split(jax.random.key(0), 2)
    spread = np.asarray(ensemble_spreading(keys, sample, model, lambda k: jnp.zeros((24, 24)), k0, times, width=3.0,
                                           energy_width=0.3))
    psi0 = np.asarray(plane_wave_packet(sample, k0, 3.0, center=[0.0, 0.0]))
    k = np.asarray(momentum_grid(sample))
    eps = -2 * np.cos(k[0]) - 2 * np.cos(k[1])
    window = np.exp(-((eps - band_energy(model, k0)) ** 2) / (4 * 0.3**2))
    x = (np.arange(24) + 12) % 24 - 12  # minimal image from the origin
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    exact = []
    for t in times:
        psi = np.fft.ifftn(np.fft.fftn(psi0) * window * np.exp(-1j * eps * t))
        density = np.abs(psi) ** 2
        exact.append(np.sum(density * r2) / np.sum(density))
    np.testing.assert_allclose(spread, np.stack([exact, exact]), rtol=1e-8)


def test_contrast_errors():
    sample = box(16)
    k = momentum_grid(sample)
    with pytest.raises(ValueError, match="n_k must have shape"):
        backscattering_contrast(np.zeros((3, 16, 15)), k, [0.5, 0.5])
    with pytest.raises(ValueError, match="the ring annulus holds"):
        backscattering_contrast(np.zeros((3, 16, 16)), k, [0.5, 0.5], ring_halfwidth=0.01)


# ---------------------------------------------------------------------------------------------------------
# The ensemble


@pytest.mark.slow
def test_ensemble_is_reproducible_and_batch_independent():
    """Realization r depends on keys[r] only: the first 3 of 5 (batches of 2, the last one padded) equal 3 alone
    (the same compiled batch)."""
    sample = box(8)
    keys = jax.random.split(jax.random.key(5), 5)
    args = (sample, Model(energy=0.0), lambda k: anderson_potential(k, sample, 2.0), [math.pi / 3, 0.0],
            np.array([0.0, 2.0]))
    five = ensemble_momentum_distribution(keys, *args, batch=2, energy_width=1.0, half_width=6.0)
    three = ensemble_momentum_distribution(keys[:3], *args, batch=2, energy_width=1.0, half_width=6.0)
    assert five.shape == (5, 2, 8, 8)
    np.testing.assert_allclose(five[:3], three, atol=1e-12)
    np.testing.assert_allclose(five.sum(axis=(-1, -2)), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="the value of potential_fn must be a Disorder or a potential array of shape"):
        ensemble_momentum_distribution(keys, sample, Model(energy=0.0), lambda k: jnp.zeros(3), [0.1, 0.1], [1.0])


# ---------------------------------------------------------------------------------------------------------
# Physics


CBS_BOX, CBS_W, CBS_WIDTH = 48, 3.0, 0.3  # kl ~ 4.4 at E = -2.83: diffusive, xi_loc >> box


def _late_contrast(n, sample, k0, late):
    """Contrast of the time-averaged distributions (per realization) over the times ``late``."""
    return backscattering_contrast(n[:, late].mean(1), momentum_grid(sample), k0)


@pytest.mark.slow
def test_cbs_contrast_reaches_one():
    """Comparator, fixed before the run: contrast 1 (Cherroret et al., PRA 85, 011604 (2012)) at -k0 for a plane
    wave on a 48 x 48 periodic box, box disorder W = 3, k0 = (pi/4, pi/4) (E = -2.83, kl ~ 4.4, tau ~ 2),
    energy window 0.3, 192 realizations, n averaged over t = 12 ... 30 (6 - 15 tau; the single-scattering share
    (t/tau) e^(-t/tau) < 2 % there, and t << L^2 / D ~ 500). Measured: 1.10 +- 0.11 (SE over realizations);
    1.06 and 1.14 with annulus half widths of 0.6 and 1.5 pixels (the background fit's systematic). Window
    0.65 - 1.35: excludes no peak (0), the spin-orbit dip, and the half-contrast 0.5 of a packet wider than
    the Cooperon. At t = 0 (the filtered plane wave): 0.04 +- 0.07; window < 0.3, excluding a peak that is
    there from the start (an artefact of the estimator or of the energy filter)."""
    sample = box(CBS_BOX)
    k0 = nearest_grid_momentum(sample, [math.pi / 4, math.pi / 4])
    keys = jax.random.split(jax.random.key(2012), 192)
    times = np.arange(0.0, 31.0, 2.0)
    n = ensemble_momentum_distribution(keys, sample, Model(energy=0.0),
                                       lambda k: anderson_potential(k, sample, CBS_W), k0, times,
                                       energy_width=CBS_WIDTH, batch=32)
    result = _late_contrast(n, sample, k0, times >= 12)
    assert float(result.backward_se) < 0.12
    assert 0.65 < float(result.backward) < 1.35
    # at t <~ tau the ballistic packet still sits at +k0 and no CBS has built up (the window's own duration
    # ~ 1 / energy_width ~ 1.7 tau already gives some at t = 0)
    early = backscattering_contrast(n[:, 0], momentum_grid(sample), k0)
    assert float(early.forward) > 100
    assert float(early.backward) < 0.3


@pytest.mark.slow
def test_field_removes_the_cbs_peak():
    """Comparator, fixed before the run: contrast ~ x / sinh x <= 0.1 with x = 4 pi flux D t >= 4.8 at t >= 15
    (``cooperon_field_ratio``; D ~ 4 at W = 3, E = -2.83), so 0. Open 64 x 64 box (hard walls, the packet of
    width 8 starts at the centre and spreads to sqrt(4 D t) ~ 20 < 32 by t = 24), flux 0.0064 per plaquette
    (omega_c tau ~ 0.16: the ring is not bent), 64 realizations, measured in the symmetric gauge about the centre,
    n averaged over t = 15 ... 24. Measured: -0.00 +- 0.11 in the field against 0.98 +- 0.18 at zero field with
    the same keys (a packet of momentum spread 1 / 16, below the grid spacing 0.098). Windows: |C| < 0.35 in the
    field excludes an unchanged peak (the zero-field value); > 0.6 at zero field excludes 0.

    Caveat: the field that dephases the Cooperon also limits the kinetic-momentum resolution, sqrt(e B) ~ 0.2
    here against the Cooperon width (D t)^(-1/2) ~ 0.12 (their ratio is sqrt(x / 2) in any gauge), so this
    checks the removal of the peak, not the dephasing mechanism alone (the ring background at |k0| also drops,
    1.4e-3 against 2.4e-3 per pixel)."""
    sample = Sample(strip(64), 64)
    k0 = nearest_grid_momentum(sample, [math.pi / 4, math.pi / 4])
    keys = jax.random.split(jax.random.key(1985), 64)
    times = np.arange(0.0, 25.0, 3.0)
    late = times >= 15

    def contrast(flux):
        n = ensemble_momentum_distribution(keys, sample, Model(energy=0.0, flux=flux),
                                           lambda k: anderson_potential(k, sample, CBS_W), k0, times,
                                           energy_width=CBS_WIDTH, width=8.0, batch=32)
        return _late_contrast(n, sample, k0, late)

    field, zero = contrast(0.0064), contrast(0.0)
    assert float(field.backward_se) < 0.15
    assert abs(float(field.backward)) < 0.35
    assert float(zero.backward) > 0.6


@pytest.mark.slow
def test_spin_orbit_turns_the_peak_into_a_dip():
    """Comparator, fixed before the run: spin-summed contrast -1/2 for an up-spin packet once the triplet
    Cooperons have died (strong spin-orbit; derivation in the module docstring). Rashba alpha = 0.1 on the 48 x 48
    periodic box (W = 3, k0 = (pi/4, pi/4), tau ~ 2): spin splitting Omega = 4 alpha ~ 0.4, Omega tau ~ 0.8,
    D'yakonov-Perel times tau_z = 1 / (Omega^2 tau) ~ 3, tau_par ~ 6, so at t = 20 ... 40 the triplets are
    suppressed by e^-3 or more. 64 realizations. Measured: -0.60 +- 0.025 (SE over realizations).

    The -0.1 offset is the crossover towards resolved helicity bands (contrast -1 there, Berry phase pi in each
    band): measured -0.80 +- 0.012 at alpha = 0.2 (Omega tau ~ 1.6) and -0.45 +- 0.06 at alpha = 0.05
    (t = 75 ... 87.5, triplets not yet fully dead), so -1/2 is the limit Omega tau -> 0, t >> tau_s. Window
    -0.75 < C < -0.4: excludes +1 (no spin-orbit), 0 (unitary class, or a dead Cooperon) and -1 (resolved
    helicity bands)."""
    sample = box(CBS_BOX, spinful=True)
    k0 = nearest_grid_momentum(sample, [math.pi / 4, math.pi / 4])
    keys = jax.random.split(jax.random.key(1), 64)
    times = np.linspace(0.0, 40.0, 9)
    n = ensemble_momentum_distribution(keys, sample, Model(energy=0.0, rashba=0.1),
                                       lambda k: anderson_potential(k, sample, CBS_W), k0, times,
                                       energy_width=CBS_WIDTH, spin=0, batch=32)
    result = _late_contrast(n, sample, k0, times >= 20)
    assert float(result.backward_se) < 0.05
    assert -0.75 < float(result.backward) < -0.4


@pytest.mark.slow
def test_forward_peak_appears_with_localization():
    """Comparator, fixed before the run: no CFS peak at t << t_loc, a CFS contrast of order 1 (-> 1 as
    t / t_loc -> infinity) at t >~ t_loc (Karpiuk et al., PRL 109, 190601 (2012)). Quasi-1D periodic strip 8 wide
    and 1024 long, W = 3, k0 = (1.0, 0) (E = -3.08, 3 open channels, l ~ 4), localization length 29 (transfer
    matrix, ``localization_length``), so L >> xi and t_loc ~ 2 pi nu xi W_y ~ 10^2, while the Heisenberg time of
    the whole strip, 2 pi nu L W_y ~ 4000, is far off (a finite closed box also grows a CFS peak, following the
    GOE form factor: <= 0.3 at t <= 700 for this strip; measured 0.59 +- 0.07 at t = 300 - 1000 on a 48 x 48 box
    whose t_H ~ 1150, which is why the strip is long). 64 realizations. Measured with 96 realizations:
    -0.01 +- 0.09 at t = 20 (10 tau); 0.63 +- 0.17, 0.66 +- 0.15, 0.60 +- 0.15, 0.69 +- 0.16 at t = 300, 500,
    700, 1000. Windows: < 0.3 at t = 20, excluding a peak from the start; > 0.3 averaged over t = 400, 700,
    excluding no CFS (0) and the finite-box value."""
    sample = Sample(strip(8, boundary="periodic"), 1024, periodic=True)
    k0 = nearest_grid_momentum(sample, [1.0, 0.0])
    keys = jax.random.split(jax.random.key(190601), 64)
    times = np.array([20.0, 400.0, 700.0])
    n = ensemble_momentum_distribution(keys, sample, Model(energy=0.0),
                                       lambda k: anderson_potential(k, sample, CBS_W), k0, times,
                                       energy_width=CBS_WIDTH, batch=32)
    k = momentum_grid(sample)
    options = dict(ring_halfwidth=0.06, exclude=0.1)  # the grid is 2 pi / 1024 along x, 2 pi / 8 across
    early = backscattering_contrast(n[:, 0], k, k0, **options)
    late = backscattering_contrast(n[:, 1:].mean(1), k, k0, **options)
    assert float(early.forward) < 0.3
    assert float(late.forward_se) < 0.15
    assert float(late.forward) > 0.3
