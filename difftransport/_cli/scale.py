"""``difftransport scale CONFIG.toml [--out DIR] [--refit] [--wait]``: run a scaling study and write figures and a JSON.

Two kinds of study (``[study] kind``):

* ``"fss"``: transfer-matrix reduced localization lengths Lambda(W, M) = lambda_M / M for every width M and
  disorder W, refined in stages (each stage continues the same realizations to a smaller target error), a
  Slevin-Ohtsuki finite-size-scaling fit after every stage and for every largest width, a data collapse.
* ``"beta"``: conductance ensembles of square (2D) or cubic (3D) samples, <ln g> against L for many W, and
  the scaling function beta(ln g) fitted under single-parameter scaling, against the one-loop asymptote.

Every key of the config is required (no hidden defaults); unknown keys, wrong types and out-of-range
values are errors naming the key and the value. The library does no I/O: everything written is written here.

Outputs in ``--out`` (default ``out/<config name>``)::

    OUT/data/<hash>/config.toml, config.json    the config as given, and {"hash", "config"} (validated)
    OUT/data/<hash>/L{L}-W{i}-r{first}-{end}.npz  beta: conductances g of realizations first .. end-1 of the
                                                 L x L (x L) samples at strength index i, and their seconds
    OUT/data/<hash>/s{stage}-M{M}-W{i}.npz       fss: the transfer-matrix run (width M, strength index i) as
                                                 it stood after that stage, with everything needed to continue
    OUT/<figure>.png, OUT/<figure>.json          the figure; data, fits, timings and "config_hash"
    OUT/config.toml, OUT/config.json             the config of that JSON, and {"hash", "config"}

``<hash>`` is the first 16 hex digits of the SHA-256 of the result-relevant part of the config ([system]
and [ensemble] or [tmm], all but ``workers``): a config that differs in anything that changes the numbers
stores its data in another folder, so old and new data never mix, and the old data stay where they are.
Each file is written to a temporary name and renamed (``_store.atomic_savez``), as soon as it is computed:
an interrupted run (a failing fit, Ctrl-C, ``kill -9``) loses at most the chunks in flight, and rerunning
the same command skips what is stored and reaches the same result, bit for bit, as an uninterrupted run.
``--refit`` (beta studies) redoes the fit and the figure from the data stored under the given config's
hash, which therefore match its [system] and [ensemble]; it refuses when they are missing or incomplete,
naming what differs from the config of the last finished run. A lock on ``OUT`` (``_store.directory_lock``)
keeps two runs out of one folder at a time; ``--wait`` queues behind the other run instead of refusing.
The JSON and the top-level config copy are written only when a run finishes, so an interrupted run with a
changed config leaves the last finished run's pair in place; the JSON's "config_hash" ties it to its data.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import hashlib
import io
import json
import math
import pathlib
import sys
import threading
import time
import tomllib
import zipfile

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Config schema: section -> key -> (type, check, what is allowed)


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _positive_ints(v):
    return len(v) > 0 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)


def _positive_numbers(v):
    return len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v)


def _non_negative_numbers(v):
    return len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v)


def _increasing(v):
    return all(b > a for a, b in zip(v, v[1:]))


_STUDY = {
    "kind": (str, lambda v: v in ("fss", "beta"), "'fss' or 'beta'"),
    "title": (str, lambda v: len(v) > 0, "a non-empty string"),
    "figure": (str, lambda v: len(v) > 0 and all(c.isalnum() or c in "_-" for c in v),
               "a file stem of letters, digits, '_' and '-'"),
}
_SYSTEM = {
    "dimension": (int, lambda v: v in (1, 2, 3), "1, 2 or 3"),
    "boundary": (str, lambda v: v in ("hardwall", "periodic"), "'hardwall' or 'periodic'"),
    "spinful": (bool, lambda v: True, "true or false"),
    "su2": (bool, lambda v: True, "true or false"),
    "energy": (float, math.isfinite, "a finite number"),
    "hopping": (float, lambda v: math.isfinite(v) and v != 0, "a finite non-zero number"),
    "flux": (float, math.isfinite, "a finite number (0 for no field)"),
    "distribution": (str, lambda v: v in ("box", "gaussian"), "'box' or 'gaussian'"),
}
_TMM = {
    "widths": (list, lambda v: _positive_ints(v) and _increasing(v), "increasing positive integers"),
    "strengths": (list, lambda v: _non_negative_numbers(v) and _increasing(v), "increasing numbers >= 0"),
    "rtol": (list, _positive_numbers, "one positive relative error per width"),
    "stages": (list, lambda v: _positive_numbers(v) and all(b < a for a, b in zip(v, v[1:])) and v[-1] == 1,
               "decreasing factors ending with 1 (stage k stops at rtol * stages[k])"),
    "max_slices": (list, _positive_ints, "one positive integer per width"),
    "chunk": (int, _positive, "a positive integer (slices per statistics batch)"),
    "warmup": (int, _non_negative, "an integer >= 0"),
    "qr_every": (int, _positive, "a positive integer"),
    "min_batches": (int, lambda v: v >= 2, "an integer >= 2"),
    "seed": (int, _non_negative, "an integer >= 0"),
    "workers": (int, _positive, "a positive integer (parallel runs)"),
}
_FSS_FIT = {
    "relevant_order": (int, lambda v: v >= 1, "an integer >= 1"),
    "irrelevant_order": (int, _non_negative, "an integer >= 0 (0: no correction to scaling)"),
    "relevant_field_order": (int, lambda v: v >= 1, "an integer >= 1"),
    "irrelevant_field_order": (int, _non_negative, "an integer >= 0"),
    "irrelevant_exponent": ((str, float), lambda v: v == "fit" or (not isinstance(v, str) and v < 0),
                            "'fit' or a fixed negative number"),
    "critical_guess": (float, _positive, "a positive number"),
    "exponent_guess": (float, _positive, "a positive number"),
    "irrelevant_guess": (float, lambda v: v < 0, "a negative number"),
    "min_width": (int, _positive, "a positive integer (smallest width in the main fit)"),
    "bootstrap": (int, _non_negative, "an integer >= 0"),
    "confidence": (float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "max_steps": (int, _positive, "a positive integer"),
}
_ENSEMBLE = {
    "lengths": (list, lambda v: _positive_ints(v) and _increasing(v) and len(v) >= 2,
                "at least two increasing positive integers (L: L x L or L x L x L samples)"),
    "strengths": (list, lambda v: _non_negative_numbers(v) and _increasing(v), "increasing numbers >= 0"),
    "realizations": (int, lambda v: v >= 2, "an integer >= 2"),
    "chunk": (int, _positive, "a positive integer (realizations per vmapped batch)"),
    "seed": (int, _non_negative, "an integer >= 0"),
    "contact_correction": (bool, lambda v: True, "true or false"),
    "workers": (int, _positive, "a positive integer (parallel runs)"),
}
_BETA_FIT = {
    "knots": (int, lambda v: v >= 2, "an integer >= 2"),
    "smoothing": (float, _non_negative, "a number >= 0"),
    "substeps": (int, _positive, "a positive integer"),
    "asymptote": (str, lambda v: v in ("orthogonal", "symplectic", "unitary", "none"),
                  "'orthogonal', 'symplectic', 'unitary' or 'none'"),
    "max_steps": (int, _positive, "a positive integer"),
    "min_strength": (float, _non_negative, "a number >= 0 (weaker disorder is left out of the fit)"),
    "min_length": (int, _positive, "a positive integer (shorter samples are left out of the fit)"),
}
SCHEMAS = {
    "fss": {"study": _STUDY, "system": _SYSTEM, "tmm": _TMM, "fit": _FSS_FIT},
    "beta": {"study": _STUDY, "system": _SYSTEM, "ensemble": _ENSEMBLE, "fit": _BETA_FIT},
}


def _type_name(kind):
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k) for k in kind)
    return {float: "number", int: "integer", str: "string", bool: "boolean", list: "array"}[kind]


def _coerce(path, name, value, kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if k in (str, bool, list) and isinstance(value, k):
            return value
    raise ValueError(f"{path}: {name} = {value!r} has the wrong type; expected {_type_name(kind)}.")


def validate(config: dict, path="config") -> dict:
    """Check a parsed config against its schema; returns it with numbers coerced. Raises ValueError naming
    the offending key and value."""
    study = config.get("study")
    if not isinstance(study, dict) or "kind" not in study:
        raise ValueError(f"{path}: missing [study] section with key 'kind' ('fss' or 'beta').")
    kind = study["kind"]
    if kind not in SCHEMAS:
        raise ValueError(f"{path}: study.kind = {kind!r} is not allowed; expected 'fss' or 'beta'.")
    schema = SCHEMAS[kind]
    for section in config:
        if section not in schema:
            raise ValueError(f"{path}: unknown section [{section}] for a {kind!r} study; allowed: {sorted(schema)}.")
    out = {}
    for section, keys in schema.items():
        table = config.get(section)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: missing section [{section}].")
        for key in table:
            if key not in keys:
                raise ValueError(f"{path}: unknown key {section}.{key} = {table[key]!r}; allowed: {sorted(keys)}.")
        out[section] = {}
        for key, (kind_, check, allowed) in keys.items():
            name = f"{section}.{key}"
            if key not in table:
                raise ValueError(f"{path}: missing key {name} ({allowed}).")
            value = _coerce(path, name, table[key], kind_)
            if not check(value):
                raise ValueError(f"{path}: {name} = {value!r} is out of range; expected {allowed}.")
            out[section][key] = value
    _cross_checks(out, kind, path)
    return out


def _cross_checks(c, kind, path):
    system = c["system"]
    if system["su2"] and not system["spinful"]:
        raise ValueError(f"{path}: system.su2 = true needs system.spinful = true.")
    if system["dimension"] == 1 and system["boundary"] != "hardwall":
        raise ValueError(f"{path}: system.boundary = {system['boundary']!r}: a chain (dimension 1) has no "
                         "transverse boundary; use 'hardwall'.")
    if kind == "fss":
        t = c["tmm"]
        for key in ("rtol", "max_slices"):
            if len(t[key]) != len(t["widths"]):
                raise ValueError(f"{path}: tmm.{key} = {t[key]!r} needs one entry per width "
                                 f"({len(t['widths'])} widths).")
        if t["chunk"] % t["qr_every"] or t["warmup"] % t["qr_every"]:
            raise ValueError(f"{path}: tmm.chunk = {t['chunk']} and tmm.warmup = {t['warmup']} must be multiples "
                             f"of tmm.qr_every = {t['qr_every']}.")
        for w, m in zip(t["widths"], t["max_slices"]):
            if m < t["warmup"] + t["min_batches"] * t["chunk"]:
                raise ValueError(f"{path}: tmm.max_slices = {m} (width {w}) is below warmup + min_batches * chunk "
                                 f"= {t['warmup'] + t['min_batches'] * t['chunk']}.")
        if system["dimension"] == 1:
            raise ValueError(f"{path}: system.dimension = 1: finite-size scaling needs strips (2) or bars (3).")
        if system["boundary"] == "periodic" and min(t["widths"]) < 3:
            raise ValueError(f"{path}: tmm.widths = {t['widths']}: periodic boundaries need widths >= 3.")
        f = c["fit"]
        if f["min_width"] not in t["widths"]:
            raise ValueError(f"{path}: fit.min_width = {f['min_width']} is not one of tmm.widths {t['widths']}.")
        if len([w for w in t["widths"] if w >= f["min_width"]]) < 2:
            raise ValueError(f"{path}: fit.min_width = {f['min_width']} leaves fewer than two widths to fit.")
    else:
        e = c["ensemble"]
        if system["dimension"] == 1:
            raise ValueError(f"{path}: system.dimension = 1: beta(g) needs 2D or 3D samples.")
        if system["boundary"] == "periodic" and e["lengths"][0] < 3:
            raise ValueError(f"{path}: ensemble.lengths = {e['lengths']}: periodic boundaries need L >= 3.")
        f = c["fit"]
        if len([w for w in e["strengths"] if w >= f["min_strength"]]) < 1:
            raise ValueError(f"{path}: fit.min_strength = {f['min_strength']} leaves no disorder strength to fit.")
        if len([L for L in e["lengths"] if L >= f["min_length"]]) < 2:
            raise ValueError(f"{path}: fit.min_length = {f['min_length']} leaves fewer than two lengths to fit.")
        if system["flux"] != 0 and system["boundary"] == "periodic":
            bad = [L for L in e["lengths"] if abs(system["flux"] * L - round(system["flux"] * L)) > 1e-9]
            if bad:
                raise ValueError(f"{path}: system.flux = {system['flux']} with periodic boundaries needs flux * L "
                                 f"to be an integer; fails for L = {bad}.")


def _read_source(path: pathlib.Path) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist.") from None


def _parse(path: pathlib.Path, source: bytes) -> dict:
    try:
        return tomllib.loads(source.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None


def load_config(path: pathlib.Path) -> dict:
    """Read and :func:`validate` a study config; ValueError naming the file and the problem."""
    return validate(_parse(path, _read_source(path)), str(path))


# ---------------------------------------------------------------------------------------------------------
# The data store: OUT/data/<hash>/


class StoredDataError(ValueError):
    """Stored data that cannot be used as asked (missing or incomplete for --refit, or not what its name says)."""


def result_relevant(config: dict) -> dict:
    """The part of a validated config that determines the numbers of a study: its kind, [system] and [ensemble]
    (beta) or [tmm] (fss), without ``workers`` (how many runs go in parallel changes no number)."""
    kind = config["study"]["kind"]
    section = "ensemble" if kind == "beta" else "tmm"
    return {"kind": kind, "system": dict(config["system"]),
            section: {k: v for k, v in config[section].items() if k != "workers"}}


def config_hash(config: dict) -> str:
    """SHA-256 (hex) of :func:`result_relevant`: equal hashes mean stored data can be reused."""
    blob = json.dumps(result_relevant(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _data_dir(out: pathlib.Path, digest: str) -> pathlib.Path:
    return out / "data" / digest[:16]


def _prepare_store(config: dict, source: bytes, out: pathlib.Path) -> pathlib.Path:
    """The data folder of ``config`` in ``out``, created with its config copy and hash if new; a folder of the
    same name that holds another config (a 16-digit collision) is an error."""
    from .._runs.store import atomic_write_bytes, write_json

    digest = config_hash(config)
    store = _data_dir(out, digest)
    record = store / "config.json"
    if record.exists():
        old = json.loads(record.read_text())
        if old.get("hash") != digest:
            raise StoredDataError(f"{record} holds data of another config (hash {old.get('hash')!r}, this one "
                                  f"{digest!r}); use another --out.")
        return store
    atomic_write_bytes(store / "config.toml", source)
    write_json(record, {"hash": digest, "config": config})  # last: its presence marks a complete folder header
    return store


def _config_differences(old: dict, new: dict) -> list[str]:
    """``section.key: old -> new`` for every result-relevant key that differs between two validated configs."""
    from .._runs.config import differences

    return differences(result_relevant(old), result_relevant(new))


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _save_figure(fig, path: pathlib.Path) -> None:
    """Write a figure atomically: a killed run leaves the previous figure or the new one, never half of one."""
    from .._runs.store import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    atomic_write_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------------------
# Studies


def _lattice(dt, system, width):
    if system["dimension"] == 1:
        return dt.chain()
    if system["dimension"] == 2:
        return dt.strip(width, boundary=system["boundary"])
    return dt.bar(width, width, boundary=system["boundary"])


def _model(dt, system):
    return dt.Model(energy=system["energy"], hopping=system["hopping"],
                    flux=system["flux"] if system["flux"] != 0 else None)


def _log(msg):
    print(msg, flush=True)


def run_fss(c: dict, out: pathlib.Path, stem: str, store: pathlib.Path) -> dict:
    """A finite-size-scaling study; every transfer-matrix run is stored in ``store`` after every stage, and a
    run already stored there for a stage is read instead of computed."""
    import jax
    import jax.numpy as jnp

    import difftransport as dt

    from .._core.scaling import ScalingModel, fit_scaling
    from .._core.tmm import lyapunov_exponents

    system, t, f = c["system"], c["tmm"], c["fit"]
    model = _model(dt, system)
    strengths = t["strengths"]
    root = jax.random.key(t["seed"])
    runners = {}

    def runner(width, max_slices):
        sample = dt.Sample(_lattice(dt, system, width), max_slices, spinful=system["spinful"])

        def run(w, key, rtol, resume):
            return lyapunov_exponents(
                sample, model, key, strength=w, distribution=system["distribution"], su2=system["su2"],
                rtol=rtol, chunk=t["chunk"], warmup=t["warmup"], qr_every=t["qr_every"],
                min_batches=t["min_batches"], resume=resume,
            )

        return run

    for width, max_slices in zip(t["widths"], t["max_slices"]):
        runners[width] = runner(width, max_slices)

    results = {}
    stages = []
    fits_by_stage = []
    start_all = time.perf_counter()
    stop = threading.Event()  # set when the study is interrupted: the workers then start nothing new
    for stage, factor in enumerate(t["stages"]):
        stage_start = time.perf_counter()
        tasks = [(width, i, w) for width in reversed(t["widths"]) for i, w in enumerate(strengths)]

        def work(task):
            width, i, w = task
            path = store / f"s{stage + 1}-M{width:04d}-W{i:03d}.npz"
            if path.exists():
                return task, *_read_spectrum(path)
            if stop.is_set():
                return task, None, 0.0
            rtol = t["rtol"][t["widths"].index(width)] * factor
            key = jax.random.fold_in(jax.random.fold_in(root, width), i)
            previous, before = results.get((width, i), (None, 0.0))
            begin = time.perf_counter()
            res = runners[width](jnp.asarray(w, float), key, rtol, previous)
            jax.block_until_ready(res.exponents)
            seconds = time.perf_counter() - begin + before
            _write_spectrum(path, res, seconds)
            return task, res, seconds

        for (width, i, w), res, seconds in _parallel(work, tasks, t["workers"], stop):
            results[(width, i)] = (res, seconds)
            lam = float(res.localization_length) / width
            _log(f"  stage {stage + 1} M={width:3d} W={w:7.3f}: Lambda = {lam:.5f} +- "
                 f"{lam * float(res.relative_error):.5f} ({int(res.slices)} slices, "
                 f"{'converged' if bool(res.converged) else 'NOT converged'}, {seconds:.1f} s)")
        data = _fss_table(results, t["widths"], strengths)
        stage_fit = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=f["min_width"], bootstrap=0, key=None)
        stage_fit.update(stage=stage + 1, target_factor=factor, seconds=time.perf_counter() - stage_start,
                         total_slices=int(np.sum(data["slices"])))
        fits_by_stage.append(stage_fit)
        _log(f"stage {stage + 1}: W_c = {stage_fit['W_c']['value']:.3f} +- {stage_fit['W_c']['stderr']:.3f}, "
             f"nu = {stage_fit['nu']['value']:.3f} +- {stage_fit['nu']['stderr']:.3f}, "
             f"Lambda_c = {stage_fit['Lambda_c']['value']:.4f} +- {stage_fit['Lambda_c']['stderr']:.4f}, "
             f"chi2/dof = {stage_fit['chi2']:.1f}/{stage_fit['dof']} ({time.perf_counter() - start_all:.0f} s)")
        stages.append(data)
    data = stages[-1]
    seconds = float(np.sum(data["seconds"]))  # computation time of the stored runs, over all attempts

    key = jax.random.key(t["seed"] + 1)
    main_fit = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=f["min_width"], bootstrap=f["bootstrap"],
                        key=key, keep=True)
    fit_obj = main_fit.pop("_fit")
    by_largest = []
    for largest in t["widths"]:
        kept = [w for w in t["widths"] if f["min_width"] <= w <= largest]
        if len(kept) >= 2 and largest != t["widths"][-1]:
            sub = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=f["min_width"], max_width=largest,
                           bootstrap=0, key=None, optional=True)
            by_largest.append(dict(sub, largest_width=largest))
    by_largest.append(dict({k: v for k, v in main_fit.items()}, largest_width=t["widths"][-1]))
    by_smallest = []
    for smallest in t["widths"]:
        if smallest != f["min_width"] and len([w for w in t["widths"] if w >= smallest]) >= 2:
            sub = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=smallest, bootstrap=0, key=None,
                           optional=True)
            by_smallest.append(dict(sub, smallest_width=smallest))

    plain = dict(f, irrelevant_order=0, irrelevant_field_order=0)
    without = []
    for smallest in t["widths"]:
        if len([w for w in t["widths"] if w >= smallest]) >= 2:
            without.append(dict(_fss_fit(fit_scaling, ScalingModel, data, plain, min_width=smallest, bootstrap=0,
                                         key=None, optional=True), smallest_width=smallest))

    summary = {
        "kind": "fss", "title": c["study"]["title"], "seconds": seconds,
        "data": {k: np.asarray(v).tolist() for k, v in data.items()},
        "fit": main_fit, "fits_by_stage": fits_by_stage, "fits_by_largest_width": by_largest,
        "fits_by_smallest_width": by_smallest, "fits_without_corrections_by_smallest_width": without,
    }
    _plot_fss(c, data, fit_obj, main_fit, fits_by_stage, by_largest, out / f"{stem}.png")
    return summary


_SPECTRUM = ("exponents", "stderr", "slices", "converged")
_STATE = ("frame", "previous_hop", "next_slice", "batches", "mean", "m2")


def _write_spectrum(path: pathlib.Path, res, seconds: float) -> None:
    """Store a transfer-matrix run (``LyapunovSpectrum``, its state included) and its seconds, atomically."""
    from .._runs.store import atomic_savez

    arrays = {name: np.asarray(getattr(res, name)) for name in _SPECTRUM}
    arrays.update({f"state_{name}": np.asarray(getattr(res.state, name)) for name in _STATE})
    atomic_savez(path, seconds=np.float64(seconds), **arrays)


def _read_spectrum(path: pathlib.Path):
    """(LyapunovSpectrum, seconds) as stored by :func:`_write_spectrum`; arrays round-trip bit for bit, so a
    later stage continues it exactly as it would have continued the run in memory."""
    import jax.numpy as jnp

    from .._core.tmm import LyapunovSpectrum, TransferState

    with _open_stored(path) as stored:
        state = TransferState(**{name: jnp.asarray(stored[f"state_{name}"]) for name in _STATE})
        res = LyapunovSpectrum(state=state, **{name: jnp.asarray(stored[name]) for name in _SPECTRUM})
        return res, float(stored["seconds"])


@contextlib.contextmanager
def _open_stored(path: pathlib.Path):
    """``np.load`` of a stored file; a file that cannot be read (damaged outside this program: every write is
    atomic) is a StoredDataError naming it."""
    try:
        with np.load(path) as stored:
            yield stored
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise StoredDataError(f"{path}: cannot be read ({_one_line(err)}); delete it to recompute it.") from None


def _parallel(work, tasks, workers: int, stop: threading.Event):
    """``work`` over ``tasks`` in ``workers`` threads, results in task order. When the caller stops iterating
    (an error, Ctrl-C) ``stop`` is set and queued tasks are cancelled; running ones finish the chunk in hand,
    which is stored, so that nothing computed is lost."""
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    finished = False
    try:
        yield from pool.map(work, tasks)
        finished = True
    finally:
        if not finished:
            stop.set()
        pool.shutdown(wait=True, cancel_futures=not finished)


def _fss_table(results, widths, strengths):
    rows = {"width": [], "disorder": [], "Lambda": [], "Lambda_stderr": [], "slices": [], "converged": [],
            "seconds": []}
    for width in widths:
        for i, w in enumerate(strengths):
            res, seconds = results[(width, i)]
            lam = float(res.localization_length) / width
            rows["width"].append(width)
            rows["disorder"].append(w)
            rows["Lambda"].append(lam)
            rows["Lambda_stderr"].append(lam * float(res.relative_error))
            rows["slices"].append(int(res.slices))
            rows["converged"].append(bool(res.converged))
            rows["seconds"].append(seconds)
    return {k: np.asarray(v) for k, v in rows.items()}


def _fss_fit(fit_scaling, ScalingModel, data, f, *, min_width, max_width=None, bootstrap, key, keep=False,
             optional=False):
    """A fit as a JSON-able dict. ``optional`` fits (subsets) that cannot be done record why instead."""
    try:
        return _fss_fit_or_raise(fit_scaling, ScalingModel, data, f, min_width=min_width, max_width=max_width,
                                 bootstrap=bootstrap, key=key, keep=keep)
    except ValueError as err:
        if not optional:
            raise
        return {"error": str(err)}


def _fss_fit_or_raise(fit_scaling, ScalingModel, data, f, *, min_width, max_width, bootstrap, key, keep):
    y = f["irrelevant_exponent"]
    model = ScalingModel(f["relevant_order"], f["irrelevant_order"], f["relevant_field_order"],
                         f["irrelevant_field_order"], None if y == "fit" else y)
    sel = data["width"] >= min_width
    if max_width is not None:
        sel &= data["width"] <= max_width
    fit = fit_scaling(data["disorder"][sel], data["width"][sel], data["Lambda"][sel], data["Lambda_stderr"][sel],
                      model=model, critical_guess=f["critical_guess"], exponent_guess=f["exponent_guess"],
                      irrelevant_guess=f["irrelevant_guess"], bootstrap=bootstrap, key=key,
                      max_steps=f["max_steps"])
    conf = f["confidence"]

    def entry(name):
        lo, hi = fit.interval(name, conf)
        return {"value": float(fit.value(name)), "stderr": float(fit.stderr(name)), "interval": [lo, hi]}

    out = {name: entry(name) for name in fit.model.names}
    lc, lcs = float(fit.critical_lambda), float(fit.critical_lambda_stderr)
    if fit.bootstrap.shape[0]:
        boot = np.exp(np.asarray(fit.bootstrap[:, fit.model.names.index("a00")]))
        interval = np.percentile(boot, [50 * (1 - conf), 50 * (1 + conf)]).tolist()
    else:
        z = 1.959963984540054 if abs(conf - 0.95) < 1e-12 else _z(conf)
        interval = [lc - z * lcs, lc + z * lcs]
    out["Lambda_c"] = {"value": lc, "stderr": lcs, "interval": interval}
    out.update(chi2=float(fit.chi2), dof=int(fit.dof), p_value=float(fit.p_value), converged=bool(fit.converged),
               widths=sorted(set(int(w) for w in data["width"][sel])), confidence=conf,
               interval_method="bootstrap" if fit.bootstrap.shape[0] else "covariance",
               bootstrap=int(fit.bootstrap.shape[0]), parameters=list(fit.model.names))
    if keep:
        out["_fit"] = fit
    return out


def _z(conf):
    from scipy.special import erfinv

    return math.sqrt(2.0) * float(erfinv(conf))


def _plot_fss(c, data, fit, main, by_stage, by_largest, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted(set(data["width"].tolist()))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    ax = axes[0]
    grid = np.linspace(min(data["disorder"]), max(data["disorder"]), 200)
    for width, col in zip(widths, colors):
        sel = data["width"] == width
        ax.errorbar(data["disorder"][sel], data["Lambda"][sel], yerr=data["Lambda_stderr"][sel], fmt="o", ms=3.5,
                    color=col, capsize=2, label=f"M = {width}")
        if width >= c["fit"]["min_width"]:
            ax.plot(grid, np.asarray(fit.predict(grid, np.full_like(grid, width))), color=col, lw=1)
    wc, lc = main["W_c"], main["Lambda_c"]
    ax.axvspan(*wc["interval"], color="0.85", zorder=0)
    ax.axvline(wc["value"], color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("disorder W")
    ax.set_ylabel(r"$\Lambda = \lambda_M / M$")
    ax.set_title(f"{c['study']['title']}\n" + rf"$W_c$ = {wc['value']:.3f} [{wc['interval'][0]:.3f}, "
                 rf"{wc['interval'][1]:.3f}], $\nu$ = {main['nu']['value']:.3f} [{main['nu']['interval'][0]:.3f}, "
                 rf"{main['nu']['interval'][1]:.3f}], $\Lambda_c$ = {lc['value']:.4f}", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[1]
    sel = data["width"] >= c["fit"]["min_width"]
    x, lam_c, sign = (np.asarray(a) for a in fit.collapse(data["disorder"][sel], data["width"][sel],
                                                          data["Lambda"][sel]))
    for width, col in zip(widths, colors):
        s = data["width"][sel] == width
        if not np.any(s):
            continue
        for side, marker in ((1, "o"), (-1, "s")):
            m = s & (sign == side)
            ax.errorbar(x[m], lam_c[m], yerr=(data["Lambda_stderr"][sel] * lam_c / data["Lambda"][sel])[m], fmt=marker,
                        ms=3.5, color=col, capsize=1.5, mfc="none" if side < 0 else col)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$M / \xi$,  $\xi = |u_r|^{-\nu}$")
    ax.set_ylabel(r"$\Lambda$ (irrelevant correction removed)" if fit.model.irrelevant_order else r"$\Lambda$")
    ax.set_title(r"data collapse (filled: $W > W_c$, open: $W < W_c$)", fontsize=9)

    ax = axes[2]
    slices = [s["total_slices"] for s in by_stage]
    ax.errorbar(slices, [s["nu"]["value"] for s in by_stage], yerr=[s["nu"]["stderr"] for s in by_stage],
                fmt="o-", color="C0", capsize=2, label=r"$\nu$ vs total slices (all widths)")
    ax.set_xscale("log")
    ax.set_xlabel("total slices in the data set")
    ax.set_ylabel(r"$\nu$", color="C0")
    ax2 = ax.twinx()
    ax2.errorbar(slices, [s["W_c"]["value"] for s in by_stage], yerr=[s["W_c"]["stderr"] for s in by_stage],
                 fmt="s--", color="C3", capsize=2, label=r"$W_c$")
    ax2.set_ylabel(r"$W_c$", color="C3")
    text = "\n".join(
        rf"M$\leq${b['largest_width']}: $W_c$={b['W_c']['value']:.3f}$\pm${b['W_c']['stderr']:.3f}, "
        rf"$\nu$={b['nu']['value']:.3f}$\pm${b['nu']['stderr']:.3f}" for b in by_largest if "nu" in b
    )
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=7, va="bottom",
            bbox=dict(fc="white", ec="0.7", alpha=0.85))
    ax.set_title(r"convergence: fits after each stage (1$\sigma$); inset: by largest width", fontsize=9)
    _save_figure(fig, path)
    plt.close(fig)


@functools.lru_cache(maxsize=32)
def _conductance_batch(system_items: tuple, length: int):
    """The jitted conductances g (batch,) of L x L (x L) samples for PRNG keys (batch,) and a strength W.
    Cached per (system, L): a refit or a second study in one process reuses the compiled function."""
    import jax

    import difftransport as dt

    system = dict(system_items)
    model = _model(dt, system)
    sample = dt.Sample(_lattice(dt, system, length), length, spinful=system["spinful"])

    def one(key, w):
        disorder = dt.draw_disorder(key, sample, strength=w, distribution=system["distribution"], su2=system["su2"])
        return dt.conductance(sample, model, disorder)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _beta_ensembles(c: dict, store: pathlib.Path, *, compute: bool = True) -> dict:
    """The conductance ensembles of a beta study: the table of <ln g> (contacts removed if asked) over
    (strength, length), with its standard errors; a dict as stored under "data" in the study's JSON.

    Every chunk of ``ensemble.chunk`` realizations of every (strength, length) is written to ``store`` as soon as
    it is computed, and a chunk already there is read instead of computed. Without ``compute`` (``--refit``) a
    missing chunk is a StoredDataError."""
    import jax
    import jax.numpy as jnp

    import difftransport as dt

    system, e = c["system"], c["ensemble"]
    model = _model(dt, system)
    lengths, strengths = e["lengths"], e["strengths"]
    n = e["realizations"]
    spans = [(k, min(k + e["chunk"], n)) for k in range(0, n, e["chunk"])]
    root = jax.random.key(e["seed"])
    system_items = tuple(sorted(system.items()))
    batches = {L: _conductance_batch(system_items, L) for L in lengths}
    channels = {L: float(dt.open_channels(dt.Sample(_lattice(dt, system, L), L, spinful=system["spinful"]), model))
                for L in lengths}

    def path(L, i, span):
        return store / f"L{L:04d}-W{i:03d}-r{span[0]:07d}-{span[1]:07d}.npz"

    tasks = [(L, i, w) for L in reversed(lengths) for i, w in enumerate(strengths)]
    stored = sum(path(L, i, span).exists() for L, i, _ in tasks for span in spans)
    total = len(tasks) * len(spans)
    if not compute and stored < total:
        raise StoredDataError(f"--refit: the ensembles of this config in {store} are incomplete ({stored} of "
                              f"{total} chunks stored); rerun without --refit to finish them.")
    _log(f"  {stored} of {total} chunks stored in {store}"
         + (f"; computing {total - stored}" if stored < total else ""))
    stop = threading.Event()  # set when the study is interrupted: the workers then start no new chunk

    def work(task):
        L, i, w = task
        base = jax.random.fold_in(jax.random.fold_in(root, L), i)
        keys = jax.vmap(lambda j: jax.random.fold_in(base, j))(jnp.arange(n))
        parts, seconds, computed = [], 0.0, 0
        for span in spans:
            file = path(L, i, span)
            if file.exists():
                values, spent = _read_chunk(file, L, w, span)
            elif stop.is_set():
                return task, None, seconds, computed
            else:
                begin = time.perf_counter()
                values = np.asarray(batches[L](keys[span[0]:span[1]], jnp.asarray(w, float)))
                spent = time.perf_counter() - begin
                _write_chunk(file, L, w, values, spent)
                computed += 1
            parts.append(values)
            seconds += spent
        return task, np.concatenate(parts), seconds, computed

    g = np.zeros((len(strengths), len(lengths), n))
    seconds = 0.0
    for (L, i, w), values, spent, computed in _parallel(work, tasks, e["workers"], stop):
        g[i, lengths.index(L)] = values
        seconds += spent
        _log(f"  L={L:3d} W={w:7.3f}: <g> = {values.mean():.4f}, <ln g> = {np.log(values).mean():.4f} "
             f"({n} samples, {spent:.1f} s" + (f", {len(spans) - computed} of {len(spans)} chunks stored before)"
                                               if computed < len(spans) else ")"))

    used = g.copy()
    dropped = 0
    if e["contact_correction"]:
        # Remove the contact (Sharvin) resistance of the ideal leads: 1/g_int = 1/g - 1/N.
        N = np.array([channels[L] for L in lengths])[None, :, None]
        ok = g < N * (1 - 1e-9)
        dropped = int((~ok).sum())
        used = np.where(ok, 1.0 / (1.0 / g - 1.0 / np.where(ok, N, 1.0) + (~ok)), np.nan)
    logs = np.log(used)
    mean = np.nanmean(logs, axis=2)
    count = np.sum(np.isfinite(logs), axis=2)
    err = np.nanstd(logs, axis=2, ddof=1) / np.sqrt(count)
    return {"lengths": lengths, "strengths": strengths, "open_channels": [channels[L] for L in lengths],
            "mean_g": g.mean(axis=2).tolist(), "mean_log_g": mean.tolist(), "stderr_log_g": err.tolist(),
            "var_log_g": np.nanvar(logs, axis=2, ddof=1).tolist(), "realizations": n,
            "contact_correction": e["contact_correction"], "dropped_ballistic": dropped, "seconds": seconds}


def _write_chunk(path: pathlib.Path, length: int, strength: float, g: np.ndarray, seconds: float) -> None:
    """Store the conductances g (realizations,) of one chunk with what they belong to, atomically."""
    from .._runs.store import atomic_savez

    atomic_savez(path, g=g, length=np.int64(length), strength=np.float64(strength), seconds=np.float64(seconds))


def _read_chunk(path: pathlib.Path, length: int, strength: float, span: tuple[int, int]):
    """(g, seconds) of a chunk stored by :func:`_write_chunk`; ValueError if it is not the chunk its name says."""
    with _open_stored(path) as stored:
        g, L, w, seconds = stored["g"], int(stored["length"]), float(stored["strength"]), float(stored["seconds"])
    if L != length or w != strength or g.shape != (span[1] - span[0],) or g.dtype != np.float64:
        raise StoredDataError(f"{path}: stored chunk holds {g.shape} {g.dtype} values for L = {L}, W = {w}; "
                              f"expected ({span[1] - span[0]},) float64 for L = {length}, W = {strength}; delete "
                              "the file to recompute it.")
    return g, seconds


def run_beta(c: dict, out: pathlib.Path, stem: str, data: dict) -> dict:
    """The fit and figure of a beta study on ``data``, the table of its ensembles (``_beta_ensembles``): the
    single-parameter-scaling fit over strengths >= fit.min_strength and lengths >= fit.min_length."""
    from .._core.scaling import beta_one_loop, finite_difference_beta, fit_beta

    f = c["fit"]
    data = dict(data)
    seconds = data.pop("seconds", 0.0)
    use_w = [i for i, w in enumerate(data["strengths"]) if w >= f["min_strength"]]
    use_l = [j for j, L in enumerate(data["lengths"]) if L >= f["min_length"]]
    lengths = [data["lengths"][j] for j in use_l]
    strengths = [data["strengths"][i] for i in use_w]
    mean = np.asarray(data["mean_log_g"])[np.ix_(use_w, use_l)]
    err = np.asarray(data["stderr_log_g"])[np.ix_(use_w, use_l)]
    fit = fit_beta(np.asarray(lengths, float), mean, err, knots=f["knots"], smoothing=f["smoothing"],
                   substeps=f["substeps"], max_steps=f["max_steps"])
    xm, bm, sm = finite_difference_beta(lengths, mean, err)
    lo, hi = float(np.min(mean)), float(np.max(mean))
    grid = np.linspace(lo, hi, 200)
    beta, band = np.asarray(fit(grid)), np.asarray(fit.stderr(grid))
    crossings = _zero_crossings(grid, beta, band)
    summary = {
        "kind": "beta", "title": c["study"]["title"], "seconds": seconds,
        "data": data,
        "fit": {"chi2": float(fit.chi2), "dof": fit.dof, "converged": bool(fit.converged),
                "strengths": strengths, "lengths": lengths,
                "log_g": grid[::10].tolist(), "beta": beta[::10].tolist(), "beta_stderr": band[::10].tolist(),
                "zero_crossings_log_g": crossings},
    }
    if f["asymptote"] != "none":
        gg = np.exp(grid)
        ref = np.asarray(beta_one_loop(gg, f["asymptote"]))
        big = gg >= 3
        summary["fit"]["one_loop"] = f["asymptote"]
        if np.any(big):
            rel = (beta[big] - ref[big]) / np.abs(ref[big])
            summary["fit"]["one_loop_relative_deviation_g_ge_3"] = {
                "g": gg[big][::10].tolist(), "relative": rel[::10].tolist(),
                "max_abs": float(np.max(np.abs(rel))), "band_over_one_loop_max": float(np.max(band[big] / np.abs(ref[big]))),
            }
    finite = None
    if f["asymptote"] in ("orthogonal", "symplectic") and c["system"]["dimension"] == 2:
        channels = [data["open_channels"][j] for j in use_l]
        finite = _finite_size_one_loop(c, lengths, channels, mean)
        metal = np.exp(xm) >= ONE_LOOP_MIN_G  # the one-loop domain; deep in the insulator 1/g explodes
        if np.any(metal):
            w = np.where(metal, 1.0 / sm**2, 0.0)
            amp = float(np.sum(w * bm * finite) / np.sum(w * finite**2))
            summary["fit"]["finite_size_one_loop"] = {
                "g_min": ONE_LOOP_MIN_G, "points": int(metal.sum()), "amplitude": amp,
                "amplitude_stderr": float(1.0 / np.sqrt(np.sum(w * finite**2))),
                "chi2": float(np.sum(w * (bm - amp * finite) ** 2)), "dof": int(metal.sum() - 1),
                "beta": finite.tolist(), "log_g_mid": xm.tolist()}
        finite = np.where(metal, finite, np.nan)
    summary["fit"]["max_beta"] = float(np.max(beta))
    summary["fit"]["min_beta"] = float(np.min(beta))
    _plot_beta(c, lengths, strengths, mean, err, fit, grid, beta, band, (xm, bm, sm), out / f"{stem}.png",
               finite=finite)
    return summary


ONE_LOOP_MIN_G = 2.0  # raw slopes compared with the finite-size one-loop beta from this g (e^2/h, all channels)


def _finite_size_one_loop(c, lengths, channels, mean_log_g):
    """One-loop beta of the raw slopes, for the finite L x L squares of a 2D study: (curves, lengths - 1).

    Between successive lengths, [dG(L2) - dG(L1)] / ln(L2/L1) / g_mid with dG = theory.lattice_wl_correction of
    the square (its boundaries; the Cooperon vanishes z0 = g L / 2N beyond each lead, the length that reproduces
    the Sharvin resistance, g = exp<ln g> with contacts removed) and g_mid = exp of the mean <ln g>; the sign of
    the symplectic class (total g) is opposite. The modes beyond q ~ 1/l are not diffusive and are cut off
    (``theory.diffusive_cutoff``: l = 4 z0 / pi, l_c = (sqrt 3/2) l). At the sizes of a study the square has not
    reached its ln L regime: this, not -1/(pi g), is what the raw slopes should follow at one loop."""
    from .. import theory

    sign = {"orthogonal": 1.0, "symplectic": -1.0}[c["fit"]["asymptote"]]
    periodic = c["system"]["boundary"] == "periodic"
    mean_log_g = np.asarray(mean_log_g, float)
    correction = np.zeros_like(mean_log_g)
    for i in range(mean_log_g.shape[0]):
        for j, (size, n) in enumerate(zip(lengths, channels)):
            z0 = float(np.exp(mean_log_g[i, j])) * size / (2 * n)
            correction[i, j] = sign * float(theory.lattice_wl_correction(
                size, size, periodic=periodic, extrapolation=z0, cutoff=theory.diffusive_cutoff(z0)))
    g_mid = np.exp(0.5 * (mean_log_g[:, 1:] + mean_log_g[:, :-1]))
    return np.diff(correction, axis=1) / np.diff(np.log(np.asarray(lengths, float))) / g_mid


def _zero_crossings(grid, beta, band):
    out = []
    for k in np.nonzero(np.sign(beta[1:]) != np.sign(beta[:-1]))[0]:
        x0 = grid[k] - beta[k] * (grid[k + 1] - grid[k]) / (beta[k + 1] - beta[k])
        slope = (beta[k + 1] - beta[k]) / (grid[k + 1] - grid[k])
        out.append({"log_g": float(x0), "g": float(np.exp(x0)), "stderr_log_g": float(band[k] / abs(slope)),
                    "slope": float(slope)})
    return out


def _plot_beta(c, lengths, strengths, mean, err, fit, grid, beta, band, raw, path, finite=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._core.scaling import beta_one_loop

    f = c["fit"]
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(strengths)))
    metal = np.isfinite(finite) if finite is not None else None
    zoom_panel = metal is not None and bool(np.any(metal))
    fig, axes = plt.subplots(1, 3 if zoom_panel else 2, figsize=(17 if zoom_panel else 12, 4.6),
                             layout="constrained")
    ax = axes[0]
    traj = np.asarray(fit.trajectories())
    for i, (w, col) in enumerate(zip(strengths, colors)):
        ax.errorbar(lengths, mean[i], yerr=err[i], fmt="o", ms=3.5, color=col, capsize=2, label=f"W = {w:g}")
        ax.plot(lengths, traj[i], color=col, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("L")
    ax.set_ylabel(r"$\langle \ln g\rangle$" + (" (contacts removed)" if c["ensemble"]["contact_correction"] else ""))
    ax.set_title(f"{c['study']['title']}: data and single-parameter-scaling fit", fontsize=9)
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1]
    xm, bm, sm = raw
    for i, col in enumerate(colors):
        ax.errorbar(xm[i], bm[i], yerr=sm[i], fmt=".", color=col, alpha=0.6, capsize=1.5)
    ax.fill_between(grid, beta - 2 * band, beta + 2 * band, color="C0", alpha=0.25, label=r"fit $\pm 2\sigma$")
    ax.plot(grid, beta, color="C0", lw=2, label=r"fitted $\beta(\ln g)$")
    if f["asymptote"] != "none":
        gg = np.exp(grid)
        sel = gg > 0.8
        ax.plot(grid[sel], np.asarray(beta_one_loop(gg[sel], f["asymptote"])), "k--", lw=1,
                label=f"one loop ({f['asymptote']})")
    lo = grid < min(np.log(0.3), grid[-1])
    if np.any(lo):
        x0 = grid[lo]
        ax.plot(x0, x0 - x0[-1] + beta[lo][-1], ":", color="0.4", lw=1, label=r"insulator: slope 1 in $\ln g$")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"$\ln g$  ($g$ in $e^2/h$, all channels)")
    ax.set_ylabel(r"$\beta = d\ln g / d\ln L$")
    bottom = max(-3.0, float(np.min(beta - 3 * band)) - 0.1)
    ax.set_ylim(bottom, float(np.max(beta + 3 * band)) + 0.1)
    visible = grid[beta >= bottom]  # deep-insulator points far below the window only stretch the axis
    if visible.size:
        ax.set_xlim(float(visible[0]) - 0.5, float(grid[-1]) + 0.3)
    ax.set_title(rf"$\chi^2$/dof = {float(fit.chi2):.1f}/{fit.dof}; points: raw slopes between successive L",
                 fontsize=9)
    ax.legend(fontsize=8)
    if zoom_panel:  # the one-loop domain, where the asymptote and the finite squares' one loop differ
        ax = axes[2]
        for i, col in enumerate(colors):
            m = metal[i]
            ax.errorbar(xm[i][m], bm[i][m], yerr=sm[i][m], fmt="o", ms=3.5, color=col, capsize=2,
                        label=f"W = {strengths[i]:g}" if np.any(m) else None)
            ax.plot(xm[i][m], finite[i][m], "x", ms=7, color=col)
        x0, x1 = float(np.min(xm[metal])) - 0.1, float(np.max(xm[metal])) + 0.1
        zoom = (grid >= x0) & (grid <= x1)
        ax.fill_between(grid[zoom], (beta - 2 * band)[zoom], (beta + 2 * band)[zoom], color="C0", alpha=0.25)
        ax.plot(grid[zoom], beta[zoom], color="C0", lw=2, label=r"fitted $\beta(\ln g)$")
        ax.plot(grid[zoom], np.asarray(beta_one_loop(np.exp(grid[zoom]), f["asymptote"])), "k--", lw=1,
                label=f"one loop ({f['asymptote']}), L → ∞")
        ax.plot([], [], "kx", ms=7, label="one loop of the finite squares")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel(r"$\ln g$")
        ax.set_ylabel(r"$\beta$")
        ax.set_title(rf"$g \geq {ONE_LOOP_MIN_G:g}$: raw slopes against one loop", fontsize=9)
        ax.legend(fontsize=7)
    _save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# Entry points


def _refit_store(config: dict, out: pathlib.Path) -> pathlib.Path:
    """The data folder of ``config``'s ensembles in ``out``, for --refit; StoredDataError naming what differs
    from the last finished run when there is none."""
    if config["study"]["kind"] != "beta":
        raise StoredDataError("--refit applies to beta studies (study.kind = 'beta') only.")
    digest = config_hash(config)
    store = _data_dir(out, digest)
    record = store / "config.json"
    if record.exists() and json.loads(record.read_text()).get("hash") == digest:
        return store
    last = out / "config.json"
    changed = _config_differences(json.loads(last.read_text())["config"], config) if last.exists() else []
    raise StoredDataError(f"--refit: no ensembles of this config in {out / 'data'}"
                          + (f" (the last run in {out} differs: {'; '.join(changed)})" if changed else "")
                          + "; rerun without --refit.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``difftransport scale``."""
    parser.add_argument("config", type=pathlib.Path, help="TOML config of the study (see configs/scaling_*.toml)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: out/<config name>)")
    parser.add_argument("--refit", action="store_true",
                        help="beta studies: redo only the fit and the figures from the ensembles stored in --out "
                             "for this config's [system] and [ensemble]")
    parser.add_argument("--wait", action="store_true",
                        help="if another run holds --out, wait for it to finish instead of refusing")


