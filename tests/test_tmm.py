"""Transfer-matrix localization lengths: exact identities, analytic limits, a cross-check against the RGF
conductance, the JAX transformations and bad input (class ratios and critical points: test_tmm_physics.py).

Statistical tests state the standard error their tolerance rests on (docs/physics.md#independent-checks)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._core.tmm import LyapunovSpectrum, localization_length, lyapunov_exponents


def _dense_reference(lattice, spinful, model, key, strength, su2, length, qr_every):
    """Independent numpy Benettin/MacKinnon-Kramer iteration on the dense blocks of build_hamiltonian, for
    the realization draw_disorder(key, Sample(lattice, length + 1)) (slice s uses V_s = H[s+1, s])."""
    sample = dt.Sample(lattice, length + 1, spinful=spinful)
    ham = dt.build_hamiltonian(sample, model, dt.draw_disorder(key, sample, strength=strength, su2=su2))
    site, bonds = ham.slice_data()
    n = ham.size
    x, y = np.eye(n, dtype=complex), np.zeros((n, n), complex)
    logs = np.zeros(n)
    v_prev = None
    for s in range(length):
        h = np.asarray(ham.block(site[s], None if bonds is None else bonds[s]))
        v = np.asarray(jax.tree.map(lambda a: a[s], ham.hops).dense())
        z = (float(model.energy) * np.eye(n) - h) @ x - (v_prev @ y if s else 0)
        x, y, v_prev = np.linalg.solve(v.conj().T, z), x, v
        if (s + 1) % qr_every == 0:
            q, r = np.linalg.qr(np.vstack([x, y]))
            logs += np.log(np.abs(np.diag(r)))
            x, y = q[:n], q[n:]
    return logs / length


@pytest.mark.parametrize(
    "lattice, spinful, params, strength, su2",
    [
        (dt.strip(5), False, dict(energy=0.3, flux=0.05), 2.0, False),
        (dt.bar(3, 2), True, dict(energy=0.2, flux=0.02, rashba=0.3), 4.0, False),
        (dt.bar(3, 3, boundary="periodic"), True, dict(energy=0.7, flux=1 / 3), 2.0, True),
    ],
    ids=["strip-flux", "bar-rashba-flux", "periodic-bar-su2-flux"],
)
def test_exponents_equal_dense_transfer_product(lattice, spinful, params, strength, su2):
    """Same realization, same QR schedule: the kernel is the textbook algorithm to rounding (the product of
    64 transfer matrices with growth exp(gamma_1 * 8) per QR interval leaves ~1e-13)."""
    key, length, q = jax.random.key(3), 64, 8
    model = dt.Model(**params)
    res = lyapunov_exponents(key, dt.Sample(lattice, length, spinful=spinful), model, strength=strength, su2=su2,
                             rtol=None, chunk=32, warmup=0, qr_every=q, min_batches=2)
    ref = _dense_reference(lattice, spinful, model, key, strength, su2, length, q)
    np.testing.assert_allclose(np.asarray(res.exponents), ref, rtol=0, atol=1e-11)
    assert int(res.slices) == length


def _dense_green_reference(lattice, spinful, model, key, strength, su2, length, qr_every):
    """Independent numpy iteration of the Green's-function form on the dense blocks of build_hamiltonian:
    g_s = (E - H_s - V g V^+)^-1, X_s = g_s V_{s-1} X_{s-1} from the clean lead hopping and the lead's factor
    (g_{-1} = 0), QR every ``qr_every`` slices; returns the exponents per slice, descending."""
    sample = dt.Sample(lattice, length + 1, spinful=spinful)
    ham = dt.build_hamiltonian(sample, model, dt.draw_disorder(key, sample, strength=strength, su2=su2))
    site, bonds = ham.slice_data()
    n = ham.size
    v_prev = np.asarray(ham.lead.hop)
    x = np.linalg.qr(np.asarray(ham.lead.factor.factors(ham.lead.hop)[1]))[0]
    g, logs = np.zeros((n, n), complex), np.zeros(x.shape[1])
    for s in range(length):
        h = np.asarray(ham.block(site[s], None if bonds is None else bonds[s]))
        g = np.linalg.inv(float(model.energy) * np.eye(n) - h - v_prev @ g @ v_prev.conj().T)
        x, v_prev = g @ v_prev @ x, np.asarray(jax.tree.map(lambda a: a[s], ham.hops).dense())
        if (s + 1) % qr_every == 0:
            x, r = np.linalg.qr(x)
            logs -= np.log(np.abs(np.diag(r)))
    return logs[::-1] / length


@pytest.mark.parametrize(
    "lattice, spinful, params, strength, su2",
    [
        (dt.zigzag_ribbon(4), False, dict(energy=0.4, flux=0.03, mass=0.2), 2.0, False),
        (dt.armchair_ribbon(5), True, dict(energy=0.3, rashba=0.2), 1.5, True),
    ],
    ids=["zigzag-flux-mass", "armchair-rashba-su2"],
)
def test_honeycomb_exponents_equal_dense_green_function_product(lattice, spinful, params, strength, su2):
    """Honeycomb ribbons, whose inter-cell hopping has rank r < n (no inverse): the Green's-function form is the
    textbook recursion to rounding, with r exponents per lattice constant (per slice / period)."""
    key, length, q = jax.random.key(4), 64, 8
    model = dt.Model(**params)
    res = lyapunov_exponents(key, dt.Sample(lattice, length, spinful=spinful), model, strength=strength, su2=su2,
                             rtol=None, chunk=32, warmup=0, qr_every=q, min_batches=2)
    ref = _dense_green_reference(lattice, spinful, model, key, strength, su2, length, q)
    rank = min(len({i for i, _ in lattice.inter_bonds}), len({j for _, j in lattice.inter_bonds}))  # 3 and 2
    assert res.exponents.shape == ref.shape == (rank * (2 if spinful else 1),)
    np.testing.assert_allclose(np.asarray(res.exponents) * lattice.period, ref, rtol=0, atol=1e-11)


def test_kramers_pairs_are_degenerate():
    """Symplectic class (SU(2) model): every exponent of the transfer product is exactly doubly degenerate."""
    res = lyapunov_exponents(jax.random.key(0), dt.Sample(dt.strip(6, boundary="periodic"), 4096, spinful=True),
                             dt.Model(energy=1.0), strength=5.0, su2=True, rtol=None, chunk=1024, warmup=0, qr_every=16)
    g = np.asarray(res.exponents)
    np.testing.assert_allclose(g[0::2], g[1::2], rtol=1e-9)


def test_chain_localization_length():
    """1D Anderson chain, box disorder W = 0.5 (docs/physics.md#chain-localization-length): xi(0) W^2 = 105.045
    (Kappus-Wegner band-centre anomaly) and xi(0.5) W^2 = 24 (4 - E^2) = 90 (Thouless), each within 1%.

    1024 independent chains of 2^17 sites per energy: the relative standard error of xi is
    sqrt(xi / sites) ~ 0.18%, measured from the spread over chains and asserted below 0.25%, so 1% is > 4
    standard errors. (At W = 0.5 the O(W^2) correction at E = 0.5 is about -0.6%, docs/physics.md#independent-checks.)
    The batch-means error of each run must agree with the spread over chains (within 15%, the precision
    of a standard deviation from 1024 samples is 2%)."""
    chains, length, w = 1024, 2**17, 0.5
    sample = dt.Sample(dt.chain(), length)
    keys = jax.random.split(jax.random.key(11), chains)

    @jax.jit
    def run(energy):
        return jax.vmap(lambda k: lyapunov_exponents(
            k, sample, dt.Model(energy=energy), strength=w, rtol=None, chunk=2**12, warmup=2**12, qr_every=256,
        ))(keys)

    for energy, theory in ((0.0, 105.045), (0.5, 24 * (4 - 0.25))):
        res = run(energy)
        gamma = np.asarray(res.exponents[:, 0])
        mean, sem = gamma.mean(), gamma.std(ddof=1) / math.sqrt(chains)
        assert sem / mean < 2.5e-3
        xi_w2 = w**2 / mean
        assert abs(xi_w2 / theory - 1) < 0.01, (energy, xi_w2, theory, sem / mean)
        in_run = np.sqrt(np.mean(np.asarray(res.stderr[:, 0]) ** 2)) / math.sqrt(chains)
        assert abs(in_run / sem - 1) < 0.15, (in_run, sem)


def _rgf_log_slope(lattice, model, strength, lengths, n):
    """Slope of the ensemble mean of ln g (RGF, n realizations per length, keys split from key 7) between the two
    ``lengths``, and its standard error."""
    means, errs = [], []
    for length in lengths:
        s = dt.Sample(lattice, length)
        draw = lambda k: dt.draw_disorder(k, s, strength=strength)  # noqa: E731
        log_g = jax.jit(jax.vmap(lambda k: jnp.log(dt.conductance(s, model, draw(k)))))
        values = np.asarray(log_g(jax.random.split(jax.random.key(7), n)))
        means.append(values.mean())
        errs.append(values.std(ddof=1) / math.sqrt(n))
    return (means[1] - means[0]) / (lengths[1] - lengths[0]), math.hypot(*errs) / (lengths[1] - lengths[0])


def test_log_conductance_decays_with_tmm_localization_length():
    """Two independent solvers: for L >> xi, <ln g> = -2 L / xi + const (docs/physics.md#dmpk-localization-length),
    so the RGF slope between L = 3 xi and 6 xi must equal -2 / xi_TMM. Strip M = 4, E = 0.5, W = 3 (xi ~ 16.5).
    Standard error of the slope from 3000 samples per length: ~1.5% (var ln g ~ 6.5 and 18); of xi_TMM
    0.4%; tolerance 3 combined standard errors."""
    sample = dt.Sample(dt.strip(4), 2**21)  # 0.4% needs ~1.1e6 slices (rel. error ~ sqrt(2 xi / L))
    model = dt.Model(energy=0.5)
    res = lyapunov_exponents(jax.random.key(1), sample, model, strength=3.0, rtol=0.004, chunk=2048,
                             warmup=2048, qr_every=16, min_batches=16)
    assert bool(res.converged)
    xi = float(res.localization_length)
    slope, slope_err = _rgf_log_slope(dt.strip(4), model, 3.0, [round(3 * xi), round(6 * xi)], 3000)
    expected = -2 / xi
    sigma = math.hypot(slope_err, abs(expected) * float(res.relative_error))
    assert slope_err / abs(expected) < 0.025
    assert abs(slope - expected) < 3 * sigma, (slope, expected, sigma)


def test_zigzag_ribbon_log_conductance_decays_with_tmm_localization_length():
    """Honeycomb (Green's-function form) against the RGF conductance of the same lattice: for L >> lambda,
    <ln g> = -2 L / lambda + const (docs/physics.md#dmpk-localization-length), so the slope of the ensemble mean of
    ln g between L = 3 lambda and 6 lambda must equal -2 / lambda_TMM. Zigzag ribbon N = 4 (3 channels bond to the
    next cell), E = 1, W = 2: lambda ~ 7.1. Standard errors: lambda_TMM 2% (rtol), the slope from 1000 samples per
    length ~3% (var ln g ~ 8 and 22); tolerance 3 combined standard errors (~11%). It excludes the nearest wrong
    answers, lambda / 2 (the intensity length, slope -4 / lambda) and 2 lambda (slope -1 / lambda), by > 10
    standard errors."""
    lattice, model, w = dt.zigzag_ribbon(4), dt.Model(energy=1.0), 2.0
    res = lyapunov_exponents(jax.random.key(2), dt.Sample(lattice, 2**17), model, strength=w, rtol=0.02, chunk=256,
                             warmup=256, qr_every=8, min_batches=16)
    assert bool(res.converged) and res.exponents.shape == (3,)
    lam = float(res.localization_length)
    slope, slope_err = _rgf_log_slope(lattice, model, w, [round(3 * lam), round(6 * lam)], 1000)
    expected = -2 / lam
    sigma = math.hypot(slope_err, abs(expected) * float(res.relative_error))
    assert sigma / abs(expected) < 0.045
    assert abs(slope - expected) < 3 * sigma, (slope, expected, sigma)


# ---------------------------------------------------------------------------------------------------------
# JAX transformations (the paths a GPU run takes: jit, vmap, grad; no host callbacks in the kernel).

SAMPLE = dt.Sample(dt.strip(4), 1024)
KW = dict(rtol=None, chunk=128, warmup=128, qr_every=8)
KEY = jax.random.key(0)


def _xi(w, e):
    return localization_length(KEY, SAMPLE, dt.Model(energy=e), strength=w, **KW)


def test_jit_and_vmap_over_disorder_and_energy():
    ws, es = jnp.array([2.0, 2.5, 3.0]), jnp.array([0.3, 0.5, 0.9])
    plain = np.array([[float(_xi(w, e)) for e in es] for w in ws])
    batched = jax.jit(jax.vmap(jax.vmap(_xi, in_axes=(None, 0)), in_axes=(0, None)))(ws, es)
    np.testing.assert_allclose(np.asarray(batched), plain, rtol=1e-12)


def test_adaptive_stopping_under_vmap():
    """Each vmapped member stops at its own error target (the batched while loop freezes finished ones)."""
    sample = dt.Sample(dt.strip(4), 2**18)  # W = 1.5 (xi ~ 58) needs ~1.6e5 slices for 2%
    run = lambda w: lyapunov_exponents(KEY, sample, dt.Model(energy=0.5), strength=w, rtol=0.02, chunk=256,
                                       warmup=256, qr_every=8, min_batches=8)
    ws = jnp.array([1.5, 4.0])
    batched = jax.vmap(run)(ws)
    for i, w in enumerate(ws):
        single = run(w)
        assert bool(single.converged) and float(single.relative_error) <= 0.02
        assert int(batched.slices[i]) == int(single.slices)
        np.testing.assert_allclose(np.asarray(batched.exponents[i]), np.asarray(single.exponents), rtol=1e-12)
    assert int(batched.slices[0]) != int(batched.slices[1])


def test_resume_continues_the_same_realization():
    model = dt.Model(energy=0.5)
    kw = dict(strength=2.0, rtol=None, chunk=256, warmup=256, qr_every=8)
    first = lyapunov_exponents(KEY, dt.Sample(dt.strip(4), 1024), model, **kw)
    resumed = lyapunov_exponents(KEY, dt.Sample(dt.strip(4), 2048), model, resume=first, **kw)
    whole = lyapunov_exponents(KEY, dt.Sample(dt.strip(4), 2048), model, **kw)
    np.testing.assert_array_equal(np.asarray(resumed.exponents), np.asarray(whole.exponents))
    np.testing.assert_array_equal(np.asarray(resumed.stderr), np.asarray(whole.stderr))
    assert int(resumed.slices) == int(whole.slices) == 2048 - 256


@pytest.mark.parametrize("argnum", [0, 1], ids=["d/dW", "d/dE"])
def test_gradient_matches_finite_differences(argnum):
    """Exact derivative of the finite-length estimator of one realization (forward-mode Jacobian inside,
    exposed to jax.grad). The estimator has structure on the scale of the level spacing (~1e-3 here), so
    the central difference uses h = 1e-6: truncation ~ (h / 1e-3)^2 ~ 1e-6 relative, rounding ~1e-8."""
    args = [jnp.asarray(2.5), jnp.asarray(0.5)]
    grad = jax.grad(_xi, argnums=argnum)(*args)
    h = 1e-6

    def shifted(d):
        a = list(args)
        a[argnum] = a[argnum] + d
        return _xi(*a)

    fd = (shifted(h) - shifted(-h)) / (2 * h)
    assert abs(grad - fd) <= 1e-5 * abs(fd), (grad, fd)
    _, tangent = jax.jvp(lambda x: _xi(*(args[:argnum] + [x] + args[argnum + 1:])), (args[argnum],),
                         (jnp.asarray(1.0),))
    assert abs(tangent - grad) <= 1e-10 * abs(grad)


def test_gradient_of_flux_and_vmap_of_grad():
    f = lambda phi: localization_length(KEY, SAMPLE, dt.Model(energy=0.5, flux=phi), strength=2.5, **KW)
    h = 1e-6
    fd = (f(0.01 + h) - f(0.01 - h)) / (2 * h)
    assert abs(jax.grad(f)(0.01) - fd) <= 1e-5 * abs(fd)
    grads = jax.vmap(jax.grad(_xi), in_axes=(0, None))(jnp.array([2.0, 3.0]), 0.5)
    np.testing.assert_allclose(np.asarray(grads), [float(jax.grad(_xi)(2.0, 0.5)), float(jax.grad(_xi)(3.0, 0.5))],
                               rtol=1e-10)


def test_sweeps_do_not_recompile():
    from difftransport._core import tmm as _tmm

    _xi(2.0, 0.5)
    before = _tmm._lyapunov._cached._cache_size()
    for w, e in ((2.1, 0.4), (2.2, 0.6)):  # Python floats become arrays at the boundary
        _xi(w, e)
    sample = dt.Sample(dt.strip(4), 4096)
    for rtol in (0.05, 0.02):  # the error target is traced too
        lyapunov_exponents(KEY, sample, dt.Model(energy=0.5), strength=2.0, rtol=rtol, chunk=128, warmup=128,
                           qr_every=8)
    assert _tmm._lyapunov._cached._cache_size() == before + 1


def test_result_is_a_float64_spectrum():
    res = lyapunov_exponents(KEY, SAMPLE, dt.Model(energy=0.5), strength=2.5, **KW)
    assert isinstance(res, LyapunovSpectrum)
    assert res.exponents.shape == (4,) and res.exponents.dtype == jnp.float64
    assert np.all(np.diff(np.asarray(res.exponents)) < 0) and float(res.exponents[-1]) > 0
    assert float(res.localization_length) == pytest.approx(1 / float(res.exponents[-1]))


# ---------------------------------------------------------------------------------------------------------
# Bad input: structural errors at trace time, value errors inside jit.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(model=dt.Model(energy=0.5, exchange=1.0)), "does not support model.exchange"),
        (dict(sample=dt.Sample(dt.strip(4), 4096, periodic=True)), r"needs an open sample \(periodic=False\)"),
        (dict(model=dt.Model(energy=0.5, tau_phi=10.0)), "does not support model.tau_phi"),
        (dict(su2=True), "su2=True needs a spinful sample"),
        (dict(distribution="cauchy"), "distribution must be one of"),
        (dict(rtol=-0.1), "rtol must be a positive number or None"),
        (dict(chunk=100), r"multiples of qr_every"),
        (dict(min_batches=1), "min_batches must be >= 2"),
        (dict(sample=dt.Sample(dt.strip(4), 200)), r"at least warmup \+ 2 \* chunk"),
        (dict(strength=jnp.ones(2)), "strength must be a scalar"),
        (dict(model=dt.Model(energy=jnp.ones(2))), "model.energy must be a scalar"),
        (dict(model="not a model"), "model must be a difftransport Model"),
    ],
)
def test_structural_errors(kwargs, match):
    args = dict(sample=SAMPLE, model=dt.Model(energy=0.5), strength=2.0)
    args.update(kwargs)
    sample, model = args.pop("sample"), args.pop("model")
    call = dict(KW)
    call.update(args)
    with pytest.raises(ValueError, match=match):
        lyapunov_exponents(KEY, sample, model, **call)


def test_value_errors_inside_jit():
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"strength \(disorder W\) must be finite and >= 0"):
        eqx.filter_jit(lambda w: _xi(w, 0.5))(-1.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match="model.energy is not finite"):
        eqx.filter_jit(lambda e: _xi(2.0, e))(jnp.nan)
    periodic = dt.Sample(dt.strip(5, boundary="periodic"), 1024)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"flux \* 5 to be an integer"):
        localization_length(KEY, periodic, dt.Model(energy=0.5, flux=0.1), strength=1.0, **KW)


def test_derivative_of_resumed_run_is_refused():
    first = lyapunov_exponents(KEY, SAMPLE, dt.Model(energy=0.5), strength=2.0, **KW)
    f = lambda w: lyapunov_exponents(KEY, dt.Sample(dt.strip(4), 2048), dt.Model(energy=0.5), strength=w,
                                     resume=first, **KW).localization_length
    with pytest.raises(ValueError, match="derivatives of a resumed transfer-matrix run are not supported"):
        jax.grad(f)(2.0)
