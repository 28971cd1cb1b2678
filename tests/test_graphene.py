"""The graphene experiment's pipeline (experiments/graphene.py) at small size: the ensemble entries of its config
run on a small cylinder, and its McCann analysis recovers known fields from synthetic per-realization curves."""

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
