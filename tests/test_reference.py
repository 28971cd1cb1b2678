"""Agreement with the Kwant 1.5 reference conductances (tests/data, conventions in REFERENCE_README.md):
max |G - G_kwant| <= 1e-9 over every realization, energy, flux, Rashba strength, exchange and absorption, also for
SU(2) random hopping, periodic transverse boundaries and spinful honeycomb ribbons."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import load_reference

TOL = 1e-9


def _grid(f, *axes):
    """Evaluate f over the outer product of the axes with nested vmaps (first axis outermost)."""
    for i in reversed(range(len(axes))):
        f = jax.vmap(f, in_axes=tuple(0 if j == i else None for j in range(len(axes))))
    return f(*[jnp.asarray(a) for a in axes])


@pytest.mark.parametrize(
    "name", ["strip_spinless.npz", "strip_rashba.npz", "strip_magnetic.npz", "strip_absorbing.npz",
             "periodic_spinless.npz", "periodic_rashba.npz"]
)
def test_strips(name):
    """Hard-wall strips, and cylinders (periodic across, flux * W an integer: the Landau gauge needs no twist)."""
    meta, d = load_reference(name)
    lattice = dt.strip(meta["W"], boundary=meta.get("boundary", "hardwall"))
    sample = dt.Sample(lattice, meta["L"], spinful=meta["spinful"])
    tau_phi = 0.5 / meta["eta"] if meta["eta"] else None  # eta = hbar / (2 tau_phi)

    def g(potential, moments, energy, phi, alpha):
        model = dt.Model(
            energy=energy, hopping=meta["t"], flux=phi, tau_phi=tau_phi,
            rashba=alpha if meta["spinful"] else None, exchange=meta["J"] if meta["J"] else None,
        )
        disorder = dt.Disorder(potential=potential, moments=moments if meta["J"] else None)
        # The reference holds the raw transmission of the absorbing sample (no probe correction).
        return dt.conductance(sample, model, disorder, dephasing="absorb")

    per_realization = lambda v, m: _grid(lambda e, p, a: g(v, m, e, p, a), d["energies"], d["phis"], d["alphas"])
    got = jax.vmap(per_realization)(jnp.asarray(d["V"]), jnp.asarray(d["m"]))
    assert got.shape == d["G"].shape
    assert np.max(np.abs(got - d["G"])) <= TOL


def test_no_open_channel_gives_zero_not_nan():
    meta, d = load_reference("strip_spinless.npz")
    sample = dt.Sample(dt.strip(meta["W"]), meta["L"])
    model = dt.Model(energy=3.7, flux=0.05)
    assert float(dt.open_channels(sample, model)) == 0
    g = dt.conductance(sample, model, dt.Disorder(potential=d["V"][0]))
    assert np.isfinite(g) and abs(float(g)) < 1e-14
    assert d["G"][0, 3, 2, 0] == 0.0


def test_su2_strip():
    """SU(2) random hopping: the reference's explicit bond matrices go in as Disorder.su2_intra / su2_inter."""
    meta, d = load_reference("su2_strip.npz")
    sample = dt.Sample(dt.strip(meta["W"]), meta["L"], spinful=True)

    def g(potential, intra, inter, energy, phi):
        disorder = dt.Disorder(potential=potential, su2_intra=intra, su2_inter=inter)
        return dt.conductance(sample, dt.Model(energy=energy, hopping=meta["t"], flux=phi), disorder)

    per_realization = lambda v, a, b: _grid(lambda e, p: g(v, a, b, e, p), d["energies"], d["phis"])
    got = jax.vmap(per_realization)(*(jnp.asarray(d[k]) for k in ("V", "R_intra", "R_inter")))
    assert got.shape == d["G"].shape
    assert np.max(np.abs(got - d["G"])) <= TOL


def test_bar3d():
    meta, d = load_reference("bar3d.npz")
    sample = dt.Sample(dt.bar(meta["W"], meta["H"]), meta["L"])
    g = lambda v, e: dt.conductance(sample, dt.Model(energy=e), dt.Disorder(potential=v))
    got = jax.vmap(lambda v: jax.vmap(lambda e: g(v, e))(jnp.asarray(d["energies"])))(jnp.asarray(d["V"]))
    assert np.max(np.abs(got - d["G"])) <= TOL


def _reference_order(sample, pos):
    """Index of the reference site at each of our sites (matched by position)."""
    key = lambda p: (round(float(p[0]), 6), round(float(p[1]), 6))
    index = {key(p): k for k, p in enumerate(pos)}
    ours = sample.site_positions()[..., :2].reshape(-1, 2)
    return np.array([index[key(p)] for p in ours])


