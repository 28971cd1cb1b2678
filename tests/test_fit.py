"""Analytic fits (difftransport._core.fit): agreement with scipy.optimize.curve_fit, coverage of the reported errors over
noise draws, joint fits with shared parameters, and clear errors for bad data.

The scipy references use an independent numpy model built on scipy.special.digamma."""

import numpy as np
import pytest
from conftest import run_fit_cli
from scipy.optimize import curve_fit
from scipy.special import digamma

from difftransport._core.fit import MODELS, fit_magnetoconductance, plot_fit


def f_np(x):
    with np.errstate(invalid="ignore"):  # curve_fit may probe negative fields on its way
        return digamma(0.5 + x) - np.log(x)


def hln_np(b, b_phi, b_so):
    """docs/theory.md#hln with B_s = 0, in e^2/h: -(1/pi)[-(3/2) f(B2/B) + (1/2) f(B_phi/B)], B2 = B_phi + 4/3 B_so."""
    return -(-1.5 * f_np((b_phi + 4 / 3 * b_so) / b) + 0.5 * f_np(b_phi / b)) / np.pi


def alpha_np(b, alpha, b_phi):
    return alpha / np.pi * f_np(b_phi / b)


FIELD = np.linspace(0.004, 1.0, 40)  # tesla
TIGHT = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15, maxfev=100_000)


def test_hln_fit_matches_curve_fit_with_sigma():
    rng = np.random.default_rng(0)
    sigma = 0.002 + 0.004 * FIELD
    y = hln_np(FIELD, 0.03, 0.2) + sigma * rng.normal(size=FIELD.size)
    res = fit_magnetoconductance(FIELD, y, model="hln", sigma=sigma)
    p, cov = curve_fit(hln_np, FIELD, y, p0=[0.05, 0.1], sigma=sigma, absolute_sigma=True, **TIGHT)
    assert res.converged and res.labels == ("b_phi[0]", "b_so")
    np.testing.assert_allclose(res.values, p, rtol=1e-6)
    np.testing.assert_allclose(res.stderr, np.sqrt(np.diag(cov)), rtol=0.01)
    assert res.absolute_sigma
    assert res.dof == FIELD.size - 2
    assert res.chi2 == pytest.approx(np.sum(((y - hln_np(FIELD, *p)) / sigma) ** 2), rel=1e-8)


def test_alpha_fit_without_sigma_scales_errors_like_curve_fit():
    """Unit weights: the covariance is scaled by chi^2/dof (curve_fit's absolute_sigma=False)."""
    rng = np.random.default_rng(1)
    y = alpha_np(FIELD, -0.5, 0.02) + 0.003 * rng.normal(size=FIELD.size)
    res = fit_magnetoconductance(FIELD, y, model="alpha")
    p, cov = curve_fit(alpha_np, FIELD, y, p0=[-0.3, 0.05], **TIGHT)
    np.testing.assert_allclose(res.values, p, rtol=1e-6)
    np.testing.assert_allclose(res.stderr, np.sqrt(np.diag(cov)), rtol=0.01)
    assert not res.absolute_sigma
    np.testing.assert_allclose(res.correlation[0, 1], cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]), rtol=0.01)


def test_joint_fit_with_shared_spin_orbit_field_matches_curve_fit():
    """Three temperatures: one B_so, a B_phi per curve. curve_fit gets the same stacked model."""
    rng = np.random.default_rng(2)
    b_phis = np.array([0.01, 0.03, 0.08])
    b_so = 0.15
    field = np.concatenate([FIELD] * 3)
    curve = np.repeat(["2K", "5K", "10K"], FIELD.size)
    idx = np.repeat(np.arange(3), FIELD.size)
    sigma = np.full(field.size, 0.003)

    def stacked(b, so, p0, p1, p2):
        return hln_np(b, np.array([p0, p1, p2])[idx], so)

    y = stacked(field, b_so, *b_phis) + sigma * rng.normal(size=field.size)
    res = fit_magnetoconductance(field, y, model="hln", sigma=sigma, curve=curve)
    assert res.curves == ("2K", "5K", "10K")
    assert res.labels == ("b_phi[2K]", "b_phi[5K]", "b_phi[10K]", "b_so")
    p, cov = curve_fit(stacked, field, y, p0=[0.1, 0.02, 0.02, 0.02], sigma=sigma, absolute_sigma=True, **TIGHT)
    order = [1, 2, 3, 0]  # curve_fit has b_so first
    np.testing.assert_allclose(res.values, p[order], rtol=1e-6)
    np.testing.assert_allclose(res.stderr, np.sqrt(np.diag(cov))[order], rtol=0.01)
    assert res.value("b_phi", "5K") == pytest.approx(p[2], rel=1e-6)
    assert res.error("b_so") == pytest.approx(np.sqrt(cov[0, 0]), rel=0.01)
    np.testing.assert_allclose(res.predict(FIELD, "10K"), hln_np(FIELD, p[3], p[0]), rtol=1e-8)


