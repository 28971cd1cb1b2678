"""``difftransport scale`` loses no work: every ensemble chunk (beta) and transfer-matrix run (fss) is stored as
soon as it is computed, under the hash of the result-relevant config; a rerun resumes to the bit-identical
result; a failing fit leaves the data and says how to refit; ``--refit`` never mixes configs; one run at a time.

The studies are a tiny beta study (2 lengths x 6 strengths x 32 realizations), run once for the whole module
as the uninterrupted reference; the other runs reuse its compiled conductance and fit."""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport._cli import scale as _cli_scale
from difftransport._runs import study as _study
from test_scaling import _tiny_beta, _tiny_fss, _toml


STRENGTHS = [2.0, 3.0, 4.0, 5.0, 6.0, 8.0]


def _config(**ensemble):
    """test_scaling's tiny beta study on two lengths (one compile fewer) and six strengths (free: W is traced), so
    the fit (6 curves + 5 spline values) still has 12 points; two chunks of 16 per cell, 24 in all (batches of
    16 as in test_scaling, whose study then reuses the compiled conductances)."""
    config = _tiny_beta()
    config["ensemble"].update(lengths=[4, 6], strengths=STRENGTHS, realizations=32, chunk=16)
    config["ensemble"].update(ensemble)
    config["fit"].update(substeps=1)
    return config


def _main(config_path, out, *extra):
    parser = argparse.ArgumentParser()
    _cli_scale.add_arguments(parser)
    return _cli_scale.main(parser.parse_args([str(config_path), "--out", str(out), *extra]))


def _write(path, config):
    path.write_text(_toml(config))
    return path


def _chunks(out, config):
    store = out / "data" / _study.config_hash(_study.validate(config))[:16]
    return sorted(store.glob("L*.npz"))


def _result(summary):
    """A study's JSON without its one timing, the seconds of computation."""
    return {key: value for key, value in summary.items() if key != "seconds"}