@pytest.mark.parametrize("name, ribbon, method", [
    ("zigzag_anderson.npz", dt.zigzag_ribbon, "rgf"), ("armchair_smooth.npz", dt.armchair_ribbon, "rgf"),
    ("zigzag_periodic.npz", dt.zigzag_ribbon, "rgf"), ("zigzag_periodic.npz", dt.zigzag_ribbon, "transfer"),
    ("armchair_periodic.npz", dt.armchair_ribbon, "rgf"),
])
def test_honeycomb_ribbons(name, ribbon, method):
    """Spinless ribbons and cylinders (``meta["boundary"] == "periodic"``: both valleys present, no edges; the
    zigzag cylinder in fields with b C an integer, the armchair one at b = 0, generate_kwant_references.py says
    why): Anderson disorder, a staggered mass, energies down to near the Dirac point. The zigzag cylinder is
    solved in column slices (docs/physics.md#column-slices), by RGF and by the transfer sweep."""
    meta, d = load_reference(name)
    sample = dt.Sample(ribbon(meta["N"], boundary=meta.get("boundary", "hardwall")), meta["Lx"])
    order = _reference_order(sample, d["pos"])
    assert sorted(order) == list(range(meta["n_sites"]))  # same sites, bijectively
    assert np.array_equal(np.tile(sample.lattice.sublattice, meta["Lx"]), d["sub"][order])

    def g(potential, energy, b, mass):
        model = dt.Model(energy=energy, hopping=meta["t"], flux=b, mass=mass)
        return dt.conductance(sample, model, dt.Disorder(potential=potential), method=method)

    potentials = jnp.asarray(d["V"][:, order].reshape(-1, *sample.potential_shape))
    got = jax.vmap(lambda v: _grid(lambda e, b, m: g(v, e, b, m), d["energies"], d["bs"], d["masses"]))(potentials)
    assert np.max(np.abs(got - d["G"])) <= TOL


@pytest.mark.parametrize(
    "name, ribbon", [("zigzag_spinful.npz", dt.zigzag_ribbon), ("armchair_spinful.npz", dt.armchair_ribbon)]
)
def test_spinful_honeycomb_ribbons(name, ribbon):
    """Rashba along the three bond directions, exchange J m.sigma, staggered mass and a field on honeycomb."""
    meta, d = load_reference(name)
    sample = dt.Sample(ribbon(meta["N"]), meta["Lx"], spinful=True)
    order = _reference_order(sample, d["pos"])
    assert sorted(order) == list(range(meta["n_sites"]))
    assert np.array_equal(np.tile(sample.lattice.sublattice, meta["Lx"]), d["sub"][order])

    def g(potential, moments, energy, b, alpha, J):
        model = dt.Model(energy=energy, hopping=meta["t"], flux=b, rashba=alpha, exchange=J, mass=meta["mass"])
        return dt.conductance(sample, model, dt.Disorder(potential=potential, moments=moments))

    potentials = jnp.asarray(d["V"][:, order].reshape(-1, *sample.potential_shape))
    moments = jnp.asarray(d["m"][:, order].reshape(-1, *sample.potential_shape, 3))
    axes = (d["energies"], d["bs"], d["alphas"], d["Js"])
    got = jax.vmap(lambda v, m: _grid(lambda *p: g(v, m, *p), *axes))(potentials, moments)
    assert got.shape == d["G"].shape
    assert np.max(np.abs(got - d["G"])) <= TOL


@pytest.mark.parametrize("kind, method", [("square", "rgf"), ("zigzag", "rgf"), ("zigzag", "transfer")])
def test_field_in_the_sample_only_on_cylinders(kind, method):
    """``Sample(..., field_region="sample")`` on cylinders (square W = 8; zigzag honeycomb N = 6) at fluxes with
    b C not an integer, which the Landau gauge cannot hold on a cylinder: the field between the first and the last
    cell in the transverse gauge, a field-free left lead and a right lead carrying the Aharonov-Bohm flux
    b (X1 - X0) C (generate_kwant_references.py, field_in_sample), against Kwant with two distinct leads."""
    meta, d = load_reference("field_in_sample.npz")
    case = meta["cases"][kind]
    lattice = (dt.strip(case["N"], boundary="periodic") if kind == "square"
               else dt.zigzag_ribbon(case["N"], boundary="periodic"))
    sample = dt.Sample(lattice, case["Lx"], field_region="sample")
    if kind == "square":
        potentials = jnp.asarray(d["square_V"])
    else:
        order = _reference_order(sample, d["zigzag_pos"])
        assert sorted(order) == list(range(len(d["zigzag_pos"])))
        potentials = jnp.asarray(d["zigzag_V"][:, order].reshape(-1, *sample.potential_shape))

    def g(potential, energy, b):
        return dt.conductance(sample, dt.Model(energy=energy, hopping=meta["t"], flux=b),
                              dt.Disorder(potential=potential), method=method)

    got = jax.vmap(lambda v: _grid(lambda e, b: g(v, e, b), d[f"{kind}_energies"], d[f"{kind}_bs"]))(potentials)
    print(f"{kind}: max |G - G_kwant| = {np.max(np.abs(got - d[f'{kind}_G'])):.2e}")
    assert np.max(np.abs(got - d[f"{kind}_G"])) <= TOL
    assert np.ptp(d[f"{kind}_G"], axis=2).max() > 0.05  # the field changes G: the check is not vacuous
