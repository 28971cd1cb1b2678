"""Reflection matrices in the lead-mode basis (difftransport/_core/reflection.py) and the coherent-backscattering
cone of a wide disordered slab.

Exact checks: sum rules against the Green's-function traces (reflection, transmission) and unitarity to 1e-10;
|r|^2 of hard-wall strips and basis-independent invariants of periodic strips against Kwant 1.5
(tests/data/reflection_kwant.npz, written by tests/data/generate_reflection_references.py) to 1e-9; plane-wave
labels; the first Born term against its closed form. Statistical checks (slow): the enhancement factor at exact
backscattering against 2 - S/L, and its removal by a field in the slab.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import DATA
from difftransport._core.reflection import (
    enhancement, extinction_lengths, reflection_cone, scattering_matrix, single_scattering
)

TOL = 1e-10
KWANT_TOL = 1e-9

CASES = [  # (boundary, spinful, model keywords, field_in_leads)
    ("hardwall", False, {}, True),
    ("hardwall", False, dict(flux=0.07), True),
    ("periodic", False, {}, True),
    ("periodic", False, dict(flux=0.125), False),  # field in the slab only: flux * W = 1
    ("periodic", True, dict(rashba=0.3), True),
    ("periodic", True, {}, True),
    ("hardwall", True, dict(rashba=0.2, flux=0.03), True),
]


def _disorder(sample, seed=1, strength=2.0):
    return dt.Disorder(potential=dt.anderson_potential(jax.random.key(seed), sample, strength))


@pytest.mark.slow
@pytest.mark.parametrize("boundary, spinful, kw, field_in_leads", CASES)
def test_sum_rules_and_unitarity(boundary, spinful, kw, field_in_leads):
    """sum |r|^2 = Tr r^+ r of difftransport.reflection, sum |t|^2 = transmission (where the field is in the leads
    too, as those functions assume), and r^+ r + t^+ t = 1 on the open modes, to 1e-10."""
    sample = dt.Sample(dt.strip(8, boundary=boundary), 10, spinful=spinful)
    model = dt.Model(energy=-1.3, **kw)
    disorder = _disorder(sample)
    s = scattering_matrix(sample, model, disorder, field_in_leads=field_in_leads)
    n = int(s.open_channels)
    assert n > 0 and bool(jnp.all(s.modes.open_in[:n])) and not bool(jnp.any(s.modes.open_in[n:]))
    if field_in_leads:
        assert abs(float(jnp.sum(jnp.abs(s.r) ** 2) - dt.reflection(sample, model, disorder))) <= TOL
        assert abs(float(jnp.sum(jnp.abs(s.t) ** 2) - dt.transmission(sample, model, disorder))) <= TOL
    r, t = s.r[:n, :n], s.t[:n, :n]
    assert float(jnp.max(jnp.abs(r.conj().T @ r + t.conj().T @ t - jnp.eye(n)))) <= TOL
    assert float(jnp.max(jnp.abs(s.r[n:]))) == 0 and float(jnp.max(jnp.abs(s.r[:, n:]))) == 0


@pytest.mark.slow
def test_clean_sample_reflects_nothing():
    """A clean sample continues its leads: r = 0 and t diagonal with |t_mm| = 1."""
    sample = dt.Sample(dt.strip(9, boundary="periodic"), 6)
    s = scattering_matrix(sample, dt.Model(energy=0.3))
    n = int(s.open_channels)
    assert float(jnp.max(jnp.abs(s.r))) <= TOL
    assert float(jnp.max(jnp.abs(jnp.abs(jnp.diag(s.t)[:n]) - 1))) <= TOL


def _reference():
    data = np.load(DATA / "reflection_kwant.npz")
    return json.loads(str(data["meta"])), data


def _ours(case, data, realization, energy):
    sample = dt.Sample(dt.strip(case["W"], boundary=case["boundary"]), case["L"], spinful=case["spinful"])
    model = dt.Model(energy=energy, flux=case["phi"] or None, rashba=case["alpha"] if case["spinful"] else None)
    s = scattering_matrix(sample, model, dt.Disorder(potential=jnp.asarray(data[f"V_{case['name']}_r{realization}"])))
    n = int(s.open_channels)
    r = np.asarray(s.r)[:n, :n]
    return r, np.angle(np.asarray(s.modes.lam_in))[:n], np.angle(np.asarray(s.modes.lam_out))[:n]


def _kwant_cases(boundary):
    meta, data = _reference()
    for name, case in meta["cases"].items():
        if case["boundary"] == boundary:
            for rz in range(meta["realizations"]):
                for i, energy in enumerate(case["energies"]):
                    yield dict(case, name=name), data, rz, energy, f"{name}_r{rz}_e{i}_"


@pytest.mark.slow
def test_hardwall_against_kwant():
    """|r_{m'm}|^2 of hard-wall strips (spinless, in a field, spinful with Rashba; nondegenerate modes, matched by
    k_x) against kwant.smatrix(...).submatrix(0, 0), to 1e-9."""
    count = 0
    for case, data, rz, energy, p in _kwant_cases("hardwall"):
        r, k_in, k_out = _ours(case, data, rz, energy)
        ref = data[p + "r2"]
        assert ref.shape == r.shape
        mine = np.abs(r[np.ix_(np.argsort(k_out), np.argsort(k_in))]) ** 2
        theirs = ref[np.ix_(np.argsort(data[p + "kx_out"]), np.argsort(data[p + "kx_in"]))]
        assert np.max(np.abs(np.sort(k_in) - np.sort(data[p + "kx_in"]))) <= KWANT_TOL
        assert np.max(np.abs(mine - theirs)) <= KWANT_TOL
        count += 1
    assert count == 10


def _group_sums(r2, k_out, k_in):
    """|r|^2 summed over groups of degenerate modes (equal k_x), groups ordered by k_x: basis independent."""
    def groups(k):
        keys = np.unique(np.round(k, 7))
        return np.searchsorted(keys, np.round(k, 7)), len(keys)
    (go, no), (gi, ni) = groups(k_out), groups(k_in)
    out = np.zeros((no, ni))
    np.add.at(out, (go[:, None], gi[None, :]), r2)
    return out


@pytest.mark.slow
def test_periodic_against_kwant():
    """Periodic strips (degenerate +-k_y modes, spinless and spinful with Rashba): the eigenvalues of r^+ r and
    |r|^2 summed over degenerate groups, both independent of the basis inside a group, against Kwant to 1e-9."""
    count = 0
    for case, data, rz, energy, p in _kwant_cases("periodic"):
        r, k_in, k_out = _ours(case, data, rz, energy)
        assert np.max(np.abs(np.linalg.eigvalsh(r.conj().T @ r) - data[p + "rr"])) <= KWANT_TOL
        mine = _group_sums(np.abs(r) ** 2, k_out, k_in)
        theirs = _group_sums(data[p + "r2"], data[p + "kx_out"], data[p + "kx_in"])
        assert mine.shape == theirs.shape and mine.shape[0] < r.shape[0]  # there are degenerate groups
        assert np.max(np.abs(mine - theirs)) <= KWANT_TOL
        count += 1
    assert count == 6


@pytest.mark.slow
@pytest.mark.parametrize("spinful", [False, True])
def test_periodic_modes_are_plane_waves(spinful):
    """On a periodic strip (no field in the lead) every open mode is e^{i k_y y} / sqrt(W) times a spinor, with
    k_y = 2 pi m / W its label; without spin-orbit the spinors are up / down (<sigma_z> = +-1); every k_y of an open
    subband appears once per spin, for incoming and outgoing modes alike."""
    w = 10
    sample = dt.Sample(dt.strip(w, boundary="periodic"), 4, spinful=spinful)
    s = scattering_matrix(sample, dt.Model(energy=-0.7))
    modes = s.modes
    n = int(s.open_channels)
    orbitals = 2 if spinful else 1
    for phi, ky, spin in ((modes.phi_in, modes.ky_in, modes.spin_in), (modes.phi_out, modes.ky_out, modes.spin_out)):
        phi, ky = np.asarray(phi)[:, :n].reshape(w, orbitals, n), np.asarray(ky)[:n]
        y = np.arange(w)
        wave = np.exp(1j * ky[None, :] * y[:, None])
        spinor = phi[0] / wave[0][None, :]  # the spinor at y = 0
        # 1e-8: modes of a 4-fold degenerate lambda (+-k_y, two spins) come out of eig accurate to ~1e-10 only
        assert np.max(np.abs(phi - wave[:, None, :] * spinor[None])) <= 1e-8
        assert np.max(np.abs(np.sum(np.abs(phi) ** 2, axis=1) - 1 / w)) <= 1e-8
        m = ky * w / (2 * np.pi)
        assert np.max(np.abs(m - np.round(m))) <= TOL
        # open subbands: |E - eps(k_y)| < 2 with eps = -2 cos k_y
        open_m = [k for k in range(-(w // 2) + 1, w // 2 + 1) if abs(-0.7 + 2 * np.cos(2 * np.pi * k / w)) < 2]
        assert sorted(np.round(m).astype(int).tolist()) == sorted(open_m * orbitals)
        if spinful:
            assert np.max(np.abs(np.abs(np.asarray(spin)[:n]) - 1)) <= 1e-8


@pytest.mark.slow
def test_jit_and_vmap_over_disorder():
    """vmap over realizations equals the stack of single calls; the jitted entry point traces once per shape."""
    sample = dt.Sample(dt.strip(6, boundary="periodic"), 5)
    model = dt.Model(energy=-1.0)
    keys = jax.random.split(jax.random.key(3), 3)
    draw = lambda k: dt.Disorder(potential=dt.anderson_potential(k, sample, 1.5))
    batched = jax.vmap(lambda k: scattering_matrix(sample, model, draw(k)).r)(keys)
    single = jnp.stack([scattering_matrix(sample, model, draw(k)).r for k in keys])
    assert float(jnp.max(jnp.abs(batched - single))) <= 1e-12


@pytest.mark.slow
def test_first_born_term_is_exact():
    """The bare first-Born part of <|r_{m'm}|^2> for white noise of variance sigma^2, sigma^2 sum_r |d r_{m'm} /
    d V_r|^2 at V = 0 (forward-mode derivative of the full solver), equals single_scattering's closed form
    sigma^2 L / (W |v_m| |v_m'|) to 1e-10 (unit-flux plane waves, |phi|^2 = 1/W)."""
    sample = dt.Sample(dt.strip(8, boundary="periodic"), 5)
    model = dt.Model(energy=-1.1)
    s = scattering_matrix(sample, model)
    jac = jax.jacfwd(lambda v: scattering_matrix(sample, model, dt.Disorder(potential=v)).r)(
        jnp.zeros(sample.potential_shape))
    variance = 0.37
    measured = variance * jnp.sum(jnp.abs(jac) ** 2, axis=(-2, -1))
    _, bare = single_scattering(s.modes, sample, variance)
    n = int(s.open_channels)
    assert float(jnp.max(jnp.abs(measured[:n, :n] - bare[:n, :n]))) <= TOL
    dressed, _ = single_scattering(s.modes, sample, variance)
    assert bool(jnp.all(dressed[:n, :n] < bare[:n, :n]))  # attenuation only lowers it


def test_errors():
    model = dt.Model(energy=-1.0)
    with pytest.raises(ValueError, match="invertible inter-slice hopping"):
        scattering_matrix(dt.Sample(dt.zigzag_ribbon(4), 3), model)
    with pytest.raises(ValueError, match="periodic along x"):
        scattering_matrix(dt.Sample(dt.strip(4), 3, periodic=True), model)
    with pytest.raises(ValueError, match="field_in_leads must be True or False"):
        scattering_matrix(dt.Sample(dt.strip(4), 3), model, field_in_leads=1)


@pytest.mark.slow
def test_cone_errors():
    model = dt.Model(energy=-1.0)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="at least two PRNG keys"):
        reflection_cone(keys[:1], dt.Sample(dt.strip(4, boundary="periodic"), 3), model, 1.0)
    with pytest.raises(ValueError, match="needs a periodic strip"):
        reflection_cone(keys, dt.Sample(dt.strip(4), 3), model, 1.0)
    with pytest.raises(ValueError, match="su2=True needs a spinful sample"):
        reflection_cone(keys, dt.Sample(dt.strip(4, boundary="periodic"), 3), model, 1.0, su2=True)
    cone = reflection_cone(keys, dt.Sample(dt.strip(4, boundary="periodic"), 3), model, 1.0)
    with pytest.raises(ValueError, match="max_delta must be a finite number"):
        dt.cone_profile(cone, max_delta=-1.0)
    # an incidence window [min_ky, max_ky] keeps exactly the open modes with |k_y| inside it
    ky = np.abs(np.asarray(cone.modes.ky_in))
    window = np.asarray(dt.cone_profile(cone, max_delta=0.0, min_ky=0.5, max_ky=2.0).incoming)
    np.testing.assert_array_equal(window, np.asarray(cone.modes.open_in) & (ky >= 0.5) & (ky <= 2.0))
    assert window.any() and not window.all()


