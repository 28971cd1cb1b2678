"""Buttiker probes on every site: the RGF + GMRES solver against an independent dense solve, current
conservation, physical limits and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import central_difference


def dense_buttiker(sample, model, disorder):
    """Independent oracle: full G = (E - H - Sigma)^-1 of the whole sample, every T(q -> p) from it, and the
    probe potentials from a dense solve of the zero-current conditions. Returns (I_L, I_R)."""
    ham = dt.build_hamiltonian(sample, model, disorder)
    leads = dt.lead_self_energies(model.energy, ham.lead.cell, ham.lead.hop, ham.lead.factor)
    h = np.asarray(dt.dense_hamiltonian(ham))
    n, total, s = ham.size, h.shape[0], sample.orbitals
    sigma = np.zeros_like(h)
    sigma[:n, :n] += leads.left
    sigma[-n:, -n:] += leads.right
    g = np.linalg.inv(float(model.energy) * np.eye(total) - h - sigma)
    gl = 1j * (leads.left - leads.left.conj().T)
    gr = 1j * (leads.right - leads.right.conj().T)
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