@pytest.mark.parametrize(
    "model, truth, make",
    [
        ("alpha", {"alpha": 0.5, "b_phi": 0.02}, lambda b: alpha_np(b, 0.5, 0.02)),
        ("hln", {"b_phi": 0.02, "b_so": 0.1}, lambda b: hln_np(b, 0.02, 0.1)),
    ],
)
def test_coverage_of_reported_errors(model, truth, make):
    """Over 200 noise draws the true value lies within +-1 reported standard error in 68.3% of fits for a
    correct linearized error. The binomial standard error of the observed fraction is sqrt(0.683 0.317/200) =
    0.033, so the required window 55-80% is about -4 to +3.5 standard errors wide. The mean reduced chi^2 must be
    1 within 4 standard errors, sqrt(2/dof/200) = 0.016 each."""
    rng = np.random.default_rng(3)
    sigma = np.full(FIELD.size, 0.004)
    clean = make(FIELD)
    hits = {k: 0 for k in truth}
    chi = []
    draws = 200
    for _ in range(draws):
        res = fit_magnetoconductance(FIELD, clean + sigma * rng.normal(size=FIELD.size), model=model, sigma=sigma)
        assert res.converged
        for k, v in truth.items():
            hits[k] += abs(res.value(k) - v) <= res.error(k)
        chi.append(res.reduced_chi2)
    for k in truth:
        assert 0.55 <= hits[k] / draws <= 0.80, (k, hits[k] / draws)
    assert abs(np.mean(chi) - 1) < 4 * np.sqrt(2 / (FIELD.size - 2) / draws)


def test_recovers_known_parameters_within_errors():
    """A single fit: each recovered parameter within 3 reported standard errors of the truth (fails with
    probability 0.3% per parameter for correct errors; the seed is fixed)."""
    rng = np.random.default_rng(4)
    sigma = np.full(FIELD.size, 0.002)
    y = hln_np(FIELD, 0.05, 0.3) + sigma * rng.normal(size=FIELD.size)
    res = fit_magnetoconductance(FIELD, y, model="hln", sigma=sigma)
    assert abs(res.value("b_phi") - 0.05) < 3 * res.error("b_phi")
    assert abs(res.value("b_so") - 0.3) < 3 * res.error("b_so")
    assert res.error("b_s") == 0.0  # fixed by default


def test_offset_and_symmetrize():
    """sigma(B) data at +-B with an unknown sigma(0): symmetrized, offset fitted."""
    rng = np.random.default_rng(5)
    b = np.concatenate([-FIELD[::-1], [0.0], FIELD])
    sigma = np.full(b.size, 0.002)
    y = 37.0 + alpha_np(np.where(b == 0, 1e-300, np.abs(b)), 1.0, 0.03) + sigma * rng.normal(size=b.size)
    res = fit_magnetoconductance(b, y, model="alpha", sigma=sigma, offset=True, symmetrize=True)
    assert res.labels == ("alpha", "b_phi[0]", "offset[0]")
    assert abs(res.value("offset") - 37.0) < 3 * res.error("offset")
    assert abs(res.value("alpha") - 1.0) < 3 * res.error("alpha")
    assert res.dof == FIELD.size + 1 - 3  # pairs averaged


def test_fixed_and_initial_values():
    y = hln_np(FIELD, 0.03, 0.2)
    res = fit_magnetoconductance(FIELD, y, model="hln", fixed={"b_so": 0.2, "b_s": 0.0}, initial={"b_phi": 0.1})
    assert res.labels == ("b_phi[0]",)
    assert res.value("b_phi") == pytest.approx(0.03, rel=1e-8)
    assert sorted(MODELS) == ["alpha", "cubic", "hln", "ilp", "kawabata", "mccann"]


