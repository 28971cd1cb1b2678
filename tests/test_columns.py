"""Column slicing of zigzag honeycomb cylinders (docs/physics.md#column-slices): the same Hamiltonian cut into two
slices per cell with site-diagonal hopping, so that RGF works on n/2-site slices and the transfer sweep applies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._core.build import prepare
from difftransport._core.lattice import column_slicing
from difftransport._core.observables import _lead_self_energies, _left_to_right, _solve, dense_hamiltonian

TOL = 1e-12


def test_which_lattices_are_cut_into_columns():
    """Zigzag cylinders: two columns (x = 0 and 1/2) of N sites, each site of the first column bonded to the same
    chain's site of the second within the cell and again one cell on. Hard-wall zigzag ribbons (bearded edge sites
    without a partner), armchair cylinders (A-B bonds along x inside a column pair) and square strips (already one
    column) are not."""
    for n in (4, 6, 10):
        plan = column_slicing(dt.zigzag_ribbon(n, boundary="periodic"))
        assert plan is not None and len(plan) == 2 and all(len(c) == n for c in plan)
        assert sorted(plan[0] + plan[1]) == list(range(2 * n))
    for lattice in (dt.zigzag_ribbon(6), dt.armchair_ribbon(6, boundary="periodic"), dt.armchair_ribbon(6),
                    dt.strip(5), dt.bar(3, 3)):
        assert column_slicing(lattice) is None


def _dense_sample(sample, model, disorder, columns):
    ham, checked = prepare(sample, model, disorder, columns=columns)
    return ham, np.asarray(dense_hamiltonian(ham)), checked


def test_the_same_matrix_and_lead_self_energies():
    """Cell and column slicing give the same sample Hamiltonian entry by entry (up to the site order; spinful, with
    every term), and the leads' self-energies on the first and last column equal the cell self-energies, which
    vanish elsewhere. ``method="auto"`` takes the transfer sweep on the column slices."""
    from difftransport._core.observables import _sweep

    lattice = dt.zigzag_ribbon(6, boundary="periodic")
    sample = dt.Sample(lattice, 5, spinful=True, field_region="sample")
    disorder = dt.draw_disorder(jax.random.PRNGKey(2), sample, strength=1.0, moments=True)
    model = dt.Model(energy=0.4, flux=0.02, mass=0.1, twist=0.2, rashba=0.15, exchange=0.3)
    cell, h_cell, checked = _dense_sample(sample, model, disorder, False)
    cut, h_cut, _ = _dense_sample(sample, model, disorder, True)
    s, plan = sample.orbitals, column_slicing(lattice)
    sites = np.concatenate([np.asarray(plan[c]) + cell_index * lattice.sites
                            for cell_index in range(sample.length) for c in range(2)])
    orbitals = (sites[:, None] * s + np.arange(s)).ravel()
    np.testing.assert_array_equal(h_cut, h_cell[np.ix_(orbitals, orbitals)])
    assert cut.length == 2 * sample.length and cut.size == lattice.sites * s // 2
    full, part = _lead_self_energies(cell, checked.energy), _lead_self_energies(cut, checked.energy)
    for sigma_full, sigma_part, column in ((full.left, part.left, plan[0]), (full.right, part.right, plan[1])):
        idx = (np.asarray(column)[:, None] * s + np.arange(s)).ravel()
        np.testing.assert_array_equal(np.asarray(sigma_part), np.asarray(sigma_full)[np.ix_(idx, idx)])
        rest = np.setdiff1d(np.arange(lattice.sites * s), idx)
        assert np.max(np.abs(np.asarray(sigma_full)[rest])) < 1e-14
    assert float(part.open_channels) > 0
    assert _sweep("auto", ("conductance",), checked, "probe", sample, cut) == "transfer"
    assert _sweep("auto", ("conductance",), checked, "probe", sample, cell) == "rgf"


CASES = {
    "anderson, mass": (False, "everywhere", dict(energy=0.35, mass=0.08), dict(strength=1.5)),
    "field everywhere": (False, "everywhere", dict(energy=0.9, flux=1 / (10 * np.sqrt(3) / 2)), dict(strength=1.0)),
    "field in the sample, twist": (False, "sample", dict(energy=0.3, flux=0.013, twist=0.37), dict(strength=1.0)),
    "correlated + short range": (False, "sample", dict(energy=0.25, flux=0.01),
                                 dict(strength=0.8, correlation_length=1.5, density=0.1, short_range_density=0.05,
                                      short_range_strength=3.0)),
    "rashba, exchange": (True, "everywhere", dict(energy=0.4, rashba=0.2, exchange=0.3), dict(strength=1.0,
                                                                                              moments=True)),
    "su2 hoppings": (True, "sample", dict(energy=0.35, flux=0.01), dict(strength=0.5, su2=True)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_conductance_equals_the_cell_slicing(case):
    """G from column slices, by RGF and by the transfer sweep, equals G from one slice per cell (RGF) to 1e-12, for
    every term the builder places on bonds or sites; also with probe and Buttiker dephasing (RGF)."""
    spinful, region, params, draw = CASES[case]
    sample = dt.Sample(dt.zigzag_ribbon(10, boundary="periodic"), 9, spinful=spinful, field_region=region)
    disorder = dt.draw_disorder(jax.random.PRNGKey(7), sample, **draw)
    model = dt.Model(**params)

    def g(columns, method):
        ham, checked = prepare(sample, model, disorder, columns=columns)
        return float(_left_to_right(_solve(ham, checked.energy, method)))

    reference = g(False, "rgf")
    assert reference > 0.1  # open channels and some transmission: not a comparison of zeros
    assert abs(g(True, "rgf") - reference) <= TOL
    assert abs(g(True, "transfer") - reference) <= TOL


@pytest.mark.parametrize("dephasing", ["probe", "buttiker"])
def test_dephasing_through_columns(dephasing, monkeypatch):
    """The public conductance (column slices) with dephasing equals the cell slicing (patched in) to 1e-12."""
    import difftransport._core.observables as observables

    sample = dt.Sample(dt.zigzag_ribbon(8, boundary="periodic"), 6, field_region="sample")
    disorder = dt.draw_disorder(jax.random.PRNGKey(4), sample, strength=1.0)
    model = dt.Model(energy=0.35, flux=0.01, tau_phi=15.0)
    got = float(dt.conductance(sample, model, disorder, dephasing=dephasing))
    cell_prepare = observables.prepare
    monkeypatch.setattr(observables, "prepare", lambda *a, columns=False: cell_prepare(*a, columns=False))
    want = float(observables._evaluate(sample, model, disorder, ("conductance",), dephasing)["conductance"])
    assert abs(got - want) <= TOL


def test_gradients_through_the_column_transfer_sweep():
    """dG/dE, dG/dflux and dG/dmass through the transfer sweep on column slices equal 4th-order finite
    differences to 1e-6 relative (steps 1e-4, 1e-6, 1e-4: G varies on a flux scale ~1e-3 here, the right lead's
    Aharonov-Bohm flux B (X1 - X0) C moving its subbands)."""
    sample = dt.Sample(dt.zigzag_ribbon(8, boundary="periodic"), 7, field_region="sample")
    disorder = dt.draw_disorder(jax.random.PRNGKey(5), sample, strength=1.0)

    def g(p):
        model = dt.Model(energy=p[0], flux=p[1], mass=p[2])
        return dt.conductance(sample, model, disorder, method="transfer")

    p = jnp.array([0.4, 0.012, 0.05])
    grad = np.asarray(jax.grad(g)(p))
    for k, h in enumerate((1e-4, 1e-6, 1e-4)):
        e = np.zeros(3)
        e[k] = h
        fd = (-g(p + 2 * e) + 8 * g(p + e) - 8 * g(p - e) + g(p - 2 * e)) / (12 * h)
        assert abs(grad[k] - float(fd)) <= 1e-6 * max(1.0, abs(float(fd))), (k, grad[k], float(fd))
