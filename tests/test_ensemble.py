"""Ensemble runs: identical results for any chunk size, device count and process count; resume after
SIGKILL; refusal of a changed config; statistics and the run-directory format."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import difftransport as dt

from difftransport._runs import config as _config
from difftransport._runs import ensemble as _ensemble
from difftransport._runs import runner as _runner
from difftransport._cli import main as cli_main

ROOT = pathlib.Path(__file__).parents[1]

SMALL = """
[run]
seed = 3
realizations = 20
chunk = 8

[ensembles.strip]
observables = ["conductance", "fano_factor", "transmission_eigenvalues"]
[ensembles.strip.sample]
lattice = "strip"
width = 4
length = 6
[ensembles.strip.model]
energy = 0.7
tau_phi = 40.0
[ensembles.strip.disorder]
strength = 1.5
[ensembles.strip.grid]
flux = [0.0, 0.01, 0.03]

[ensembles.rashba]
observables = ["conductance"]
[ensembles.rashba.sample]
lattice = "strip"
width = 3
length = 5
spinful = true
[ensembles.rashba.model]
energy = -0.4
rashba = 0.3
[ensembles.rashba.disorder]
strength = 1.0
"""


def _write(tmp_path, text, name="small.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _results(run_dir):
    out = {}
    for path in sorted((pathlib.Path(run_dir) / "results").glob("*.npz")):
        with np.load(path) as data:
            for key in data.files:
                if "__" not in key:
                    out[f"{path.stem}/{key}"] = data[key]
    return out


def _assert_same(a, b, tol=1e-13):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=tol, rtol=0, err_msg=key)


def _env(devices=1):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(args, devices=1, **kwargs):
    return subprocess.run([sys.executable, "-m", "difftransport", *args], env=_env(devices),
                          capture_output=True, text=True, cwd=ROOT, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small config run in-process with chunk 8, and its run directory."""
    tmp = tmp_path_factory.mktemp("reference")
    config = _write(tmp, SMALL)
    store = _runner.run(config, tmp / "run", quiet=True, log=lambda *_: None)
    return config, store.path, _results(store.path)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunk_size_does_not_change_results(reference, tmp_path, chunk):
    config, _, expected = reference
    store = _runner.run(config, tmp_path / "run", chunk=chunk, quiet=True, log=lambda *_: None)
    _assert_same(_results(store.path), expected)


def test_vmap_width_follows_the_slice_size_and_does_not_change_results(reference, tmp_path, monkeypatch):
    """On one CPU device a chunk is vmapped ``cpu_vmap_width`` realizations at a time (lax.map over the groups):
    the rule's values, and a run whose chunks go one realization at a time equals the reference, whose chunks were
    vmapped whole (its slices are 4 and 6 orbitals wide), to 1e-13."""
    assert [_ensemble.cpu_vmap_width(n) for n in (4, 8, 16, 32, 64, 128)] == [64, 16, 4, 2, 2, 1]
    assert (_ensemble.cpu_vmap_width(8, per_realization=3), _ensemble.cpu_vmap_width(64, per_realization=3)) == (5, 1)
    config, _, expected = reference
    monkeypatch.setattr(_ensemble, "cpu_vmap_width", lambda slice_size, per_realization=1: 1)
    _ensemble._batched.cache_clear()
    try:
        store = _runner.run(config, tmp_path / "run", chunk=8, quiet=True, log=lambda *_: None)
    finally:
        _ensemble._batched.cache_clear()
    _assert_same(_results(store.path), expected)


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_count_does_not_change_results(reference, tmp_path, workers):
    """Chunks computed one at a time or three at once in threads (the reference ran with the default, one per
    core) give the same arrays; the metadata records the count."""
    config, _, expected = reference
    store = _runner.run(config, tmp_path / "run", chunk=7, workers=workers, quiet=True, log=lambda *_: None)
    _assert_same(_results(store.path), expected, tol=0)
    assert store.metadata()["attempts"][-1]["workers"] == workers


def test_default_workers_is_one_per_core_on_one_cpu_device():
    import jax

    cpu = jax.devices("cpu")[:1]
    assert _ensemble.default_workers(cpu) == len(os.sched_getaffinity(0))
    assert _ensemble.default_workers(cpu * 2) == 1  # sharded: the devices are the parallelism
    with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
        _ensemble.ChunkRunner(lambda i: {"x": i}, None, cpu, 4, workers=0)