def test_plot_fit_returns_figure():
    y = alpha_np(FIELD, 0.5, 0.02)
    res = fit_magnetoconductance(FIELD, y + 1e-4 * np.sin(40 * FIELD), model="alpha")
    fig = plot_fit(res, FIELD, y)
    assert len(fig.axes) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(field=[0.1, np.nan, 0.3, 0.4], value=[1, 2, 3, 4]), r"field contains NaN or inf at rows \[1\]"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, np.inf, 4]), r"value contains NaN or inf at rows \[2\]"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], sigma=[1, 1, np.nan, 1]), "sigma contains NaN"),
        (dict(field=[0.1, 0.2, 0.2, 0.4], value=[1, 2, 3, 4]), r"duplicate field values in the data: B = \[0.2\]"),
        (dict(field=[0.1, 0.2], value=[1, 2], model="hln"), "too few points: 2 data points for 2 free parameters"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], symmetrize=True),
         "symmetrize=True needs fields of both signs, but the data has B of one sign only"),
        (dict(field=[-0.1, 0.1, 0.3, -0.2], value=[1, 2, 3, 4], symmetrize=True), r"B = -0.2 has no partner at B = 0.2"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], sigma=[1, 0, 1, 1]), "sigma .* must be positive"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3]), "value has 3 entries, but field has 4"),
        (dict(field=[[0.1, 0.2]], value=[1, 2]), r"field must be a 1D array, got shape \(1, 2\)"),
        (dict(field=[0.0, 0.0], value=[1, 2], curve=["a", "b"]), "curve 'a' has no point at nonzero field"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], model="no-such-model"), "model must be one of"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], fixed={"tau": 1.0}), r"fixed names unknown .*'tau'"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], initial={"b_phi": -1.0}),
         r"initial\['b_phi'\] must be positive"),
        (dict(field=[0.1, 0.2, 0.3, 0.1, 0.2], value=[1, 2, 3, 4, 5], curve=list("aaabb"), model="alpha",
              per_curve=("alpha", "b_phi")), r"too few points in curves \['b'\]"),
        (dict(field=[0.1, 0.2, 0.3, 0.4], value=[1, 2, 3, 4], curve=["a", "b"]), "curve has 2 entries"),
    ],
)
def test_bad_data_is_rejected(kwargs, match):
    kwargs = dict(kwargs)
    field, value = kwargs.pop("field"), kwargs.pop("value")
    with pytest.raises(ValueError, match=match):
        fit_magnetoconductance(field, value, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# The `difftransport fit` subcommand (called through main, as the top-level CLI will)




def test_cli_joint_fit_in_siemens(tmp_path):
    import json

    from difftransport.theory import CONDUCTANCE_QUANTUM, length_from_field

    rng = np.random.default_rng(6)
    rows = ["B,dsigma,err,curve"]
    truth = {"1.5K": 0.01, "4K": 0.04}
    for label, b_phi in truth.items():
        y = hln_np(FIELD, b_phi, 0.2) + 0.002 * rng.normal(size=FIELD.size)
        rows += [f"{b},{v * CONDUCTANCE_QUANTUM},{0.002 * CONDUCTANCE_QUANTUM},{label}" for b, v in zip(FIELD, y)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    assert run_fit_cli([path, "--model", "hln", "--units", "siemens", "--out", tmp_path / "o"]) == 0
    out = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert (tmp_path / "o" / "fit.png").stat().st_size > 10_000
    assert out["curves"] == ["1.5K", "4K"] and out["errors_scaled_by_reduced_chi2"] is False
    for label, b_phi in truth.items():
        p = out["parameters"][f"b_phi[{label}]"]
        assert abs(p["value"] - b_phi) < 3 * p["stderr"]
        assert out["lengths"][f"l_phi[{label}]"]["value_m"] == pytest.approx(float(length_from_field(p["value"])))
    assert abs(out["parameters"]["b_so"]["value"] - 0.2) < 3 * out["parameters"]["b_so"]["stderr"]


def test_cli_conductance_column_with_offset(tmp_path):
    """A G column: sigma = G x squares, with sigma(0) fitted as an offset; symmetrized +-B data."""
    import json

    b = np.concatenate([-FIELD[::-1], FIELD])
    squares = 2.5
    sigma_b = 40.0 + alpha_np(np.abs(b), 1.0, 0.03)
    path = tmp_path / "g.csv"
    path.write_text("# a comment line\nfield,G\n" + "".join(f"{x},{y / squares}\n" for x, y in zip(b, sigma_b)))
    args = [path, "--model", "alpha", "--squares", squares, "--symmetrize", "--out", tmp_path]
    assert run_fit_cli(args) == 0
    out = json.loads((tmp_path / "fit.json").read_text())
    assert out["parameters"]["offset[0]"]["value"] == pytest.approx(40.0, rel=1e-9)
    assert out["parameters"]["alpha"]["value"] == pytest.approx(1.0, rel=1e-7)
    assert out["errors_scaled_by_reduced_chi2"] is True


@pytest.mark.parametrize(
    "content, extra, match",
    [
        ("B,x\n0.1,1\n", [], "need exactly one value column of dsigma, sigma, G"),
        ("T,dsigma\n0.1,1\n", [], "no field column 'B'"),
        ("B,dsigma\n0.1,1\n0.2,abc\n", [], "line 3: column 'dsigma' is not a number"),
        ("B,dsigma\n0.1,1\n0.1,2\n0.3,3\n0.4,4\n", [], "duplicate field values"),
        ("B,dsigma\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n", ["--symmetrize"], "B of one sign only"),
        ("B,dsigma\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n", ["--fix", "b_so"], "--fix expects NAME=VALUE"),
        ("B,dsigma\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n", ["--shared", "tau"], "--shared names unknown parameters"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, capsys, content, extra, match):
    import re

    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert run_fit_cli([path, "--out", tmp_path / "o", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("difftransport fit: error:") and re.search(match, err), err
    assert not (tmp_path / "o" / "fit.json").exists()


# ---------------------------------------------------------------------------------------------------------
# Degenerate data: a parameter the data cannot determine is flagged (library) or an error (CLI), and JSON stays valid


def test_well_determined_fit_is_flagged_determined():
    rng = np.random.default_rng(7)
    sigma = np.full(FIELD.size, 0.002)
    res = fit_magnetoconductance(FIELD, hln_np(FIELD, 0.03, 0.2) + sigma * rng.normal(size=FIELD.size), sigma=sigma)
    assert res.determined == (True, True) and res.reasons == ("", "") and res.undetermined() == {}
    assert res.require_determined() is res


@pytest.mark.parametrize(
    "value, model, label, reason",
    [
        (np.zeros(FIELD.size), "hln", "b_phi[0]", r"ran to .*, above 100 x the largest \|B\| = 1 of its data"),
        (np.zeros(FIELD.size), "alpha", "b_phi[0]", "singular Jacobian"),
        (np.full(FIELD.size, 0.3), "hln", "b_so", r"below 1/100 of the smallest nonzero \|B\| = 0.004"),
        (np.full(FIELD.size, 0.3), "alpha", "b_phi[0]", r"below 1/100 of the smallest nonzero \|B\| = 0.004"),
    ],
)
def test_undetermined_parameters_are_flagged(value, model, label, reason):
    """All-zero data used to give B_phi = 7e6 T +- 0.06 (hln) and NaN errors (alpha); constant data L_phi ~ 1e78 nm.
    Now the parameter is flagged with the reason, a warning is issued, and the JSON summary is strict (no NaN)."""
    import json
    import re

    from difftransport._core.fit import UndeterminedWarning

    with pytest.warns(UndeterminedWarning, match=re.escape(label)):
        res = fit_magnetoconductance(FIELD, value, model=model)
    bad = res.undetermined()
    assert label in bad and re.search(reason, bad[label]), bad
    with pytest.raises(ValueError, match=rf"the {model} fit cannot determine .*{re.escape(label)} \("):
        res.require_determined()
    summary = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert summary["parameters"][label]["determined"] is False
    assert re.search(reason, summary["parameters"][label]["reason"])


def test_singular_covariance_is_infinite_and_written_as_null():
    """Zero data with the alpha model: alpha = 0 exactly, so the curve does not depend on b_phi; its variance is
    infinite (written as null), alpha's is finite."""
    import json

    from difftransport._core.fit import UndeterminedWarning

    with pytest.warns(UndeterminedWarning):
        res = fit_magnetoconductance(FIELD, np.zeros(FIELD.size), model="alpha", sigma=np.full(FIELD.size, 0.01))
    assert res.labels == ("alpha", "b_phi[0]") and res.determined == (True, False)
    assert np.isinf(res.stderr[1]) and np.isfinite(res.stderr[0]) and res.values[0] == 0.0
    summary = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert summary["parameters"]["b_phi[0]"]["stderr"] is None
    assert summary["correlation"]["matrix"][0][1] is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fixed={"b_phi": -1.0}), r"fixed\['b_phi'\] = -1.0: b_phi \(the phase-coherence field\) must be positive"),
        (dict(fixed={"b_phi": 0.0}), r"fixed\['b_phi'\] = 0.0: b_phi .* must be positive"),
        (dict(fixed={"b_so": -0.1}), r"fixed\['b_so'\] = -0.1: b_so \(a characteristic field\) must be >= 0"),
        (dict(fixed={"b_so": np.nan}), r"fixed\['b_so'\] = nan: b_so must be finite"),
        (dict(initial={"b_phi": np.inf}), r"initial\['b_phi'\] must be finite, got inf"),
    ],
)
def test_bad_fixed_and_initial_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_magnetoconductance(FIELD, hln_np(FIELD, 0.03, 0.2), **kwargs)


@pytest.mark.parametrize(
    "values, extra, match",
    [
        (np.zeros(FIELD.size), [], r"the hln fit cannot determine b_phi\[0\] \(it ran to .* above 100 x"),
        (np.zeros(FIELD.size), ["--model", "alpha"], r"the alpha fit cannot determine b_phi\[0\] \(singular Jacobian"),
        (np.full(FIELD.size, 0.3), [], r"the hln fit cannot determine .*b_so \(it ran to .* below 1/100"),
        (hln_np(FIELD, 0.03, 0.2), ["--fix", "b_phi=-1"], r"--fix 'b_phi=-1': b_phi \(the phase-coherence field\) must "
                                                          "be positive"),
        (hln_np(FIELD, 0.03, 0.2), ["--fix", "b_so=nan"], r"--fix 'b_so=nan': b_so must be finite"),
        (hln_np(FIELD, 0.03, 0.2), ["--fix", "tau=1"], r"--fix 'tau=1': model 'hln' has no parameter 'tau'; allowed: "
                                                       r"\('b_phi', 'b_so', 'b_s'\)"),
    ],
)
def test_cli_refuses_undetermined_fits_and_bad_fixed_values(tmp_path, capsys, values, extra, match):
    """Exit code 2, one line 'error: ...' naming the parameter, and no output files (before: exit 0 with
    B_phi = 7e6 T, a literal NaN in fit.json, or a 58-line traceback)."""
    import re

    path = tmp_path / "data.csv"
    path.write_text("B,dsigma\n" + "".join(f"{b},{y}\n" for b, y in zip(FIELD, values)))
    assert run_fit_cli([path, "--out", tmp_path / "o", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("difftransport fit: error:") and err.count("\n") == 1 and re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_cli_json_is_strict_and_flags_every_parameter_determined(tmp_path):
    """A noiseless alpha fit: strict JSON (no NaN or Infinity tokens), every parameter determined."""
    import json

    path = tmp_path / "data.csv"
    path.write_text("B,dsigma\n" + "".join(f"{b},{y}\n" for b, y in zip(FIELD, alpha_np(FIELD, 0.5, 0.02))))
    assert run_fit_cli([path, "--model", "alpha", "--out", tmp_path]) == 0

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    out = json.loads((tmp_path / "fit.json").read_text(), parse_constant=refuse)
    assert {k: v["determined"] for k, v in out["parameters"].items()} == {"alpha": True, "b_phi[0]": True}
    assert out["parameters"]["b_phi[0]"]["value"] == pytest.approx(0.02, rel=1e-9)
    assert not list(tmp_path.glob(".fit*"))  # no temporary files left behind
