"""The Iordanskii-Lyanda-Geller-Pikus magnetoconductance (theory.ilp) against its limits and an independent series.

Comparators, fixed independently of the code under test:

* no spin-orbit -> hln(B, B_phi) (orthogonal WL, spin-1/2 total); only cubic Dresselhaus -> hln_cubic(B, B_phi, b_d3);
  B_r = B_d1 with no cubic term (persistent spin helix: the spin-orbit field is an abelian gauge field, so the
  spectrum is that of WL) -> hln(B, B_phi). Closed forms, digamma.
* only Rashba (or only linear Dresselhaus) -> Knap et al., PRB 53, 3912 (1996): their 3x3-block series for the
  Landau-level sum, written out below in numpy, and sigma(0) from a direct quadrature of the zero-field triplet
  Cooperon with the same transport cutoff B_tr; the test doubles B_tr to show the cutoff cancels.
* gradients -> five-point central finite differences.

Random points use a fixed seed and span a decade or more in every field. The tolerance 1e-8 (absolute, e^2/h) is
the accuracy ilp documents in its resolved range; the measured errors are ~1e-12.
"""

import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport.theory as th

TOL = 1e-8
LEVELS = 4096  # ilp's default; fields must satisfy |B| >= 16 (b_r + b_d1)/LEVELS


def _loguniform(rng, lo, hi, n=20):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


# ---------------------------------------------------------------------------------------------------------
# Knap et al.'s series (one linear term), in units of B, with an explicit transport cutoff


def _knap_landau_sum(x_phi, x_so, x_lin, jmax):
    """sum of Tr(block^-1) over Knap et al.'s blocks J = -1 .. jmax (Eq. (4) of Knap et al. 1996 without the
    prefactor): a_n = n + 1/2 + H_phi/B + H_SO/B, H_SO = x_so (linear + cubic), H'_SO = x_lin (linear only)."""
    a = lambda n: n + 0.5 + x_phi + x_so
    total = 1 / a(0) + (2 * a(0) + 1 + x_so) / (a(1) * (a(0) + x_so) - 2 * x_lin)
    n = np.arange(1, jmax + 1, dtype=float)
    an = a(n)
    num = 3 * an**2 + 2 * an * x_so - 1 - 2 * (2 * n + 1) * x_lin
    den = (an + x_so) * a(n - 1) * a(n + 1) - 2 * x_lin * ((2 * n + 1) * an - 1)
    return total + np.sum(num / den)


def _rashba_zero_field_trace(e, x_phi, x_r, x_3):
    """Tr of the inverse zero-field triplet Cooperon, q along x (isotropic), in units of B (complex spin-1 basis):
    E + B_phi + (B_r + B_d3)(Sx^2 + Sy^2) + 2 q.a with a_x = -sqrt(B_r) S_y."""
    sp = math.sqrt(2.0) * np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], complex)
    sy = (sp - sp.T) / 2j
    h = ((e[:, None, None] + x_phi) * np.eye(3) + (x_r + x_3) * np.diag([1.0, 2.0, 1.0])
         - 2 * np.sqrt(e * x_r)[:, None, None] * sy)
    return np.real(np.trace(np.linalg.inv(h), axis1=1, axis2=2))