# ---------------------------------------------------------------------------------------------------------
# The cone. W = 32 periodic, L = 20, box disorder W_d = 2 (sigma^2 = 1/3), E = -1: 21 open modes, l = v tau ~ 7
# (Born), so the specular direction of |k_y| >= 0.3 has 2 |k_y| l >~ 4. Parameters chosen in an exploratory run with
# another key (7); the tests use a fresh one.

W, L, STRENGTH, ENERGY, REALIZATIONS = 32, 20, 2.0, -1.0, 400
POOL = dict(min_ky=0.3, min_velocity=1.5)  # 14 incoming modes, away from grazing incidence


@pytest.fixture(scope="module")
def cones():
    sample = dt.Sample(dt.strip(W, boundary="periodic"), L)
    keys = jax.random.split(jax.random.key(2026), REALIZATIONS)
    clean = reflection_cone(keys, sample, dt.Model(energy=ENERGY), STRENGTH)
    field = reflection_cone(keys, sample, dt.Model(energy=ENERGY, flux=1 / W), STRENGTH)  # slab only, flux W = 1
    return enhancement(clean, **POOL), enhancement(field, **POOL)


@pytest.mark.slow
def test_backscattering_enhancement_is_two_minus_single_scattering(cones):
    """Comparator, fixed before the run: eta = <|r_{-k,k}|^2>_d / <|r_{k,k}|^2>_d (ladder read off at the specular
    direction) equals 2 - S/L, S the attenuated first-Born single scattering (single_scattering), L the same
    specular intensity. Window 3 combined SE. Exploratory run (key 7): eta = 1.601 +- 0.046 against 2 - S/L = 1.584
    (S/L = 0.416). The window excludes the nearest wrong answers, 2 (crossed term equal to the whole ladder, no
    single-scattering correction) and 1 (no cone), each by more than 3 SE (asserted)."""
    e = cones[0]
    eta, se, expected = float(e.factor), float(e.error), float(e.expected)
    se_expected = se * float(e.single_share) / eta  # L enters 2 - S/L with about the same relative error as eta
    window = 3 * np.hypot(se, se_expected)
    print(f"eta = {eta:.3f} +- {se:.3f}, 2 - S/L = {expected:.3f} (S/L = {float(e.single_share):.3f}), "
          f"pooled modes {int(e.incoming.sum())}")
    assert abs(eta - expected) <= window
    assert abs(2 - eta) > 3 * se and abs(1 - eta) > 3 * se
    assert 0.2 < float(e.single_share) < 0.7  # the share the comparator rests on is substantial


