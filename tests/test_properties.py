"""Property-based invariants over lattices, boundaries, spin, fields, energies (exact thresholds included),
disorder and dephasing (hypothesis).

For every drawn sample: 0 <= G <= N_open (N_open = open_channels, the E + 0 count at a threshold),
T + R = N without dephasing, Onsager G(B) = G(-B) (moments reversed with B), method="transfer" equal to RGF
where it applies, and finite gradients with respect to energy, flux, spin-orbit and tau_phi. CI runs the
"ci" profile (derandomized, 40 examples per test); a soak is

    HYPOTHESIS_PROFILE=soak .venv/bin/python -m pytest tests/test_properties.py   # 1000 examples per test

(docs/reliability.md). The invariants are checked to TOL = 1e-5: far from thresholds they hold to ~1e-12,
and the worst case found is 1.1e-6, at the E = 0 edge of a periodic 3 x 3 bar at flux 1/3, whose lead
self-energy diverges there (docs/physics.md, "Precision near an edge"); garbage is O(1) (G = 121 with 40
channels before the edge fix). Thresholds are the eigenvalues of the lead's Bloch Hamiltonian at k = 0 and pi (field-
and spin-orbit-free leads), where some mode has zero velocity (tests/test_subband_edges.py).

Clean samples are drawn too (strength 0). Energies can hit a pole of a lead's surface Green's function (a
surface state of the semi-infinite armchair(4) lead at E = 0, where the clean sample's RGF slice blocks are also
exactly singular), which the mode solver shifts like an edge (docs/physics.md, "Subband edges").
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import difftransport as dt
from difftransport._core.build import prepare

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("soak", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

LENGTH = 4
TOL = 1e-5
# (name, lattice, spinful, transverse period for commensurate fluxes or None, transfer sweep applies)
GEOMETRIES = [
    ("chain", dt.chain(), False, None, True),
    ("strip4", dt.strip(4), False, None, True),
    ("strip5", dt.strip(5), True, None, True),
    ("periodic4", dt.strip(4, boundary="periodic"), False, 4, True),
    ("bar3x2", dt.bar(3, 2), False, None, True),
    ("bar3x3p", dt.bar(3, 3, boundary="periodic"), True, 3, True),
    ("zigzag3", dt.zigzag_ribbon(3), False, None, False),
    ("armchair4", dt.armchair_ribbon(4), True, None, False),
]


def _thresholds(lattice):
    ham, _ = prepare(dt.Sample(lattice, 2), dt.Model(energy=0.0), None)
    cell, hop = np.asarray(ham.lead.cell), np.asarray(ham.lead.hop)
    return [float(e) for k in (1.0, -1.0) for e in np.linalg.eigvalsh(cell + k * (hop + hop.conj().T))]


THRESHOLDS = {name: _thresholds(lat) for name, lat, *_ in GEOMETRIES}


@st.composite
def systems(draw):
    name, lattice, spinful, period, transfer_ok = draw(st.sampled_from(GEOMETRIES))
    spinful = spinful and draw(st.booleans())
    sample = dt.Sample(lattice, LENGTH, spinful=spinful)
    rashba = draw(st.floats(0.0, 0.6)) if spinful else None
    if period is not None:
        flux = draw(st.integers(0, period - 1)) / period
    else:
        flux = draw(st.sampled_from([0.0, draw(st.floats(-0.2, 0.2))]))
    exact = draw(st.booleans()) and not rashba and flux == 0.0
    energy = draw(st.sampled_from(THRESHOLDS[name])) if exact else draw(st.floats(-4.5, 4.5))
    strength = draw(st.floats(0.0, 3.0))
    seed = draw(st.integers(0, 2**16))
    moments = spinful and draw(st.booleans())
    key = jax.random.key(seed)
    disorder = dt.draw_disorder(key, sample, strength=strength, moments=moments)
    model = dt.Model(energy=energy, flux=flux, rashba=rashba, exchange=0.4 if moments else None)
    return name, sample, model, disorder, transfer_ok


def _reversed(model, disorder):
    """The time-reversed configuration: B -> -B and moments -> -moments (Onsager)."""
    flip = eqx.tree_at(lambda m: m.flux, model, -model.flux)
    if disorder.moments is not None:
        disorder = eqx.tree_at(lambda d: d.moments, disorder, -disorder.moments)
    return flip, disorder


@given(systems())
def test_coherent_invariants(system):
    name, sample, model, disorder, transfer_ok = system
    out = dt.observe(sample, model, disorder, observables=("conductance", "reflection", "open_channels"))
    g, r, n = (float(out[k]) for k in ("conductance", "reflection", "open_channels"))
    assert -TOL <= g <= n + TOL, (name, g, n)
    assert abs(g + r - n) < TOL, (name, g, r, n)
    flip, flipped = _reversed(model, disorder)
    assert abs(float(dt.conductance(sample, flip, flipped)) - g) < TOL, name
    if transfer_ok:
        assert abs(float(dt.conductance(sample, model, disorder, method="transfer")) - g) < TOL, name


@given(systems())
def test_gradients_are_finite(system):
    name, sample, model, disorder, _ = system
    grad = jax.grad(lambda m: dt.conductance(sample, m, disorder))(model)
    for leaf in jax.tree_util.tree_leaves(grad):
        assert np.all(np.isfinite(np.asarray(leaf))), name


@given(systems(), st.sampled_from(["probe", "buttiker"]), st.floats(2.0, 200.0))
@settings(max_examples=15)
def test_dephased_invariants(system, dephasing, tau_phi):
    name, sample, model, disorder, _ = system
    model = eqx.tree_at(lambda m: m.tau_phi, model, jnp.asarray(tau_phi), is_leaf=lambda x: x is None)
    g = float(dt.conductance(sample, model, disorder, dephasing=dephasing))
    n = float(dt.open_channels(sample, model))
    assert -TOL <= g <= n + TOL, (name, dephasing, g, n)
    flip, flipped = _reversed(model, disorder)
    assert abs(float(dt.conductance(sample, flip, flipped, dephasing=dephasing)) - g) < TOL, (name, dephasing)
    grad = jax.grad(lambda m: dt.conductance(sample, m, disorder, dephasing=dephasing))(model)
    assert np.isfinite(float(grad.tau_phi)) and np.isfinite(float(grad.energy)), (name, dephasing)


def test_thresholds_are_drawn():
    """The strategy reaches exact thresholds (a property suite that never hit them would test nothing new)."""
    assert all(len(v) > 0 for v in THRESHOLDS.values())
    assert any(abs(e - 2.0) < 1e-12 for e in THRESHOLDS["strip5"])
