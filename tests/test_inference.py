"""Microscopic inference through the ensemble-averaged RGF conductance (difftransport._inference).

Checked here: the gradient that drives the optimizer, batching, input errors. Not yet shown (open in the inverse-
fitting issue): robust recovery of tau_phi and alpha by ``infer_parameters`` -- on small samples whose L_phi
exceeds the length, tau_phi is a nearly flat direction and L-BFGS can run away along it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._inference import realization_conductances

# 6-wide spinful strip at E = 1.6: 6 open channels at every flux up to 0.065 (a channel opening inside the
# field range would make <G>(field_scale) jump).
SAMPLE = dt.Sample(dt.strip(6), 12, spinful=True)
FIELD = jnp.array([0.0, 0.02, 0.04])
TRUTH = dt.MicroscopicParameters(tau_phi=jnp.array([4.0, 16.0]), rashba=jnp.array(0.3), field_scale=jnp.array(1.0))


@pytest.fixture(scope="module")
def ensemble():
    return dt.lattice_ensemble(SAMPLE, jax.random.split(jax.random.key(3), 4), energy=1.6, strength=2.0)


def test_gradient_of_the_mean_matches_finite_differences(ensemble):
    """d<G>/d(log tau_phi, log alpha, log field_scale) by jax.grad against a 4th-order central difference."""
    def f(logp):
        p = dt.MicroscopicParameters(tau_phi=jnp.exp(logp[:2]), rashba=jnp.exp(logp[2]), field_scale=jnp.exp(logp[3]))
        return jnp.sum(dt.mean_conductance(ensemble, p, FIELD) * jnp.arange(1.0, 7.0).reshape(2, 3))

    x = jnp.log(jnp.array([4.0, 16.0, 0.3, 1.0]))
    grad = np.asarray(jax.jit(jax.grad(f))(x))
    h = 1e-3
    fd = []
    for i in range(4):
        e = jnp.zeros(4).at[i].set(h)
        fd.append(float((-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h)))
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_batches_do_not_change_the_conductances(ensemble):
    a = realization_conductances(ensemble, TRUTH, FIELD, batch=4)
    b = realization_conductances(ensemble, TRUTH, FIELD, batch=3)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: dt.infer_parameters(FIELD, np.zeros((2, 4)), e, TRUTH), "target must have shape"),
        (lambda e: dt.infer_parameters(FIELD, np.zeros((3, 3)), e, TRUTH), "one entry per curve"),
        (lambda e: dt.infer_parameters(FIELD[:2], np.zeros((2, 2)), e, TRUTH), "too few target points"),
        (lambda e: dt.lattice_ensemble(dt.Sample(dt.strip(6), 12), jax.random.split(jax.random.key(0), 4),
                                       energy=1.6, strength=2.0), "spinful=True"),
    ],
)
def test_errors(ensemble, call, match):
    with pytest.raises(ValueError, match=match):
        call(ensemble)
