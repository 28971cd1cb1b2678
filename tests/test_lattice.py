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