def test_grid_batch_does_not_change_results_or_the_hash(reference, tmp_path):
    """grid_batch = 2 (the three fluxes of the strip in batches of 2, lax.map over the batches) gives the same
    arrays as the whole grid vmapped, and the same config hash, so a run can resume under either setting."""
    config, _, expected = reference
    text = pathlib.Path(config).read_text().replace("[ensembles.strip]\n", "[ensembles.strip]\ngrid_batch = 2\n")
    store = _runner.run(_write(tmp_path, text), tmp_path / "run", quiet=True, log=lambda *_: None)
    assert store.config["ensembles"]["strip"]["grid_batch"] == 2
    _assert_same(_results(store.path), expected)
    plain = _config.load(config)
    assert _config.config_hash(store.config) == _config.config_hash(plain)


def test_an_ensemble_can_set_its_own_realization_count(reference, tmp_path):
    """ensembles.NAME.realizations overrides run.realizations; realization r is the same draw in both runs."""
    config, _, expected = reference
    text = pathlib.Path(config).read_text().replace("[ensembles.rashba]\n", "[ensembles.rashba]\nrealizations = 6\n")
    store = _runner.run(_write(tmp_path, text), tmp_path / "run", quiet=True, log=lambda *_: None)
    assert store.config["ensembles"]["strip"]["realizations"] == 20  # the default is written out
    assert "realizations = 6" in (store.path / "config.toml").read_text()
    got = _results(store.path)
    assert got["rashba/conductance"].shape == (6,) and got["strip/conductance"].shape == (20, 3)
    np.testing.assert_array_equal(got["rashba/conductance"], expected["rashba/conductance"][:6])
    np.testing.assert_array_equal(got["strip/conductance"], expected["strip/conductance"])


def test_one_and_four_devices_agree(reference, tmp_path):
    """Sharding over 4 host devices (a subprocess with XLA_FLAGS) gives the same arrays as 1 device."""
    config, _, expected = reference
    for devices, chunk in ((4, 7), (4, 64), (1, 7)):
        out = tmp_path / f"d{devices}c{chunk}"
        result = _cli(["run", str(config), "--out", str(out), "--quiet", "--chunk", str(chunk), "--devices", str(devices)], devices=4)
        assert result.returncode == 0, result.stderr
        meta = json.loads((out / "metadata.json").read_text())
        assert meta["attempts"][-1]["devices_used"] == devices and meta["environment"]["local_devices"] == 4
        _assert_same(_results(out), expected)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed(reference, tmp_path):
    """Two local processes joined by jax.distributed (CPU, gloo), one device each, write their own shards
    into one run directory; process 0 assembles the same arrays as a single process."""
    config, _, expected = reference
    out = tmp_path / "multi"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "difftransport", "run", str(config), "--out", str(out), "--quiet",
             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
            env=_env(1), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    files = {p.name.split("-")[0] for p in (out / "chunks" / "strip").iterdir()}
    assert files == {"p0", "p1"}  # each process wrote its own shards
    assert json.loads((out / "metadata.json").read_text())["environment"]["processes"] == 2
    _assert_same(_results(out), expected)