def _fail_after(monkeypatch, count, error):
    """Make the (count + 1)-th chunk write raise ``error``: the run dies with ``count`` chunks stored."""
    real = _cli_scale._write_chunk
    calls = []

    def write(*args):
        if len(calls) == count:
            raise error
        calls.append(args)
        real(*args)

    monkeypatch.setattr(_cli_scale, "_write_chunk", write)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: (output folder, config path, its JSON)."""
    root = tmp_path_factory.mktemp("reference")
    path = _write(root / "study.toml", _config())
    assert _main(path, root / "out") == 0
    return root / "out", path, json.loads((root / "out" / "tiny_beta.json").read_text())


def test_interrupted_beta_study_resumes_to_the_identical_result(reference, tmp_path, monkeypatch, capsys):
    """A run that dies after 7 of its 24 chunks (here a write that fails; a kill leaves the same files) keeps
    those 7; the rerun computes only the other 17 and its JSON equals the uninterrupted run's exactly: every
    <ln g>, its error and variance, and the fit on them."""
    done, _, expected = reference
    path, out = _write(tmp_path / "study.toml", _config()), tmp_path / "out"
    _fail_after(monkeypatch, 7, OSError("No space left on device"))
    assert _main(path, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("difftransport scale: error: the beta study stopped (OSError: No "
                                                   "space left on device); the ensemble chunks computed so far are "
                                                   "stored in ")
    assert err.endswith(", and rerunning the same command reuses them.")
    stored = _chunks(out, _config())
    assert len(stored) == 7 and not (out / "tiny_beta.json").exists() and not (out / "config.toml").exists()
    before = {p: p.read_bytes() for p in stored}

    monkeypatch.undo()
    assert _main(path, out) == 0
    assert f"7 of 24 chunks stored in {_chunks(out, _config())[0].parent}; computing 17\n" in capsys.readouterr().out
    assert all(p.read_bytes() == data for p, data in before.items())  # read, not recomputed
    for mine, theirs in zip(_chunks(out, _config()), _chunks(done, _config()), strict=True):
        with np.load(mine) as a, np.load(theirs) as b:
            assert mine.name == theirs.name and np.array_equal(a["g"], b["g"]) and a["g"].dtype == np.float64
    resumed = json.loads((out / "tiny_beta.json").read_text())
    assert _result(resumed) == _result(expected)  # data, fit and config hash
    # The data are physical: at every L, stronger disorder gives a smaller <ln g>.
    mean = np.array(resumed["data"]["mean_log_g"])
    assert mean.shape == (6, 2) and np.all(np.diff(mean, axis=0) < 0)
    assert json.loads((out / "config.json").read_text())["hash"] == resumed["config_hash"]


def test_worker_count_does_not_change_a_beta_study(reference, tmp_path):
    """The reference ran its chunks one per core at once (ensemble.workers = 0, the default); one at a time gives
    the same chunk files and the same JSON (data, fit, hash)."""
    done, _, expected = reference
    config = _config(workers=1)
    assert _main(_write(tmp_path / "study.toml", config), tmp_path / "out") == 0
    for mine, theirs in zip(_chunks(tmp_path / "out", config), _chunks(done, _config()), strict=True):
        with np.load(mine) as a, np.load(theirs) as b:
            assert mine.name == theirs.name and np.array_equal(a["g"], b["g"])
    assert _result(json.loads((tmp_path / "out" / "tiny_beta.json").read_text())) == _result(expected)


def test_kill_9_at_a_random_chunk_resumes_to_the_identical_result(reference, tmp_path):
    """A real ``kill -9`` of a ``difftransport scale`` process after a random number of stored chunks (1-12 of
    24, drawn from a fixed seed): every stored chunk is whole, and the rerun's JSON equals the uninterrupted
    run's exactly (the nearest wrong answers, a lost or a doubled chunk, change <ln g> and the chunk count)."""
    _, _, expected = reference
    path, out = _write(tmp_path / "study.toml", _config()), tmp_path / "out"
    wait_for = int(np.random.default_rng(20261203).integers(1, 13))
    code = ("import sys; from difftransport._cli import main; "
            f"sys.exit(main(['scale', {str(path)!r}, '--out', {str(out)!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while len(_chunks(out, _config())) < wait_for and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    stored = _chunks(out, _config())
    assert 1 <= len(stored) < 24, len(stored)  # killed mid-run, not before or after
    for chunk in stored:
        with np.load(chunk) as data:
            assert np.all(np.isfinite(data["g"]))
    assert _main(path, out) == 0
    assert _result(json.loads((out / "tiny_beta.json").read_text())) == _result(expected)


def test_failing_fit_keeps_the_ensembles_and_says_how_to_refit(reference, tmp_path, monkeypatch, capsys):
    """A fit that raises after the ensembles: exit 2, one line naming the error, where the data are and how to
    refit; all 24 chunks stay; --refit then fits them without computing anything and gives the reference JSON."""
    from difftransport._core import scaling as _scaling

    _, _, expected = reference
    path, out = _write(tmp_path / "study.toml", _config()), tmp_path / "out"

    def broken(*args, **kwargs):
        raise FloatingPointError("singular normal matrix\n  (details on a second line)")

    monkeypatch.setattr(_scaling, "fit_beta", broken)
    assert _main(path, out) == 2
    err = capsys.readouterr().err
    store = out / "data" / expected["config_hash"][:16]
    assert err == (f"difftransport scale: error: the fit or figure failed (FloatingPointError: singular normal "
                   f"matrix); the ensembles are stored in {store}: change [fit] in {path} and rerun with --refit "
                   "(nothing is recomputed).\n")
    assert len(_chunks(out, _config())) == 24 and not (out / "tiny_beta.json").exists()

    monkeypatch.undo()
    monkeypatch.setattr(_cli_scale, "_write_chunk", lambda *a: pytest.fail("--refit computed a chunk"))
    assert _main(path, out, "--refit") == 0
    refit = json.loads((out / "tiny_beta.json").read_text())
    assert _result(refit) == _result(expected)


def test_refit_after_an_interrupted_changed_config_does_not_mix(reference, tmp_path, monkeypatch, capsys):
    """Finished run A, then B with other strengths interrupted by Ctrl-C: B's chunks go to their own folder, A's
    JSON and config copy stay; --refit with B refuses (incomplete), --refit with an unrun config names what
    differs from A, --refit with A fits A's ensembles (not B's); a damaged chunk is named, not used."""
    done, _, expected = reference
    out = tmp_path / "out"
    shutil.copytree(done, out)
    config_a = _config()
    config_b = _config(strengths=[2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    path_a, path_b = _write(tmp_path / "a.toml", config_a), _write(tmp_path / "b.toml", config_b)

    _fail_after(monkeypatch, 3, KeyboardInterrupt())
    assert _main(path_b, out) == 130
    assert capsys.readouterr().err == (f"difftransport scale: interrupted; the data computed so far are stored in "
                                       f"{out / 'data'}: rerun the same command to resume.\n")
    monkeypatch.undo()
    assert len(_chunks(out, config_b)) == 3 and len(_chunks(out, config_a)) == 24
    assert json.loads((out / "config.json").read_text())["hash"] == expected["config_hash"]  # still A's
    assert (out / "config.toml").read_bytes() == (done / "config.toml").read_bytes()
    assert json.loads((out / "tiny_beta.json").read_text()) == expected

    assert _main(path_b, out, "--refit") == 2
    assert "incomplete (3 of 24 chunks stored); rerun without --refit to finish them." in capsys.readouterr().err
    assert _main(_write(tmp_path / "c.toml", _config(realizations=33)), out, "--refit") == 2
    assert "differs: ensemble.realizations: 32 -> 33); rerun without --refit." in capsys.readouterr().err

    config_a["fit"].update(asymptote="none")  # a fit key: same ensembles, same folder
    assert _main(_write(path_a, config_a), out, "--refit") == 0
    refit = json.loads((out / "tiny_beta.json").read_text())
    assert refit["data"] == expected["data"] and refit["data"]["strengths"] == STRENGTHS
    assert "one_loop" in expected["fit"] and "one_loop" not in refit["fit"]  # the new [fit] was used

    bad = _chunks(out, config_a)[0]
    np.savez(bad, g=np.ones(3), length=np.int64(4), strength=np.float64(2.0), seconds=np.float64(0.0))
    assert _main(path_a, out, "--refit") == 2
    assert f"error: {bad}: stored chunk holds (3,) float64 values" in capsys.readouterr().err
    bad.write_bytes(b"not an npz file")
    assert _main(path_a, out, "--refit") == 2
    assert f"error: {bad}: cannot be read (ValueError: " in capsys.readouterr().err


def test_one_run_per_folder_and_cheap_refusals(tmp_path, capsys):
    """A folder held by another run is refused (before any work), or waited for with --wait; --refit without data,
    --refit of an fss study, a config that is not UTF-8 (named with its line) and a data folder of another config
    are one-line errors."""
    from difftransport._runs.store import directory_lock

    path, out = _write(tmp_path / "study.toml", _config()), tmp_path / "out"
    with directory_lock(out):
        assert _main(path, out) == 2
    assert "is in use by another run" in capsys.readouterr().err
    assert not (out / "data").exists()

    assert _main(path, tmp_path / "nothing", "--refit") == 2
    assert "--refit: no stored data in" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()
    (out / "data").mkdir()
    assert _main(_write(tmp_path / "fss.toml", _tiny_fss()), out, "--refit") == 2
    assert "--refit applies to beta studies (study.kind = 'beta') only." in capsys.readouterr().err

    # --wait queues behind the holder instead of refusing, then goes on (here to the refit's own refusal).
    held = contextlib.ExitStack()
    held.enter_context(directory_lock(out))
    begin = time.perf_counter()
    threading.Timer(0.5, held.close).start()
    assert _main(path, out, "--refit", "--wait") == 2
    assert time.perf_counter() - begin >= 0.5
    assert "--refit: no ensembles of this config in" in capsys.readouterr().err

    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe[study]")
    assert _main(tmp_path / "binary.toml", out) == 2
    assert f"error: {tmp_path / 'binary.toml'}:1: not UTF-8 text (byte 0xff at offset 0)" in capsys.readouterr().err

    store = out / "data" / _study.config_hash(_study.validate(_config()))[:16]
    store.mkdir()
    (store / "config.json").write_text(json.dumps({"hash": "0" * 64, "config": {}}))
    assert _main(path, out) == 2
    assert "holds data of another config (hash '0000" in capsys.readouterr().err


def test_config_hash_covers_what_changes_numbers():
    """workers, method, [fit] and [study] change no number and keep the hash; seed, chunk and a strength change
    it."""
    base = _study.config_hash(_study.validate(_config()))
    for edit in (lambda c: c["ensemble"].update(workers=2), lambda c: c["ensemble"].update(method="transfer"),
                 lambda c: c["fit"].update(knots=5),
                 lambda c: c["study"].update(title="other", figure="other")):
        config = _config()
        edit(config)
        assert _study.config_hash(_study.validate(config)) == base
    for edit in (lambda c: c["ensemble"].update(seed=1), lambda c: c["ensemble"].update(chunk=8),
                 lambda c: c["ensemble"].update(strengths=STRENGTHS[:-1] + [8.5]),
                 lambda c: c["system"].update(energy=0.25)):
        config = _config()
        edit(config)
        assert _study.config_hash(_study.validate(config)) != base


def test_fss_run_continues_bit_identically_from_the_store(tmp_path):
    """A transfer-matrix run stored after a stage and read back continues to exactly the numbers of the run kept
    in memory (the state round-trips bit for bit)."""
    from difftransport._core.tmm import lyapunov_exponents

    sample = dt.Sample(dt.strip(3), 4096)
    model = dt.Model(energy=0.5)
    key = jax.random.key(3)

    def run(rtol, resume):
        return lyapunov_exponents(key, sample, model, strength=jnp.asarray(4.0), rtol=rtol, chunk=64, warmup=64,
                                  qr_every=8, min_batches=4, resume=resume)

    first = run(0.2, None)
    _cli_scale._write_spectrum(tmp_path / "s1.npz", first, 1.5)
    read, seconds = _cli_scale._read_spectrum(tmp_path / "s1.npz")
    assert seconds == 1.5
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(read), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    in_memory, resumed = run(0.05, first), run(0.05, read)
    assert int(resumed.slices) > int(first.slices)  # the second stage did continue
    for a, b in zip(jax.tree.leaves(in_memory), jax.tree.leaves(resumed), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_failing_fss_study_keeps_its_runs(tmp_path, monkeypatch, capsys):
    """An fss study that stops is a one-line error saying where its runs are and that a rerun reuses them; a
    stored run that cannot be read is named."""
    from difftransport._core import tmm as _tmm

    def broken(*args, **kwargs):
        raise RuntimeError("XLA ran out of memory")

    monkeypatch.setattr(_tmm, "lyapunov_exponents", broken)
    out = tmp_path / "out"
    assert _main(_write(tmp_path / "fss.toml", _tiny_fss()), out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("difftransport scale: error: the fss study stopped (RuntimeError: "
                                                   "XLA ran out of memory); the transfer-matrix runs computed so far "
                                                   "are stored in ")
    assert "rerunning the same command (with [fit] changed if a fit failed) reuses them." in err

    damaged = out / "data" / _study.config_hash(_study.validate(_tiny_fss()))[:16] / "s1-M0006-W000.npz"
    damaged.write_bytes(b"")  # the first run of stage 1 (widest strip first)
    assert _main(tmp_path / "fss.toml", out) == 2
    assert f"error: {damaged}: cannot be read (" in capsys.readouterr().err


def test_beta_study_with_too_few_points_reports_raw_slopes(tmp_path):
    """One strength on two lengths is too few points for the spline fit (knots + 3 coefficients and one start):
    the study says so and still reports the raw slope between the lengths (the same as finite_difference_beta of
    its table). The module's compiled conductances are reused (same lengths, seed and chunk)."""
    config = _config(strengths=[2.0], realizations=16)
    out = tmp_path / "out"
    assert _main(_write(tmp_path / "few.toml", config), out) == 0
    summary = json.loads((out / "tiny_beta.json").read_text())
    fit = summary["fit"]
    assert fit["skipped"].startswith("2 points for 6 parameters") and "chi2" not in fit
    x, b, s = dt.finite_difference_beta([4, 6], summary["data"]["mean_log_g"], summary["data"]["stderr_log_g"])
    np.testing.assert_allclose(fit["raw_slopes"]["beta"], b, rtol=1e-12)
    np.testing.assert_allclose(fit["raw_slopes"]["stderr"], s, rtol=1e-12)
    assert fit["raw_slopes"]["lengths"] == [[4, 6]] and (out / "tiny_beta.png").exists()
