"""The transfer-matrix sweep (``method="transfer"``) against the RGF sweep: same Green's function block G_N1 to
~1e-11 for every model it accepts, the same gradients, the same ensembles, and clear errors where it does not
apply."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._runs import config as _config
from difftransport._runs import runner as _runner
from difftransport._core.build import prepare
from difftransport._core.leads import lead_self_energies
from difftransport._core.rgf import sweep
from difftransport._core.transfer import transfer_sweep, unsupported

CASES = {
    "strip": (dt.Sample(dt.strip(16), 40), dt.Model(energy=1.0), {}),
    "strip in a field": (dt.Sample(dt.strip(16), 41), dt.Model(energy=1.0, flux=0.03), {}),
    "periodic strip": (dt.Sample(dt.strip(16, boundary="periodic"), 37), dt.Model(energy=0.5, flux=1 / 16), {}),
    "rashba strip": (dt.Sample(dt.strip(12), 30, spinful=True), dt.Model(energy=1.0, rashba=0.3, flux=0.02), {}),
    "bar": (dt.Sample(dt.bar(4, 5), 30), dt.Model(energy=1.0, flux=0.05), {}),
    "two slices": (dt.Sample(dt.strip(8), 2), dt.Model(energy=1.0), {}),
    "absorbing": (dt.Sample(dt.strip(8), 9), dt.Model(energy=1.0, tau_phi=5.0), {}),
    "magnetic moments": (dt.Sample(dt.strip(10), 30, spinful=True), dt.Model(energy=1.0, exchange=0.5),
                         {"moments": True}),
    "su2 hopping": (dt.Sample(dt.strip(6), 25, spinful=True), dt.Model(energy=1.0), {"su2": True}),
    "rashba bar": (dt.Sample(dt.bar(3, 3), 20, spinful=True), dt.Model(energy=1.0, rashba=0.3), {}),
    "rashba cylinder, twist": (dt.Sample(dt.strip(6, boundary="periodic"), 20, spinful=True),
                               dt.Model(energy=0.7, rashba=0.2, twist=0.3), {}),
    "rashba, field in the sample": (dt.Sample(dt.strip(5), 20, spinful=True, field_region="sample"),
                                    dt.Model(energy=0.7, rashba=0.2, flux=0.02), {}),
}


@eqx.filter_jit
def _blocks(sample, model, disorder, every):
    """(G_N1 by RGF, G_N1 by the transfer sweep, the Hamiltonian both swept)."""
    ham, model = prepare(sample, model, disorder)
    leads = lead_self_energies(model.energy, ham.lead.cell, ham.lead.hop, ham.lead.factor)
    rgf = sweep(model.energy, ham, leads.left, leads.right)[1]
    return rgf, transfer_sweep(model.energy, ham, leads.left, leads.right, every), ham


@pytest.mark.parametrize("name", CASES)
def test_transfer_sweep_equals_rgf(name):
    """G_N1 of both sweeps, renormalized every 8 slices and, for three cases, every 3 (remainders) and every
    slice; measured agreement 1e-16 to 4e-11 relative (the periodic strip in a field is the worst: more evanescent
    growth). The spinful cases also check the builders' promises that the rotated sweep relies on: where a builder
    promises a shared spin axis (``SiteBlockHopping.axis``: Rashba, field in both gauges, twist, 3D bars, exchange
    with V = -t) the rotation makes every inter-slice block diagonal to rounding; under SU(2) disorder (blocks no
    fixed rotation diagonalizes) there is no promise; ``scalar_sites`` holds exactly where there is no exchange."""
    from difftransport._core.transfer import _SPIN_EIGENBASES

    sample, model, draw = CASES[name]
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=2.0, **draw)
    for every in (8, 3, 1) if name in ("strip in a field", "bar", "two slices") else (8,):
        rgf, transfer, ham = _blocks(sample, model, disorder, every)
        assert np.max(np.abs(transfer - rgf)) < 1e-9 * np.max(np.abs(rgf)), every
    if sample.orbitals == 2:
        assert (ham.hops.axis is None) == (name == "su2 hopping")
        if ham.hops.axis is not None:
            r = _SPIN_EIGENBASES[ham.hops.axis]
            rotated = np.einsum("ab,...bc,cd->...ad", r.conj().T, np.asarray(ham.hops.blocks), r)
            assert np.max(np.abs(rotated[..., 0, 1])) + np.max(np.abs(rotated[..., 1, 0])) < 1e-15
        site = np.asarray(ham.site)
        assert ham.scalar_sites == (name != "magnetic moments")
        assert ham.scalar_sites == bool(np.all(site == site[..., :1, :1] * np.eye(2)))


def test_transfer_conductance_and_observables():
    """The public entry points: conductance, transmission, Fano factor, eigenvalues and the absorbing
    conductance agree with RGF; method="auto" runs the transfer sweep there (bit for bit) and RGF where it does not
    apply: the honeycomb ribbon (hopping not site-diagonal) and reflection."""
    sample = dt.Sample(dt.strip(12), 60)
    disorder = dt.draw_disorder(jax.random.key(0), sample, strength=1.5)
    names = ("conductance", "transmission", "fano_factor", "transmission_eigenvalues", "open_channels")
    cases = ((dt.Model(energy=0.7, flux=0.02), "probe"), (dt.Model(energy=0.7, tau_phi=20.0), "absorb"))
    for model, dephasing in cases:
        a = dt.observe(sample, model, disorder, observables=names, dephasing=dephasing)
        b = dt.observe(sample, model, disorder, observables=names, dephasing=dephasing, method="transfer")
        for n in names:
            np.testing.assert_allclose(b[n], a[n], rtol=1e-9, atol=1e-12, err_msg=n)
        c = dt.observe(sample, model, disorder, observables=names, dephasing=dephasing, method="auto")
        assert all(np.array_equal(c[n], b[n]) for n in names)
    both = ("conductance", "reflection")
    auto = dt.observe(sample, model, disorder, observables=both, method="auto")
    assert all(auto[n] == dt.observe(sample, model, disorder, observables=both)[n] for n in both)
    ribbon = dt.Sample(dt.zigzag_ribbon(4), 12)
    model = dt.Model(energy=0.3)
    assert unsupported(prepare(ribbon, model)[0])
    assert dt.conductance(ribbon, model, method="auto") == dt.conductance(ribbon, model)


def test_transfer_gradients_and_long_samples():
    """Derivatives of G with respect to flux, energy and Rashba coupling equal those of RGF (1e-8 relative),
    also for a sample long enough for the checkpointed scan (L = 600, one orbital per site: the flat loop in
    checkpointed blocks of 24 steps, 74 renormalizations; the spinful sample runs the nested loop)."""
    sample = dt.Sample(dt.strip(6), 30, spinful=True)
    disorder = dt.draw_disorder(jax.random.key(1), sample, strength=1.0)

    def g(method, flux, energy, rashba):
        return dt.conductance(sample, dt.Model(energy=energy, flux=flux, rashba=rashba), disorder, method=method)

    args = (0.01, 0.8, 0.2)
    np.testing.assert_allclose(jax.grad(g, argnums=(1, 2, 3))("transfer", *args),
                               jax.grad(g, argnums=(1, 2, 3))("rgf", *args), rtol=1e-8)
    long = dt.Sample(dt.strip(4), 600)
    disorder = dt.draw_disorder(jax.random.key(2), long, strength=0.5)

    def g_long(method, flux):
        return dt.conductance(long, dt.Model(energy=0.5, flux=flux), disorder, method=method)

    np.testing.assert_allclose(g_long("transfer", 0.01), g_long("rgf", 0.01), rtol=1e-9)
    np.testing.assert_allclose(jax.grad(g_long, argnums=1)("transfer", 0.01), jax.grad(g_long, argnums=1)("rgf", 0.01),
                               rtol=1e-7)


def test_transfer_errors():
    sample = dt.Sample(dt.strip(4), 10)
    with pytest.raises(ValueError, match="method must be one of"):
        dt.conductance(sample, dt.Model(energy=0.5), method="fast")
    with pytest.raises(ValueError, match=r"\['reflection'\] need method='rgf'"):
        dt.observe(sample, dt.Model(energy=0.5), observables=("reflection",), method="transfer")
    with pytest.raises(ValueError, match="dephasing='probe' with tau_phi needs method='rgf'"):
        dt.conductance(sample, dt.Model(energy=0.5, tau_phi=10.0), method="transfer")
    with pytest.raises(ValueError, match=r"method='transfer' needs site-diagonal inter-slice hopping .*, got "
                                         r"zigzag_ribbon\(N=4\) of length 12: use method='rgf' or 'auto'"):
        dt.conductance(dt.Sample(dt.zigzag_ribbon(4), 12), dt.Model(energy=0.3), method="transfer")
    with pytest.raises(ValueError, match="method='transfer' needs at least two slices, got strip"):
        dt.conductance(dt.Sample(dt.strip(4), 1), dt.Model(energy=0.5), method="transfer")
    ham = prepare(dt.Sample(dt.strip(4), 1), dt.Model(energy=0.5))[0]
    with pytest.raises(ValueError, match="at least two slices"):
        transfer_sweep(0.5, ham, jnp.zeros((4, 4)), jnp.zeros((4, 4)))
    base = {"run": {"realizations": 2}, "ensembles": {"a": {
        "sample": {"lattice": "strip", "width": 4, "length": 5}, "model": {"energy": 0.5}, "method": "transfer"}}}
    _config.validate(base)
    base["ensembles"]["a"]["observables"] = ["conductance", "reflection"]
    with pytest.raises(_config.ConfigError, match=r"method = 'transfer' gives G_N1 only; \['reflection'\]"):
        _config.validate(base)
    base["ensembles"]["a"]["observables"] = ["conductance"]
    base["ensembles"]["a"]["model"]["tau_phi"] = 10.0
    with pytest.raises(_config.ConfigError, match="dephasing = 'probe' with tau_phi needs method = 'rgf'"):
        _config.validate(base)
    base["ensembles"]["a"]["method"] = "auto"  # runs RGF here
    assert _config.validate(base)["ensembles"]["a"]["method"] == "auto"


def test_transfer_ensembles_equal_rgf_ensembles(tmp_path):
    """A runner ensemble with method = 'transfer' gives the RGF results to 1e-10, and the method is not part of
    the config hash (a run may switch it and resume)."""
    text = """
