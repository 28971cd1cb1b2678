"""Bad input gets a clear error that names the argument and the problem, never a silent NaN.
Structural problems fail at trace time (ValueError); values are checked inside jit (equinox.error_if)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt

SAMPLE = dt.Sample(dt.strip(4), 5)
SPIN = dt.Sample(dt.strip(4), 5, spinful=True)


@pytest.mark.parametrize("make, match", [
    (lambda: dt.strip(0), "width must be a positive integer, got 0"),
    (lambda: dt.strip(-3), "width must be a positive integer, got -3"),
    (lambda: dt.strip(2.5), "width must be a positive integer, got 2.5"),
    (lambda: dt.bar(3, 0), "height must be a positive integer, got 0"),
    (lambda: dt.zigzag_ribbon(0), "n must be a positive integer"),
    (lambda: dt.Sample(dt.strip(4), 0), "length must be a positive integer, got 0"),
    (lambda: dt.Sample(dt.strip(4), -2), "length must be a positive integer, got -2"),
    (lambda: dt.strip(2, boundary="periodic"), "periodic strip needs width >= 3"),
    (lambda: dt.strip(4, boundary="open"), "boundary must be one of"),
    (lambda: dt.Sample("strip", 4), "lattice must be a difftransport Lattice"),
])
def test_bad_geometry(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("call, match", [
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=0.5), dt.Disorder(potential=jnp.zeros((5, 3)))),
     r"disorder.potential has shape \(5, 3\), but this sample needs \(5, 4\)"),
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=0.5, rashba=0.1)), "rashba act on spin, but the sample is spinless"),
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=0.5, exchange=0.2), dt.Disorder(moments=jnp.zeros((5, 4, 3)))),
     "exchange, disorder.moments act on spin"),
    (lambda: dt.conductance(SPIN, dt.Model(energy=0.5, exchange=0.2)), "need both model.exchange .* and disorder.moments"),
    (lambda: dt.conductance(SPIN, dt.Model(energy=0.5), dt.Disorder(moments=jnp.ones((5, 4, 3)))), "need both model.exchange"),
    (lambda: dt.conductance(SPIN, dt.Model(energy=0.5, exchange=0.2), dt.Disorder(moments=jnp.ones((5, 4)))),
     r"disorder.moments has shape \(5, 4\), expected \(5, 4, 3\)"),
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=jnp.array([0.1, 0.2]))), "model.energy must be a scalar.*jax.vmap"),
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=0.5, mass=0.1)), "model.mass needs a lattice with two sublattices"),
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=0.5), dephasing="fast"), "dephasing must be one of"),
    (lambda: dt.Model(energy=0.5 + 1j), "model parameters are real numbers"),
    (lambda: dt.draw_disorder(jax.random.key(0), SAMPLE, su2=True), "su2=True needs a spinful sample"),
    (lambda: dt.anderson_potential(jax.random.key(0), SAMPLE, 1.0, distribution="cauchy"), "distribution must be one of"),
    (lambda: dt.buttiker_currents(SAMPLE, dt.Model(energy=0.5)), "buttiker_currents needs model.tau_phi"),
    (lambda: dt.SlicedHamiltonian.from_dense(jnp.zeros((3, 2, 2)), jnp.zeros((3, 2, 2)), jnp.zeros((2, 2)), jnp.eye(2)),
     r"from_dense needs onsite \(L, n, n\), hops \(L-1, n, n\)"),
])
def test_structural_errors_at_trace_time(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("model, disorder, match", [
    (dt.Model(energy=float("nan")), None, "model.energy is not finite"),
    (dt.Model(energy=0.5, hopping=float("inf")), None, "model.hopping is not finite"),
    (dt.Model(energy=0.5, hopping=0.0), None, "model.hopping is zero"),
    (dt.Model(energy=0.5, flux=float("nan")), None, "model.flux is not finite"),
    (dt.Model(energy=0.5, tau_phi=-1.0), None, "model.tau_phi must be positive"),
    (dt.Model(energy=0.5, tau_phi=0.0), None, "model.tau_phi must be positive"),
    (dt.Model(energy=0.5, tau_phi=float("nan")), None, "model.tau_phi must be positive"),
    (dt.Model(energy=0.5), dt.Disorder(potential=jnp.full((5, 4), jnp.nan)), "disorder.potential is not finite"),
])
def test_value_errors_inside_jit(model, disorder, match):
    with pytest.raises(eqx.EquinoxRuntimeError, match=match):
        dt.conductance(SAMPLE, model, disorder)


def test_value_error_under_vmap_and_grad():
    f = lambda e: dt.conductance(SAMPLE, dt.Model(energy=e))
    with pytest.raises(eqx.EquinoxRuntimeError, match="model.energy is not finite"):
        jax.vmap(f)(jnp.array([0.1, jnp.inf]))
    with pytest.raises(eqx.EquinoxRuntimeError, match="model.energy is not finite"):
        jax.grad(f)(jnp.nan)


def test_spin_orbit_value_error_names_the_parameter():
    with pytest.raises(eqx.EquinoxRuntimeError, match="model.rashba is not finite"):
        dt.conductance(SPIN, dt.Model(energy=0.5, rashba=jnp.inf))


def test_periodic_gauge_needs_integer_flux_winding():
    periodic = dt.Sample(dt.strip(5, boundary="periodic"), 4)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"flux \* 5 to be an integer"):
        dt.conductance(periodic, dt.Model(energy=0.5, flux=0.03))
    assert np.isfinite(dt.conductance(periodic, dt.Model(energy=0.5, flux=0.2)))  # 0.2 * 5 = 1


def test_coherent_limit_tau_phi_inf_is_allowed():
    g_inf = dt.conductance(SAMPLE, dt.Model(energy=0.5, tau_phi=jnp.inf))
    assert abs(g_inf - dt.conductance(SAMPLE, dt.Model(energy=0.5))) < 1e-13


def test_singular_lead_hopping_is_refused_at_run_time():
    """A lead hopping that is structurally regular but singular in value (here [[1, 1], [1, 1]]: rank 1 of 2)
    has no well-defined modes; the solver would count no open channel and return G = 0. It is refused, also
    under jit, while the regular [[1, 0.5], [0.5, 1]] is accepted."""
    onsite, hops, cell = jnp.zeros((3, 2, 2)), -jnp.ones((2, 2, 2)), jnp.zeros((2, 2))
    regular = dt.SlicedHamiltonian.from_dense(onsite, hops, cell, -jnp.array([[1.0, 0.5], [0.5, 1.0]]))
    assert np.isfinite(float(dt.hamiltonian_transmission(regular, 0.3)))
    singular = dt.SlicedHamiltonian.from_dense(onsite, hops, cell, -jnp.ones((2, 2)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="inter-cell hopping is singular at these parameters"):
        eqx.filter_jit(dt.hamiltonian_transmission)(singular, 0.3)
