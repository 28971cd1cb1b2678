"""The graphene experiments' pipelines (experiments/graphene.py, graphene_dephasing.py) at small size: the ensemble
entries of their configs run on a small cylinder, and their McCann analyses recover known fields from synthetic
per-realization curves."""

import jax
import numpy as np
import pytest

import difftransport as dt
from conftest import EXPERIMENTS, experiment
from difftransport import theory
from difftransport.runs import load

graphene = experiment("graphene")


@pytest.mark.parametrize("name", ["graphene.toml", "graphene_crossover.toml"])
def test_config_entries_run_on_a_small_cylinder(name):
    """The ensembles of each graphene config differ only in the short-range density (and their counts); the
    one with the most short-range scatterers, shrunk to a 12-row cylinder of length 8, gives conductances of
    shape (twist, flux) equal to direct ``conductance`` calls (1e-12), so the config means what the experiment's
    docstring says (smooth + short-range disorder, twist grid, field in the sample); its [analysis] signs are
    WAL for the smooth ensemble and WL for the densest."""
    from difftransport._runs.ensemble import make_sample, realization_function

    config = load(EXPERIMENTS.parent / "configs" / name)
    entries = config["ensembles"]
    expect, z_min = graphene.expectations(config)
    names = list(entries)
    assert expect[names[0]] == "WAL" and expect[names[-1]] == "WL" and z_min == 5.0
    densities = [e["disorder"]["short_range_density"] for e in entries.values()]
    assert densities == sorted(densities) and densities[0] == 0 and len(set(densities)) == len(densities)
    strip = [{k: v for k, v in e.items() if k not in ("label", "realizations")} for e in entries.values()]
    for e in strip:
        e["disorder"] = {k: v for k, v in e["disorder"].items() if not k.startswith("short_range")}
    assert all(e == strip[0] for e in strip)
    for name, entry in list(entries.items())[-1:]:
        small = {**entry, "sample": {**entry["sample"], "n": 12, "length": 8},
                 "grid": {"twist": entry["grid"]["twist"], "flux": [0.0, 2e-3]}}
        f = realization_function(small, config["run"]["seed"])
        got = np.asarray(f(1)["conductance"])
        assert got.shape == (len(small["grid"]["twist"]), 2)
        sample = make_sample(small["sample"])
        key = jax.random.fold_in(jax.random.key(config["run"]["seed"]), 1)
        disorder = dt.draw_disorder(key, sample, strength=entry["disorder"]["strength"],
                                    correlation_length=entry["disorder"]["correlation_length"],
                                    density=entry["disorder"]["density"],
                                    short_range_density=entry["disorder"]["short_range_density"],
                                    short_range_strength=entry["disorder"]["short_range_strength"])
        for i, twist in enumerate(small["grid"]["twist"]):
            for j, flux in enumerate(small["grid"]["flux"]):
                model = dt.Model(energy=entry["model"]["energy"], flux=flux, twist=twist)
                assert abs(got[i, j] - float(dt.conductance(sample, model, disorder))) <= 1e-12


def test_mccann_analysis_recovers_known_fields():
    """Synthetic sheet curves Delta sigma = mccann(B, B_phi, B_i, B_*) / 2 (the spinless prefactor) for three
    curves with B_i rising 0 -> 3e-5 -> 1e-4 and shared B_phi, B_*, plus independent noise of 0.01 per
    realization and point (400 realizations, paired to the first point): the experiment's fit (2 Delta sigma, B_i
    per curve, B_phi and B_* shared) recovers B_phi, B_* and the two nonzero B_i within 4 of its standard errors,
    and the diagonal chi2 per dof is below 2. The nearest wrong answer, the spinful prefactor without the
    doubling, is excluded: a fit of undoubled data misses B_i by more than 4 errors."""
    flux = np.array([0.0, 5e-6, 1e-5, 1.5e-5, 2e-5, 3e-5, 4e-5, 6e-5, 8e-5])
    truth = {"a": (1.5e-5, 1e-9, 2e-5), "b": (1.5e-5, 3e-5, 2e-5), "c": (1.5e-5, 1e-4, 2e-5)}
    rng = np.random.default_rng(0)
    curves = {}
    for name, (b_phi, b_i, b_star) in truth.items():
        clean = np.asarray(theory.mccann(flux, b_phi, b_i, b_star)) / 2
        curves[name] = clean[None, :] + 0.01 * rng.normal(size=(400, flux.size))
        curves[name] -= curves[name][:, :1]
    fit = graphene.mccann_fit(flux, curves, list(truth))
    assert abs(fit.value("b_star") - 2e-5) <= 4 * fit.error("b_star")
    assert abs(fit.value("b_phi") - 1.5e-5) <= 4 * fit.error("b_phi")
    for name in ("b", "c"):
        assert abs(fit.value("b_i", name) - truth[name][1]) <= 4 * fit.error("b_i", name)
    assert fit.value("b_i", "a") < fit.value("b_i", "b") < fit.value("b_i", "c")
    assert fit.chi2 / fit.dof < 2
    halved = graphene.mccann_fit(flux, {n: c / 2 for n, c in curves.items()}, list(truth))
    assert abs(halved.value("b_i", "c") - 1e-4) > 4 * halved.error("b_i", "c")