KILL_CONFIG = """
[run]
seed = 1
realizations = 400
chunk = 1

[ensembles.wl]
[ensembles.wl.sample]
lattice = "strip"
width = 6
length = 20
[ensembles.wl.model]
energy = 0.5
[ensembles.wl.disorder]
strength = 1.0
[ensembles.wl.grid]
flux = [0.0, 0.01]
"""


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    config = _write(tmp_path, KILL_CONFIG, "kill.toml")
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "difftransport", "run", str(config), "--out", str(out), "--quiet"],
                            env=_env(1), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "chunks" / "wl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if chunks.exists() and sum(1 for p in chunks.iterdir() if p.suffix == ".npz" and p.name.startswith("p")) >= 5:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = [p for p in chunks.iterdir() if p.name.startswith("p")]
    assert 5 <= len(saved) < 400, "the run must have been killed part-way"
    assert not (out / "results").exists()
    assert json.loads((out / "metadata.json").read_text())["status"] == "running"

    resumed = _cli(["run", str(config), "--out", str(out), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming:" in resumed.stdout
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete" and len(meta["attempts"]) == 2 and meta["attempts"][1]["resumed"]

    clean = _runner.run(config, tmp_path / "clean", chunk=64, quiet=True, log=lambda *_: None)
    _assert_same(_results(out), _results(clean.path))


def test_changed_config_is_refused(reference, tmp_path, capsys):
    config, run_dir, _ = reference
    changed = _write(tmp_path, SMALL.replace("energy = 0.7", "energy = 0.8"), "changed.toml")
    assert cli_main(["run", str(changed), "--out", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds results of a different config; refusing to mix them" in err
    assert "ensembles.strip.model.energy: 0.7 -> 0.8" in err
    # A different chunk size or title is not a different config.
    rechunked = _write(tmp_path, SMALL.replace("chunk = 8", "chunk = 3"), "rechunk.toml")
    assert cli_main(["run", str(rechunked), "--out", str(run_dir), "--quiet"]) == 0


def test_run_directory_format(reference):
    config, run_dir, raw = reference
    assert (run_dir / "config.toml").exists() and (run_dir / "figures" / "overview.png").exists()
    normalized = _config.load(run_dir / "config.toml")  # the stored config is complete and valid
    assert normalized == json.loads((run_dir / "config.json").read_text())["config"]
    assert normalized["ensembles"]["strip"]["model"]["hopping"] == 1.0  # defaults written out
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["seed"] == 3 and meta["environment"]["x64"]
    assert meta["environment"]["jax"] and meta["attempts"][0]["wall_seconds"] > 0
    with np.load(run_dir / "results" / "strip.npz") as data:
        g = data["conductance"]
        assert g.shape == (20, 3) and data["transmission_eigenvalues"].shape == (20, 3, 4)
        np.testing.assert_allclose(data["conductance__mean"], g.mean(0), rtol=1e-14)
        np.testing.assert_allclose(data["conductance__stderr"], g.std(0, ddof=1) / np.sqrt(20), rtol=1e-14)
        np.testing.assert_allclose(data["conductance__mean_log"], np.log(g).mean(0), rtol=1e-14)
        assert data["conductance__hist_counts"].shape == (3, 40) and np.all(data["conductance__hist_counts"].sum(-1) == 20)
        np.testing.assert_array_equal(data["grid_flux"], [0.0, 0.01, 0.03])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.allclose(summary["strip"]["observables"]["conductance"]["mean"], raw["strip/conductance"].mean(0))


def test_realization_depends_only_on_seed_and_index(reference):
    """Realization 13, computed alone through the pure function, equals row 13 of the run."""
    config, _, raw = reference
    entry = _config.load(config)["ensembles"]["strip"]
    alone = _ensemble.realization_function(entry, seed=3)(13)
    np.testing.assert_allclose(alone["conductance"], raw["strip/conductance"][13], atol=1e-13)


def test_plot_and_info_commands(reference, capsys):
    _, run_dir, _ = reference
    (run_dir / "figures" / "overview.png").unlink()
    assert cli_main(["plot", str(run_dir)]) == 0
    assert (run_dir / "figures" / "overview.png").exists()
    assert cli_main(["info"]) == 0
    out = capsys.readouterr().out
    assert "jax" in out and "devices" in out


VALID = {
    "run": {"realizations": 4},
    "ensembles": {"a": {"sample": {"lattice": "strip", "width": 4, "length": 5}, "model": {"energy": 0.5}}},
}


def _with(path, value):
    """VALID with the entry at a dotted path replaced (value None deletes it)."""
    config = json.loads(json.dumps(VALID))
    *parents, last = path.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return config


@pytest.mark.parametrize("path, value, match", [
    ("run.realizations", 0, r"run.realizations = 0 is out of range: must be an integer >= 1"),
    ("run.realizations", "many", r"run.realizations = 'many' has the wrong type: must be an integer"),
    ("run.seeds", 1, r"run.seeds is not a known key; allowed keys here: \['chunk', 'realizations', 'seed', 'title'\]"),
    ("run.chunk", -4, r"run.chunk = -4 is out of range"),
    ("ensembles.a.realizations", 0, r"ensembles.a.realizations = 0 is out of range: must be an integer >= 1"),
    ("extra", {}, r"extra is not a known section; allowed: \['analysis', 'ensembles', 'run'\]"),
    ("analysis", 3, r"analysis must be a table"),
    ("ensembles.a.sample.lattice", "kagome", r"ensembles.a.sample.lattice = 'kagome' is not allowed: must be one of \['chain', 'strip'"),
    ("ensembles.a.sample.width", None, r"ensembles.a.sample.width is missing: lattice 'strip' needs \['width'\]"),
    ("ensembles.a.sample.height", 3, r"ensembles.a.sample.height = 3 does not apply to lattice 'strip'"),
    ("ensembles.a.sample.length", 2.5, r"ensembles.a.sample.length = 2.5 has the wrong type: must be an integer"),
    ("ensembles.a.model.energy", None, r"ensembles.a.model.energy is missing"),
    ("ensembles.a.model.energy", True, r"ensembles.a.model.energy = True has the wrong type: must be an integer or a number"),
    ("ensembles.a.model.tau_phi", -1.0, r"ensembles.a.model.tau_phi = -1.0 is out of range: must be an integer or a number > 0"),
    ("ensembles.a.model.rashba", 0.2, r"ensembles.a.sample.spinful = false, but \['rashba'\] act on spin"),
    ("ensembles.a.model.fluxx", 0.2, r"ensembles.a.model.fluxx is not a known key"),
    ("ensembles.a.observables", ["conductance", "noise"], r"contains 'noise': allowed observables are"),
    ("ensembles.a.dephasing", "fast", r"ensembles.a.dephasing = 'fast' is not allowed"),
    ("ensembles.a.dephasing", "buttiker", r"ensembles.a.dephasing = 'buttiker' needs model.tau_phi"),
    ("ensembles.a.disorder.distribution", "cauchy", r"distribution = 'cauchy' is not allowed: must be one of \['box', 'gaussian'\]"),
    ("ensembles.a.disorder.strength", -1, r"ensembles.a.disorder.strength = -1 is out of range: must be an integer or a number >= 0"),
    ("ensembles.a.grid.flux", [], r"ensembles.a.grid.flux = \[\] must be a non-empty list of numbers"),
    ("ensembles.a.grid.flux", {"start": 0, "stop": 1}, r"ensembles.a.grid.flux.num is missing"),
    ("ensembles.a.grid.width", [4, 8], r"ensembles.a.grid.width is not a grid parameter"),
    ("ensembles.a.grid.tau_phi", [10.0, 0.0], r"tau_phi must be > 0"),
    ("ensembles.a.model.exchange", 0.3, r"act on spin"),
    ("ensembles.a.plot.x", "energy", r"ensembles.a.plot.x = 'energy' is not a grid axis"),
    ("ensembles", {}, r"ensembles is missing: define at least one"),
])
def test_bad_configs_are_rejected(path, value, match):
    with pytest.raises(_config.ConfigError, match=match):
        _config.validate(_with(path, value))


def test_config_errors_name_the_line(tmp_path):
    text = SMALL.replace("width = 4", "width = 0")
    path = _write(tmp_path, text, "bad.toml")
    line = text.splitlines().index("width = 0") + 1
    with pytest.raises(_config.ConfigError, match=rf"bad.toml:{line}: ensembles.strip.sample.width = 0 is out of range"):
        _config.load(path)
    path = _write(tmp_path, "[run\nrealizations = 3", "broken.toml")
    with pytest.raises(_config.ConfigError, match="not valid TOML"):
        _config.load(path)


def test_cli_reports_config_errors(tmp_path, capsys):
    path = _write(tmp_path, SMALL.replace("lattice = \"strip\"\nwidth = 3", "lattice = \"strip\"\nwidth = 3\ncolor = 1"), "c.toml")
    assert cli_main(["run", str(path), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "ensembles.rashba.sample.color is not a known key" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # validation happens before anything is written


# configs of the ensemble runner (return_probability.toml has its own schema, validated by its script)
_ENSEMBLE_CONFIGS = [p for p in sorted((ROOT / "configs").glob("*.toml")) if "observables =" in p.read_text()]


@pytest.mark.parametrize("path", _ENSEMBLE_CONFIGS, ids=lambda p: p.stem)
def test_shipped_ensemble_configs_are_valid(path):
    """Every experiment config in configs/ passes validation, and builds every ensemble's sample."""
    config = _config.load(path)
    assert config["ensembles"]
    for entry in config["ensembles"].values():
        assert _ensemble.make_sample(entry["sample"]).length == entry["sample"]["length"]


def test_shared_leads_equal_leads_computed_per_realization(reference):
    """An entry without a grid or random twist computes its leads once (``clean_leads``) instead of in every
    chunk: its realizations equal observe() of the same disorder, which computes them itself, to 1e-13."""
    config, _, raw = reference
    entry = _config.load(config)["ensembles"]["rashba"]
    sample = _ensemble.make_sample(entry["sample"])
    model = dt.Model(**{k: v for k, v in entry["model"].items() if v is not None})
    for r in (0, 7):
        disorder = dt.draw_disorder(jax.random.fold_in(jax.random.key(3), r), sample, strength=1.0)
        direct = dt.observe(sample, model, disorder)["conductance"]
        np.testing.assert_allclose(raw["rashba/conductance"][r], direct, rtol=0, atol=1e-13)
