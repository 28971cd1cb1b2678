"""Graphene weak localization (McCann et al., PRL 97, 146805 (2006)): ``theory.mccann`` against an independent
scipy implementation of the published formula, its three limits (docs/theory.md#mccann), the asymptotics of
F(z) = ln z + psi(1/2 + 1/z), gradients against finite differences, and the ``"mccann"`` fit model (library and
``difftransport fit``)."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma as scipy_digamma

from conftest import central_difference, run_fit_cli
from difftransport import theory as th
from difftransport._core.fit import fit_magnetoconductance

B_PHI = 0.05
FIELD = np.geomspace(1e-3, 10.0, 41)  # B/B_phi from 0.02 to 200: both branches of F (switch at B/B_phi = 1/15)
PSI_HALF = -np.euler_gamma - 2 * np.log(2)  # psi(1/2)
ZETA3 = 1.2020569031595942


def mccann_np(b, b_phi, b_i, b_star, g=2):
    """The published formula with scipy's digamma, in e^2/h:
    (g/2)(1/pi)[F(B/B_phi) - F(B/(B_phi + 2B_i)) - 2F(B/(B_phi + B_i + B_*))]."""
    def f(z):
        return np.log(z) + scipy_digamma(0.5 + 1 / z)
    return g / (2 * np.pi) * (f(b / b_phi) - f(b / (b_phi + 2 * b_i)) - 2 * f(b / (b_phi + b_i + b_star)))


def test_matches_the_published_formula():
    """Generic fields, both degeneracies. scipy's ln z + psi(1/2 + 1/z) cancels to ~eps ln z absolute where
    F(z) ~ z^2/24 is small (z = 1e-3/1.35: F ~ 2e-8, error ~ 1e-15), hence the atol."""
    for g in (1, 2):
        np.testing.assert_allclose(th.mccann(FIELD, B_PHI, 0.2, 1.3, spin_degeneracy=g),
                                   mccann_np(FIELD, B_PHI, 0.2, 1.3, g), rtol=1e-10, atol=1e-14)
    assert th.mccann(0.4, B_PHI, 0.2, 1.3) > 0  # B_i, B_* >> B_phi: WL, sigma rises with B


def test_strong_intervalley_scattering_is_ordinary_wl():
    """(a) B_i = 1e9 B_phi, B_* finite: the two gapped terms are F(z') ~ z'^2/24 with z' < 10/(1e9 B_phi) = 2e-7,
    i.e. < 1e-14 absolute, against (1/pi) F(B/B_phi) >= 1e-5 here: Delta sigma = (g_s/2)(1/pi) F(B/B_phi).
    With g_s = 2 that is hln at B_so = B_s = 0 (spin-degenerate WL, both spin projections: the same prefactor
    e^2/(pi h)); with g_s = 1 it is hln_alpha with alpha = 1/2 (spinless lattice model)."""
    strong = th.mccann(FIELD, B_PHI, 1e9 * B_PHI, 1.3)
    np.testing.assert_allclose(strong, th.hln(FIELD, B_PHI), rtol=1e-10, atol=0)
    np.testing.assert_allclose(th.mccann(FIELD, B_PHI, 1e9 * B_PHI, 1.3, spin_degeneracy=1),
                               th.hln_alpha(FIELD, B_PHI, 0.5), rtol=1e-10, atol=0)
    np.testing.assert_allclose(th.mccann(FIELD, B_PHI, 1e9 * B_PHI, 1.3, spin_degeneracy=1), 0.5 * strong,
                               rtol=1e-14)


def test_no_intervalley_and_no_symmetry_breaking_is_antilocalization():
    """(b) B_i = B_* = 0: F - F - 2F = -2F, WAL of the two decoupled Dirac cones, -2 times the WL curve of (a)."""
    for g, wl in ((2, th.hln(FIELD, B_PHI)), (1, th.hln_alpha(FIELD, B_PHI, 0.5))):
        wal = th.mccann(FIELD, B_PHI, 0.0, 0.0, spin_degeneracy=g)
        np.testing.assert_allclose(wal, -2 * np.asarray(wl), rtol=1e-12, atol=0)
        assert np.all(np.asarray(wal) < 0)


@pytest.mark.parametrize("b_i", [0.0, 1e-9 * B_PHI])
def test_strong_intravalley_breaking_without_intervalley_cancels(b_i):
    """(c) B_i -> 0, B_* = 1e8 B_phi: F(B/B_phi) - F(B/(B_phi + 2B_i)) ~ 2 B_i/B_phi ~ 2e-9 relative, and
    2F(B/B_*) ~ 2 (B_phi/B_*)^2 ~ 2e-16 relative to the WL curve (small B) or less: |Delta sigma| < 1e-6 x WL."""
    wl = np.asarray(th.hln(FIELD, B_PHI))
    ratio = np.abs(np.asarray(th.mccann(FIELD, B_PHI, b_i, 1e8 * B_PHI))) / wl
    assert np.all(ratio < 1e-6), ratio.max()


def test_asymptotics_of_f():
    """pi Delta sigma = F(B/B_phi) when B_i = B_* = 1e12 B_phi (the other terms are < 1e-16 here). Small z:
    F = z^2/24 - 7 z^4/960 + O(z^6) (the Bernoulli series of docs/theory.md#hln-function); large z:
    F = ln z + psi(1/2) + psi'(1/2)/z + psi''(1/2)/(2 z^2) + O(z^-3), psi'(1/2) = pi^2/2, psi''(1/2) = -14 zeta(3);
    the O(z^-3) term is pi^4/(6 z^3) = 1.6e-14 at z = 1e5."""
    def f(z):
        return math.pi * th.mccann(z * B_PHI, B_PHI, 1e12 * B_PHI, 1e12 * B_PHI)

    for z in (1e-3, 1e-2, 0.05, 0.1, 0.2):  # series branch below z = 1/15, digamma above
        # the next term, (31/32)(1/42)/6 z^6, is 0.092 z^4 relative to z^2/24
        assert f(z) == pytest.approx(z**2 / 24 - 7 * z**4 / 960, rel=0.2 * z**4 + 1e-12)
    for z in (1e4, 1e5):
        expected = np.log(z) + PSI_HALF + np.pi**2 / (2 * z) - 7 * ZETA3 / z**2
        assert abs(f(z) - expected) < 100 / z**3 + 1e-13
    assert f(1e5) - np.log(1e5) == pytest.approx(PSI_HALF, abs=1e-4)


@pytest.mark.parametrize("field", [0.37, 0.002], ids=["digamma branch", "series branch"])
def test_gradients_match_finite_differences(field):
    """jax.grad in B, B_phi, B_i, B_* against a 4th-order central difference with a relative step 1e-4
    (truncation ~1e-16, roundoff ~eps/h ~ 1e-12 relative): agreement to 1e-6 relative."""
    args = [jnp.asarray(a) for a in (field, B_PHI, 0.21, 0.9)]
    grads = jax.grad(th.mccann, argnums=(0, 1, 2, 3))(*args)
    for i, (a, g) in enumerate(zip(args, grads)):
        fd = central_difference(lambda x: th.mccann(*args[:i], x, *args[i + 1:]), a, 1e-4 * abs(float(a)))
        assert abs(g - fd) <= 1e-6 * abs(fd), f"argument {i}: {g} vs {fd}"


def test_zero_field_is_exact_and_differentiable():
    """Delta sigma(0) = 0 exactly with finite (zero) gradients; the curvature at B = 0 is
    (g/2)(1/pi)(1/12)[B_phi^-2 - (B_phi + 2B_i)^-2 - 2(B_phi + B_i + B_*)^-2] from F(z) ~ z^2/24, and its
    gradient in the characteristic fields is finite and analytic."""
    p = (B_PHI, 0.21, 0.9)
    assert th.mccann(0.0, *p) == 0.0
    grads = jax.grad(th.mccann, argnums=(0, 1, 2, 3))(0.0, *p)
    assert all(np.isfinite(g) and g == 0.0 for g in grads)

    @jax.jit
    def curvature(b_phi, b_i, b_star):
        return jax.grad(jax.grad(th.mccann))(0.0, b_phi, b_i, b_star)

    s = B_PHI + 0.21 + 0.9
    expected = (B_PHI**-2 - (B_PHI + 0.42) ** -2 - 2 * s**-2) / (12 * np.pi)
    assert curvature(*p) == pytest.approx(expected, rel=1e-12)
    d = jax.jit(jax.grad(curvature, argnums=(0, 1, 2)))(*p)
    analytic = (np.array([-2 * B_PHI**-3 + 2 * (B_PHI + 0.42) ** -3 + 4 * s**-3,
                          4 * (B_PHI + 0.42) ** -3 + 4 * s**-3, 4 * s**-3]) / (12 * np.pi))
    np.testing.assert_allclose(d, analytic, rtol=1e-12)
    assert th.mccann(0.7, *p) == th.mccann(-0.7, *p)


def test_vectorized_jit_and_errors():
    b_phi = jnp.array([0.01, 0.05, 0.2])
    out = th.mccann(FIELD[:, None], b_phi, 0.3, 2.0)
    assert out.shape == (FIELD.size, 3) and out.dtype == jnp.float64
    np.testing.assert_allclose(jax.jit(th.mccann)(FIELD[:, None], b_phi, 0.3, 2.0), out, rtol=1e-14)
    np.testing.assert_allclose(jax.vmap(lambda p: th.mccann(FIELD, p, 0.3, 2.0))(b_phi).T, out, rtol=1e-14)
    with pytest.raises(ValueError, match="spin_degeneracy must be 1 .* or 2 .*, got 4"):
        th.mccann(0.1, 0.1, 0.1, 0.1, spin_degeneracy=4)
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_phi must be positive"):
        th.mccann(0.1, 0.0, 0.1, 0.1)
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_i must be >= 0"):
        eqx.filter_jit(th.mccann)(0.1, 0.1, -0.1, 0.1)
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_star must be >= 0"):
        th.mccann(0.1, 0.1, 0.1, -0.1)


# ---------------------------------------------------------------------------------------------------------
# The "mccann" fit model

CURVE_FIELD = np.linspace(0.002, 1.0, 50)  # tesla
TRUTH = {"b_phi": np.array([0.005, 0.012, 0.03]), "b_i": 0.08, "b_star": 0.6}
LABELS = ["2K", "5K", "10K"]
NOISE = 0.002  # e^2/h


def synthetic(seed):
    rng = np.random.default_rng(seed)
    field = np.tile(CURVE_FIELD, 3)
    index = np.repeat(np.arange(3), CURVE_FIELD.size)
    clean = mccann_np(field, TRUTH["b_phi"][index], TRUTH["b_i"], TRUTH["b_star"])
    return field, clean + NOISE * rng.normal(size=field.size), np.repeat(LABELS, CURVE_FIELD.size)


def test_fit_recovers_graphene_parameters_and_reports_their_correlation():
    """Three curves, B_phi per curve, B_i and B_* shared, noise 0.002 e^2/h (seed fixed). Each parameter within 3
    standard errors (0.3% failure probability each for correct errors). chi^2/dof with dof = 145 has standard
    deviation sqrt(2/145) = 0.12: the window 0.5-1.5 (4 standard deviations) excludes the B_* -> 0 valley of the
    fit (chi^2/dof ~ 2.2 for this data), which a single start from the grid fell into."""
    field, y, curve = synthetic(11)
    res = fit_magnetoconductance(field, y, model="mccann", sigma=np.full(field.size, NOISE), curve=curve)
    assert res.converged and all(res.determined)
    assert res.labels == ("b_phi[2K]", "b_phi[5K]", "b_phi[10K]", "b_i", "b_star")
    for k, lab in enumerate(LABELS):
        assert abs(res.value("b_phi", lab) - TRUTH["b_phi"][k]) < 3 * res.error("b_phi", lab)
    for name in ("b_i", "b_star"):
        assert abs(res.value(name) - TRUTH[name]) < 3 * res.error(name)
    assert res.dof == field.size - 5 and 0.5 < res.reduced_chi2 < 1.5
    corr = res.correlation
    np.testing.assert_allclose(corr, corr.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(corr), 1.0, atol=1e-12)
    r = corr[res.labels.index("b_i"), res.labels.index("b_star")]
    assert np.isfinite(r) and -1 < r < 1
    summary = res.to_dict()
    assert summary["correlation"]["labels"] == list(res.labels)
    assert summary["correlation"]["matrix"][3][4] == pytest.approx(r)


def test_fit_with_a_per_curve_intervalley_field():
    """A shared-by-default parameter made per curve through per_curve (B_phi must then be listed too)."""
    field, y, curve = synthetic(12)
    res = fit_magnetoconductance(field, y, model="mccann", sigma=np.full(field.size, NOISE), curve=curve,
                                 per_curve=("b_phi", "b_i"))
    assert res.labels == ("b_phi[2K]", "b_phi[5K]", "b_phi[10K]", "b_i[2K]", "b_i[5K]", "b_i[10K]", "b_star")
    for lab in LABELS:
        assert abs(res.value("b_i", lab) - TRUTH["b_i"]) < 3 * res.error("b_i", lab)




def test_cli_mccann_with_per_curve_intervalley_field(tmp_path, capsys):
    field, y, curve = synthetic(13)
    path = tmp_path / "graphene.csv"
    path.write_text("B,dsigma,err,curve\n" + "".join(f"{b},{v},{NOISE},{c}\n" for b, v, c in zip(field, y, curve)))
    assert run_fit_cli([path, "--model", "mccann", "--per-curve", "b_i", "--out", tmp_path / "o"]) == 0
    out = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert out["model"] == "mccann" and out["curves"] == LABELS
    for lab in LABELS:
        p = out["parameters"][f"b_i[{lab}]"]
        assert abs(p["value"] - TRUTH["b_i"]) < 3 * p["stderr"] and p["determined"]
        assert out["lengths"][f"l_i[{lab}]"]["value_m"] == pytest.approx(float(th.length_from_field(p["value"])))
    assert abs(out["parameters"]["b_star"]["value"] - TRUTH["b_star"]) < 3 * out["parameters"]["b_star"]["stderr"]
    assert "l_star" in out["lengths"] and "l_star[2K]" not in out["lengths"]  # shared: one length, no curve label
    labels, matrix = out["correlation"]["labels"], np.array(out["correlation"]["matrix"], float)
    r = matrix[labels.index("b_i[2K]"), labels.index("b_star")]
    assert -1 < r < 1
    printed = capsys.readouterr().out
    assert f"corr(b_i[2K], b_star) = {r:+.3f}" in printed
    assert "corr(b_phi[2K], b_i[2K])" in printed and "corr(b_phi[2K], b_i[5K])" not in printed


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--per-curve", "tau"], r"--per-curve names unknown parameters \['tau'\]; model 'mccann' has "
                                 r"\('b_phi', 'b_i', 'b_star'\)"),
        (["--per-curve", "b_i", "--shared", "b_i"], r"\['b_i'\] named in both --shared and --per-curve"),
        (["--fix", "b_star=-1"], r"--fix 'b_star=-1': b_star \(a characteristic field\) must be >= 0"),
    ],
)
def test_cli_rejects_bad_options(tmp_path, capsys, extra, match):
    import re

    field, y, _ = synthetic(14)
    path = tmp_path / "data.csv"
    path.write_text("B,dsigma\n" + "".join(f"{b},{v}\n" for b, v in zip(field[:50], y[:50])))
    assert run_fit_cli([path, "--model", "mccann", "--out", tmp_path / "o", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("difftransport fit: error:") and err.count("\n") == 1 and re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_warping_energy_matches_the_nearest_neighbour_band():
    """The warping amplitude behind ``theory.warping_length``: on the exact nearest-neighbour band
    E(k) = t |1 + exp(i k.a1) + exp(i k.a2)| (a1 = (1, 0), a2 = (1/2, sqrt 3/2), a = 1), at |q| = 0.02 / a from a
    Dirac point the Fermi-line anisotropy (E(q, theta = pi) - E(q, theta = 0)) / 2 = eps_w = t q^2 / 8 to 2% (the
    next order is O(q^3)); the nearest wrong answer, a C-C distance in place of a (a factor 3), is excluded. The
    velocity is sqrt(3)/2 t a to 1e-3, and L_* follows the stated closed form (12^(1/2) l / (k_F l k_F a))."""
    a1, a2 = np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2])
    K = np.array([4 * np.pi / 3, 0.0])

    def band(k):
        return np.abs(1 + np.exp(1j * k @ a1) + np.exp(1j * k @ a2))

    q = 0.02
    along = [band(K + q * np.array([np.cos(t), np.sin(t)])) for t in (0.0, np.pi)]
    assert abs(np.mean(along) / q - np.sqrt(3) / 2) < 1e-3
    eps_w = abs(along[1] - along[0]) / 2
    assert abs(eps_w / (q**2 / 8) - 1) < 0.02
    energy, ell = 0.25, 15.0
    k_f = 2 * energy / np.sqrt(3)
    closed = np.sqrt(12) * ell / (k_f * ell * k_f)
    np.testing.assert_allclose(float(th.warping_length(energy, ell)), closed, rtol=1e-14)
    np.testing.assert_allclose(float(th.warping_length(-energy, ell, hopping=1.0)), closed, rtol=1e-14)
    with pytest.raises(eqx.EquinoxRuntimeError, match="mean_free_path must be positive"):
        th.warping_length(energy, 0.0)