graphene_dephasing = experiment("graphene_dephasing")


def test_dephasing_config_runs_buttiker_cylinders_with_their_twist():
    """configs/graphene_dephasing.toml: both ensembles are the same cylinder, model and disorder (the coherent one
    gives sigma_D of the dephased one); the dephased entry, shrunk to a 12-row cylinder of length 8, gives Buttiker
    conductances of shape (tau_phi, flux) equal to direct ``conductance(..., dephasing="buttiker")`` calls at the
    realization's own twist (1e-10), and open_channels equal to the left lead's at that twist, from which the
    experiment's sheet conductance is (L/C) / (1/G - 1/N)."""
    from difftransport._runs.ensemble import make_sample, realization_function

    config = load(EXPERIMENTS.parent / "configs" / "graphene_dephasing.toml")
    deph, broken = config["ensembles"]["dephasing"], config["ensembles"]["broken"]
    for key in ("sample", "model", "disorder"):
        assert deph[key] == broken[key]
    assert deph["dephasing"] == "buttiker" and deph["disorder"]["random_twist"]
    small = {**deph, "sample": {**deph["sample"], "n": 12, "length": 8},
             "grid": {"tau_phi": [5.0, 20.0], "flux": [0.0, 2e-3]}}
    out = realization_function(small, config["run"]["seed"])(1)
    got, channels = np.asarray(out["conductance"]), np.asarray(out["open_channels"])
    assert got.shape == channels.shape == (2, 2)
    sample = make_sample(small["sample"])
    key = jax.random.fold_in(jax.random.key(config["run"]["seed"]), 1)
    disorder = dt.draw_disorder(key, sample, strength=deph["disorder"]["strength"])
    twist = dt.realization_twist(key)
    for i, tau in enumerate(small["grid"]["tau_phi"]):
        for j, flux in enumerate(small["grid"]["flux"]):
            model = dt.Model(energy=deph["model"]["energy"], flux=flux, twist=twist, tau_phi=tau)
            assert abs(got[i, j] - float(dt.conductance(sample, model, disorder, dephasing="buttiker"))) <= 1e-10
            assert channels[i, j] == float(dt.open_channels(sample, dt.Model(energy=deph["model"]["energy"],
                                                                             twist=twist)))
    sigma, _ = graphene_dephasing.sheet({"ensembles": {"dephasing": small}}, "dephasing",
                                        {"dephasing": {"conductance": got[None], "open_channels": channels[None]}})
    np.testing.assert_allclose(sigma[0], (8 / (12 * np.sqrt(3) / 2)) / (1 / got - 1 / channels), rtol=1e-12)


def test_dephasing_fit_recovers_known_dephasing_fields():
    """Synthetic curves Delta sigma = mccann(B, B_phi(tau), B_i, B_*) / 2 for three tau_phi (B_phi 2e-4, 5e-4,
    1e-3; B_i = 8e-4 and B_* = 2e-3 shared) on the experiment's field grid, noise 0.005 per realization and point
    (256 realizations): the experiment's fit recovers each B_phi within 4 of its standard errors. The nearest wrong
    answer, a fit of Delta sigma without the spinless doubling, is off by more than that (checked on B_phi of the
    middle curve)."""
    flux = np.array([0.0, 1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3])
    b_phis = (2e-4, 5e-4, 1e-3)
    rng = np.random.default_rng(1)
    clean = np.stack([np.asarray(theory.mccann(flux, b, 8e-4, 2e-3)) / 2 for b in b_phis])
    delta = clean[None] + 0.005 * rng.normal(size=(256, 3, flux.size))
    delta -= delta[:, :, :1]
    fit = graphene_dephasing.mccann_fit(flux, delta)
    for c, b in enumerate(b_phis):
        assert abs(fit.value("b_phi", c) - b) <= 4 * fit.error("b_phi", c)
    wrong = graphene_dephasing.mccann_fit(flux, delta / 2)
    assert abs(wrong.value("b_phi", 1) - 5e-4) > 4 * fit.error("b_phi", 1)
