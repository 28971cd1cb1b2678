"""Temperature (difftransport/_core/thermal.py): the Fermi window, thermal averages against direct quadrature and
exact moments, the T -> 0 limit, gradients against finite differences, input checks; and the small version of
experiments/temperature.py."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import central_difference, experiment

# Moments of the Fermi window in x = (E - mu)/T: int x^2k (-f') dx = (2 - 2^(2-2k)) (2k)! zeta(2k).
ZETA = {1: math.pi**2 / 6, 2: math.pi**4 / 90, 3: math.pi**6 / 945, 4: math.pi**8 / 9450, 5: math.pi**10 / 93555}
MOMENTS = {2 * k: (2 - 2.0 ** (2 - 2 * k)) * math.factorial(2 * k) * z for k, z in ZETA.items()}


def window_numpy(energy, mu, temperature):
    """-df/dE written independently: the derivative of f = 1/(exp(x) + 1), exp(x)/(exp(x) + 1)^2 / T."""
    x = np.clip((np.asarray(energy) - mu) / temperature, -700, 700)
    return np.exp(x) / (np.exp(x) + 1) ** 2 / temperature


def trapezoid_average(fn, mu, temperature, half_width=45.0, points=45001):
    """Direct reference: numpy trapezoid of -df/dE fn(E) on a uniform grid |E - mu| <= 45 T."""
    energy = np.linspace(mu - half_width * temperature, mu + half_width * temperature, points)
    return np.trapezoid(window_numpy(energy, mu, temperature) * np.asarray(fn(energy)), energy)


def test_fermi_window_is_minus_df_de_and_normalized():
    """Against the derivative of the Fermi function taken by jax.grad (at E - mu = -3T .. 40T) and a trapezoid
    normalization over |E - mu| < 45 T (1 - 2e-19 of the weight)."""
    mu, temperature = 0.3, 0.02
    energy = mu + temperature * np.array([-3.0, -0.4, 0.0, 0.7, 5.0, 40.0])
    fermi = lambda e: 1 / (jnp.exp((e - mu) / temperature) + 1)
    expected = -jax.vmap(jax.grad(fermi))(jnp.asarray(energy))
    np.testing.assert_allclose(dt.fermi_window(energy, mu, temperature), expected, rtol=1e-13)
    assert trapezoid_average(np.ones_like, mu, temperature) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("rule,count,tol", [("gauss", 3, 1e-13), ("gauss", 5, 1e-13), ("tanh-sinh", 41, 1e-8)])
def test_rules_reproduce_the_sommerfeld_moments(rule, count, tol):
    """sum w x^2k against the exact moments pi^2/3, 7 pi^4/15, 31 pi^6/21, 127 pi^8/15 (Gauss with n nodes is exact
    up to degree 2n - 1: the 3-node rule through x^4); odd moments vanish. The tanh-sinh rule truncates at
    |x| = 31.5, which costs the growing moments their tails (measured: 6e-11 for x^4, 2e-9 for x^6, 6e-8 for x^8,
    which is not checked)."""
    x, w = dt.fermi_quadrature(count, rule=rule)
    assert x[count // 2] == 0.0 and np.sum(w) == pytest.approx(1.0, abs=1e-15)
    for k in range(1, 9 if rule == "gauss" else 7):
        m = np.sum(w * x**k)
        if k % 2:
            assert abs(m) < 1e-12 * MOMENTS[k + 1], (k, m)
        elif k < 2 * count:
            assert m == pytest.approx(MOMENTS[k], rel=tol), (k, m)
    if rule == "gauss":  # the first moment it does not reproduce: x^(2n)
        assert abs(np.sum(w * x ** (2 * count)) / MOMENTS[2 * count] - 1) > 1e-3


def test_average_of_smooth_functions_against_direct_quadrature_and_closed_form():
    """fn = exp(b E) + a Lorentzian of half-width 5 T, mu = 0.3, T = 0.05. Comparators: numpy trapezoid on a fine
    grid (|E - mu| <= 45 T, 45001 points) and, for the exponential alone, the closed form
    exp(b mu) pi b T / sin(pi b T). Tolerance 1e-8 relative (default 41 tanh-sinh nodes)."""
    mu, temperature, b = 0.3, 0.05, 3.0
    exact_exp = math.exp(b * mu) * math.pi * b * temperature / math.sin(math.pi * b * temperature)
    assert float(dt.thermal_average(lambda e: jnp.exp(b * e), mu, temperature)) == pytest.approx(exact_exp, rel=1e-10)
    fn_np = lambda e: np.exp(b * e) + 1 / ((e - 0.42) ** 2 + 0.25**2)
    fn = lambda e: jnp.exp(b * e) + 1 / ((e - 0.42) ** 2 + 0.25**2)
    reference = trapezoid_average(fn_np, mu, temperature)
    assert float(dt.thermal_average(fn, mu, temperature)) == pytest.approx(reference, rel=1e-8)
    assert trapezoid_average(lambda e: np.exp(b * e), mu, temperature) == pytest.approx(exact_exp, rel=1e-10)
    # pytree output: each leaf averaged
    out = dt.thermal_average(lambda e: {"a": jnp.exp(b * e), "v": jnp.stack([e, e**2])}, mu, temperature)
    np.testing.assert_allclose(out["v"], [mu, mu**2 + temperature**2 * MOMENTS[2]], rtol=1e-12)


def test_zero_temperature_limit():
    """T = 0 gives fn(mu) exactly, with d/dT = 0 and d/dmu = fn'(mu); small T follows the exact polynomial moments
    <E^4> = mu^4 + 6 mu^2 T^2 pi^2/3 + T^4 7 pi^4/15, whose T^2 term is the Sommerfeld correction."""
    fn = lambda e: jnp.sin(3 * e) + e**4
    mu = 0.37
    assert float(dt.thermal_average(fn, mu, 0.0)) == float(fn(mu))
    d_t = jax.grad(lambda t: dt.thermal_average(fn, mu, t))(0.0)
    d_mu = jax.grad(lambda m: dt.thermal_average(fn, m, 0.0))(mu)
    assert float(d_t) == 0.0
    assert float(d_mu) == pytest.approx(float(jax.grad(fn)(mu)), rel=1e-14)
    quartic = lambda t: mu**4 + 6 * mu**2 * t**2 * MOMENTS[2] + t**4 * MOMENTS[4]
    for t in (1e-4, 1e-2, 0.3):
        for nodes in (41, dt.fermi_quadrature(3, rule="gauss")):
            assert float(dt.thermal_average(lambda e: e**4, mu, t, nodes=nodes)) == pytest.approx(quartic(t), rel=1e-10)


@pytest.fixture(scope="module")
def strip_8x12():
    sample = dt.Sample(dt.strip(8), 12)
    return sample, dt.draw_disorder(jax.random.key(3), sample, strength=1.5)


def test_thermal_conductance_against_direct_quadrature(strip_8x12):
    """Disordered 8 x 12 strip (box W = 1.5), T = 0.003 at mu = 0.25, 0.30, 0.35 (between the lead subband edges at
    0.121 and 0.468, 39 T or more away, so G(E) is smooth over the window). Comparator: trapezoid of -df/dE G(E)
    with G on a uniform grid of 801 energies over [0.13, 0.466] (|E - mu| >= 39 T at the ends). Tolerance 1e-8
    relative; the thermal correction itself, G_T - G(mu), is 3e-5 .. 2e-4 relative here (measured 2.4e-4 at 0.25),
    so the comparison resolves it 1e4-fold. Measured agreement ~1e-15."""
    sample, disorder = strip_8x12
    grid = np.linspace(0.13, 0.466, 801)
    g = np.asarray(jax.jit(jax.vmap(lambda e: dt.conductance(sample, dt.Model(energy=e), disorder)))(jnp.asarray(grid)))
    temperature = 0.003
    thermal = jax.jit(jax.vmap(lambda m: dt.thermal_conductance(sample, dt.Model(energy=m), disorder, temperature)))
    mus = np.array([0.25, 0.30, 0.35])
    got = np.asarray(thermal(jnp.asarray(mus)))
    for mu, value in zip(mus, got):
        reference = np.trapezoid(window_numpy(grid, mu, temperature) * g, grid)
        assert value == pytest.approx(reference, rel=1e-8), (mu, value, reference)
        cold = float(dt.conductance(sample, dt.Model(energy=mu), disorder))
        assert abs(cold - reference) > 1e-5 * reference  # the average is not just G(mu)


def test_thermal_conductance_gradients_against_finite_differences(strip_8x12):
    """d G_T/dT, d G_T/dmu and the derivative through a temperature-dependent dephasing time (single-probe
    dephasing, tau_phi = 1/(a s), a = 4, s = T: the window's T and the law's T kept apart) by jax.grad, against
    4th-order central differences (step 1e-4), rel 1e-6. G_T(T) = G_T(mu, T, s = T) then has the total derivative
    d/dT + d/ds."""
    sample, disorder = strip_8x12
    args = (0.3, 0.01, 0.01)  # mu, T of the window, T of the dephasing law

    @jax.jit
    def g(mu, t, s):
        model = dt.Model(energy=mu, tau_phi=dt.tau_phi_law(s, 4.0, 1.0))
        return dt.thermal_conductance(sample, model, disorder, t, nodes=21)

    grads = jax.jit(jax.grad(g, argnums=(0, 1, 2)))(*args)
    for i, grad in enumerate(grads):
        fd = central_difference(lambda v: g(*args[:i], v, *args[i + 1:]), args[i], 1e-4)
        assert float(grad) == pytest.approx(float(fd), rel=1e-6), (i, grad, fd)
    assert min(abs(float(v)) for v in grads) > 1e-2  # every derivative tested is nonzero


def test_tau_phi_law_values_and_limits():
    """1/tau_phi = 1/tau_sat + a T^p: tau_phi = 1/(a T^p) without saturation, inf at T = 0, tau_sat at T = 0 with it."""
    t = jnp.array([0.0, 0.05, 0.2])
    np.testing.assert_allclose(dt.tau_phi_law(t, 2.0, 1.5), [np.inf, 1 / (2 * 0.05**1.5), 1 / (2 * 0.2**1.5)],
                               rtol=1e-15)
    np.testing.assert_allclose(dt.tau_phi_law(t, 2.0, 1.0, tau_sat=30.0),
                               [30.0, 1 / (1 / 30 + 0.1), 1 / (1 / 30 + 0.4)], rtol=1e-15)
    grad = jax.grad(lambda x: dt.tau_phi_law(x, 2.0, 1.0))(0.1)
    assert float(grad) == pytest.approx(-1 / (2 * 0.1**2), rel=1e-14)


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_bad_temperature_is_a_named_error(bad):
    with pytest.raises(ValueError, match=r"temperature must be finite and >= 0"):
        dt.thermal_average(jnp.sin, 0.0, bad)
    with pytest.raises(ValueError, match=r"temperature must be finite and >= 0"):
        dt.tau_phi_law(bad, 1.0, 1.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"temperature must be finite and >= 0"):
        eqx.filter_jit(lambda t: dt.thermal_average(jnp.sin, 0.0, t))(jnp.asarray(bad))


def test_other_bad_input_is_a_named_error():
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0 .* delta function"):
        dt.fermi_window(0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"count must be an odd integer >= 3"):
        dt.fermi_quadrature(4)
    with pytest.raises(ValueError, match=r"rule must be one of"):
        dt.fermi_quadrature(5, rule="simpson")
    with pytest.raises(ValueError, match=r"nodes \(x, w\) must be finite 1D arrays"):
        dt.thermal_average(jnp.sin, 0.0, 0.1, nodes=(np.zeros(3), np.ones(2)))
    with pytest.raises(ValueError, match=r"temperature must be a scalar"):
        dt.thermal_average(jnp.sin, 0.0, jnp.array([0.1, 0.2]))
    for name, args in (("a", (0.1, 0.0, 1.0)), ("p", (0.1, 1.0, -1.0))):
        with pytest.raises(ValueError, match=rf"^{name} must be finite and > 0"):
            dt.tau_phi_law(*args)
    with pytest.raises(ValueError, match=r"tau_sat must be > 0"):
        dt.tau_phi_law(0.1, 1.0, 1.0, tau_sat=0.0)


@pytest.mark.slow
def test_small_temperature_experiment_ln_t_slope():
    """The small version of experiments/temperature.py: a spinless 12 x 12 square (E = 1, box W = 3.5, l ~ 2),
    Buttiker dephasing with 1/tau_phi = a T, a = 3 (stronger than the experiment's 1, so that L_phi = sqrt(D tau_phi)
    = 5 ... 2.5 sites stays near or below L/pi; with a = 1 the 12-site leads cut the Cooperon at every T and the
    slope nearly vanishes), T = 0.03 and 0.12 t, the sheet conductance averaged over the Fermi window (3-node Gauss
    rule), 120 realizations at flux 0 and B_b = 0.016 (l_B = 3.2). Delta(T) = sigma(0, T) - sigma(B_b, T) per
    realization (paired: the probes' Drude reduction cancels), its slope against ln T averaged over realizations
    (standard error from their spread).
    Comparator, fixed before the run: alpha p / pi = 1/(2 pi) = 0.159 (one loop, spinless, p = 1), reached only for
    l << l_B << L_phi << L, far from this square. Asserted: the sign, slope > 3 SE (excluding the nearest wrong
    answers: no T dependence, and the negative slope of the raw sigma(0), about -0.25 here, that the probes'
    momentum relaxation gives), and the order of magnitude, alpha p / (10 pi) < slope < 3 alpha p / pi.
    Measured: 0.033 +- 0.007 (4.8 SE; 60 s at load average 5 on 2 cores, 42 s CPU); the 24 x 24 experiment:
    0.095 +- 0.021."""
    module = experiment("temperature")
    temperatures = [0.03, 0.12]
    config = {
        "run": {"seed": 3, "realizations": 120, "batch": 4},
        "sample": {"width": 12, "length": 12, "energy": 1.0, "strength": 3.5},
        "thermal": {"temperatures": temperatures, "a": 3.0, "p": 1.0, "tau_sat": math.inf, "nodes": 3,
                    "rule": "gauss"},
        "field": {"flux": [0.0, 0.016], "broken_flux": 0.016},
    }
    data = module.simulate(config, log=lambda *_: None)
    sigma = data["sigma_t"]
    assert sigma.shape == (120, 2, 2) and np.all(np.isfinite(sigma))
    log_t = np.log(temperatures)
    slope, se = module.slope_per_realization(log_t, sigma[:, :, 0] - sigma[:, :, 1])
    raw, raw_se = module.slope_per_realization(log_t, sigma[:, :, 0])
    ideal = 0.5 / math.pi
    print(f"Delta slope {slope:.4f} +- {se:.4f} (ideal {ideal:.4f}); raw sigma(0) slope {raw:.4f} +- {raw_se:.4f}; "
          f"simulation {data['seconds']:.0f} s")
    assert slope > 3 * se, (slope, se)
    assert ideal / 10 < slope < 3 * ideal, slope


@pytest.mark.slow
def test_temperature_experiment_end_to_end_through_the_command(tmp_path):
    """The whole analysis of experiments/temperature.py on a tiny config (10 x 10, 12 realizations, 4 temperatures,
    5 fields): curves.csv written, fitted back by `difftransport fit ... --law power` in a subprocess, whose per-curve
    B_phi and joint law (p, A) must equal the experiment's own fits of the same file (asserted inside ``analyse``
    to 1e-4 and 1e-3: a command that read a column, a unit or the transport-field range differently would differ by
    far more); the outputs exist and the law's p is finite with a finite jackknife error."""
    module = experiment("temperature")
    config = {
        "run": {"title": "tiny", "seed": 1, "realizations": 12, "batch": 8},
        "sample": {"width": 10, "length": 10, "energy": 1.0, "strength": 3.5},
        "thermal": {"temperatures": [0.03, 0.05, 0.08, 0.12], "a": 2.0, "p": 1.0, "tau_sat": math.inf, "nodes": 3,
                    "rule": "gauss"},
        "field": {"flux": [0.0, 0.001, 0.002, 0.004, 0.016], "tr_fraction": 0.25, "broken_flux": 0.016},
        "units": {"lattice_constant_nm": 10.0, "hopping_kelvin": 66.0},
        "analysis": {"alpha": 0.5, "blocks": 6, "dos_realizations": 2},
    }
    data = module.simulate(config, log=lambda *_: None)
    report = module.analyse(config, data, tmp_path)
    for name in ("curves.csv", "temperature.png", "report.json", "fit/fit.json", "fit/law.png", "fit/output.txt",
                 "fit_p_input/fit.json"):
        assert (tmp_path / name).exists(), name
    rows = {row["quantity"]: row for row in report.rows}
    p_row = rows["difftransport fit --law power: p (joint)"]
    assert math.isfinite(p_row["measured"]) and 0 < p_row["stderr"] < math.inf, p_row
