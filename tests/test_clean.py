"""Clean systems: exact quantization, quantum Hall plateaus, and lead self-energies against the analytic
transverse-mode formula (docs/physics.md#strip-lead-modes, docs/physics.md#clean-quantization)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt


def open_modes_strip(energy, width, t=1.0):
    """N(E) = #{m : |E - eps_m| < 2t}, eps_m = -2t cos(m pi / (W + 1)) (hard walls)."""
    eps = -2 * t * np.cos(np.arange(1, width + 1) * np.pi / (width + 1))
    return int(np.sum(np.abs(energy - eps) < 2 * t))


ENERGIES = [-3.9, -3.5, -2.5, -1.2, -0.3, 0.0, 0.7, 1.9, 3.1, 3.95]  # > 1e-3 from every step for W = 8


@pytest.mark.parametrize("spinful", [False, True])
def test_clean_strip_is_quantized(spinful):
    width = 8
    sample = dt.Sample(dt.strip(width), 5, spinful=spinful)
    g = jax.vmap(lambda e: dt.conductance(sample, dt.Model(energy=e)))(jnp.asarray(ENERGIES))
    n = jax.vmap(lambda e: dt.open_channels(sample, dt.Model(energy=e)))(jnp.asarray(ENERGIES))
    expected = np.array([open_modes_strip(e, width) for e in ENERGIES]) * (2 if spinful else 1)
    assert len(set(expected)) == 8  # the grid visits 8 different plateaus, 0 included
    np.testing.assert_allclose(g, expected, atol=1e-10, rtol=0)
    np.testing.assert_array_equal(n, expected)  # spin is an orbital: each spin is its own channel


def test_clean_chain_and_bar():
    chain = dt.Sample(dt.chain(), 7)
    energies = jnp.array([-2.5, -1.9, -0.5, 0.3, 1.99, 2.2])
    g = jax.vmap(lambda e: dt.conductance(chain, dt.Model(energy=e)))(energies)
    np.testing.assert_allclose(g, [0, 1, 1, 1, 1, 0], atol=1e-10)
    # 3D wire M x M: eps_mn = -2t [cos(m pi/(M+1)) + cos(n pi/(M+1))], N(E) = #{|E - eps_mn| < 2t}.
    m = 4
    c = -2 * np.cos(np.arange(1, m + 1) * np.pi / (m + 1))
    eps = (c[:, None] + c[None, :]).ravel()
    bar = dt.Sample(dt.bar(m, m), 3)
    for e in [-5.1, -3.3, -0.7, 0.4, 2.6]:
        assert abs(float(dt.conductance(bar, dt.Model(energy=e))) - np.sum(np.abs(e - eps) < 2)) < 1e-10


def test_quantum_hall_plateaus():
    """Width 40, phi = 1/20 (field in sample and leads): edge-channel plateaus G = 1, 2 between the Landau
    levels E_n ~ -4t + 4 pi t phi (n + 1/2) = -3.686, -3.058, -2.429."""
    sample = dt.Sample(dt.strip(40), 10)
    energies = jnp.array([-3.6, -3.2, -2.9, -2.6])
    g = jax.vmap(lambda e: dt.conductance(sample, dt.Model(energy=e, flux=1 / 20)))(energies)
    np.testing.assert_allclose(g, [1, 1, 2, 2], atol=1e-10)
    # Disorder weaker than the Landau gap does not backscatter edge states.
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=0.3)
    g = dt.conductance(sample, dt.Model(energy=-3.2, flux=1 / 20), disorder)
    assert abs(float(g) - 1) < 1e-6


def analytic_strip_sigma(energy, width, t=1.0):
    """Transverse-mode self-energy of a hard-wall strip lead (docs/physics.md#strip-lead-modes), an independent
    oracle."""
    m = np.arange(1, width + 1)
    chi = np.sqrt(2 / (width + 1)) * np.sin(np.outer(m, m) * np.pi / (width + 1))
    d = energy - (-2 * t * np.cos(m * np.pi / (width + 1)))
    inside = np.abs(d) < 2 * t
    lam = np.where(
        inside,
        -d / (2 * t) + 1j * np.sqrt(np.abs(4 * t * t - d * d)) / (2 * t),
        (-d + np.sign(d) * np.sqrt(np.abs(d * d - 4 * t * t))) / (2 * t),
    )
    return chi @ np.diag(-t * lam) @ chi.T


@pytest.mark.parametrize("energy", [-3.5, -1.0, 0.3, 2.2, 4.5])
def test_lead_self_energy_matches_transverse_modes(energy):
    width, t = 7, 1.3
    ham = dt.build_hamiltonian(dt.Sample(dt.strip(width), 2), dt.Model(energy=energy, hopping=t))
    leads = dt.lead_self_energies(jnp.asarray(energy), ham.lead.cell, ham.lead.hop, ham.lead.factor)
    expected = analytic_strip_sigma(energy, width, t)
    np.testing.assert_allclose(leads.right, expected, atol=1e-13)
    np.testing.assert_allclose(leads.left, expected, atol=1e-13)
    assert np.all(np.linalg.eigvalsh(1j * (expected - expected.conj().T)) > -1e-14)  # retarded branch
    assert float(leads.open_channels) == open_modes_strip(energy, width, t)


@pytest.mark.parametrize("ribbon, energies, expected", [
    (dt.zigzag_ribbon(6), [0.05, 0.3, 0.9, 1.5], [1, 1, 3, 4]),
    (dt.armchair_ribbon(7), [0.1, 0.6, 1.1], None),
])
def test_clean_honeycomb_ribbon_is_quantized(ribbon, energies, expected):
    sample = dt.Sample(ribbon, 4)
    g = jax.vmap(lambda e: dt.conductance(sample, dt.Model(energy=e)))(jnp.asarray(energies))
    n = jax.vmap(lambda e: dt.open_channels(sample, dt.Model(energy=e)))(jnp.asarray(energies))
    np.testing.assert_allclose(g, n, atol=1e-10)
    np.testing.assert_allclose(g, np.round(g), atol=1e-10)
    if expected is not None:  # zigzag: 1 edge channel near E = 0, then 2k + 1 (band structure count)
        np.testing.assert_array_equal(n, expected)