@pytest.mark.slow
def test_field_in_slab_removes_the_cone(cones):
    """A field in the slab only (flux 1/W per plaquette: one flux quantum per 32 plaquettes, killing loops of more
    than a few l^2; leads field free, plane-wave modes) removes the peak. Comparator, fixed before the run: the local
    contrast <|r_{-k,k}|^2> / mean of its neighbours k_y' = -k_y +- 2 pi / W is 1 within 3 SE. Nearest wrong answer:
    the zero-field contrast (the cone surviving), which lies more than 3 combined SE away (asserted). Exploratory run
    (key 7): contrast 0.979 +- 0.016 with the field, 1.415 +- 0.027 without. (The specular ratio eta drops to
    0.91 +- 0.03 in this field, below 1: at omega_c tau ~ 1 the bent paths make the ladder asymmetric in k_y'.)"""
    clean, field = cones
    c, se = float(field.contrast), float(field.contrast_error)
    c0, se0 = float(clean.contrast), float(clean.contrast_error)
    print(f"contrast with field {c:.3f} +- {se:.3f}; without {c0:.3f} +- {se0:.3f}; eta with field "
          f"{float(field.factor):.3f} +- {float(field.error):.3f}")
    assert abs(c - 1) <= 3 * se
    assert c0 - c > 3 * np.hypot(se, se0)


