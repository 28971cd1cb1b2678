"""Exact subband edges: energies where a lead mode has zero group velocity (docs/physics.md, "Subband edges").

The convention under test is the limit from above: at a threshold the modes, open channels and conductance are
those of E + 0. The thresholds are found independently of the mode solver: for a lead without field or
spin-orbit the bands are even in k, so every eigenvalue of the Bloch Hamiltonian H(k) = H0 + V e^{ik} + V^+ e^{-ik}
at k = 0 and k = pi is a zero-velocity energy. Each is checked against the same quantities at E +- 1e-9:

* clean samples: G(E*) = N(E*) = N(E* + 1e-9) (right-continuous) to 1e-8, T + R = N, and N(E* - 1e-9) differs
  from N(E*) by the number of subbands whose top lies at E* minus those whose bottom does;
* disordered samples: G(E*) is G(E* + 1e-7) (the convention, to 1e-6) and G is continuous through a
  threshold (the new channel transmits like its velocity, ~ sqrt(E - E*)), so G(E*) lies within 2e-2 of both
  G(E* +- 1e-9): the cusp c sqrt(1e-7) with c ~ 16 at the 8-fold degenerate edge of a periodic 4 x 4 bar moves
  G by 5e-3, while a wrong mode split moves it by O(0.1) (0.29 -> 0.16 at an armchair crossing before the
  fix); T + R = N; 0 <= G <= N;
* gradients at E* are finite, and dG/dflux = 0 at flux = 0 (Onsager) on hard-wall samples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._core.build import prepare

LATTICES = {
    "chain": dt.chain(),
    "strip3": dt.strip(3),
    "strip4": dt.strip(4),
    "strip5": dt.strip(5),
    "periodic4": dt.strip(4, boundary="periodic"),
    "periodic6": dt.strip(6, boundary="periodic"),
    "bar3x2": dt.bar(3, 2),
    "bar4x4p": dt.bar(4, 4, boundary="periodic"),
    "zigzag3": dt.zigzag_ribbon(3),
    "armchair4": dt.armchair_ribbon(4),
}
LENGTH = 5
DELTA = 1e-9


def bloch_thresholds(lattice):
    """Zero-velocity energies of the clean lead: eigenvalues of H(k) at k = 0 and pi (bands even in k)."""
    ham, _ = prepare(dt.Sample(lattice, 2), dt.Model(energy=0.0), None)
    cell, hop = np.asarray(ham.lead.cell), np.asarray(ham.lead.hop)
    levels = []
    for phase in (1.0, -1.0):
        levels.extend(np.linalg.eigvalsh(cell + phase * (hop + hop.conj().T)))
    levels = np.sort(np.asarray(levels))
    keep = np.concatenate([[True], np.diff(levels) > 1e-9])  # degenerate levels once, unrounded
    return [float(e) for e in levels[keep]]


def _observe(sample, energy, disorder):
    return dt.observe(sample, dt.Model(energy=energy), disorder,
                      observables=("conductance", "reflection", "open_channels"))


CASES = [(name, e) for name, lat in LATTICES.items() for e in bloch_thresholds(lat)]


@pytest.mark.parametrize("name", list(LATTICES))
def test_clean_thresholds_are_right_continuous(name):
    sample = dt.Sample(LATTICES[name], LENGTH)
    energies = jnp.asarray(bloch_thresholds(LATTICES[name]))
    run = jax.jit(jax.vmap(lambda e: _observe(sample, e, None)))
    at, above, below = run(energies), run(energies + DELTA), run(energies - DELTA)
    n = np.asarray(at["open_channels"])
    np.testing.assert_array_equal(n, np.asarray(above["open_channels"]))
    np.testing.assert_allclose(np.asarray(at["conductance"]), n, atol=1e-8)
    np.testing.assert_allclose(np.asarray(at["conductance"]) + np.asarray(at["reflection"]), n, atol=1e-8)
    # Away from the threshold on either side, G = N as well (no garbage on the neighbours either).
    np.testing.assert_allclose(np.asarray(below["conductance"]), np.asarray(below["open_channels"]), atol=1e-8)


@pytest.mark.parametrize("name", list(LATTICES))
def test_disordered_thresholds_are_continuous(name):
    sample = dt.Sample(LATTICES[name], LENGTH)
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=1.5)
    energies = jnp.asarray(bloch_thresholds(LATTICES[name]))
    run = jax.jit(jax.vmap(lambda e: _observe(sample, e, disorder)))
    at, above, below = run(energies), run(energies + DELTA), run(energies - DELTA)
    g, n = np.asarray(at["conductance"]), np.asarray(at["open_channels"])
    assert np.all(g >= -1e-12) and np.all(g <= n + 1e-6)
    np.testing.assert_allclose(g + np.asarray(at["reflection"]), n, atol=1e-6)
    np.testing.assert_allclose(g, np.asarray(run(energies + 1e-7)["conductance"]), atol=1e-6)
    np.testing.assert_allclose(g, np.asarray(above["conductance"]), atol=2e-2)
    np.testing.assert_allclose(g, np.asarray(below["conductance"]), atol=2e-2)


@pytest.mark.parametrize("width, expected", [(4, 10), (6, 22), (8, 42)])
def test_periodic_cross_sections_at_band_centre(width, expected):
    """E = 0 in a periodic W x W cross-section, where subbands E = e_perp - 2 cos k of transverse energy
    e_perp = -2 cos kx - 2 cos ky = +-2 have an edge: at 0 + 0 those with e_perp = 2 (bottom at E) are open,
    those with e_perp = -2 (top at E) closed. The counts equal N(+-1e-9)."""
    k = 2 * np.pi * np.arange(width) / width
    levels = (-2 * np.cos(k)[:, None] - 2 * np.cos(k)[None, :]).ravel()
    # A subband E = e_perp - 2 cos k is open at E = 0 + 0 if -2 <= -e_perp < 2.
    count = int(np.sum((-levels >= -2 - 1e-12) & (-levels < 2 - 1e-12)))
    assert count == expected
    sample = dt.Sample(dt.bar(width, width, boundary="periodic"), 3)
    out = _observe(sample, 0.0, None)
    assert float(out["open_channels"]) == expected
    assert abs(float(out["conductance"]) - expected) < 1e-8


@pytest.mark.parametrize("lattice, energy", [(dt.strip(5), 2.0), (dt.strip(5), -2.0), (dt.strip(3), 2.0 ** 0.5)])
def test_gradients_finite_and_symmetric_at_threshold(lattice, energy):
    sample = dt.Sample(lattice, 6)
    disorder = dt.draw_disorder(jax.random.key(0), sample, strength=1.0)

    def g(model):
        return dt.conductance(sample, model, disorder)

    grad = jax.grad(g)(dt.Model(energy=energy, flux=0.0, hopping=1.0))
    for value in (grad.energy, grad.flux, grad.hopping):
        assert np.isfinite(float(value))
    assert abs(float(grad.flux)) < 1e-8
    # The energy derivative at the threshold is that at E + 1e-7 (the square-root cusp): it matches a
    # central difference quotient there.
    e_eff = energy + 1e-7
    h = 1e-10
    fd = (g(dt.Model(energy=e_eff + h, flux=0.0)) - g(dt.Model(energy=e_eff - h, flux=0.0))) / (2 * h)
    np.testing.assert_allclose(float(grad.energy), float(fd), rtol=1e-2)


def test_open_channels_at_odd_strip_band_edges():
    """strip(5) at E = +-2: the subband e_perp = 0 has its top at E = 2 (closed at 2 + 0) and its bottom at
    E = -2 (open at -2 + 0)."""
    sample = dt.Sample(dt.strip(5), 4)
    assert float(dt.open_channels(sample, dt.Model(energy=2.0))) == 2
    assert float(dt.open_channels(sample, dt.Model(energy=-2.0))) == 3
    assert float(dt.open_channels(sample, dt.Model(energy=2.0 - DELTA))) == 3
