"""Gradients against finite differences, and the JAX transformations (jit, vmap, grad, no retracing)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from conftest import central_difference

# A disordered spinful strip with every differentiable term switched on.
SAMPLE = dt.Sample(dt.strip(8), 12, spinful=True)
DISORDER = dt.draw_disorder(jax.random.key(7), SAMPLE, strength=1.0, moments=True)
PARAMS = dict(energy=0.9, hopping=1.0, flux=0.02, rashba=0.25, exchange=0.3, tau_phi=8.0)


@pytest.mark.parametrize("dephasing", ["probe", "absorb", "buttiker"])
def test_gradient_matches_finite_differences(dephasing):
    """Reverse-mode gradient vs a 4th-order central difference with h = 1e-4 (truncation ~h^4 G^(5), which
    the flux dependence (phases 2 pi phi y, y <= 7) keeps below 1e-7 relative; roundoff ~1e-12)."""
    f = lambda m: dt.conductance(SAMPLE, m, DISORDER, dephasing=dephasing)
    grad = jax.grad(f)(dt.Model(**PARAMS))
    for name, value in PARAMS.items():
        fd = central_difference(lambda x: f(dt.Model(**{**PARAMS, name: x})), jnp.asarray(value), 1e-4)
        assert abs(getattr(grad, name) - fd) <= 1e-6 * abs(fd), name


def test_forward_and_reverse_mode_agree():
    f = lambda m: dt.conductance(SAMPLE, m, DISORDER)
    model = dt.Model(**PARAMS)
    grad = jax.grad(f)(model)
    for name in PARAMS:
        tangent = jax.tree.map(jnp.zeros_like, model)
        tangent = eqx.tree_at(lambda m: getattr(m, name), tangent, jnp.asarray(1.0))
        _, jvp = jax.jvp(f, (model,), (tangent,))
        assert abs(jvp - getattr(grad, name)) <= 1e-10 * abs(jvp), name


@pytest.mark.parametrize("ribbon", [dt.zigzag_ribbon(4), dt.armchair_ribbon(5)])
def test_gradient_through_singular_lead_hopping(ribbon):
    """Honeycomb leads have singular inter-cell hopping; the implicit lead derivative must still be exact."""
    sample = dt.Sample(ribbon, 5)
    disorder = dt.draw_disorder(jax.random.key(2), sample, strength=0.8)
    params = dict(energy=0.45, flux=0.01)
    f = lambda m: dt.conductance(sample, m, disorder)
    grad = jax.grad(f)(dt.Model(**params))
    for name, value in params.items():
        fd = central_difference(lambda x: f(dt.Model(**{**params, name: x})), jnp.asarray(value), 1e-4)
        assert abs(getattr(grad, name) - fd) <= 1e-6 * abs(fd), name


def test_second_derivative():
    """The lead's implicit derivative is itself differentiable (Stein solve with its own JVP)."""
    sample = dt.Sample(dt.strip(5), 6)
    disorder = dt.draw_disorder(jax.random.key(4), sample, strength=1.0)
    f = lambda e: dt.conductance(sample, dt.Model(energy=e, flux=0.03), disorder)
    second = jax.grad(jax.grad(f))(0.6)
    fd = central_difference(jax.grad(f), jnp.asarray(0.6), 1e-4)
    assert abs(second - fd) <= 1e-6 * abs(fd)


def test_disorder_strength_gradient():
    sample = dt.Sample(dt.strip(6), 10)
    key = jax.random.key(5)
    f = lambda w: dt.conductance(sample, dt.Model(energy=0.5), dt.draw_disorder(key, sample, strength=w))
    fd = central_difference(f, jnp.asarray(1.5), 1e-4)
    assert abs(jax.grad(f)(1.5) - fd) <= 1e-6 * abs(fd)