# ---------------------------------------------------------------------------------------------------------
# Spinful strips: one pooling code path (spin summed over outgoing spins, both incoming spins).

@pytest.fixture(scope="module")
def spinful_cones():
    sample = dt.Sample(dt.strip(W, boundary="periodic"), L, spinful=True)
    keys = jax.random.split(jax.random.key(2027), 200)
    plain = reflection_cone(keys, sample, dt.Model(energy=ENERGY), STRENGTH)
    su2 = reflection_cone(keys, sample, dt.Model(energy=ENERGY), STRENGTH, su2=True)
    return enhancement(plain, **POOL), enhancement(su2, **POOL)


@pytest.mark.slow
def test_spinful_cone_without_spin_orbit_is_two_minus_single_scattering(spinful_cones):
    """Spin-conserving on-site disorder on a spinful strip (two decoupled copies of the spinless problem): the
    spin-summed eta equals 2 - S/L, S with the spinor overlaps |chi'^+ chi|^2 (single_scattering). Comparator fixed
    before the run; window 3 combined SE (as the spinless test). Exploratory run (key 13, 200 realizations):
    eta = 1.654 +- 0.064 against 2 - S/L = 1.566 (+1.4 SE). Excludes 2 (no single-scattering correction; 5.4 SE
    away there) and 1 (asserted > 3 SE). Test key 2027: 1.620 +- 0.068 against 1.580."""
    e = spinful_cones[0]
    eta, se, expected = float(e.factor), float(e.error), float(e.expected)
    window = 3 * np.hypot(se, se * float(e.single_share) / eta)
    print(f"spinful eta = {eta:.3f} +- {se:.3f}, 2 - S/L = {expected:.3f}")
    assert abs(eta - expected) <= window
    assert abs(2 - eta) > 3 * se and abs(1 - eta) > 3 * se


