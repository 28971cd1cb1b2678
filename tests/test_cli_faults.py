"""Faults of ``difftransport run``: a second run on a locked directory, ``kill -9`` at random points, a failed
write, damaged files; and the mistakes a user makes, each answered by one line ``error: ...`` and exit code 2
with nothing written."""

import errno
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from difftransport._runs import config as _config
from difftransport._runs import runner as _runner
from difftransport._runs import store as _store
from difftransport._cli import main as cli_main

ROOT = pathlib.Path(__file__).parents[1]

# 32 realizations in chunks of 2: sixteen chunk files of a 4 x 8 strip at two fluxes (a fraction of a second).
TINY = """
[run]
seed = 5
realizations = 32
chunk = 2

[ensembles.wl]
observables = ["conductance"]
[ensembles.wl.sample]
lattice = "strip"
width = 4
length = 8
[ensembles.wl.model]
energy = 0.5
[ensembles.wl.disorder]
strength = 1.5
[ensembles.wl.grid]
flux = [0.0, 0.02]
"""


def _quiet(*_):
    pass


def _results(run_dir):
    out = {}
    for path in sorted((pathlib.Path(run_dir) / "results").glob("*.npz")):
        with np.load(path) as data:
            out.update({f"{path.stem}/{key}": data[key] for key in data.files})
    return out


def _assert_identical(a, b):
    """Bit for bit: every realization is a pure function of (seed, index), and a resume computes the missing
    realizations in the same batches of two as an uninterrupted run."""
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _chunks(run_dir):
    d = pathlib.Path(run_dir) / "chunks" / "wl"
    return sorted(p for p in d.iterdir() if p.name.startswith("p") and p.suffix == ".npz") if d.exists() else []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config path, results of an uninterrupted in-process run, its run directory)."""
    tmp = tmp_path_factory.mktemp("tiny")
    config = tmp / "tiny.toml"
    config.write_text(TINY)
    store = _runner.run(config, tmp / "reference", quiet=True, log=_quiet)
    return config, _results(store.path), store.path


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- the lock ---------------------------------------------------------------------------------------------


def test_directory_lock_excludes_and_names_the_holder(tmp_path):
    run_dir = tmp_path / "a" / "b"
    with _store.directory_lock(run_dir) as lock:
        assert lock == run_dir / ".lock" and lock.read_text().strip() == str(os.getpid())
        # flock excludes per open file, so a second open in this process conflicts like another process.
        with pytest.raises(_store.DirectoryLocked, match=rf"^{run_dir} is in use by another run \(pid {os.getpid()} "):
            with _store.directory_lock(run_dir):
                pass
    with _store.directory_lock(run_dir):  # released on exit
        pass


def test_a_second_run_on_a_locked_directory_refuses_or_waits(tiny, tmp_path, capsys):
    """A run of a different config while another run holds the directory refuses (exit 2, naming the
    directory and the holder's pid) and writes nothing; with --wait it runs once the lock is free."""
    config, expected, _ = tiny
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("energy = 0.5", "energy = 0.6"))
    out = tmp_path / "run"
    with _store.directory_lock(out):
        assert cli_main(["run", str(other), "--out", str(out), "--quiet"]) == 2
    line = _error_line(capsys)
    assert f"{out} is in use by another run (pid {os.getpid()}" in line and "--wait" in line
    assert sorted(p.name for p in out.iterdir()) == [".lock"]

    holder = _store.directory_lock(out)
    holder.__enter__()
    release = threading.Timer(1.0, holder.__exit__, (None, None, None))
    release.start()
    started = time.perf_counter()
    assert cli_main(["run", str(config), "--out", str(out), "--quiet", "--wait"]) == 0
    assert time.perf_counter() - started >= 1.0
    release.join()
    _assert_identical(_results(out), expected)


