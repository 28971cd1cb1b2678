"""difftransport.stats against independent numbers (NumPy, SciPy), and the package's imports against its declared
dependencies."""

import ast
import pathlib
import re
import sys
import tomllib

import numpy as np
import pytest
import scipy.special
import scipy.stats

import difftransport as dt
from difftransport import stats

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mean_and_variance_with_their_errors():
    """Against the textbook formulas: s/sqrt(n); for the variance of N(0, 1) samples the fourth-moment error is
    close to the normal-theory sqrt(2/(n - 1)) s^2 (n = 4000: the error of that error is ~ 3%, window 15%)."""
    x = np.random.default_rng(0).normal(size=(4000, 3))
    mean, se = stats.mean_stderr(x)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(se, scipy.stats.sem(x, axis=0), rtol=1e-12)
    var, var_se = stats.variance_stderr(x[:, 0])
    assert var == pytest.approx(np.var(x[:, 0], ddof=1), rel=1e-13)
    assert var_se == pytest.approx(np.sqrt(2 / 3999) * var, rel=0.15)


def test_jackknife_of_a_nonlinear_statistic():
    """Delete-one jackknife of the ratio of means against the formula written out by hand; blocks that do not
    divide n follow np.array_split (first n mod B blocks one row longer); a Python statistic of row indices."""
    x = np.random.default_rng(1).uniform(1, 2, size=(23, 2))
    ratio = lambda p: p[:, 0].mean() / p[:, 1].mean()
    value, err = stats.jackknife(ratio, x, blocks=23)
    leave = np.array([ratio(np.delete(x, i, 0)) for i in range(23)])
    assert value == pytest.approx(ratio(x), rel=1e-15)
    assert err == pytest.approx(np.sqrt(22 / 23 * np.sum((leave - leave.mean()) ** 2)), rel=1e-12)
    blocks = [np.arange(0, 5), np.arange(5, 10), np.arange(10, 15), np.arange(15, 19), np.arange(19, 23)]
    parts = np.array([ratio(np.delete(x, b, 0)) for b in blocks])
    _, err5 = stats.jackknife(lambda rows: ratio(x[rows]), np.arange(23), blocks=5)
    assert err5 == pytest.approx(np.sqrt(4 / 5 * np.sum((parts - parts.mean()) ** 2)), rel=1e-12)
    with pytest.raises(ValueError, match="blocks must be an integer >= 2"):
        stats.jackknife(ratio, x, blocks=1)


def test_line_fit_matches_the_normal_equations_and_scipy():
    """Slope, intercept, covariance (A^T W A)^{-1}, chi^2 and Q against NumPy's solve and SciPy's chi2.sf."""
    rng = np.random.default_rng(2)
    x = np.linspace(0, 3, 9)
    err = rng.uniform(0.05, 0.2, x.size)
    y = 1.5 * x - 0.3 + err * rng.normal(size=x.size)
    fit = stats.line_fit(x, y, 1 / err**2)
    a = np.stack([x, np.ones_like(x)], 1) / err[:, None]
    cov = np.linalg.inv(a.T @ a)
    coef = cov @ a.T @ (y / err)
    chi2 = np.sum(((y - a @ coef * err) / err) ** 2)
    np.testing.assert_allclose(np.asarray(fit.values), coef, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(fit.covariance), cov, rtol=1e-12)
    assert float(fit.chi2) == pytest.approx(chi2, rel=1e-10) and fit.dof == 7
    assert float(fit.p_value) == pytest.approx(scipy.stats.chi2.sf(chi2, 7), rel=1e-10)
    assert float(fit.error("slope")) == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-12)
    summary = fit.to_dict()
    assert set(summary) == {"parameters", "chi2", "dof", "p_value", "converged"}
    assert summary["parameters"]["intercept"]["value"] == pytest.approx(coef[1], rel=1e-12)


