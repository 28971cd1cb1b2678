"""Lattice geometry: bond counts, boundary conditions, honeycomb coordination, slice bookkeeping."""

import equinox as eqx
import numpy as np
import pytest

import difftransport as dt


def test_strip_and_bar_bonds():
    lat = dt.strip(5)
    assert lat.sites == 5 and lat.intra_bonds == ((0, 1), (1, 2), (2, 3), (3, 4)) and lat.site_diagonal_hopping
    periodic = dt.strip(5, boundary="periodic")
    assert (4, 0) in periodic.intra_bonds and periodic.transverse_period == 5
    bar = dt.bar(3, 4)
    assert bar.sites == 12 and len(bar.intra_bonds) == (2 * 4 + 3 * 3)
    assert len(dt.bar(3, 4, boundary="periodic").intra_bonds) == 3 * 4 * 2
    assert dt.chain().sites == 1 and dt.chain().name == "chain"


@pytest.mark.parametrize("ribbon, n, sites", [(dt.zigzag_ribbon, 6, 12), (dt.armchair_ribbon, 7, 14)])
def test_honeycomb_coordination(ribbon, n, sites):
    """Each site has at most 3 neighbours at distance 1/sqrt(3), all bonds join A to B."""
    lat = ribbon(n)
    assert lat.sites == sites and not lat.site_diagonal_hopping
    degree = np.zeros(lat.sites, int)
    for (i, j), v in zip(lat.intra_bonds + lat.inter_bonds, lat.intra_vectors + lat.inter_vectors):
        degree[i] += 1
        degree[j] += 1
        assert abs(np.linalg.norm(v) - 1 / np.sqrt(3)) < 1e-12
        assert lat.sublattice[i] != lat.sublattice[j]
    assert degree.max() == 3 and np.sum(degree == 3) >= lat.sites - 4


def test_sample_positions():
    sample = dt.Sample(dt.armchair_ribbon(5), 3)
    pos = sample.site_positions()
    assert pos.shape == (3, 10, 3)
    np.testing.assert_allclose(pos[1, :, 0] - pos[0, :, 0], np.sqrt(3))
    assert sample.potential_shape == (3, 10)
    assert dt.Sample(dt.bar(2, 3), 4, spinful=True).slice_size == 12


@pytest.mark.parametrize("ribbon, n, circumference", [
    (dt.zigzag_ribbon, 4, 2 * np.sqrt(3)), (dt.armchair_ribbon, 4, 2.0),
    (dt.zigzag_ribbon, 6, 3 * np.sqrt(3)), (dt.armchair_ribbon, 6, 3.0)])
def test_periodic_honeycomb_ribbons_close_the_lattice(ribbon, n, circumference):
    """Rolled into a cylinder, every site has exactly 3 neighbours at 1/sqrt(3) (A to B), the bonds across the y
    seam join the top row to the image of the bottom row, and the circumference is the flux check's period."""
    lat = ribbon(n, boundary="periodic")
    assert lat.transverse_period == pytest.approx(circumference) and ribbon(n).transverse_period is None
    assert lat.positions == ribbon(n).positions and "periodic" in lat.name
    degree = np.zeros(lat.sites, int)
    pos = lat.position_array()
    for (i, j), v, dx in ([(b, v, 0.0) for b, v in zip(lat.intra_bonds, lat.intra_vectors)]
                          + [(b, v, lat.period) for b, v in zip(lat.inter_bonds, lat.inter_vectors)]):
        degree[i] += 1
        degree[j] += 1
        assert abs(np.linalg.norm(v) - 1 / np.sqrt(3)) < 1e-12 and lat.sublattice[i] != lat.sublattice[j]
        seam = pos[j, :2] + (dx, 0.0) - pos[i, :2] - np.asarray(v[:2])  # (0, 0), or (0, -+circumference) across
        assert abs(seam[0]) < 1e-12 and min(abs(seam[1]), abs(abs(seam[1]) - circumference)) < 1e-12
    assert np.all(degree == 3)
    with pytest.raises(ValueError, match="needs an even n"):
        ribbon(n + 1, boundary="periodic")


