"""Unchecked data must not give silent numbers: complex or non-finite disorder, moments that are not unit vectors,
a flux too large for float64 phases, a missing energy, a str where a sequence of names is expected. Structural
problems raise ValueError at construction or trace time; values are checked inside jit (equinox.error_if), with a
message that names the argument and the rule. Valid input gives the same numbers as before the checks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt

# One structure per sample kind, so that the checks below share compilations.
SAMPLE = dt.Sample(dt.strip(4), 5)
DISORDER = dt.draw_disorder(jax.random.key(5), SAMPLE, strength=2.0)
SPIN = dt.Sample(dt.strip(4), 6, spinful=True)
MAGNETIC = dt.Model(energy=0.7, flux=0.01, exchange=0.4, rashba=0.1)
SPIN_DISORDER = dt.draw_disorder(jax.random.key(3), SPIN, strength=1.5, moments=True)
MOMENTS = SPIN_DISORDER.moments  # (6, 4, 3) unit vectors
RIBBON = dt.Sample(dt.zigzag_ribbon(3), 5)
RIBBON_DISORDER = dt.draw_disorder(jax.random.key(4), RIBBON, strength=1.0)


def with_moments(moments):
    return dt.Disorder(potential=SPIN_DISORDER.potential, moments=moments)


@pytest.mark.parametrize("call, match", [
    (lambda: dt.Model(energy=None), "model.energy is required: give a real number, got None"),
    (lambda: dt.Model(energy=0.5, hopping=None), "model.hopping is required"),
    (lambda: dt.Model(energy="0.5"), "model.energy must be a real number or array, got str '0.5'"),
    (lambda: dt.Model(energy=0.5, flux=0.1j), "model parameters are real numbers, got model.flux = a complex array"),
    (lambda: dt.anderson_potential(jax.random.key(0), SAMPLE, 1j), "strength must be real, got a complex array"),
    (lambda: dt.conductance(SAMPLE, dt.Model(energy=0.5), dt.Disorder(potential=jnp.full((5, 4), 1.0 + 1.0j))),
     r"disorder.potential must be real \(on-site energies\), got dtype complex128; absorption enters through "
     r"model.tau_phi"),
    (lambda: dt.conductance(SPIN, MAGNETIC, with_moments(MOMENTS * (1 + 0j))),
     r"disorder.moments must be real \(unit vectors in 3D space\), got dtype complex128"),
])
def test_structural_errors_at_construction_or_trace_time(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("sample, model, disorder, match", [
    (SPIN, MAGNETIC, with_moments(MOMENTS.at[2, 1, 0].set(jnp.nan)), "disorder.moments is not finite"),
    (SPIN, MAGNETIC, with_moments(MOMENTS.at[0, 3, 2].set(jnp.inf)), "disorder.moments is not finite"),
    (SPIN, MAGNETIC, with_moments(2 * MOMENTS), r"disorder.moments must be unit vectors: \| \|m\| - 1 \| <= 1e-06"),
    (SPIN, MAGNETIC, with_moments(MOMENTS.at[5, 0].multiply(1 + 1e-5)), "disorder.moments must be unit vectors"),
    (SAMPLE, dt.Model(energy=0.5, flux=0.0), dt.Disorder(potential=DISORDER.potential.at[1, 1].set(-jnp.inf)),
     r"disorder.potential is not finite \(NaN or inf\)"),
    (RIBBON, dt.Model(energy=0.8, flux=1e9), RIBBON_DISORDER,
     r"model.flux must satisfy \|flux\| <= 1.26e\+06 on zigzag_ribbon\(N=3\).*no flux period"),
    (dt.Sample(dt.strip(5, boundary="periodic"), 4), dt.Model(energy=0.5, flux=1e15 + 0.125), None,
     r"model.flux: with periodic transverse boundaries the Landau gauge needs flux \* 5 to be an integer"),
])
def test_value_errors_inside_jit_name_the_argument_and_the_rule(sample, model, disorder, match):
    with pytest.raises(eqx.EquinoxRuntimeError, match=match):
        dt.conductance(sample, model, disorder)


def test_unit_moments_within_tolerance_pass_and_give_the_previous_numbers():
    """Drawn unit moments and a small flux: the number of the unchecked code (4.143477469728606, computed before
    the checks existed), to 1e-12. A float32 normalization (|m| - 1 ~ 1e-7)
    passes the 1e-6 tolerance."""
    g = lambda moments: dt.conductance(SPIN, MAGNETIC, with_moments(moments))
    assert abs(g(MOMENTS) - 4.143477469728606) < 1e-12
    rounded = MOMENTS.astype(jnp.float32).astype(jnp.float64)
    assert 1e-9 < np.max(np.abs(np.linalg.norm(rounded, axis=-1) - 1)) < 1e-6
    assert abs(g(rounded) - g(MOMENTS)) < 1e-5


def test_flux_is_reduced_modulo_its_period_exactly():
    """On a square lattice the Landau-gauge phases have period 1 in the flux: a flux of 1e15 + 0.25 (exactly
    representable) gives the numbers of 0.25 bit for bit, where the unreduced phases 2 pi 1e15 y lost all
    precision; the flux derivative is unchanged by the reduction."""
    g = lambda flux: dt.conductance(SAMPLE, dt.Model(energy=0.5, flux=flux), DISORDER)
    small, large = g(0.25), g(1e15 + 0.25)
    assert large == small and 0.1 < small < 3.9  # not a trivial clean or closed value
    assert abs(g(-0.75) - small) < 1e-12
    assert jax.grad(g)(1e15 + 0.25) == jax.grad(g)(0.25) != 0


def test_flux_on_a_lattice_without_period_keeps_small_values():
    """Honeycomb ribbons have no flux period in this gauge: a small flux is untouched (the value of the
    unchecked code, to 1e-12), only |flux| beyond the precision bound is refused."""
    assert abs(dt.conductance(RIBBON, dt.Model(energy=0.8, flux=0.01), RIBBON_DISORDER) - 0.38442153611472185) < 1e-12


def test_value_error_under_vmap_names_the_argument():
    """One bad realization in a batch: the message names the argument and the rule (the batch index is not
    known under vmap; the Model docstring says how to find it)."""
    batch = jnp.stack([MOMENTS, MOMENTS.at[1, 2].set(jnp.array([0.0, 0.0, 0.9]))])
    f = jax.vmap(lambda m: dt.conductance(SPIN, MAGNETIC, with_moments(m)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="disorder.moments must be unit vectors"):
        f(batch)


def test_observe_accepts_one_name_as_a_str():
    model = dt.Model(energy=0.5, flux=0.25)
    out = dt.observe(SAMPLE, model, DISORDER, observables="conductance")
    assert list(out) == ["conductance"]
    assert out["conductance"] == dt.conductance(SAMPLE, model, DISORDER)
    with pytest.raises(ValueError, match=r"unknown observables \['conductivity'\]"):
        dt.observe(SAMPLE, model, DISORDER, observables="conductivity")


@pytest.mark.parametrize("lattice", ["zigzag_ribbon", "armchair_ribbon"])
def test_config_periodic_ribbon_needs_even_n(tmp_path, lattice):
    """A config's ``boundary`` reaches the ribbon (it used to be dropped: an odd periodic ribbon ran as a hard-wall
    one), and an odd n is refused by the validation with the file, line and key, before anything runs."""
    from difftransport._runs import config as _config
    from difftransport._runs import ensemble as _ensemble

    text = ('[run]\nrealizations = 2\n\n[ensembles.r.sample]\nlattice = "{}"\nn = {}\nboundary = "periodic"\n'
            'length = 4\n\n[ensembles.r.model]\nenergy = 0.3\n')
    path = tmp_path / "ribbon.toml"
    path.write_text(text.format(lattice, 6))
    lattice_of = lambda: _ensemble.make_sample(_config.load(path)["ensembles"]["r"]["sample"]).lattice
    assert lattice_of() == getattr(dt, lattice)(6, boundary="periodic") and lattice_of().transverse_period
    path.write_text(text.format(lattice, 5))
    with pytest.raises(_config.ConfigError, match=rf"ribbon.toml:6: ensembles.r.sample.n = 5 is odd: a periodic "
                                                  rf"{lattice} needs an even n"):
        _config.load(path)