# -- kill -9, failed writes, damaged files ----------------------------------------------------------------


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_kill_9_at_random_points_then_resume_equals_uninterrupted(tiny, tmp_path):
    """kill -9 after a random number of chunks plus a random delay, then at a random time after the start
    (start-up, checks, claiming the directory, chunks or results): only complete files are left, and the
    resumed run's results equal an uninterrupted run's bit for bit."""
    config, expected, _ = tiny
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "difftransport", "run", str(config), "--out", str(out), "--quiet"]
    rng = np.random.default_rng(20240611)
    for attempt in range(2):
        proc = subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt == 0:
            target = int(rng.integers(1, 8))
            deadline = time.time() + 240
            while len(_chunks(out)) < target and proc.poll() is None and time.time() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            time.sleep(rng.uniform(0.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = _chunks(out)
        if attempt == 0:
            assert proc.returncode == -signal.SIGKILL and target <= len(saved) < 16, "killed part-way"
            assert json.loads((out / "metadata.json").read_text())["status"] == "running"
        for path in saved:  # every chunk file there is complete
            _store.check_npz(path)
    # The resume runs in this process, where the fixture's run compiled the same function already.
    assert cli_main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert not list(out.rglob(".tmp-*"))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["attempts"][-1]["resumed"]
    _assert_identical(_results(out), expected)


def test_a_failed_write_loses_nothing(tiny, tmp_path, monkeypatch, capsys):
    """The disk fills up while the fourth chunk is written: the run stops with one line naming the file
    and the cause, keeps three complete chunks and no temporary file; the rerun completes identically."""
    config, expected, _ = tiny
    out = tmp_path / "full"
    real_savez = np.savez
    calls = []

    def savez(file, **arrays):
        calls.append(file)
        if len(calls) <= 3:
            return real_savez(file, **arrays)
        with open(file, "wb") as fh:  # a partial file, as a full disk leaves it
            fh.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))

    monkeypatch.setattr(np, "savez", savez)
    assert cli_main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    line = _error_line(capsys)
    assert line == (f"error: {out / 'chunks' / 'wl' / 'p0-r00000006-00000007.npz'}: No space left on device; the "
                    "finished chunks are saved: fix this and rerun the same command to resume")
    assert len(_chunks(out)) == 3 and not list(out.rglob(".tmp-*"))
    monkeypatch.setattr(np, "savez", real_savez)
    assert cli_main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    _assert_identical(_results(out), expected)


def test_damaged_chunk_is_moved_aside_and_recomputed(tiny, tmp_path):
    config, expected, reference = tiny
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    shutil.rmtree(out / "results")
    damaged = _chunks(out)[2]
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated
    (out / "chunks" / "wl" / ".tmp-orphan.npz").write_bytes(b"left by a kill")
    lines = []
    _runner.run(config, out, quiet=True, log=lines.append)
    assert lines[0] == f"removed 1 temporary file(s) an interrupted run left in {out}"
    assert lines[1].startswith(f"warning: {damaged} is damaged (") and lines[1].endswith(
        f"moved it aside to {damaged.name}.damaged, recomputing its realizations")
    assert lines[2] == "[wl] resuming: 30 of 32 realizations already stored"
    assert (out / "chunks" / "wl" / f"{damaged.name}.damaged").exists() and damaged.exists()
    _assert_identical(_results(out), expected)


def test_damaged_config_or_metadata(tiny, tmp_path, capsys):
    """A damaged config.json stops the run with one line naming it (the results cannot be matched to a
    config); a damaged metadata.json, a record of attempts only, is moved aside with a warning."""
    config, expected, reference = tiny
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "config.json").write_text('{"hash": "12')
    assert cli_main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    assert _error_line(capsys) == (
        f"error: {out / 'config.json'} is damaged (Unterminated string starting at: line 1 column 10 (char 9)), "
        f"so the results in {out} cannot be matched to a config: restore the file, or use another --out "
        f"directory (or delete {out}) to start afresh")
    shutil.copy(reference / "config.json", out / "config.json")
    (out / "metadata.json").write_bytes(b"\x00\x00")
    lines = []
    _runner.run(config, out, quiet=True, log=lines.append)
    assert lines[0].startswith(f"warning: {out / 'metadata.json'} is damaged (") and lines[0].endswith(
        "moved it aside to metadata.json.damaged, starting a new record (the earlier attempts are in it)")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete" and len(meta["attempts"]) == 1
    _assert_identical(_results(out), expected)


def test_a_directory_without_realizations_is_reclaimed(tiny, tmp_path):
    """config.json of another config but no chunk and no result (a run stopped before its first chunk):
    a different config may take the directory over, saying so; with a chunk it is refused."""
    config, expected, _ = tiny
    out = tmp_path / "run"
    other = _config.load(config)
    other["ensembles"]["wl"]["model"]["energy"] = 0.9
    _store.RunDirectory(out, other).prepare()
    lines = []
    _runner.run(config, out, quiet=True, log=lines.append)
    assert lines[0] == (f"{out}: its config.json names a different config, but no realization of it is stored; "
                        "re-claiming the directory for this config")
    _assert_identical(_results(out), expected)
    with pytest.raises(_store.ConfigMismatch, match="ensembles.wl.model.energy: 0.5 -> 0.9"):
        _store.RunDirectory(out, other).prepare()
    (out / "config.json").unlink()
    with pytest.raises(_store.RunDirectoryError, match=rf"^{out} holds chunk or result files but no config.json"):
        _store.RunDirectory(out, other).prepare()


