"""Lattice geometry: bond counts, boundary conditions, honeycomb coordination, slice bookkeeping."""

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
