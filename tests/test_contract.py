"""One lattice -> Hamiltonian -> disorder contract for every solver (docs/physics.md#conventions).

One key gives one realization (the same on-site potential, the same SU(2) bonds, the same moments) wherever it
is drawn, and every solver reads the same Hamiltonian: here the dense matrix that conductance and the RGF read
(``dense_hamiltonian(build_hamiltonian(...))``) against the matrix the Chebyshev evolution applies
(``evolution_hamiltonian``, applied to every basis vector), on small samples open along x and on their twins
closed along x (``Sample(..., periodic=True)``), which differ only by the wrap hop between the last and the first
slice.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt


def applied(ham) -> np.ndarray:
    """The matrix an EvolutionHamiltonian applies, one basis vector at a time (row-major state order)."""
    n = int(np.prod(ham.state_shape))
    basis = jnp.eye(n, dtype=complex).reshape(n, *ham.state_shape)
    return np.asarray(jax.vmap(ham)(basis)).reshape(n, n).T


def transport_matrix(key, sample, model, draw) -> np.ndarray:
    return np.asarray(dt.dense_hamiltonian(dt.build_hamiltonian(sample, model, dt.draw_disorder(key, sample, **draw))))


ZIGZAG = dt.zigzag_ribbon(4, boundary="periodic")
CASES = [  # lattice, spinful, model parameters, SU(2) hopping
    (dt.strip(4, boundary="periodic"), False, {"flux": 0.25}, False),
    (dt.bar(3, 3, boundary="periodic"), True, {"flux": 1 / 3, "rashba": 0.3}, True),
    (dt.strip(3), True, {"flux": 0.1, "rashba": 0.2, "exchange": 0.5}, False),
    (ZIGZAG, True, {"flux": 1 / ZIGZAG.transverse_period, "rashba": 0.2, "mass": 0.3}, True),
    (dt.armchair_ribbon(3), False, {"flux": 0.05, "mass": 0.3}, False),
]


@pytest.mark.parametrize("lattice, spinful, parameters, su2", CASES, ids=[c[0].name for c in CASES])
def test_one_key_gives_one_hamiltonian_in_transport_and_evolution(lattice, spinful, parameters, su2):
    key, length = jax.random.key(7), 4
    model = dt.Model(energy=0.3, **parameters)
    draw = {"strength": 1.5, "su2": su2, "moments": "exchange" in parameters}
    opened = dt.Sample(lattice, length, spinful=spinful)
    closed = dt.Sample(lattice, length, spinful=spinful, periodic=True)

    # The same realization: potentials (and moments) equal; the closed sample adds only the wrap's SU(2) bonds.
    a, b = dt.draw_disorder(key, opened, **draw), dt.draw_disorder(key, closed, **draw)
    assert np.array_equal(np.asarray(a.potential), np.asarray(b.potential))
    if "exchange" in parameters:
        assert np.array_equal(np.asarray(a.moments), np.asarray(b.moments))
    if su2:
        assert np.array_equal(np.asarray(a.su2_intra), np.asarray(b.su2_intra))
        assert b.su2_inter.shape[0] == length and np.array_equal(np.asarray(a.su2_inter), np.asarray(b.su2_inter[:-1]))

    # On the open sample the evolution applies exactly the transport Hamiltonian.
    dense = transport_matrix(key, opened, model, draw)
    evolution = applied(dt.evolution_hamiltonian(key, opened, model, strength=1.5, su2=su2))
    assert np.max(np.abs(evolution - dense)) < 1e-14

    # The closed twin: the same matrix away from the wrap blocks H[0, L-1] and H[L-1, 0], which the builder and
    # the evolution agree on, and which carry the inter-slice hop with its Peierls phase.
    closed_evolution = applied(dt.evolution_hamiltonian(key, closed, model, strength=1.5, su2=su2))
    assert np.max(np.abs(closed_evolution - transport_matrix(key, closed, model, draw))) < 1e-14
    n = closed.slice_size
    wrap = np.zeros((length, length), bool)
    wrap[0, -1] = wrap[-1, 0] = True
    away = np.kron(~wrap, np.ones((n, n), bool))
    assert np.max(np.abs((closed_evolution - dense)[away])) < 1e-14
    assert np.max(np.abs(closed_evolution - closed_evolution.conj().T)) < 1e-14
    block = lambda h, i, j: h[i * n:(i + 1) * n, j * n:(j + 1) * n]  # noqa: E731
    assert np.max(np.abs(block(closed_evolution, 0, length - 1))) > 0.5
    if not su2:  # the gauge is translation invariant along x: the wrap hop is every other inter-slice hop
        assert np.max(np.abs(block(closed_evolution, 0, length - 1) - block(dense, 1, 0))) < 1e-14


def test_transport_refuses_a_closed_sample():
    closed, model = dt.Sample(dt.strip(4), 5, periodic=True), dt.Model(energy=0.5)
    for solve in (dt.conductance, dt.transmission, dt.transmission_eigenvalues, dt.open_channels):
        with pytest.raises(ValueError, match=r"sample is periodic along x \(closed, no leads\)"):
            solve(closed, model)