def test_covariances_pvalues_and_quantiles():
    """Gauss-Newton covariance (J^T W J)^{-1} and the sandwich against explicit NumPy products; the goodness of
    fit Q against scipy.stats.chi2.sf; z = sqrt(2) erfinv(c) against scipy's erfinv and the normal quantile."""
    rng = np.random.default_rng(3)
    jac, w = rng.normal(size=(12, 3)), rng.uniform(0.5, 2, 12)
    noise = np.cov(rng.normal(size=(12, 40)))
    h_inv = np.linalg.inv(jac.T @ (w[:, None] * jac))
    np.testing.assert_allclose(np.asarray(stats.gauss_newton_covariance(jac, w)), h_inv, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(stats.gauss_newton_covariance(jac)), np.linalg.inv(jac.T @ jac), rtol=1e-10)
    sandwich = h_inv @ jac.T @ np.diag(w) @ noise @ np.diag(w) @ jac @ h_inv
    np.testing.assert_allclose(np.asarray(stats.gauss_newton_covariance(jac, w, noise)), sandwich, rtol=1e-10)
    for chi2, dof in ((3.2, 4), (40.0, 17), (0.01, 1)):
        assert float(stats.chi2_pvalue(chi2, dof)) == pytest.approx(scipy.stats.chi2.sf(chi2, dof), rel=1e-10)
    assert np.isnan(float(stats.chi2_pvalue(1.0, 0)))
    for c in (0.5, 0.9, 0.95, 0.997):
        assert stats.confidence_z(c) == pytest.approx(np.sqrt(2) * scipy.special.erfinv(c), rel=1e-13)
        assert stats.confidence_z(c) == pytest.approx(scipy.stats.norm.ppf((1 + c) / 2), rel=1e-12)


def test_intrinsic_conductance_removes_the_sharvin_resistance():
    """1/G = 1/G_int + 1/N inverted exactly; a ballistic sample (G >= N) gives NaN, with finite gradients."""
    import jax

    g_int, n = np.array([2.0, 0.5, 7.0]), np.array([43.0, 10.0, 9.0])
    g = 1 / (1 / g_int + 1 / n)
    np.testing.assert_allclose(np.asarray(dt.theory.intrinsic_conductance(g, n)), g_int, rtol=1e-13)
    assert np.isnan(float(dt.theory.intrinsic_conductance(5.0, 5.0)))
    assert np.isfinite(float(jax.grad(lambda x: dt.theory.intrinsic_conductance(x, 5.0).sum())(5.0)))


def test_fit_results_share_one_shape():
    """Every fit result is a stats.Estimate: value and error by name agree with its own attributes."""
    fit = dt.fit_magnetoconductance(np.linspace(0.05, 1, 12), dt.theory.hln_alpha(np.linspace(0.05, 1, 12), 0.1, 0.5)
                                    + 1e-4 * np.sin(np.arange(12)), model="alpha", sigma=np.full(12, 1e-4))
    assert isinstance(fit, stats.Estimate) and fit.names == fit.labels
    for i, name in enumerate(fit.names):
        assert float(stats.Estimate.error(fit, name)) == pytest.approx(fit.stderr[i], rel=1e-12)
    summary = fit.to_dict()
    assert summary["parameters"]["alpha"]["value"] == pytest.approx(fit.value("alpha"), rel=1e-12)
    assert summary["p_value"] == pytest.approx(scipy.stats.chi2.sf(fit.chi2, fit.dof), rel=1e-8)
    for cls in (dt.ScalingFit, dt.BetaFit, dt.InferenceResult, dt.LyapunovSpectrum, dt.FitResult):
        assert issubclass(cls, stats.Estimate)


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_the_package_imports_only_its_declared_dependencies():
    """Every top-level import in difftransport/ (run-time imports inside functions included) is the standard
    library, the package itself, or a dependency of pyproject.toml (SciPy is a test extra only)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in project["dependencies"]}
    allowed = declared | set(sys.stdlib_module_names) | {"difftransport"}
    bad = {f"{path.relative_to(ROOT)}: {name}" for path in sorted((ROOT / "difftransport").rglob("*.py"))
           for name in _imports(path) if name.lower() not in allowed}
    assert not bad, sorted(bad)