@pytest.mark.slow
def test_su2_hopping_turns_the_cone_into_a_dip(spinful_cones):
    """Haar SU(2) hoppings in the slab (symplectic class): with the spin randomized along every multiple-scattering
    path the spin-summed crossed term is -1/2 of the ladder minus single scattering, negative. Comparator fixed
    before the run: eta < 1 and the contrast against the neighbours < 1 (a dip), each by more than 3 SE; this
    excludes 1 (no interference) and the orthogonal peak 2 - S/L. The quantitative prediction 1/2 + S/(2L) with
    the on-site Born S/L (0.29) is NOT met: exploratory run (key 12, 200 realizations) eta = 0.489 +- 0.035
    against 0.643 (-4.4 SE); the Born S ignores the SU(2) scattering (docs/physics.md#backscattering-cone).
    Test key 2027: eta = 0.507 +- 0.031, contrast 0.810 +- 0.019."""
    e = spinful_cones[1]
    eta, se = float(e.factor), float(e.error)
    c, cse = float(e.contrast), float(e.contrast_error)
    print(f"SU(2) eta = {eta:.3f} +- {se:.3f}, contrast {c:.3f} +- {cse:.3f}, 1/2 + S/2L = "
          f"{0.5 + float(e.single_share) / 2:.3f}")
    assert 1 - eta > 3 * se
    assert 1 - c > 3 * cse