# -- mistakes: one line, exit 2, nothing written -----------------------------------------------------------


@pytest.mark.parametrize("model, grid, match", [
    ("energy = inf", "", r"tiny.toml: ensembles.wl cannot be run: model.energy is not finite \(NaN or inf\)\.$"),
    ("energy = 0.5\nhopping = 0", "",
     r"tiny.toml: ensembles.wl cannot be run: model.hopping is zero: leads carry no current\.$"),
    ("energy = 0.5", "hopping = [1.0, 0.0]",
     r"ensembles.wl cannot be run: model.hopping is zero: leads carry no current at the grid point hopping = 0.0$"),
    ("energy = 0.5\nflux = 0.1", "periodic",
     r"ensembles.wl cannot be run: (model.flux: )?with periodic transverse boundaries the Landau gauge needs "
     r"flux \* 4 to be an integer\.$"),
    ("energy = 0.5", "strength = [1.0, inf]", r"ensembles.wl cannot be run: disorder strength inf is not finite$"),
])
def test_runtime_checks_refuse_before_writing(tmp_path, capsys, model, grid, match):
    text = TINY.replace("[ensembles.wl.grid]\nflux = [0.0, 0.02]\n", "").replace("energy = 0.5", model)
    if grid == "periodic":
        text = text.replace("width = 4", 'width = 4\nboundary = "periodic"')
    elif grid:
        text += f"[ensembles.wl.grid]\n{grid}\n"
    config = tmp_path / "tiny.toml"
    config.write_text(text)
    assert cli_main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert re.search(match, _error_line(capsys))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["empty", "file", "under_a_file", "unwritable", "devices", "latin1", "missing"])
def test_bad_arguments_are_one_line_errors(tiny, tmp_path, capsys, case):
    config, _, _ = tiny
    afile = tmp_path / "afile"
    afile.write_text("")
    out, extra, expected = str(tmp_path / "run"), [], None
    if case == "empty":
        out, expected = "", "error: --out '' is empty: name a run directory (by default out/<config name>)"
    elif case == "file":
        out, expected = str(afile), f"error: --out {afile} is a file, not a directory: name a run directory"
    elif case == "under_a_file":
        out = str(afile / "run")
        expected = f"error: --out {out}: {afile} is a file, so the run directory cannot be created there"
    elif case == "unwritable":  # refused even to root
        out = "/proc/difftransport-run"
        expected = f"error: --out {out}: "  # "... is not writable", or for root "cannot create ..."
    elif case == "devices":
        extra = ["--devices", "5"]
        expected = "error: --devices 5: devices must be between 1 and the 1 local device(s), got 5"
    elif case == "latin1":
        config = tmp_path / "latin1.toml"
        config.write_bytes(TINY.replace('lattice = "strip"', '# Fermi energy in eV, caf\xe9\nlattice = "strip"')
                           .encode("latin-1"))
        line = TINY.splitlines().index('lattice = "strip"') + 1
        expected = f"error: {config}:{line}: not UTF-8 text (byte 0xe9 at offset "
    else:
        config = tmp_path / "nothere.toml"
        expected = f"error: {config}: cannot read the config: No such file or directory"
    assert cli_main(["run", str(config), "--out", out, "--quiet", *extra]) == 2
    assert _error_line(capsys).startswith(expected)
    assert not (tmp_path / "run").exists() and list(pathlib.Path.cwd().glob(".lock")) == []


def test_plot_errors_are_one_line(tiny, tmp_path, capsys):
    _, _, reference = tiny
    afile = tmp_path / "afile"
    afile.write_text("")
    for target, expected in [
        (tmp_path / "nothere", f"error: {tmp_path / 'nothere'} is not a run directory: it does not exist"),
        (afile, f"error: {afile} is not a run directory: it is a file"),
        (tmp_path, f"error: {tmp_path} is not a run directory: it has no config.json"),
    ]:
        assert cli_main(["plot", str(target)]) == 2
        assert _error_line(capsys) == expected
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    results = run_dir / "results" / "wl.npz"
    results.write_bytes(results.read_bytes()[:-200])
    assert cli_main(["plot", str(run_dir)]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {results} is damaged (") and line.endswith(
        "rerun the `difftransport run` command of this directory: it rewrites the results from the chunks")
