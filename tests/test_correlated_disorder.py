"""Smooth (Gaussian-correlated) disorder and short-range scatterers (docs/physics.md#correlated-disorder).

References: the defaults reproduce the Anderson draw bit for bit (the documented fold_in scheme, written out here);
the smooth potential equals a brute-force double sum over every pair of sites (numpy, minimum image written out
per lattice); the two-point correlator equals its exact lattice sum and its continuum limit within the stated
standard errors; the short-range scatterers have the asked density and amplitude bounds.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._runs import config as _config
from difftransport._runs import ensemble as _ensemble
from difftransport._runs import runner as _runner


def _fold(key, *ints):
    for i in ints:
        key = jax.random.fold_in(key, i)
    return key


def test_defaults_are_the_anderson_draw_bit_for_bit():
    """V[s, y] = W (uniform(fold_in(key, 0, s, y)) - 1/2): the draw of the Anderson potential, unchanged by the
    new keywords at their defaults (and by correlation_length=0 with density=1 given explicitly)."""
    key, sample = jax.random.key(11), dt.Sample(dt.strip(5), 7)
    expected = np.array([[1.7 * (float(jax.random.uniform(_fold(key, 0, s, y), (), jnp.float64)) - 0.5)
                          for y in range(5)] for s in range(7)])
    for draw in ({}, {"correlation_length": 0.0, "density": 1.0, "short_range_density": 0.0,
                      "short_range_strength": 0.0}):
        got = np.asarray(dt.draw_disorder(key, sample, strength=1.7, **draw).potential)
        assert got.dtype == np.float64 and np.array_equal(got, expected)
    for dist in ("box", "gaussian"):
        honeycomb = dt.Sample(dt.zigzag_ribbon(4), 6)
        a = dt.anderson_potential(key, honeycomb, 0.9, distribution=dist)
        b = dt.correlated_potential(key, honeycomb, 0.9, correlation_length=0, distribution=dist)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def _brute_force(field, sample, xi, wraps):
    """sum_j field_j prod_axis g(d_axis) over every pair, g(d) = exp(-d^2 / 2 xi^2) for |d| <= 4 xi."""
    pos = sample.site_positions().reshape(-1, 3)
    d = pos[:, None, :] - pos[None, :, :]
    for axis, wrap in enumerate(wraps):
        if wrap is not None:
            d[..., axis] -= wrap * np.round(d[..., axis] / wrap)
    w = np.prod(np.where(np.abs(d) <= 4 * xi, np.exp(-d**2 / (2 * xi**2)), 0.0), axis=-1)
    return (w @ np.asarray(field).reshape(-1)).reshape(field.shape)


CASES = [  # sample, correlation length, (x, y, z) periods of the minimum image
    (dt.Sample(dt.strip(6), 9), 1.3, (None, None, None)),
    (dt.Sample(dt.strip(7, boundary="periodic"), 8), 1.1, (None, 7.0, None)),
    (dt.Sample(dt.bar(3, 4, boundary="periodic"), 5), 0.9, (None, 3.0, 4.0)),
    (dt.Sample(dt.zigzag_ribbon(4, boundary="periodic"), 6), 0.8, (None, 2 * math.sqrt(3), None)),
    (dt.Sample(dt.armchair_ribbon(5), 4), 1.0, (None, None, None)),
    (dt.Sample(dt.strip(5), 6, periodic=True), 1.2, (6.0, None, None)),  # ring shorter than 2 x 4 xi
    (dt.Sample(dt.zigzag_ribbon(4, boundary="periodic"), 12, periodic=True), 0.7, (12.0, 2 * math.sqrt(3), None)),
]


@pytest.mark.parametrize("sample, xi, wraps", CASES, ids=[f"{c[0].lattice.name}-L{c[0].length}" for c in CASES])
def test_smooth_potential_equals_the_brute_force_sum(sample, xi, wraps):
    """The smooth potential is the Gaussian sum over the impurity field c_j U_j (the correlation_length=0 draw at
    the same density), with the minimum image across periodic boundaries and clean leads beyond the ends."""
    draw = {"strength": 1.0, "density": 0.6}
    draws = jax.jit(lambda key: (dt.draw_disorder(key, sample, **draw).potential,
                                 dt.draw_disorder(key, sample, correlation_length=xi, **draw).potential))
    field, smooth = (np.asarray(v) for v in draws(jax.random.key(5)))
    assert np.count_nonzero(field) not in (0, field.size)
    np.testing.assert_allclose(smooth, _brute_force(field, sample, xi, wraps), atol=1e-13, rtol=0)


def test_a_site_near_y0_feels_an_impurity_near_yW():
    """Periodic minus hard-wall strip (the same impurity field): at y = 0 exactly the images of the impurities
    at y = 5, 6, 7 of a width-8 strip, at distance 8 - y_j (xi = 1, cutoff 4: y = 4 counts in both)."""
    key, xi = jax.random.key(2), 1.0
    draw = {"strength": 1.0, "density": 0.5, "correlation_length": xi}
    field, hard, periodic = (np.asarray(v) for v in jax.jit(lambda k: (
        dt.draw_disorder(k, dt.Sample(dt.strip(8), 12), strength=1.0, density=0.5).potential,
        dt.draw_disorder(k, dt.Sample(dt.strip(8), 12), **draw).potential,
        dt.draw_disorder(k, dt.Sample(dt.strip(8, boundary="periodic"), 12), **draw).potential))(key))
    x = np.arange(12)
    gx = np.where(np.abs(x[:, None] - x[None, :]) <= 4, np.exp(-(x[:, None] - x[None, :]) ** 2 / 2), 0.0)
    images = sum(gx @ field[:, y] * math.exp(-((8 - y) ** 2) / 2) for y in (5, 6, 7))
    np.testing.assert_allclose((periodic - hard)[:, 0], images, atol=1e-13, rtol=0)
    assert np.min(np.abs(images)) > 1e-3
    np.testing.assert_allclose((periodic - hard)[:, 3], 0.0, atol=1e-13)  # y = 3 sees no wrapped impurity


def test_enlarging_the_sample_keeps_the_draws():
    """The occupations and amplitudes (the correlation_length=0 draw) and the short-range scatterers are the
    same on the common slices of a longer sample: pure functions of (key, slice, site label). The smooth
    potential itself is the same only farther than its reach (floor(4 xi) + 1 = 5 slices here) from the far end:
    near the end it now also sums the impurities of the added slices."""
    key, lattice = jax.random.key(9), dt.zigzag_ribbon(5)
    short, long = dt.Sample(lattice, 10), dt.Sample(lattice, 16)
    draw = {"strength": 1.0, "density": 0.4, "short_range_density": 0.2, "short_range_strength": 0.7}

    def draws(sample):
        return jax.jit(lambda k: (dt.draw_disorder(k, sample, **draw).potential,
                                  dt.correlated_potential(k, sample, 1.0, correlation_length=1.0, density=0.4)))(key)

    (a, smooth_a), (b, smooth_b) = draws(short), draws(long)
    assert np.array_equal(np.asarray(a), np.asarray(b)[:10])
    np.testing.assert_allclose(smooth_a[:5], smooth_b[:5], atol=1e-14, rtol=0)
    assert np.max(np.abs(smooth_a[9] - smooth_b[9])) > 1e-2


def test_two_point_correlator():
    """<V(r) V(r')> on a honeycomb torus (periodic zigzag ribbon of circumference 16 sqrt(3)/2 ~ 13.9, a ring of
    16 cells; both > 2 x 4 xi), averaged over 2000 keys and over every site r with r' = r + (m, 0), against

        exact: n var(U) sum_j g(r - R_j) g(r' - R_j), g the full Gaussian (the 4 xi cutoff changes it by < 1e-3),
        continuum: n var(U) rho pi xi^2 exp(-|r - r'|^2 / (4 xi^2)), rho = 4/sqrt(3) sites per unit area.

    The comparator is the exact sum, tolerance 4 standard errors of the mean over keys (each key's spatial average
    is one sample; 0.6-0.8% of the variance <V^2> = 0.408). The nearest wrong answers it excludes: a correlator
    exp(-d^2 / 2 xi^2) instead of exp(-d^2 / 4 xi^2) (-10% at d = 1, -36% at d = 2, > 10 standard errors) and the
    variance of a box of width 2W (x4)."""
    xi, density, length, n = 1.5, 0.3, 16, 16
    sample = dt.Sample(dt.zigzag_ribbon(n, boundary="periodic"), length, periodic=True)
    keys = jax.random.split(jax.random.key(0), 2000)
    shifts = (0, 1, 2, 3)

    @jax.jit
    def products(key):
        v = dt.correlated_potential(key, sample, 1.0, correlation_length=xi, density=density)
        return jnp.stack([jnp.mean(v * jnp.roll(v, -m, axis=0)) for m in shifts])

    measured = np.asarray(jax.lax.map(products, keys, batch_size=250))
    mean, stderr = measured.mean(0), measured.std(0, ddof=1) / math.sqrt(len(keys))

    pos = sample.site_positions().reshape(-1, 3)[:, :2]
    wraps = np.array([length * 1.0, n * math.sqrt(3) / 2])

    def gauss(a, b):
        d = a[:, None, :] - b[None, :, :]
        d -= wraps * np.round(d / wraps)
        return np.exp(-np.sum(d**2, -1) / (2 * xi**2))

    g = gauss(pos, pos)  # (sites, sites)
    var_u = 1 / 12
    variance = density * var_u * np.mean(np.sum(g * g, axis=1))
    for k, m in enumerate(shifts):
        shifted = pos + np.array([m, 0.0])
        exact = density * var_u * np.mean(np.sum(g * gauss(shifted, pos), axis=1))
        continuum = density * var_u * (4 / math.sqrt(3)) * math.pi * xi**2 * math.exp(-m**2 / (4 * xi**2))
        assert abs(exact / continuum - 1) < 1e-6  # lattice corrections ~ exp(-G^2 xi^2 / 4) are negligible here
        assert stderr[k] < 0.01 * variance
        assert abs(mean[k] - exact) < 4 * stderr[k], (m, mean[k], exact, stderr[k])
        wrong = density * var_u * (4 / math.sqrt(3)) * math.pi * xi**2 * math.exp(-m**2 / (2 * xi**2))
        if m:
            assert abs(mean[k] - wrong) > 8 * stderr[k]


def test_short_range_scatterers():
    """Density 0.1 on 10^4 sites: the occupied fraction within 4 binomial standard errors (0.003); amplitudes in
    [-1, 1] for short_range_strength 2 (box convention), their mean square 1/3 within 4 standard errors
    (sqrt(4/45 / 1000) ~ 0.0094). Not scaled by strength: the potential is strength x main + short range."""
    key, sample = jax.random.key(4), dt.Sample(dt.strip(50), 200)
    draw = {"short_range_density": 0.1, "short_range_strength": 2.0}
    short, only, both, main, full = (np.asarray(v) for v in jax.jit(lambda k: (
        dt.short_range_potential(k, sample, 2.0, density=0.1),
        dt.draw_disorder(k, sample, strength=0.0, **draw).potential,
        dt.draw_disorder(k, sample, strength=3.0, correlation_length=0.8, density=0.5, **draw).potential,
        dt.correlated_potential(k, sample, 3.0, correlation_length=0.8, density=0.5),
        dt.short_range_potential(k, sample, 2.0, density=1.0)))(key))
    occupied = short[short != 0]
    assert abs(occupied.size / short.size - 0.1) < 4 * math.sqrt(0.09 / short.size)
    assert np.max(np.abs(occupied)) <= 1.0 and np.max(np.abs(occupied)) > 0.99
    assert abs(np.mean(occupied**2) - 1 / 3) < 4 * math.sqrt(4 / 45 / occupied.size)
    np.testing.assert_array_equal(only, short)
    np.testing.assert_allclose(both, main + short, atol=1e-15, rtol=0)
    assert np.count_nonzero(full) == short.size


def test_linear_in_strength_differentiable_and_vmappable():
    """potential(w, s) = w M + s S: the gradient with respect to (strength, short_range_strength) is (sum M,
    sum S) (vmap over keys: the correlator and valley tests batch with lax.map)."""
    sample = dt.Sample(dt.armchair_ribbon(6), 8)
    keys = jax.random.split(jax.random.key(1), 1)
    draw = {"correlation_length": 1.2, "density": 0.5, "short_range_density": 0.3}
    potential = jax.jit(lambda w, s, key: dt.draw_disorder(key, sample, strength=w, short_range_strength=s,
                                                           **draw).potential)
    grad = jax.jit(jax.grad(lambda w, s, key: jnp.sum(potential(w, s, key)), argnums=(0, 1)))(2.0, 0.5, keys[0])
    expected = [float(jnp.sum(potential(1.0, 0.0, keys[0]))), float(jnp.sum(potential(0.0, 1.0, keys[0])))]
    np.testing.assert_allclose([float(grad[0]), float(grad[1])], expected, rtol=1e-13)


def test_valley_conservation():
    """Fourier weight of the smooth potential at an intervalley wavevector relative to a small q, on a honeycomb
    torus (periodic zigzag ribbon, n = 12, a ring of 12 cells; q_v = (8 pi / 3, 0) is equivalent to |K - K'| =
    4 pi / 3 and fits both periods, q_s = (2 pi / 12, 0)). For independent zero-mean impurities
    <|V(q)|^2> = n var(U) sum_j |S_j(q)|^2, S_j(q) = sum_i g(r_i - R_j) e^{-i q (r_i - R_j)}; by Poisson summation
    the same-sublattice terms of S at a zone corner give 3 exp(-q^2 xi^2 / 2) and the other sublattice cancels, so

        <|V(q_v)|^2> / <|V(q_s)|^2> ~ (3/2)^2 exp(-(4 pi / 3)^2 xi^2) / exp(-q_s^2 xi^2)

    (4.49e-3 at xi = 0.6; the exact lattice sum differs by 0.2%). Over 4000 keys, standard error 2.3% (delta
    method over the per-key powers); tolerance 4 standard errors. Excluded: no suppression (ratio ~ 1) and the
    amplitude exponent exp(-q^2 xi^2 / 2) for the power (a factor 12)."""
    xi, n, length = 0.6, 12, 12
    sample = dt.Sample(dt.zigzag_ribbon(n, boundary="periodic"), length, periodic=True)
    pos = sample.site_positions().reshape(-1, 3)[:, :2]
    valley, small = np.array([8 * math.pi / 3, 0.0]), np.array([2 * math.pi / length, 0.0])
    wraps = np.array([float(length), n * math.sqrt(3) / 2])
    d = pos[:, None, :] - pos[None, :, :]
    d -= wraps * np.round(d / wraps)
    g = np.prod(np.where(np.abs(d) <= 4 * xi, np.exp(-d**2 / (2 * xi**2)), 0.0), axis=-1)
    power = [np.sum(np.abs(np.sum(g * np.exp(-1j * d @ q), axis=0)) ** 2) for q in (valley, small)]
    exact = power[0] / power[1]
    analytic = 2.25 * math.exp(-((4 * math.pi / 3) ** 2) * xi**2) / math.exp(-(small @ small) * xi**2)
    assert abs(exact / analytic - 1) < 0.01

    phases = jnp.asarray(np.stack([np.exp(-1j * pos @ q) for q in (valley, small)]))

    @jax.jit
    def powers(key):
        v = dt.correlated_potential(key, sample, 1.0, correlation_length=xi, density=0.5).reshape(-1)
        return jnp.abs(phases @ v) ** 2

    p = np.asarray(jax.lax.map(powers, jax.random.split(jax.random.key(0), 4000), batch_size=500))
    a, b = p.mean(0)
    cov = np.cov(p.T) / len(p)
    ratio = a / b
    stderr = ratio * math.sqrt(cov[0, 0] / a**2 + cov[1, 1] / b**2 - 2 * cov[0, 1] / (a * b))
    assert stderr < 0.03 * exact
    assert abs(ratio - exact) < 4 * stderr, (ratio, exact, stderr)


def test_errors():
    sample = dt.Sample(dt.strip(4), 5)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"density must be a real number in \(0, 1\], got 0.0"):
        dt.correlated_potential(key, sample, 1.0, correlation_length=1.0, density=0.0)
    with pytest.raises(ValueError, match=r"correlation_length must be a real number in \[0, inf\), got -1.0"):
        dt.draw_disorder(key, sample, strength=1.0, correlation_length=-1.0)
    with pytest.raises(ValueError, match=r"short_range_density must be a real number in \[0, 1\], got 1.5"):
        dt.short_range_potential(key, sample, 1.0, density=1.5)
    with pytest.raises(ValueError, match=r"short_range_strength=0.5 needs short_range_density > 0"):
        dt.draw_disorder(key, sample, short_range_strength=0.5)
    with pytest.raises(ValueError, match=r"correlation_length must be a concrete number, not traced"):
        jax.jit(lambda xi: dt.correlated_potential(key, sample, 1.0, correlation_length=xi))(1.0)


VALID = {"run": {"realizations": 4},
         "ensembles": {"a": {"sample": {"lattice": "zigzag_ribbon", "n": 4, "length": 5}, "model": {"energy": 0.5}}}}


@pytest.mark.parametrize("key, value, match", [
    ("density", 0, r"ensembles.a.disorder.density = 0 is out of range: must be a number in \(0, 1\]"),
    ("density", 1.5, r"ensembles.a.disorder.density = 1.5 is out of range: must be a number in \(0, 1\]"),
    ("correlation_length", -0.5, r"disorder.correlation_length = -0.5 is out of range: must be a finite number >= 0"),
    ("correlation_length", float("inf"), r"disorder.correlation_length = inf is out of range"),
    ("short_range_density", 1.2, r"disorder.short_range_density = 1.2 is out of range: must be a number in \[0, 1\]"),
    ("short_range_strength", -1, r"disorder.short_range_strength = -1 is out of range: must be a finite number >= 0"),
    ("short_range_strength", 0.5, r"disorder.short_range_strength = 0.5 needs disorder.short_range_density > 0"),
    ("short_range_density", 0.1, r"disorder.short_range_density = 0.1 needs disorder.short_range_strength > 0"),
    ("density", "all", r"disorder.density = 'all' has the wrong type"),
])
def test_config_validation(key, value, match):
    config = {**VALID, "ensembles": {"a": {**VALID["ensembles"]["a"], "disorder": {key: value}}}}
    with pytest.raises(_config.ConfigError, match=match):
        _config.validate(config)
    defaults = _config.validate(VALID)["ensembles"]["a"]["disorder"]
    assert {k: defaults[k] for k in ("correlation_length", "density", "short_range_density", "short_range_strength")} \
        == {"correlation_length": 0.0, "density": 1.0, "short_range_density": 0.0, "short_range_strength": 0.0}


def test_default_terms_keep_the_hash_of_older_runs():
    """Runs stored before the correlated and short-range terms existed have no such keys; at their defaults the
    terms change no number, so the result hash (what a resume compares) is the same with or without them, and a
    non-default value changes it."""
    normalized = _config.validate(VALID)
    older = {**normalized, "ensembles": {"a": {**normalized["ensembles"]["a"], "disorder": {
        k: v for k, v in normalized["ensembles"]["a"]["disorder"].items()
        if k not in ("correlation_length", "density", "short_range_density", "short_range_strength")}}}}
    assert _config.config_hash(older) == _config.config_hash(normalized)
    smooth = _config.validate({**VALID, "ensembles": {"a": {**VALID["ensembles"]["a"],
                                                            "disorder": {"correlation_length": 1.0}}}})
    assert _config.config_hash(smooth) != _config.config_hash(normalized)


CONFIG = """
[run]
seed = 5
realizations = 6
chunk = 4

[ensembles.graphene]
observables = ["conductance"]
[ensembles.graphene.sample]
lattice = "zigzag_ribbon"
n = 4
length = 6
[ensembles.graphene.model]
energy = 0.4
[ensembles.graphene.disorder]
strength = 1.0
correlation_length = 1.2
density = 0.3
short_range_density = 0.05
short_range_strength = 0.8
[ensembles.graphene.grid]
strength = [0.5, 1.5]
"""


def test_ensemble_with_correlated_disorder_runs_and_is_reproducible(tmp_path):
    """A TOML run on a honeycomb ribbon: realization r, recomputed alone through the pure realization function,
    equals row r of the run, and the run at grid strength w equals the conductances of
    draw_disorder(fold_in(key(seed), r), strength=w, ...) (through ensemble_conductances): the main term scales
    with the grid's strength, the short-range scatterers keep their own."""
    path = tmp_path / "graphene.toml"
    path.write_text(CONFIG)
    store = _runner.run(path, tmp_path / "run", quiet=True, log=lambda *_: None)
    with np.load(store.path / "results" / "graphene.npz") as data:
        g = data["conductance"]
    assert g.shape == (6, 2) and np.all(np.abs(g[:, 0] - g[:, 1]) > 1e-4)
    entry = _config.load(path)["ensembles"]["graphene"]
    np.testing.assert_allclose(_ensemble.realization_function(entry, seed=5)(3)["conductance"], g[3],
                               atol=1e-13, rtol=0)
    sample = dt.Sample(dt.zigzag_ribbon(4), 6)
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(5), r))(jnp.arange(6))
    draw = {"correlation_length": 1.2, "density": 0.3, "short_range_density": 0.05, "short_range_strength": 0.8}
    direct = jax.vmap(lambda w: dt.ensemble_conductances(keys, sample, dt.Model(energy=0.4), strength=w, **draw))
    np.testing.assert_allclose(direct(jnp.array([0.5, 1.5])).T, g, atol=1e-12, rtol=0)