# ---------------------------------------------------------------------------------------------------------
# Measured extinction lengths (the single-scattering input beyond the Born rate).

def test_single_scattering_with_born_extinction_is_the_born_formula():
    """single_scattering(..., extinction=l) with l = tau |v| (the Born lengths) is the Born result to 1e-12, and a
    length per mode of the wrong shape is refused."""
    sample = dt.Sample(dt.strip(12, boundary="periodic"), 9)
    modes = scattering_matrix(sample, dt.Model(energy=-1.0)).modes
    variance = 2.0**2 / 12
    born, bare = single_scattering(modes, sample, variance)
    v = np.where(np.asarray(modes.open_in), np.abs(np.asarray(modes.v_in)), np.inf)
    tau = 1 / (2 * variance / 12 * np.sum(np.where(np.isfinite(v), 1 / v, 0.0)))
    lengths = np.where(np.isfinite(v), tau * v, np.nan)
    measured, bare2 = single_scattering(modes, sample, variance, extinction=lengths)
    np.testing.assert_allclose(np.asarray(measured), np.asarray(born), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.asarray(bare2), np.asarray(bare))
    with pytest.raises(ValueError, match="one length per mode"):
        single_scattering(modes, sample, variance, extinction=lengths[:3])


def test_extinction_errors():
    sample = dt.Sample(dt.strip(8, boundary="periodic"), 4)
    keys = jax.random.split(jax.random.key(0), 32)
    with pytest.raises(ValueError, match="at least 2 \\* blocks"):
        extinction_lengths(keys[:8], sample, dt.Model(energy=-1.0), 1.0, lengths=(4, 8))
    for lengths in ((4,), (4, 4), (4, 1), (4, 8.0)):
        with pytest.raises(ValueError, match="lengths must be >= 2 distinct integers"):
            extinction_lengths(keys, sample, dt.Model(energy=-1.0), 1.0, lengths=lengths)


@pytest.mark.slow
def test_extinction_is_born_at_weak_disorder():
    """The coherent transmission's decay gives the exact extinction length of each mode. Comparator, fixed before
    the test (exploratory run, key 5, 16-wide periodic strip, E = -1, W_d = 0.6: l / (tau_B |v|) = 1.010): at weak
    disorder the mean over the open modes of l / (tau_B |v|) is 1 within 3 SE, the SE that of a fully correlated
    mean (the mean of the per-mode SEs: every mode shares the realizations) and below 0.03. This excludes the
    amplitude extinction length (ratio 2) and a Born rate off by a factor 2 (0.5 or 2).
    A first version also claimed the ratio below 1 by 3 SE at W_d = 2 and failed (key 1907: 0.980 +- 0.017, an SE
    that treated the modes as independent; five more keys gave 0.95-1.00 on this 16-wide strip against 0.88 on
    32-wide ones): the Born rate sums 1/|v| over the strip's discrete modes, so its error depends on the width and
    no fixed beyond-Born offset is claimed; the measured lengths are what the cone's comparator uses. With 64
    realizations the correlated SE was 0.045 (above its cap; 1.008 measured), so the ensemble is 192."""
    sample = dt.Sample(dt.strip(16, boundary="periodic"), 20)
    ext = extinction_lengths(jax.random.split(jax.random.key(1907), 192), sample, dt.Model(energy=-1.0), 0.6,
                             lengths=(24, 48, 72))
    use = np.isfinite(np.asarray(ext.length))
    ratio = np.asarray(ext.length)[use] / np.asarray(ext.born)[use]
    se = float(np.mean(np.asarray(ext.error)[use] / np.asarray(ext.born)[use]))
    print(f"W_d = 0.6: l / l_Born = {ratio.mean():.4f} +- {se:.4f} over {use.sum()} modes")
    assert abs(ratio.mean() - 1) <= 3 * se and se < 0.03
