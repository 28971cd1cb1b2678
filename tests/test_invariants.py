"""Invariants on random systems with fixed keys: Onsager symmetry, unitarity (T + R = N), RGF = dense
inverse, Buttiker-probe current conservation and coherent limit, gauge invariance, transmission eigenvalues."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import central_difference

STRIP = dt.Sample(dt.strip(8), 12)
STRIP_DISORDER = dt.draw_disorder(jax.random.key(11), STRIP, strength=1.5)
SPIN = dt.Sample(dt.strip(5), 7, spinful=True)
SPIN_DISORDER = dt.draw_disorder(jax.random.key(12), SPIN, strength=1.2, moments=True)


@pytest.mark.parametrize("dephasing, tau_phi", [("probe", None), ("probe", 6.0), ("buttiker", 6.0)])
def test_onsager_symmetry(dephasing, tau_phi):
    g = lambda phi: dt.conductance(STRIP, dt.Model(energy=0.8, flux=phi, tau_phi=tau_phi), STRIP_DISORDER, dephasing=dephasing)
    assert abs(g(0.03) - g(-0.03)) < 1e-11
    assert abs(g(0.03) - g(0.0)) > 1e-3  # the field does change G: the symmetry is not trivial


def test_absorption_alone_breaks_onsager_symmetry():
    """Why the probe correction exists (Pareek, Joshi, Jayannavar, PRB 57, 8809): raw T(L->R) of an
    absorbing sample is not even in B."""
    g = lambda phi: dt.conductance(STRIP, dt.Model(energy=0.8, flux=phi, tau_phi=6.0), STRIP_DISORDER, dephasing="absorb")
    assert abs(g(0.03) - g(-0.03)) > 1e-4


def test_onsager_with_spin_orbit_and_magnetic_moments():
    """Time reversal flips the field and the moments: G(phi, m) = G(-phi, -m); Rashba is time-reversal even."""
    def g(phi, sign):
        disorder = dataclasses.replace(SPIN_DISORDER, moments=sign * SPIN_DISORDER.moments)
        return dt.conductance(SPIN, dt.Model(energy=0.4, flux=phi, rashba=0.3, exchange=0.5), disorder)
    assert abs(g(0.05, 1) - g(-0.05, -1)) < 1e-11
    assert abs(g(0.05, 1) - g(-0.05, 1)) > 1e-4


@pytest.mark.parametrize("sample, model, disorder", [
    (STRIP, dt.Model(energy=0.8, flux=0.03), STRIP_DISORDER),
    (SPIN, dt.Model(energy=-1.3, flux=0.05, rashba=0.4, exchange=0.5), SPIN_DISORDER),
    (dt.Sample(dt.armchair_ribbon(7), 4), dt.Model(energy=0.7, flux=0.01, mass=0.1),
     dt.draw_disorder(jax.random.key(13), dt.Sample(dt.armchair_ribbon(7), 4), strength=0.8)),
    (dt.Sample(dt.bar(3, 4), 5), dt.Model(energy=-0.5), dt.draw_disorder(jax.random.key(14), dt.Sample(dt.bar(3, 4), 5), strength=3.0)),
])
def test_unitarity_transmission_plus_reflection(sample, model, disorder):
    t = dt.conductance(sample, model, disorder)
    r = dt.reflection(sample, model, disorder)
    n = dt.open_channels(sample, model)
    assert n > 0 and 0 <= t <= n
    assert abs(t + r - n) < 1e-10


def test_rgf_equals_dense_inverse():
    """Every block the solvers use (G_N1, G_NN, G_11, G_1N) against (E - H - Sigma)^(-1) of the whole sample."""
    model = dt.Model(energy=0.4, flux=0.05, rashba=0.3, exchange=0.5, tau_phi=5.0)
    ham = dt.build_hamiltonian(SPIN, model, SPIN_DISORDER)
    leads = dt.lead_self_energies(model.energy, ham.lead.cell, ham.lead.hop, ham.lead.factor)
    h = dt.dense_hamiltonian(ham)
    n = ham.size
    sigma = jnp.zeros_like(h).at[:n, :n].add(leads.left).at[-n:, -n:].add(leads.right)
    g = np.linalg.inv(model.energy * np.eye(h.shape[0]) - h - sigma)
    g_nn, g_n1 = dt.sweep(model.energy, ham, leads.left, leads.right)
    g_11, g_1n = dt.sweep(model.energy, ham.reversed(), leads.right, leads.left)
    np.testing.assert_allclose(g_n1, g[-n:, :n], atol=1e-12)
    np.testing.assert_allclose(g_nn, g[-n:, -n:], atol=1e-12)
    np.testing.assert_allclose(g_11, g[:n, :n], atol=1e-12)
    np.testing.assert_allclose(g_1n, g[:n, -n:], atol=1e-12)


def test_buttiker_probes_conserve_current():
    model = dt.Model(energy=0.8, flux=0.02, tau_phi=2.0)
    sample = dt.Sample(dt.strip(5), 6)
    disorder = dt.draw_disorder(jax.random.key(15), sample, strength=1.0)
    i_left, i_right = dt.buttiker_currents(sample, model, disorder)
    coherent = dt.conductance(sample, dt.Model(energy=0.8, flux=0.02), disorder)
    assert abs(i_left - i_right) < 1e-11
    assert abs(i_right - coherent) > 1e-2  # strong dephasing changes G: conservation is not trivial
    assert abs(dt.conductance(sample, model, disorder, dephasing="buttiker") - i_right) < 1e-14


@pytest.mark.parametrize("dephasing", ["probe", "buttiker"])
def test_dephased_conductance_tends_to_coherent(dephasing):
    """|G(tau_phi) - G_coherent| ~ 1/tau_phi: fitted log-log slope -1 over tau_phi = 1e2 .. 1e4."""
    sample = dt.Sample(dt.strip(5), 6)
    disorder = dt.draw_disorder(jax.random.key(16), sample, strength=1.0)
    coherent = dt.conductance(sample, dt.Model(energy=0.8), disorder)
    taus = np.array([1e2, 1e3, 1e4])
    diffs = [abs(float(dt.conductance(sample, dt.Model(energy=0.8, tau_phi=t), disorder, dephasing=dephasing) - coherent)) for t in taus]
    slope = np.polyfit(np.log(taus), np.log(diffs), 1)[0]
    assert abs(slope + 1) < 0.02
    assert diffs[-1] < 1e-3


def _shift_y(lattice, y0):
    pos = tuple((x, y + y0, z) for x, y, z in lattice.positions)
    return dataclasses.replace(lattice, positions=pos)


@pytest.mark.parametrize("spinful", [False, True])
def test_gauge_invariance_landau_origin(spinful):
    """A = -B (y - y0) x differs from A = -B y x by a gauge transformation (in sample and leads)."""
    lattice = dt.strip(6)
    model = dt.Model(energy=0.5, flux=0.04, rashba=0.3 if spinful else None)
    a, b = dt.Sample(lattice, 8, spinful), dt.Sample(_shift_y(lattice, 2.7), 8, spinful)
    disorder = dt.draw_disorder(jax.random.key(17), a, strength=1.0)
    assert abs(dt.conductance(a, model, disorder) - dt.conductance(b, model, disorder)) < 1e-11
    ha, hb = dt.build_hamiltonian(a, model, disorder), dt.build_hamiltonian(b, model, disorder)
    assert np.max(np.abs(ha.lead.hop - hb.lead.hop)) > 0.1  # the two gauges really differ


def test_gauge_invariance_random_site_phases(rng):
    """H -> U H U^+ with random phases on the sites of all slices but the two that touch the leads."""
    model = dt.Model(energy=0.4, flux=0.05, rashba=0.3, exchange=0.5)
    ham = dt.build_hamiltonian(SPIN, model, SPIN_DISORDER)
    theta = rng.uniform(0, 2 * np.pi, (SPIN.length, SPIN.lattice.sites))
    theta[0] = theta[-1] = 0
    u = np.repeat(np.exp(1j * theta), 2, axis=1)  # per site, the same on both spin orbitals
    onsite = jax.vmap(ham.block)(ham.site)
    hops = jax.vmap(lambda h: h.dense())(ham.hops)
    transformed = dt.SlicedHamiltonian.from_dense(
        u[:, :, None] * onsite * np.conj(u)[:, None, :],
        u[1:, :, None] * hops * np.conj(u)[:-1, None, :],
        ham.lead.cell, ham.lead.hop,
    )
    original = dt.conductance(SPIN, model, SPIN_DISORDER)
    assert abs(dt.hamiltonian_transmission(transformed, model.energy) - original) < 1e-11
    untransformed = dt.SlicedHamiltonian.from_dense(onsite, hops, ham.lead.cell, ham.lead.hop)
    assert abs(dt.hamiltonian_transmission(untransformed, model.energy) - original) < 1e-12


def test_transmission_eigenvalues_and_fano_factor():
    model = dt.Model(energy=0.8, flux=0.02)
    t = dt.transmission_eigenvalues(STRIP, model, STRIP_DISORDER)
    g = dt.conductance(STRIP, model, STRIP_DISORDER)
    n = int(dt.open_channels(STRIP, model))
    assert t.shape == (STRIP.slice_size,)
    assert np.all(np.diff(t) <= 1e-15) and t[0] <= 1 + 1e-12 and np.all(t[n:] < 1e-10) and np.all(t > -1e-12)
    assert abs(np.sum(t) - g) < 1e-11
    fano = dt.fano_factor(STRIP, model, STRIP_DISORDER)
    assert abs(fano - np.sum(t * (1 - t)) / np.sum(t)) < 1e-11
    assert 0 < fano < 1
    # Clean: T_n in {0, 1} and no shot noise.
    clean_t = dt.transmission_eigenvalues(STRIP, model)
    np.testing.assert_allclose(clean_t, np.r_[np.ones(n), np.zeros(STRIP.slice_size - n)], atol=1e-10)
    assert abs(dt.fano_factor(STRIP, model)) < 1e-10


def test_fano_factor_and_eigenvalue_gradients():
    f = lambda e: dt.fano_factor(STRIP, dt.Model(energy=e, flux=0.02), STRIP_DISORDER)
    fd = central_difference(f, jnp.asarray(0.8), 1e-4)
    assert abs(jax.grad(f)(0.8) - fd) <= 1e-6 * abs(fd)
    top = lambda e: dt.transmission_eigenvalues(STRIP, dt.Model(energy=e, flux=0.02), STRIP_DISORDER)[0]
    fd = central_difference(top, jnp.asarray(0.8), 1e-4)
    assert abs(jax.grad(top)(0.8) - fd) <= 1e-6 * abs(fd)
    # closed channels: finite (zero) gradients, never NaN
    all_grads = jax.jacfwd(lambda e: dt.transmission_eigenvalues(STRIP, dt.Model(energy=e, flux=0.02), STRIP_DISORDER))(0.8)
    assert np.all(np.isfinite(all_grads))


def test_disorder_is_random_access():
    """A realization is a function of (key, slice, site label): growing the sample keeps the old values."""
    key = jax.random.key(21)
    small = dt.draw_disorder(key, dt.Sample(dt.strip(6), 10, spinful=True), strength=1.0, moments=True, su2=True)
    large = dt.draw_disorder(key, dt.Sample(dt.strip(9), 14, spinful=True), strength=1.0, moments=True, su2=True)
    np.testing.assert_array_equal(small.potential, large.potential[:10, :6])
    np.testing.assert_array_equal(small.moments, large.moments[:10, :6])
    np.testing.assert_array_equal(small.su2_inter, large.su2_inter[:9, :6])
    np.testing.assert_array_equal(small.su2_intra, large.su2_intra[:10, :5])  # bonds (y, y+1), y < 5
    bar_small = dt.anderson_potential(key, dt.Sample(dt.bar(3, 2), 4), 2.0)
    bar_large = dt.anderson_potential(key, dt.Sample(dt.bar(5, 4), 4), 2.0)
    np.testing.assert_array_equal(bar_small, bar_large[:, :3, :2])


def test_disorder_statistics():
    """Box disorder of width W has variance W^2/12; Gaussian has standard deviation W (n = 40000 sites:
    standard error of the variance ~ sqrt(2/n) ~ 0.7%, tolerance 3%)."""
    sample = dt.Sample(dt.strip(200), 200)
    box = dt.anderson_potential(jax.random.key(0), sample, 2.0)
    gauss = dt.anderson_potential(jax.random.key(0), sample, 2.0, distribution="gaussian")
    assert abs(np.var(box) / (4 / 12) - 1) < 0.03 and np.max(np.abs(box)) <= 1.0
    assert abs(np.var(gauss) / 4 - 1) < 0.03
    su2 = dt.su2_rotations(jax.random.key(0), dt.Sample(dt.strip(20), 50, spinful=True))[1]
    np.testing.assert_allclose(su2 @ np.conj(np.swapaxes(su2, -1, -2)), np.broadcast_to(np.eye(2), su2.shape), atol=1e-13)
    np.testing.assert_allclose(np.linalg.det(su2), 1, atol=1e-13)
    # Haar measure: <|R_11|^2> = 1/2 and <R> = 0
    assert abs(np.mean(np.abs(su2[..., 0, 0]) ** 2) - 0.5) < 0.03 and abs(np.mean(su2[..., 0, 0])) < 0.03
    # Fourth moment, which a wrong draw with <|R_11|^2> = 1/2 misses (docs/physics.md#su2-model): under Haar,
    # |R_11|^2 = cos^2(beta) = 1 - u with u uniform, so <|R_11|^4> = 1/3 (variance 4/45); the nearest wrong answer,
    # beta uniform in [0, pi/2], gives <cos^4 beta> = 3/8. 20000 independent bonds: SE ~ 0.0021 (from the sample,
    # capped at 0.003); pass |m4 - 1/3| < 3 SE, which leaves 3/8 > 10 SE outside the window.
    many = np.abs(np.asarray(dt.su2_rotations(jax.random.key(1), dt.Sample(dt.chain(), 20001, spinful=True))[1]
                             [..., 0, 0])).ravel() ** 4
    m4, se4 = many.mean(), many.std(ddof=1) / np.sqrt(many.size)
    assert many.size == 20000 and se4 < 0.003 and abs(m4 - 1 / 3) < 3 * se4, (m4, se4)
