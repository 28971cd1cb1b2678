"""Shared helpers for the test suite."""

import atexit
import importlib.util
import json
import os
import pathlib
import shutil
import sys
import tempfile

# One XLA compilation cache for the session, shared with the command-line runs the tests start (they inherit the
# environment): many tests compile the same programs again (a fresh closure under jit, a new process), and reading
# an executable back is cheaper than compiling it (the suite's wall time fell by ~17% on 2 cores). The directory is
# new for each session and removed at its end; a JAX_COMPILATION_CACHE_DIR already set is used as it is. Set before
# jax is imported, since jax reads these variables then.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _xla_cache = tempfile.mkdtemp(prefix="difftransport-xla-")
    atexit.register(shutil.rmtree, _xla_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt  # (also enables float64 before any test builds arrays)
from difftransport._core.observables import ensemble_conductances, map_realizations

DATA = pathlib.Path(__file__).parent / "data"
EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"

# ---------------------------------------------------------------------------------------------------------
# Test tiers. `make test-fast` runs `pytest -m "not slow"`. Besides the tests marked slow in their source (the
# statistical physics checks), every test whose measured time in tests/durations.json (setup + call + teardown,
# seconds, from a full run on 2 cores) exceeds the file's "limit_s" is marked slow at collection, so the fast tier
# stays within its 3-minute budget as tests grow. The limit belongs to the measurement: the file says under what
# load it was taken. A test not in the file counts as fast until it is measured. Re-measure with `make durations`
# (a full run that rewrites the times and keeps the limit and conditions).

DURATIONS = pathlib.Path(__file__).with_name("durations.json")
_RECORD = os.environ.get("DIFFTRANSPORT_RECORD_DURATIONS")
_measured: dict[str, float] = {}


def _durations() -> dict:
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {"limit_s": float("inf"), "tests": {}}


@pytest.hookimpl(tryfirst=True)  # before the mark plugin deselects by -m
def pytest_collection_modifyitems(config, items):
    durations = _durations()
    for item in items:
        if durations["tests"].get(item.nodeid, 0.0) > durations["limit_s"]:
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report):
    if _RECORD:
        _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    if _RECORD and _measured:
        data = _durations()
        data["tests"] = dict(sorted({**data["tests"], **{k: round(v, 2) for k, v in _measured.items()}}.items()))
        DURATIONS.write_text(json.dumps(data, indent=0) + "\n")


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
    fold_in(key(seed), r). Uses the transfer sweep (equal to RGF to ~1e-11, tests/test_transfer.py; 4-7x
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


def run_fit_cli(argv):
    """Run ``difftransport fit ARGV`` through its ``main`` (as the top-level CLI does); returns the exit code."""
    import argparse

    from difftransport._cli import fit as _cli_fit

    parser = argparse.ArgumentParser(prog="difftransport fit")
    _cli_fit.add_arguments(parser)
    return _cli_fit.main(parser.parse_args([str(a) for a in argv]))