def test_periodic_sample_is_closed_along_x():
    sample = dt.Sample(dt.strip(4), 3, periodic=True)
    assert sample.inter_slices == 3 and dt.Sample(dt.strip(4), 3).inter_slices == 2
    with pytest.raises(ValueError, match="a periodic sample needs length >= 3"):
        dt.Sample(dt.strip(4), 2, periodic=True)
    with pytest.raises(ValueError, match="periodic must be True or False"):
        dt.Sample(dt.strip(4), 3, periodic=1)


def _periodic_armchair_gap(n):
    """Half-width of the clean armchair cylinder's gap, min over m of t |1 + 2 cos(2 pi m / n)| (t = 1)."""
    return float(np.min(np.abs(1 + 2 * np.cos(2 * np.pi * np.arange(n) / n))))


@pytest.mark.parametrize("ribbon, n, valleys", [
    (dt.zigzag_ribbon, 4, True), (dt.zigzag_ribbon, 6, True), (dt.zigzag_ribbon, 8, True),
    (dt.armchair_ribbon, 6, True), (dt.armchair_ribbon, 18, True),
    (dt.armchair_ribbon, 10, False), (dt.armchair_ribbon, 14, False),
])
def test_periodic_honeycomb_valley_content(ribbon, n, valleys):
    """Clean cylinders count their Dirac points: with both K and K' among the transverse momenta, G = 2 e^2/h
    (one mode per valley) down to E -> 0; without them a gap of the half-width in the armchair_ribbon docstring,
    G = 0 below it and 2 above. The zigzag cylinder holds both valleys for every even n (any n mod 3), the
    armchair one for n a multiple of 6 only; the zigzag window closes at t sin(2 pi / n)."""
    sample = dt.Sample(ribbon(n, boundary="periodic"), 3)
    g = lambda energy: float(dt.conductance(sample, dt.Model(energy=energy)))  # t = 1, bonds carry -t
    if ribbon is dt.zigzag_ribbon:
        edge = np.sin(2 * np.pi / n)
        assert [g(e) for e in (1e-3, 0.05, 0.95 * edge)] == pytest.approx([2.0] * 3, abs=1e-9)
        assert g(1.05 * edge) > 2.5
        return
    gap = _periodic_armchair_gap(n)
    assert (gap < 1e-12) == valleys == (n % 6 == 0)
    if valleys:
        assert [g(e) for e in (1e-3, 0.05, -0.05)] == pytest.approx([2.0] * 3, abs=1e-9)
    else:
        assert 0.2 < gap < 0.4
        assert [g(e) for e in (1e-3, 0.05, 0.95 * gap, 1.05 * gap)] == pytest.approx([0, 0, 0, 2], abs=1e-9)


@pytest.mark.parametrize("n", [4, 8, 12])
def test_singular_armchair_cylinders_are_refused(n):
    """Armchair cylinders with n divisible by 4: the wrap bonds close an even cycle of equal inter-slice bonds, so
    the lead hopping is singular (rank n/2 - 1 of n/2) although structurally regular. The lead mode solver would
    report no open channel (G = 0 where Kwant gives 2 at E = 0.03 for n = 12); the builder refuses instead."""
    sample = dt.Sample(dt.armchair_ribbon(n, boundary="periodic"), 3)
    with pytest.raises(ValueError, match="inter-slice hopping of this lattice is singular for equal bond values"):
        dt.conductance(sample, dt.Model(energy=0.2))


def test_armchair_cylinder_refuses_a_field():
    """The armchair cylinder's seam in a field is not verified against Kwant (the one consistent flux compared,
    N = 18, b C / sqrt 3 = 2, makes the lead hopping singular: G = 0 against 3.36), so any nonzero flux is
    refused; flux 0 is the Kwant-checked case."""
    sample = dt.Sample(dt.armchair_ribbon(6, boundary="periodic"), 3)
    assert float(dt.conductance(sample, dt.Model(energy=0.3, flux=0.0))) == pytest.approx(2.0, abs=1e-9)
    with pytest.raises(eqx.EquinoxRuntimeError, match="takes no field"):
        dt.conductance(sample, dt.Model(energy=0.3, flux=0.01))


def test_periodic_zigzag_ribbon_needs_even_n():
    with pytest.raises(ValueError, match=r"a periodic zigzag ribbon needs an even n \(line n must fall on line 0\), "
                                         r"got n=7"):
        dt.zigzag_ribbon(7, boundary="periodic")