def _log_quadrature(fun, e_max, panels=400, nodes=16):
    """int_0^e_max fun(E) dE, Gauss-Legendre in ln E from 1e-12 (fun is finite at 0)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(np.log(1e-12), np.log(e_max), panels + 1)
    lo, hi = edges[:-1], edges[1:]
    u = (0.5 * (hi - lo)[:, None] * x + 0.5 * (hi + lo)[:, None]).ravel()
    e = np.exp(u)
    return np.sum((0.5 * (hi - lo)[:, None] * w).ravel() * e * fun(e)) + fun(np.array([1e-12]))[0] * 1e-12


def _knap_dsigma(field, b_phi, b_r, b_3, jmax):
    """Delta sigma = sigma(B) - sigma(0) in e^2/h with the transport cutoff B_tr = (jmax + 1) B on both sides."""
    x_phi, x_r, x_3 = b_phi / field, b_r / field, b_3 / field
    cutoff = jmax + 1.0
    triplet = _log_quadrature(lambda e: _rashba_zero_field_trace(e, x_phi, x_r, x_3), cutoff) - _knap_landau_sum(
        x_phi, x_r + x_3, x_r, jmax)
    singlet = math.log((cutoff + x_phi) / x_phi) - np.sum(1 / (np.arange(jmax + 1) + 0.5 + x_phi))
    return (triplet - singlet) / (2 * math.pi)


# ---------------------------------------------------------------------------------------------------------
# Limits


def test_no_spin_orbit_is_orthogonal_weak_localization():
    rng = np.random.default_rng(1)
    field, b_phi = _loguniform(rng, 0.01, 100.0), _loguniform(rng, 0.01, 10.0)
    got = np.asarray(th.ilp(field, b_phi, 0.0, 0.0, 0.0))
    want = np.asarray(th.hln(field, b_phi, 0.0, 0.0))
    assert np.max(np.abs(got - want)) < TOL
    assert np.all(want > 0)  # WL: sigma rises with B (the library's sign)


def test_cubic_dresselhaus_only_is_the_split_triplet_form():
    rng = np.random.default_rng(2)
    field, b_phi, b_3 = _loguniform(rng, 0.01, 100.0), _loguniform(rng, 0.01, 10.0), _loguniform(rng, 0.01, 30.0)
    got = np.asarray(th.ilp(field, b_phi, 0.0, 0.0, b_3))
    assert np.max(np.abs(got - np.asarray(th.hln_cubic(field, b_phi, b_3)))) < TOL  # b_so = b_d3


def test_persistent_spin_helix_is_weak_localization():
    """B_r = B_d1, B_d3 = 0: a_x = a_y = kappa (Sx - Sy) commute, a pure gauge in a uniform field: WL for any B_r."""
    rng = np.random.default_rng(3)
    b_so = _loguniform(rng, 0.3, 3.0)
    b_phi = b_so * _loguniform(rng, 1e-3, 1.0)
    field = b_so * _loguniform(rng, 0.01, 10.0)
    got = np.asarray(th.ilp(field, b_phi, b_so, b_so))
    want = np.asarray(th.hln(field, b_phi))
    assert np.max(np.abs(got - want)) < TOL
    # not a trivial regime: the same total linear field as pure Rashba is far from WL
    rashba = np.asarray(th.ilp(field, b_phi, 2 * b_so, 0.0))
    assert np.max(want - rashba) > 0.1


def test_single_linear_term_matches_knap_series_and_the_cutoff_cancels():
    rng = np.random.default_rng(4)
    b_r = _loguniform(rng, 0.3, 3.0)
    b_phi = b_r * _loguniform(rng, 0.01, 1.0)
    field = b_r * _loguniform(rng, 0.03, 10.0)
    b_3 = np.where(np.arange(20) % 2 == 0, 0.0, b_r * _loguniform(rng, 0.01, 1.0))
    knap = np.array([_knap_dsigma(*p, jmax=500_000) for p in zip(field, b_phi, b_r, b_3)])
    doubled = np.array([_knap_dsigma(*p, jmax=1_000_001) for p in zip(field, b_phi, b_r, b_3)])
    assert np.max(np.abs(doubled - knap)) < 1e-9  # B_tr -> 2 B_tr: the explicit-cutoff form has converged
    rashba = np.asarray(th.ilp(field, b_phi, b_r, 0.0, b_3))
    dresselhaus = np.asarray(th.ilp(field, b_phi, 0.0, b_r, b_3))
    assert np.max(np.abs(rashba - doubled)) < TOL
    assert np.max(np.abs(dresselhaus - doubled)) < TOL
    assert np.ptp(doubled) > 0.01  # the points are not all in a trivial regime


# ---------------------------------------------------------------------------------------------------------
# General case: convergence, symmetry, gradients


def _general_points(seed):
    rng = np.random.default_rng(seed)
    b_r = _loguniform(rng, 0.3, 3.0)
    b_d1 = b_r * _loguniform(rng, 0.05, 2.0)
    b_phi = (b_r + b_d1) * _loguniform(rng, 3e-3, 1.0)
    b_3 = (b_r + b_d1) * _loguniform(rng, 1e-3, 0.3)
    field = (b_r + b_d1) * _loguniform(rng, 1 / 200, 10.0)
    return field, b_phi, b_r, b_d1, b_3


def test_landau_truncation_does_not_matter():
    """Doubling the exactly summed Landau levels (the rest comes from the fitted asymptotic tail) changes nothing."""
    args = _general_points(5)
    a = np.asarray(th.ilp(*args, levels=LEVELS))
    b = np.asarray(th.ilp(*args, levels=2 * LEVELS))
    assert np.max(np.abs(a - b)) < TOL
    assert np.ptp(a) > 0.01


def test_rashba_dresselhaus_exchange_symmetry():
    field, b_phi, b_r, b_d1, b_3 = _general_points(6)
    a = np.asarray(th.ilp(field, b_phi, b_r, b_d1, b_3))
    b = np.asarray(th.ilp(field, b_phi, b_d1, b_r, b_3))
    assert np.max(np.abs(a - b)) < TOL


def _five_point(f, x, h):
    return (f(x - 2 * h) - 8 * f(x - h) + 8 * f(x + h) - f(x + 2 * h)) / (12 * h)


@pytest.mark.parametrize("point", [(0.7, 0.05, 1.0, 0.4, 0.02), (2.0, 0.3, 0.5, 1.5, 0.0), (0.3, 0.05, 0.6, 0.0, 0.2)])
def test_gradients_match_finite_differences(point):
    point = np.array(point)
    grad = np.asarray(jax.grad(lambda p: th.ilp(p[0], p[1], p[2], p[3], p[4]))(jnp.asarray(point)))
    for i in range(5):
        if point[i] == 0.0:
            continue  # one-sided there: see test_gradient_at_zero_linear_field
        h = 1e-2 * point[i]

        def f(x, i=i):
            p = point.copy()
            p[i] = x
            return float(th.ilp(*p))

        fd = _five_point(f, point[i], h)
        assert abs(grad[i] - fd) <= 1e-6 * abs(fd) + 1e-12, (i, grad[i], fd)


def test_gradient_at_zero_linear_field_and_zero_field():
    """The polynomial basis has no sqrt(b): d/db_d1 at b_d1 = 0 is the one-sided derivative; at B = 0 the curve is
    flat (even in B) with Delta sigma(0) = 0."""
    point = jnp.array([0.5, 0.05, 1.0, 0.0, 0.0])
    grad = np.asarray(jax.grad(lambda p: th.ilp(p[0], p[1], p[2], p[3], p[4]))(point))
    h = 1e-4

    def f(x):
        return float(th.ilp(0.5, 0.05, 1.0, x, 0.0))

    one_sided = (-25 * f(0) + 48 * f(h) - 36 * f(2 * h) + 16 * f(3 * h) - 3 * f(4 * h)) / (12 * h)
    assert np.all(np.isfinite(grad))
    assert abs(grad[3] - one_sided) <= 1e-6 * abs(one_sided)
    at_zero = jax.grad(lambda b: th.ilp(b, 0.05, 1.0, 0.4))(0.0)
    assert float(th.ilp(0.0, 0.05, 1.0, 0.4)) == 0.0 and float(at_zero) == 0.0


def test_jit_matches_eager_and_fifty_fields_are_fast():
    field = jnp.geomspace(0.02, 20.0, 50)
    f = jax.jit(lambda b, p, r, d, c: th.ilp(b, p, r, d, c))
    np.testing.assert_allclose(f(field, 0.05, 1.0, 0.4, 0.02), th.ilp(field, 0.05, 1.0, 0.4, 0.02), rtol=0,
                               atol=1e-13)
    runs = []
    for k in range(3):
        start = time.perf_counter()
        f(field, 0.05 + 0.01 * k, 1.0, 0.4, 0.02).block_until_ready()
        runs.append(time.perf_counter() - start)
    print(f"ilp, 50 fields, {LEVELS} levels: {min(runs):.3f} s")
    assert min(runs) < 0.5


def test_bad_input_raises():
    with pytest.raises(ValueError, match="levels must be an integer >= 256"):
        th.ilp(1.0, 0.1, 1.0, 0.5, levels=100)
    with pytest.raises(ValueError, match="levels must be an integer"):
        th.ilp(1.0, 0.1, 1.0, 0.5, levels=True)
    with pytest.raises(eqx.EquinoxRuntimeError, match="cannot resolve"):
        th.ilp(1e-3, 0.1, 1.0, 0.5)  # |B| < 16 (b_r + b_d1)/4096
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_phi must be positive"):
        th.ilp(1.0, 0.0, 1.0, 0.5)
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_d1 must be >= 0"):
        th.ilp(1.0, 0.1, 1.0, -0.5)


# ---------------------------------------------------------------------------------------------------------
# Fit


@pytest.mark.slow
def test_fit_recovers_rashba_and_dresselhaus():
    """Two b_phi curves of synthetic ILP data (b_r = 1, b_d1 = 0.4, noise 1% of each curve's amplitude, seed 7):
    the fit recovers b_r and b_d1 within 2 reported sigma. They are strongly correlated (printed)."""
    from difftransport import fit_magnetoconductance

    rng = np.random.default_rng(7)
    field = np.geomspace(0.02, 4.0, 16)
    fields, values, sigmas, curves = [], [], [], []
    for label, b_phi in (("4K", 0.03), ("10K", 0.1)):
        clean = np.asarray(th.ilp(field, b_phi, 1.0, 0.4))
        noise = 0.01 * np.max(np.abs(clean))
        fields.append(field)
        values.append(clean + noise * rng.standard_normal(field.size))
        sigmas.append(np.full(field.size, noise))
        curves += [label] * field.size
    res = fit_magnetoconductance(np.concatenate(fields), np.concatenate(values), model="ilp",
                                 sigma=np.concatenate(sigmas), curve=curves, rtol=1e-8, atol=1e-8)
    assert res.converged and all(res.determined)
    for name, truth in (("b_r", 1.0), ("b_d1", 0.4)):
        assert abs(res.value(name) - truth) < 2 * res.error(name), (name, res.value(name), res.error(name))
    r = res.correlation[res.labels.index("b_r"), res.labels.index("b_d1")]
    print(f"b_r = {res.value('b_r'):.4f} +- {res.error('b_r'):.4f}, b_d1 = {res.value('b_d1'):.4f} +- "
          f"{res.error('b_d1'):.4f}, correlation {r:.4f}, reduced chi2 {res.reduced_chi2:.3f}")
    assert res.value("b_r") >= res.value("b_d1")
