"""Buttiker probes on every site: both solvers (direct and GMRES) against an independent dense solve, current
conservation, strong dephasing, closed leads, vmapped batches, physical limits and gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import central_difference
from difftransport._core.buttiker import buttiker_currents_rgf
from difftransport._core.observables import _coherent


def solver_currents(sample, model, disorder=None, solver="auto"):
    """(I_L, I_R) from one chosen solver of the probe equations (the public API picks it by size)."""
    model, ham, sol = _coherent(sample, model, disorder)
    return buttiker_currents_rgf(ham, sol.leads.energy, sol.leads.left, sol.leads.right, model.absorption,
                                 sample.orbitals, sol.leads.open_channels, solver=solver)


@eqx.filter_jit
def _dense_inputs(sample, model, disorder):
    """The dense H of the sample and the lead self-energies (Sigma_L, Sigma_R), compiled once per shape (eager
    dispatch of the lead solver cost ~5 s of CPU per sample)."""
    ham = dt.build_hamiltonian(sample, model, disorder)
    leads = dt.lead_self_energies(model.energy, ham.lead.cell, ham.lead.hop, ham.lead.factor)
    return dt.dense_hamiltonian(ham), leads.left, leads.right


def dense_buttiker(sample, model, disorder):
    """Independent oracle: full G = (E - H - Sigma)^-1 of the whole sample, every T(q -> p) from it, and the
    probe potentials from a dense solve of the zero-current conditions. Returns (I_L, I_R)."""
    h, left, right = (np.asarray(x) for x in _dense_inputs(sample, model, disorder))
    n, total, s = left.shape[0], h.shape[0], sample.orbitals
    sigma = np.zeros_like(h)
    sigma[:n, :n] += left
    sigma[-n:, -n:] += right
    g = np.linalg.inv(float(model.energy) * np.eye(total) - h - sigma)
    gl = 1j * (left - left.conj().T)
    gr = 1j * (right - right.conj().T)
    probes, two_eta = total // s, 2 * float(model.absorption)
    t = two_eta**2 * np.sum(np.abs(g.reshape(probes, s, probes, s)) ** 2, axis=(1, 3))  # T(q -> p)
    np.fill_diagonal(t, 0)
    per_site = lambda x: np.real(x).reshape(probes, s).sum(1)
    from_l = two_eta * per_site(np.einsum("ia,ab,ib->i", g[:, :n], gl, g[:, :n].conj()))
    to_r = two_eta * per_site(np.einsum("ai,ab,bi->i", g[-n:, :].conj(), gr, g[-n:, :]))
    to_l = two_eta * per_site(np.einsum("ai,ab,bi->i", g[:n, :].conj(), gl, g[:n, :]))
    t_lr = np.real(np.trace(gr @ g[-n:, :n] @ gl @ g[-n:, :n].conj().T))
    w = np.diag(t.sum(0) + to_l + to_r) - t
    mu = np.linalg.solve(w, from_l)
    return t_lr + from_l.sum() - to_l @ mu, t_lr + to_r @ mu


CASES = [
    (dt.Sample(dt.strip(5), 7), dict(energy=0.4, flux=0.05, tau_phi=3.0), {}),
    (dt.Sample(dt.strip(4), 6, spinful=True), dict(energy=-0.8, flux=0.03, rashba=0.3, exchange=0.5, tau_phi=1.5), dict(moments=True)),
    (dt.Sample(dt.bar(3, 2), 5), dict(energy=0.5, tau_phi=10.0), {}),
    (dt.Sample(dt.armchair_ribbon(5), 3), dict(energy=0.6, flux=0.01, tau_phi=4.0), {}),
]


@pytest.mark.parametrize("sample, params, draw", CASES)
def test_rgf_buttiker_matches_dense_solve(sample, params, draw):
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=1.2, **draw)
    model = dt.Model(**params)
    i_l, i_r = dt.buttiker_currents(sample, model, disorder)
    d_l, d_r = dense_buttiker(sample, model, disorder)
    assert abs(i_r - d_r) < 1e-10 and abs(i_l - d_l) < 1e-10
    assert abs(i_l - i_r) < 1e-10  # current conservation


# A few hundred sites (240, 128 and 140; 240-280 orbitals, the direct probe solve): a field, Rashba plus a field,
# and SU(2) random hopping (Disorder.su2_intra/su2_inter) in a field.
LARGE_CASES = [
    (dt.Sample(dt.strip(12), 20), dict(energy=0.7, flux=0.05, tau_phi=6.0), {}),
    (dt.Sample(dt.strip(8), 16, spinful=True), dict(energy=-0.9, flux=0.04, rashba=0.3, tau_phi=4.0), {}),
    (dt.Sample(dt.strip(10), 14, spinful=True), dict(energy=1.0, flux=0.03, tau_phi=5.0), dict(su2=True)),
]


@pytest.mark.parametrize("sample, params, draw", LARGE_CASES, ids=["field", "rashba-field", "su2-field"])
def test_rgf_buttiker_matches_dense_solve_large(sample, params, draw):
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=1.2, **draw)
    model = dt.Model(**params)
    i_l, i_r = dt.buttiker_currents(sample, model, disorder)
    d_l, d_r = dense_buttiker(sample, model, disorder)
    tol = 1e-10 * min(1.0, abs(d_r))  # absolute for G >~ 1, relative for a small G
    assert 0.5 < d_r  # a conducting sample (G = 1.8-3.9 here), not a trivially small current
    assert abs(i_r - d_r) < tol and abs(i_l - d_l) < tol
    assert abs(i_l - i_r) < tol  # current conservation


def test_strong_local_dephasing_is_ohmic():
    """With L_phi of a few sites a clean 3-channel wire becomes an Ohmic resistor: R = 1/G grows linearly
    with L, and the intercept is the contact (Sharvin) resistance 1/N = 1/3. The single global probe instead
    saturates: current bypasses the wire through the probe."""
    lengths = np.array([10, 20, 30, 40, 60])
    model = dt.Model(energy=0.3, tau_phi=2.0)
    resistance = np.array([1 / float(dt.conductance(dt.Sample(dt.strip(3), int(n)), model, dephasing="buttiker")) for n in lengths])
    slope, intercept = np.polyfit(lengths, resistance, 1)
    assert np.max(np.abs(resistance - (intercept + slope * lengths))) < 1e-3 * resistance.max()
    assert slope > 0 and abs(intercept - 1 / 3) < 0.05 * (1 / 3)
    probe = [float(dt.conductance(dt.Sample(dt.strip(3), int(n)), model)) for n in lengths]
    assert probe[-1] / probe[0] > 0.9


def test_buttiker_gradient_and_coherent_limit():
    sample = dt.Sample(dt.strip(4), 6)
    disorder = dt.draw_disorder(jax.random.key(4), sample, strength=1.0)
    f = lambda tau: dt.conductance(sample, dt.Model(energy=0.7, flux=0.02, tau_phi=tau), disorder, dephasing="buttiker")
    fd = central_difference(f, jnp.asarray(5.0), 1e-4)
    assert abs(jax.grad(f)(5.0) - fd) <= 1e-6 * abs(fd)
    coherent = dt.conductance(sample, dt.Model(energy=0.7, flux=0.02), disorder)
    assert abs(f(jnp.inf) - coherent) < 1e-13
    assert np.isfinite(jax.grad(f)(jnp.inf))


# Strong dephasing (eta = 167 t): the probe equations are an almost-Laplacian network of nearest neighbours
# (cond ~ 500 after Jacobi scaling); GMRES at a relative tolerance of 1e-12 stagnated here and raised.
STRONG = (dt.Sample(dt.strip(5), 7), dict(energy=0.4, flux=0.05, tau_phi=0.003))


@pytest.mark.parametrize("solver", ["dense", "gmres"])
def test_strong_dephasing_matches_dense_solve(solver):
    sample, params = STRONG
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=1.2)
    model = dt.Model(**params)
    i_l, i_r = jax.jit(solver_currents, static_argnums=(0, 3))(sample, model, disorder, solver)
    d_l, d_r = dense_buttiker(sample, model, disorder)
    assert 1e-5 < d_r < 1e-3  # G ~ 1e-4: the tolerance below is relative
    assert abs(i_r - d_r) < 1e-10 * d_r and abs(i_l - d_l) < 1e-10 * d_r
    assert abs(i_l - i_r) < 1e-10 * d_r  # current conservation


def test_gmres_solver_matches_dense_solve_spinful():
    """The Krylov solver (used above DENSE_LIMIT orbitals) on the spinful Rashba sample in a field with moments."""
    sample, params, draw = CASES[1]
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=1.2, **draw)
    model = dt.Model(**params)
    i_l, i_r = jax.jit(solver_currents, static_argnums=(0, 3))(sample, model, disorder, "gmres")
    d_l, d_r = dense_buttiker(sample, model, disorder)
    assert abs(i_r - d_r) < 1e-10 and abs(i_l - d_l) < 1e-10 and abs(i_l - i_r) < 1e-10


# Below the lowest subband of the leads (-2 - 2 cos(pi / 5) = -3.62): no open channel.
CLOSED = (dt.Sample(dt.strip(4), 16), dict(energy=-3.7, tau_phi=1.0))


def test_no_open_channel_gives_exactly_zero():
    """No open channel: no current flows and the probe potentials are undetermined (a closed network): G is
    exactly 0, not roundoff of a singular solve, and its gradient is finite (zero)."""
    sample, params = CLOSED
    disorder = dt.draw_disorder(jax.random.key(5), sample, strength=2.0)
    assert dt.observe(sample, dt.Model(**params), disorder, observables=("open_channels",))["open_channels"] == 0
    f = lambda tau: dt.conductance(sample, dt.Model(energy=params["energy"], tau_phi=tau), disorder,
                                   dephasing="buttiker")
    value, grad = jax.jit(jax.value_and_grad(f))(1.0)
    assert value == 0.0 and grad == 0.0


@pytest.mark.parametrize("solver", ["dense", "gmres"])
def test_vmapped_batch_with_hard_points(solver):
    """A closed-lead point and a strong-dephasing point in a vmapped batch: nothing fails, the closed point is
    exactly 0, and the normal points equal a batch of the same shape without the hard points, and the dense
    solve."""
    sample = dt.Sample(dt.strip(4), 16)
    disorder = dt.draw_disorder(jax.random.key(5), sample, strength=2.0)
    batch = jax.jit(jax.vmap(lambda e, tau: solver_currents(sample, dt.Model(energy=e, tau_phi=tau), disorder, solver)))
    energies, taus = jnp.array([0.4, -3.7, 1.1, 0.9]), jnp.array([20.0, 1.0, 0.003, 5.0])
    i_l, i_r = batch(energies, taus)
    assert np.all(np.isfinite(i_l)) and np.all(np.isfinite(i_r))
    assert i_l[1] == 0.0 and i_r[1] == 0.0
    assert np.max(np.abs(i_l - i_r)) < 1e-12 * np.max(i_r)  # current conservation, the strong point included
    easy_l, easy_r = batch(energies[jnp.array([0, 0, 3, 3])], taus[jnp.array([0, 0, 3, 3])])
    for k, j in ((0, 0), (3, 3)):
        assert abs(i_r[k] - easy_r[j]) < 1e-12 * easy_r[j] and abs(i_l[k] - easy_l[j]) < 1e-12 * easy_r[j]
        d_l, d_r = dense_buttiker(sample, dt.Model(energy=float(energies[k]), tau_phi=float(taus[k])), disorder)
        assert abs(i_r[k] - d_r) < 1e-10 and abs(i_l[k] - d_l) < 1e-10
    d_l, d_r = dense_buttiker(sample, dt.Model(energy=float(energies[2]), tau_phi=float(taus[2])), disorder)
    assert abs(i_r[2] - d_r) < 1e-10 * d_r and abs(i_l[2] - d_l) < 1e-10 * d_r


def test_gmres_gradient_matches_finite_difference():
    """lineax differentiates the GMRES solve implicitly."""
    sample = dt.Sample(dt.strip(4), 6)
    disorder = dt.draw_disorder(jax.random.key(4), sample, strength=1.0)
    f = lambda tau: solver_currents(sample, dt.Model(energy=0.7, flux=0.02, tau_phi=tau), disorder, "gmres")[1]
    value_and_grad = jax.jit(jax.value_and_grad(f))
    fd = central_difference(lambda tau: value_and_grad(tau)[0], jnp.asarray(5.0), 1e-4)
    assert abs(value_and_grad(5.0)[1] - fd) <= 1e-6 * abs(fd)


def test_unknown_solver_is_rejected():
    with pytest.raises(ValueError, match=r"solver must be one of \('auto', 'dense', 'gmres'\), got 'lu'"):
        buttiker_currents_rgf(None, None, None, None, None, 1, None, solver="lu")


def test_auto_solver_choice():
    """solver="auto": dense up to DENSE_LIMIT orbitals, up to SQUARE_DENSE_LIMIT for near-square samples (the
    measured crossover of docs/benchmarks.md#buttiker-solver), GMRES for long strips and large samples."""
    from difftransport._core.buttiker import dense_by_default

    assert dense_by_default(64, 16)  # 1024 orbitals, any shape
    assert dense_by_default(48, 48) and dense_by_default(32, 64)  # squares, spinful 32^2
    assert not dense_by_default(128, 16)  # a long strip: GMRES (0.16 s against 0.30 s dense)
    assert not dense_by_default(64, 64)  # 4096 orbitals: the dense memory (256 MiB per solve) is too much to vmap