[run]
seed = 5
realizations = 12
chunk = 4

[ensembles.strip]
observables = ["conductance", "fano_factor"]
method = "{method}"
[ensembles.strip.sample]
lattice = "strip"
width = 6
length = 20
[ensembles.strip.model]
energy = 0.9
[ensembles.strip.disorder]
strength = 1.5
[ensembles.strip.grid]
flux = [0.0, 0.02]
"""
    results = {}
    for method in ("rgf", "transfer"):
        path = tmp_path / f"{method}.toml"
        path.write_text(text.format(method=method))
        store = _runner.run(path, tmp_path / method, quiet=True, log=lambda *_: None)
        with np.load(store.results_path("strip")) as npz:
            results[method] = {k: npz[k] for k in ("conductance", "fano_factor")}
        results[method + " hash"] = _config.config_hash(store.config)
    for k in ("conductance", "fano_factor"):
        np.testing.assert_allclose(results["transfer"][k], results["rgf"][k], rtol=1e-10)
    assert results["transfer hash"] == results["rgf hash"]


def test_spin_axis_is_checked():
    """A hand-made ``SiteBlockHopping`` with a spin axis its blocks do not share, an axis out of range or blocks that
    are not 2 x 2 is refused in one line (the sweep would otherwise rotate into a wrong basis); blocks a + b sigma
    pass, concrete or traced. So is a ``SlicedHamiltonian`` that promises scalar site blocks it does not have."""
    from difftransport._core.hamiltonian import SiteBlockHopping

    pauli = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]])
    a, b = np.array([-1.0, -0.5j]), np.array([0.3j, 0.2])
    for axis in (0, 1, 2):
        blocks = jnp.asarray(a[:, None, None] * np.eye(2) + b[:, None, None] * pauli[axis])
        assert SiteBlockHopping(blocks, axis).axis == axis
        assert jax.jit(lambda x: SiteBlockHopping(x, axis).blocks)(blocks).shape == (2, 2, 2)
        with pytest.raises(ValueError, match=r"a \+ b sigma_.*residual"):
            SiteBlockHopping(blocks + 0.1 * jnp.asarray(pauli[(axis + 1) % 3]), axis)
    with pytest.raises(ValueError, match="axis must be None or 0, 1, 2"):
        SiteBlockHopping(jnp.eye(2)[None], 3)
    with pytest.raises(ValueError, match="2 x 2 blocks"):
        SiteBlockHopping(jnp.ones((4, 1, 1)), 1)
    sample, model, draw = CASES["magnetic moments"]  # exchange: site blocks J m.sigma (compiled above)
    ham = _blocks(sample, model, dt.draw_disorder(jax.random.key(3), sample, strength=2.0, **draw), 8)[2]
    with pytest.raises(ValueError, match=r"scalar_sites=True\) needs every site block"):
        dt.SlicedHamiltonian(ham.base, ham.site, ham.hops, ham.lead, base_bonds=ham.base_bonds, scalar_sites=True)
    # the sweep's own rotated Hamiltonian keeps both promises when built from concrete values (an eager sweep)
    sample, model = dt.Sample(dt.strip(3), 4, spinful=True), dt.Model(energy=1.0, rashba=0.3)
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=2.0)
    ham, checked = prepare(sample, model, disorder)
    leads = eqx.filter_jit(lead_self_energies)(checked.energy, ham.lead.cell, ham.lead.hop, ham.lead.factor)
    eager = transfer_sweep(checked.energy, ham, leads.left, leads.right)
    np.testing.assert_allclose(eager, _blocks(sample, model, disorder, 8)[1], rtol=0, atol=1e-13)


@pytest.mark.parametrize("orbitals", [1, 2])
def test_stencils_equal_dense_products(orbitals):
    """``site_apply`` and ``stencil_apply`` (written-out products, one home for the transfer sweep, the TMM and
    SiteBlockHopping) equal the dense block-diagonal and scattered-bond products, with repeated and padded rows."""
    from difftransport._core.hamiltonian import (blockdiag, bond_stencil, scatter_bonds, site_apply, stencil_apply,
                                                 stencil_blocks)

    rng = np.random.default_rng(3)
    m, s, k = 7, orbitals, 5
    c = lambda *shape: jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape))
    blocks, x = c(m, s, s), c(m * s, k)
    np.testing.assert_allclose(site_apply(blocks, x), blockdiag(blocks) @ x, atol=1e-13)
    bonds = ((0, 1), (1, 2), (2, 0), (3, 4), (0, 1), (6, 5))  # a repeated bond, a triangle, an isolated pair
    values = c(len(bonds), s, s)
    structure = bond_stencil(bonds, m)
    np.testing.assert_allclose(stencil_apply(structure[0], stencil_blocks(structure, values), x),
                               scatter_bonds(values, bonds, m) @ x, atol=1e-13)