def _error(message) -> int:
    print(f"difftransport scale: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    """Run (or resume, or with ``--refit`` refit) the study in ``args.config``; 0 on success, 2 on a bad
    config or a failed study (one line on stderr), 130 on Ctrl-C."""
    try:
        source = _read_source(args.config)
        config = validate(_parse(args.config, source), str(args.config))
    except ValueError as err:
        return _error(err)
    out = args.out if args.out is not None else pathlib.Path("out") / args.config.stem
    if args.refit and not (out / "data").is_dir():
        return _error(f"--refit: no stored data in {out} (no {out / 'data'}); rerun without --refit.")
    from .._runs.store import DirectoryLocked, directory_lock

    try:
        with directory_lock(out, wait=args.wait):
            return _locked_main(args, config, source, out)
    except DirectoryLocked as err:
        return _error(err)
    except KeyboardInterrupt:
        print("difftransport scale: interrupted; the data computed so far are stored in "
              f"{out / 'data'}: rerun the same command to resume.", file=sys.stderr)
        return 130


def _locked_main(args, config: dict, source: bytes, out: pathlib.Path) -> int:
    from .._runs.store import atomic_write_bytes, write_json

    kind, stem, digest = config["study"]["kind"], config["study"]["figure"], config_hash(config)
    try:
        store = _refit_store(config, out) if args.refit else _prepare_store(config, source, out)
    except StoredDataError as err:
        return _error(err)
    _log(f"difftransport scale: {config['study']['title']} ({kind}) -> {out}"
         + (" (refit of stored ensembles)" if args.refit else ""))
    try:
        if kind == "fss":
            summary = run_fss(config, out, stem, store)
        else:
            data = _beta_ensembles(config, store, compute=not args.refit)
    except StoredDataError as err:
        return _error(err)
    except Exception as err:  # noqa: BLE001  (the CLI reports one line; what was computed is on disk)
        # The fss fits run between its stages, so a failing fss fit also lands here.
        what, rerun = (("transfer-matrix runs", "rerunning the same command (with [fit] changed if a fit failed)")
                       if kind == "fss" else ("ensemble chunks", "rerunning the same command"))
        return _error(f"the {kind} study stopped ({_one_line(err)}); the {what} computed so far are stored in "
                      f"{store}, and {rerun} reuses them.")
    if kind == "beta":
        try:
            summary = run_beta(config, out, stem, data)
        except Exception as err:  # noqa: BLE001
            return _error(f"the fit or figure failed ({_one_line(err)}); the ensembles are stored in {store}: "
                          f"change [fit] in {args.config} and rerun with --refit (nothing is recomputed).")
    summary["config_hash"] = digest
    write_json(out / f"{stem}.json", summary)
    atomic_write_bytes(out / "config.toml", source)
    write_json(out / "config.json", {"hash": digest, "config": config})
    _log(f"wrote {out / (stem + '.png')} and {out / (stem + '.json')} ({summary['seconds']:.0f} s of computation)")
    return 0
