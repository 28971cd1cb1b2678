"""Shared helpers for the test suite."""

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt  # (also enables float64 before any test builds arrays)
from difftransport._core.observables import ensemble_conductances, map_realizations

DATA = pathlib.Path(__file__).parent / "data"
EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def experiment(name: str):
    """The script experiments/<name>.py as a module, loaded by its path (sys.path is left alone). The scripts
    import their shared helpers as the top-level module ``common``, so experiments/common.py is loaded first
    under that name."""
    for module in dict.fromkeys(("common", name)):
        if module not in sys.modules:
            spec = importlib.util.spec_from_file_location(module, EXPERIMENTS / f"{module}.py")
            sys.modules[module] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[module])
    return sys.modules[name]


def load_reference(name: str):
    """A Kwant reference file from tests/data (computed with Kwant; conventions in tests/data/REFERENCE_README.md)."""
    data = np.load(DATA / name)
    return json.loads(str(data["meta"])), data


def central_difference(f, x, h):
    """Fourth-order central difference f'(x) (truncation error ~ h^4 f^(5) / 30)."""
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module. Every XLA CPU executable keeps memory maps; the
    suite compiles thousands of functions, and one process would pass the kernel's vm.max_map_count (65530)
    and crash in the compiler (a segfault measured at 94% of the suite). Modules share few functions, so the
    recompilation this costs is small."""
    yield
    jax.clear_caches()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def paired_ensemble(sample, realizations, seed, fluxes, strength, moments=False, observables=None, **model):
    """(realizations, len(fluxes)) conductances, every realization at every flux (paired); realization r uses
    fold_in(key(seed), r). Uses the transfer sweep (equal to RGF to ~1e-11, tests/test_transfer.py; 2-4x
    faster), so these ensembles cost a fraction of the suite's time. Batches of 100 (``ensemble_conductances``).

    With ``observables`` (names of ``dt.observe``), the same realizations give (realizations, len(fluxes),
    len(observables)): every observable of every realization at every flux, from one sweep."""
    models = [dt.Model(flux=f, **model) for f in fluxes]
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(seed), r))(jnp.arange(realizations))
    if observables is None:
        run = jax.jit(lambda k: ensemble_conductances(k, sample, models, strength=strength, moments=moments,
                                                      method="transfer", batch=100))
        return np.asarray(run(keys))

    def one(key):
        disorder = dt.draw_disorder(key, sample, strength=strength, moments=moments)
        out = [dt.observe(sample, m, disorder, observables=tuple(observables), method="transfer") for m in models]
        return jnp.stack([jnp.stack([o[name] for name in observables]) for o in out])

    return np.asarray(jax.jit(lambda k: map_realizations(one, k, batch=100))(keys))