def test_jit_vmap_and_plain_calls_agree():
    sample = dt.Sample(dt.strip(6), 9, spinful=True)
    keys = jax.random.split(jax.random.key(0), 4)
    energies = jnp.array([-1.1, 0.3, 0.8, 2.1])

    def g(key, energy):
        disorder = dt.draw_disorder(key, sample, strength=1.2)
        return dt.conductance(sample, dt.Model(energy=energy, flux=0.01, rashba=0.3, tau_phi=30.0), disorder)

    plain = np.array([[g(k, e) for e in energies] for k in keys[:2]])
    with jax.disable_jit():  # op by op, no compilation anywhere (slow: one point)
        eager = g(keys[0], energies[0])
    jitted = jax.jit(g)
    jit_values = np.array([[jitted(k, e) for e in energies] for k in keys[:2]])
    vmapped = jax.vmap(lambda k: jax.vmap(lambda e: g(k, e))(energies))(keys)[:2]
    assert abs(eager - plain[0, 0]) < 1e-12
    np.testing.assert_allclose(jit_values, plain, atol=1e-12, rtol=0)
    np.testing.assert_allclose(vmapped, plain, atol=1e-12, rtol=0)
    # grad of vmap = stack of grads
    loss = lambda e: jnp.sum(jax.vmap(lambda k: g(k, e))(keys))
    np.testing.assert_allclose(jax.grad(loss)(0.3), sum(jax.grad(lambda e: g(k, e))(0.3) for k in keys), rtol=1e-12)


def test_energy_sweep_does_not_retrace():
    sample = dt.Sample(dt.strip(4), 3)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def g(model):
        return dt.conductance(sample, model)

    for energy in (0.1, 0.2, 0.3):  # Python floats become arrays in Model: one trace for all
        g(dt.Model(energy=energy))


def _compiled_bytes(f, *args):
    m = jax.jit(f).lower(*args).compile().memory_analysis()
    return m.temp_size_in_bytes + m.output_size_in_bytes + m.argument_size_in_bytes


@pytest.fixture
def _fresh_traces():
    jax.clear_caches()
    yield
    jax.clear_caches()


def test_checkpointed_sweep_gradient_equals_plain_scan(monkeypatch, _fresh_traces):
    """The sqrt(L)-checkpointed sweep (L = 150 > CHECKPOINT_MIN_LENGTH, blocks of 12 plus a remainder of 5)
    gives the same value and gradient as the plain scan, to rounding."""
    from difftransport._core import rgf as _rgf

    sample = dt.Sample(dt.strip(4), 150, spinful=True)
    disorder = dt.draw_disorder(jax.random.key(3), sample, strength=1.5)
    f = lambda p: dt.conductance(sample, dt.Model(energy=0.8, tau_phi=p[0], flux=p[1], rashba=p[2]), disorder)
    p = jnp.array([30.0, 0.01, 0.2])
    checkpointed = jax.value_and_grad(f)(p)
    monkeypatch.setattr(_rgf, "CHECKPOINT_MIN_LENGTH", 10**9)
    jax.clear_caches()  # conductance is jitted: retrace with the plain scan
    plain = jax.value_and_grad(f)(p)
    np.testing.assert_allclose(checkpointed[0], plain[0], rtol=1e-12)
    np.testing.assert_allclose(checkpointed[1], plain[1], rtol=1e-9)


def test_gradient_memory_grows_like_sqrt_length(monkeypatch, _fresh_traces):
    """Compiled peak memory (XLA's buffer assignment: arguments + outputs + temporaries) of the gradient of G
    with respect to (tau_phi, phi, alpha) for a long spinful strip, L = 4000: at most 10x the forward pass
    (performance issue target); the plain scan, which stores every slice's residuals, needs ~28x here
    (asserted: more than 5x the checkpointed ratio)."""
    from difftransport._core import rgf as _rgf

    sample = dt.Sample(dt.strip(8), 4000, spinful=True)
    disorder = dt.draw_disorder(jax.random.key(0), sample, strength=2.0)
    f = lambda p: dt.conductance(sample, dt.Model(energy=1.0, tau_phi=p[0], flux=p[1], rashba=p[2]), disorder)
    p = jnp.array([20.0, 0.01, 0.2])
    forward = _compiled_bytes(f, p)
    ratio = _compiled_bytes(jax.value_and_grad(f), p) / forward
    monkeypatch.setattr(_rgf, "CHECKPOINT_MIN_LENGTH", 10**9)
    jax.clear_caches()  # conductance is jitted: retrace with the plain scan
    plain_ratio = _compiled_bytes(jax.value_and_grad(f), p) / forward
    assert ratio <= 10, (ratio, plain_ratio)
    assert plain_ratio > 5 * ratio, (ratio, plain_ratio)
