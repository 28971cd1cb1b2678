"""``difftransport scale CONFIG.toml [--out DIR] [--refit] [--wait]``: run a scaling study and write figures and a JSON.

Three kinds of study (``[study] kind``):

* ``"fss"``: transfer-matrix reduced localization lengths Lambda(W, M) = lambda_M / M for every width M and
  disorder W, refined in stages (each stage continues the same realizations to a smaller target error), a
  Slevin-Ohtsuki finite-size-scaling fit after every stage and for every largest width, a data collapse.
* ``"beta"``: conductance ensembles of square (2D) or cubic (3D) samples, <ln g> against L for many W, and
  the scaling function beta(ln g) fitted under single-parameter scaling, against the one-loop asymptote.
* ``"dephasing"``: beta from derivatives (docs/physics.md#beta-function): on L x L squares with a Buttiker probe
  on every site, dg/d ln tau_phi of every realization by forward-mode differentiation, at zero field and at the
  fields of ``dephasing.fluxes`` (common random numbers), and beta_phi = 2 <slope(0) - slope(B)> / <g> per
  (W, tau_phi) with jackknife errors, against the one-loop beta at <g>; given ``dephasing.diffusion`` (D of a
  stated rule), also beta_phi divided by the fraction of the Cooperon's slope that the field removes. On L^3
  cubes (dimension 3, zero field only) beta = (1 + 3s)/(1 + s), s = d ln <g> / d ln tau_phi, with L_phi from
  the Einstein relation (and g = sigma L_phi given the density of states).

The config is validated by the engine of ``difftransport run`` (``_runs/study.py``): unknown keys, wrong types
and out-of-range values are errors naming the file, line, key and value, and every default is written out in
the stored config. The library does no I/O: everything written is written here. The beta ensembles run through
the run system's ``ChunkRunner`` (chunks sharded over the devices, a progress bar unless ``--quiet`` or not a
terminal); the physics is in ``_core/scaling.py``.

Outputs in ``--out`` (default ``out/<config name>``)::

    OUT/data/<hash>/config.toml, config.json    the config normalized, and {"hash", "config"}
    OUT/data/<hash>/L{L}-W{i}-r{first}-{end}.npz  beta: conductances g of realizations first .. end-1 of the
                                                 L x L (x L) samples at strength index i, and their seconds
    OUT/data/<hash>/s{stage}-M{M}-W{i}.npz       fss: the transfer-matrix run (width M, strength index i) as
                                                 it stood after that stage, with everything needed to continue
    OUT/data/<hash>/W{i}-T{j}-r{first}-{end}.npz  dephasing: g and dg/d ln tau_phi (realizations, fields) at
                                                 strength index i and tau_phi index j, and their seconds
    OUT/<figure>.png, OUT/<figure>.json          the figure; data, fits, timings and "config_hash"
    OUT/config.toml, OUT/config.json             the config of that JSON, and {"hash", "config"}

``<hash>`` is the first 16 hex digits of the SHA-256 of the result-relevant part of the config ([system]
and [ensemble], [tmm] or [dephasing], all but ``workers``, ``method``, ``solver``, ``one_loop`` and ``diffusion``):
a config that differs in anything that changes the numbers stores its data in another folder, so old and new data
never mix, and the old data stay where they are.
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
import contextlib
import functools
import io
import json
import pathlib
import sys
import threading
import time
import zipfile

import numpy as np

from .._runs.study import config_hash, dumps, load, result_relevant

# ---------------------------------------------------------------------------------------------------------
# The data store: OUT/data/<hash>/


class StoredDataError(ValueError):
    """Stored data that cannot be used as asked (missing or incomplete for --refit, or not what its name says)."""


def _data_dir(out: pathlib.Path, digest: str) -> pathlib.Path:
    return out / "data" / digest[:16]


def _prepare_store(config: dict, out: pathlib.Path) -> pathlib.Path:
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
    atomic_write_bytes(store / "config.toml", dumps(config).encode())
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


def _sample(system: dict, width: int, length: int):
    """A strip of ``width`` sites (dimension 2) or a width x width bar (3), ``length`` slices long."""
    from .._runs.ensemble import make_sample

    return make_sample({"lattice": "strip" if system["dimension"] == 2 else "bar", "width": width, "height": width,
                        "length": length, "boundary": system["boundary"], "spinful": system["spinful"]})


def _model(system: dict):
    from .._core.model import Model

    return Model(energy=system["energy"], hopping=system["hopping"], flux=system["flux"] if system["flux"] != 0 else None)


def _log(msg):
    print(msg, flush=True)


def _progress(iterable, total: int, desc: str, quiet: bool, unit: str):
    """A tqdm progress bar on stderr, off with ``--quiet`` and when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True if quiet else None, dynamic_ncols=True)


def run_fss(c: dict, out: pathlib.Path, stem: str, store: pathlib.Path, *, quiet: bool = False) -> dict:
    """A finite-size-scaling study; every transfer-matrix run is stored in ``store`` after every stage, and a
    run already stored there for a stage is read instead of computed."""
    import jax
    import jax.numpy as jnp

    from .._core.tmm import lyapunov_exponents

    system, t, f = c["system"], c["tmm"], c["fit"]
    model = _model(system)
    strengths = t["strengths"]
    root = jax.random.key(t["seed"])
    samples = {width: _sample(system, width, slices) for width, slices in zip(t["widths"], t["max_slices"])}
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
            res = lyapunov_exponents(key, samples[width], model, strength=jnp.asarray(w, float),
                                     distribution=system["distribution"], su2=system["su2"], rtol=rtol,
                                     chunk=t["chunk"], warmup=t["warmup"], qr_every=t["qr_every"],
                                     min_batches=t["min_batches"], resume=previous)
            jax.block_until_ready(res.exponents)
            seconds = time.perf_counter() - begin + before
            _write_spectrum(path, res, seconds)
            return task, res, seconds

        from .._runs.ensemble import default_workers, parallel_map

        workers = t["workers"] or default_workers(list(jax.local_devices()))
        for (width, i, w), res, seconds in _progress(parallel_map(work, tasks, workers, stop), len(tasks),
                                                     f"stage {stage + 1}", quiet, "run"):
            results[(width, i)] = (res, seconds)
            lam = float(res.localization_length) / width
            _log(f"  stage {stage + 1} M={width:3d} W={w:7.3f}: Lambda = {lam:.5f} +- "
                 f"{lam * float(res.relative_error):.5f} ({int(res.slices)} slices, "
                 f"{'converged' if bool(res.converged) else 'NOT converged'}, {seconds:.1f} s)")
        data = _fss_table(results, t["widths"], strengths)
        stage_fit = _fss_fit(data, f, min_width=f["min_width"])
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

    main_fit = _fss_fit(data, f, min_width=f["min_width"], bootstrap=f["bootstrap"], key=jax.random.key(t["seed"] + 1),
                        keep=True)
    fit_obj = main_fit.pop("_fit")
    widths, low = t["widths"], f["min_width"]
    by_largest = [dict(_fss_fit(data, f, min_width=low, max_width=top, optional=True), largest_width=top)
                  for top in widths[:-1] if len([w for w in widths if low <= w <= top]) >= 2]
    by_largest.append(dict(main_fit, largest_width=widths[-1]))
    by_smallest = [dict(_fss_fit(data, f, min_width=m, optional=True), smallest_width=m) for m in widths
                   if m != low and len([w for w in widths if w >= m]) >= 2]
    plain = dict(f, irrelevant_order=0, irrelevant_field_order=0)
    without = [dict(_fss_fit(data, plain, min_width=m, optional=True), smallest_width=m) for m in widths
               if len([w for w in widths if w >= m]) >= 2]

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


def _fss_table(results, widths, strengths):
    """The transfer-matrix runs as columns: width, disorder, Lambda = lambda_M / M, its error, slices, ..."""
    rows = [(width, w, float(res.localization_length) / width, float(res.relative_error), int(res.slices),
             bool(res.converged), seconds) for width in widths for i, w in enumerate(strengths)
            for res, seconds in [results[(width, i)]]]
    columns = dict(zip(("width", "disorder", "Lambda", "Lambda_stderr", "slices", "converged", "seconds"), zip(*rows)))
    columns["Lambda_stderr"] = tuple(lam * rel for lam, rel in zip(columns["Lambda"], columns["Lambda_stderr"]))
    return {k: np.asarray(v) for k, v in columns.items()}


def _fss_fit(data, f, *, min_width, max_width=None, bootstrap=0, key=None, keep=False, optional=False):
    """A fit as a JSON-able dict. ``optional`` fits (subsets) that cannot be done record why instead."""
    from .._core.scaling import ScalingModel, fit_scaling

    y = f["irrelevant_exponent"]
    sel = (data["width"] >= min_width) & (data["width"] <= (max_width or np.inf))
    try:
        model = ScalingModel(f["relevant_order"], f["irrelevant_order"], f["relevant_field_order"],
                             f["irrelevant_field_order"], None if y == "fit" else y)
        fit = fit_scaling(data["disorder"][sel], data["width"][sel], data["Lambda"][sel], data["Lambda_stderr"][sel],
                          model=model, critical_guess=f["critical_guess"], exponent_guess=f["exponent_guess"],
                          irrelevant_guess=f["irrelevant_guess"], bootstrap=bootstrap, key=key,
                          max_steps=f["max_steps"])
    except ValueError as err:
        if not optional:
            raise
        return {"error": str(err)}
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
        from .._core.stats import confidence_z

        z = confidence_z(conf)
        interval = [lc - z * lcs, lc + z * lcs]
    out["Lambda_c"] = {"value": lc, "stderr": lcs, "interval": interval}
    out.update(chi2=float(fit.chi2), dof=int(fit.dof), p_value=float(fit.p_value), converged=bool(fit.converged),
               widths=sorted(set(int(w) for w in data["width"][sel])), confidence=conf,
               interval_method="bootstrap" if fit.bootstrap.shape[0] else "covariance",
               bootstrap=int(fit.bootstrap.shape[0]), parameters=list(fit.model.names))
    if keep:
        out["_fit"] = fit
    return out


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
def _conductance_runner(system_items: tuple, length: int, seed: int, chunk: int, devices: tuple, method: str = "rgf"):
    """The ChunkRunner of a beta study's L x L (x L) samples: ``runner(indices, strength_index, strength)`` gives
    their conductances g (``_core.scaling.beta_conductances`` with solver ``method``). Cached per (system, L, seed,
    chunk, devices, method): a refit or a second study in one process reuses the compiled function (W is
    traced). On one CPU device a chunk is vmapped ``cpu_vmap_width`` realizations at a time, as in the runner."""
    from .._core.scaling import beta_conductances
    from .._runs.ensemble import ChunkRunner, vmap_width

    system = dict(system_items)
    sample, model = _sample(system, length, length), _model(system)
    width = vmap_width(devices, sample.slice_size)

    def batched(indices, strength_index, strength):
        return {"g": beta_conductances(sample, model, seed, indices, strength_index, strength,
                                       distribution=system["distribution"], su2=system["su2"], method=method,
                                       batch=width)}

    return ChunkRunner(batched, None, list(devices), chunk, arguments=2)


def _beta_ensembles(c: dict, store: pathlib.Path, *, compute: bool = True, quiet: bool = False) -> dict:
    """The conductance ensembles of a beta study: the table of <ln g> (contacts removed if asked) over
    (strength, length), with its standard errors; a dict as stored under "data" in the study's JSON.

    Every chunk of ``ensemble.chunk`` realizations of every (strength, length) runs through the run system's
    ``ChunkRunner`` (sharded over the local devices) and is written to ``store`` as soon as it is computed; a
    chunk already there is read instead of computed. Without ``compute`` (``--refit``) a missing chunk is a
    StoredDataError."""
    import jax

    from .._core.observables import open_channels
    from .._core.scaling import log_conductance_table

    system, e = c["system"], c["ensemble"]
    lengths, strengths, n = e["lengths"], e["strengths"], e["realizations"]
    spans = [(k, min(k + e["chunk"], n)) for k in range(0, n, e["chunk"])]
    channels = [float(open_channels(_sample(system, L, L), _model(system))) for L in lengths]

    def path(L, i, span):
        return store / f"L{L:04d}-W{i:03d}-r{span[0]:07d}-{span[1]:07d}.npz"

    tasks = [(L, i, w, span) for L in reversed(lengths) for i, w in enumerate(strengths) for span in spans]
    todo = [(L, i, w, span) for L, i, w, span in tasks if not path(L, i, span).exists()]
    if not compute and todo:
        raise StoredDataError(f"--refit: the ensembles of this config in {store} are incomplete ({len(tasks) - len(todo)}"
                              f" of {len(tasks)} chunks stored); rerun without --refit to finish them.")
    _log(f"  {len(tasks) - len(todo)} of {len(tasks)} chunks stored in {store}"
         + (f"; computing {len(todo)}" if todo else ""))
    from .._runs.ensemble import default_workers, parallel_map

    devices = tuple(jax.local_devices())
    workers = e["workers"] or default_workers(list(devices))

    def work(task):  # computes and stores one chunk (in a worker thread)
        L, i, w, span = task
        runner = _conductance_runner(tuple(sorted(system.items())), L, e["seed"], e["chunk"], devices, e["method"])
        begin = time.perf_counter()
        values = np.concatenate([arrays["g"] for _, arrays in runner(np.arange(*span), np.int32(i), np.float64(w))])
        _write_chunk(path(L, i, span), L, w, values, time.perf_counter() - begin)

    with _progress(None, len(todo), "beta ensembles", quiet, "chunk") as bar:
        for L in sorted({task[0] for task in todo}, reverse=True):  # each size's first chunk compiles, alone
            for _ in parallel_map(work, [task for task in todo if task[0] == L], workers, first_alone=True):
                bar.update()
    g = np.zeros((len(strengths), len(lengths), n))
    seconds = 0.0
    for L, i, w, span in tasks:
        g[i, lengths.index(L), span[0]:span[1]], spent = _read_chunk(path(L, i, span), L, w, span)
        seconds += spent
    table = log_conductance_table(g, channels, contact_correction=e["contact_correction"])
    return {"lengths": lengths, "strengths": strengths, "open_channels": channels, "realizations": n,
            "contact_correction": e["contact_correction"], "seconds": seconds,
            **{k: v if k == "dropped_ballistic" else v.tolist() for k, v in table.items()}}


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


ONE_LOOP_MIN_G = 2.0  # raw slopes compared with the finite-size one-loop beta from this g (e^2/h, all channels)


def run_beta(c: dict, out: pathlib.Path, stem: str, data: dict) -> dict:
    """The fit and figure of a beta study on ``data``, the table of its ensembles (``_beta_ensembles``): the
    single-parameter-scaling fit over strengths >= fit.min_strength and lengths >= fit.min_length."""
    from .._core.scaling import (beta_one_loop, finite_difference_beta, finite_size_one_loop, fit_beta,
                                 one_loop_amplitude, zero_crossings)

    f = c["fit"]
    data = dict(data)
    seconds = data.pop("seconds", 0.0)
    use_w = [i for i, w in enumerate(data["strengths"]) if w >= f["min_strength"]]
    use_l = [j for j, L in enumerate(data["lengths"]) if L >= f["min_length"]]
    lengths = [data["lengths"][j] for j in use_l]
    strengths = [data["strengths"][i] for i in use_w]
    mean = np.asarray(data["mean_log_g"])[np.ix_(use_w, use_l)]
    err = np.asarray(data["stderr_log_g"])[np.ix_(use_w, use_l)]
    xm, bm, sm = finite_difference_beta(lengths, mean, err)
    lo, hi = float(np.min(mean)), float(np.max(mean))
    grid = np.linspace(lo, hi, 200)
    # The spline has knots + 3 coefficients and each curve one starting value: with fewer data points the study
    # reports its raw slopes and their one-loop comparisons without a fit.
    parameters = f["knots"] + 3 + len(strengths)
    if np.isfinite(mean).sum() <= parameters:
        fit, beta, band = None, np.full_like(grid, np.nan), np.full_like(grid, np.nan)
        summary = {"kind": "beta", "title": c["study"]["title"], "seconds": seconds, "data": data,
                   "fit": {"skipped": f"{int(np.isfinite(mean).sum())} points for {parameters} parameters (knots + 3 "
                                      "spline coefficients and one start per curve): raw slopes only",
                           "strengths": strengths, "lengths": lengths}}
    else:
        fit = fit_beta(np.asarray(lengths, float), mean, err, knots=f["knots"], smoothing=f["smoothing"],
                       substeps=f["substeps"], max_steps=f["max_steps"])
        beta, band = np.asarray(fit(grid)), np.asarray(fit.stderr(grid))
        summary = {
            "kind": "beta", "title": c["study"]["title"], "seconds": seconds,
            "data": data,
            "fit": {"chi2": float(fit.chi2), "dof": fit.dof, "converged": bool(fit.converged),
                    "strengths": strengths, "lengths": lengths,
                    "log_g": grid[::10].tolist(), "beta": beta[::10].tolist(), "beta_stderr": band[::10].tolist(),
                    "zero_crossings_log_g": zero_crossings(grid, beta, band)},
        }
    summary["fit"]["raw_slopes"] = {"log_g_mid": xm.tolist(), "beta": bm.tolist(), "stderr": sm.tolist(),
                                    "lengths": [[a, b] for a, b in zip(lengths[:-1], lengths[1:])]}
    if f["asymptote"] != "none" and fit is not None:
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
        finite = finite_size_one_loop(lengths, channels, mean, symmetry=f["asymptote"],
                                      periodic=c["system"]["boundary"] == "periodic")
        metal = np.exp(xm) >= ONE_LOOP_MIN_G  # the one-loop domain; deep in the insulator 1/g explodes
        if np.any(metal):
            summary["fit"]["finite_size_one_loop"] = {"g_min": ONE_LOOP_MIN_G, **one_loop_amplitude(
                bm, sm, finite, metal), "beta": finite.tolist(), "log_g_mid": xm.tolist()}
        finite = np.where(metal, finite, np.nan)
    if fit is not None:
        summary["fit"]["max_beta"] = float(np.max(beta))
        summary["fit"]["min_beta"] = float(np.min(beta))
    _plot_beta(c, lengths, strengths, mean, err, fit, grid, beta, band, (xm, bm, sm), out / f"{stem}.png",
               finite=finite)
    return summary



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
    traj = np.asarray(fit.trajectories()) if fit is not None else None
    for i, (w, col) in enumerate(zip(strengths, colors)):
        ax.errorbar(lengths, mean[i], yerr=err[i], fmt="o", ms=3.5, color=col, capsize=2, label=f"W = {w:g}")
        if traj is not None:
            ax.plot(lengths, traj[i], color=col, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("L")
    ax.set_ylabel(r"$\langle \ln g\rangle$" + (" (contacts removed)" if c["ensemble"]["contact_correction"] else ""))
    ax.set_title(f"{c['study']['title']}: data" + (" and single-parameter-scaling fit" if fit is not None else ""),
                 fontsize=9)
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1]
    xm, bm, sm = raw
    for i, col in enumerate(colors):
        ax.errorbar(xm[i], bm[i], yerr=sm[i], fmt=".", color=col, alpha=0.6, capsize=1.5)
    if fit is not None:
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
    if fit is not None:
        bottom = max(-3.0, float(np.min(beta - 3 * band)) - 0.1)
        ax.set_ylim(bottom, float(np.max(beta + 3 * band)) + 0.1)
        visible = grid[beta >= bottom]  # deep-insulator points far below the window only stretch the axis
        if visible.size:
            ax.set_xlim(float(visible[0]) - 0.5, float(grid[-1]) + 0.3)
    title = rf"$\chi^2$/dof = {float(fit.chi2):.1f}/{fit.dof}" if fit is not None else "no fit (too few points)"
    ax.set_title(f"{title}; points: raw slopes between successive L", fontsize=9)
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
        if fit is not None:
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


@functools.lru_cache(maxsize=8)
def _dephasing_runner(system_items: tuple, length: int, field_region: str, fluxes: tuple, seed: int, chunk: int,
                      devices: tuple, solver: str = "auto"):
    """The ChunkRunner of a dephasing study: ``runner(indices, strength_index, strength, log_tau)`` gives
    {"g", "slope"} (indices, fields) (``_core.scaling.study_dephasing_slopes``). Cached like
    :func:`_conductance_runner` (W and ln tau_phi are traced: one compilation per study)."""
    from .._core.scaling import study_dephasing_slopes
    from .._runs.ensemble import ChunkRunner

    system = dict(system_items)
    sample, model = _dephasing_sample(system, length, field_region), _model(system)

    def batched(indices, strength_index, strength, log_tau):
        return study_dephasing_slopes(sample, model, seed, indices, strength_index, strength, log_tau,
                                      fluxes=fluxes, distribution=system["distribution"], su2=system["su2"],
                                      solver=solver)

    return ChunkRunner(batched, None, list(devices), chunk, arguments=3)


def _dephasing_sample(system: dict, length: int, field_region: str):
    """An L x L square (dimension 2) or an L x L x L cube (3) of the study."""
    from .._runs.ensemble import make_sample

    return make_sample({"lattice": "strip" if system["dimension"] == 2 else "bar", "width": length,
                        "height": length, "length": length, "boundary": system["boundary"],
                        "spinful": system["spinful"], "field_region": field_region})


def _dephasing_ensembles(c: dict, store: pathlib.Path, *, quiet: bool = False) -> dict:
    """g and dg/d ln tau_phi of every realization at every (strength, tau_phi, flux) of a dephasing study, as
    arrays (strengths, taus, realizations, fields), with the leads' open channels (fields,) and the seconds spent.
    Chunks of ``dephasing.chunk`` realizations run through the ``ChunkRunner`` and are stored as soon as they are
    computed; a stored chunk is read instead. The same realizations (keys of ``_core.scaling.study_keys``) serve
    every tau_phi and field: common random numbers."""
    import jax

    from .._core.scaling import _channels, _fluxes
    from .._runs.store import atomic_savez

    system, d = c["system"], c["dephasing"]
    L, n, strengths, taus, fluxes = d["length"], d["realizations"], d["strengths"], d["tau_phi"], d["fluxes"]
    spans = [(k, min(k + d["chunk"], n)) for k in range(0, n, d["chunk"])]

    def path(i, j, span):
        return store / f"W{i:03d}-T{j:03d}-r{span[0]:07d}-{span[1]:07d}.npz"

    tasks = [(i, w, j, tau, span) for i, w in enumerate(strengths) for j, tau in enumerate(taus) for span in spans]
    todo = [task for task in tasks if not path(task[0], task[2], task[4]).exists()]
    _log(f"  {len(tasks) - len(todo)} of {len(tasks)} chunks stored in {store}"
         + (f"; computing {len(todo)}" if todo else ""))
    runner = _dephasing_runner(tuple(sorted(system.items())), L, d["field_region"], tuple(fluxes), d["seed"],
                               d["chunk"], tuple(jax.local_devices()), d["solver"]) if todo else None
    def work(task):  # computes and stores one chunk (in a worker thread: runs.default_workers at once)
        i, w, j, tau, span = task
        begin = time.perf_counter()
        shards = runner(np.arange(*span), np.int32(i), np.float64(w), np.float64(np.log(tau)))
        g = np.concatenate([arrays["g"] for _, arrays in shards])
        slope = np.concatenate([arrays["slope"] for _, arrays in shards])
        atomic_savez(path(i, j, span), g=g, slope=slope, strength=np.float64(w), tau_phi=np.float64(tau),
                     seconds=np.float64(time.perf_counter() - begin))

    from .._runs.ensemble import default_workers, parallel_map

    workers = default_workers(list(jax.local_devices()))
    for _ in _progress(parallel_map(work, todo, workers, first_alone=True), len(todo), "dephasing slopes", quiet,
                       "chunk"):
        pass
    shape = (len(strengths), len(taus), n, len(fluxes))
    g, slope, seconds = np.zeros(shape), np.zeros(shape), 0.0
    for i, w, j, tau, span in tasks:
        with _open_stored(path(i, j, span)) as stored:
            values = {k: stored[k] for k in ("g", "slope", "strength", "tau_phi", "seconds")}
        expected = (span[1] - span[0], len(fluxes))
        if (values["g"].shape != expected or values["slope"].shape != expected or float(values["strength"]) != w
                or float(values["tau_phi"]) != tau):
            raise StoredDataError(f"{path(i, j, span)}: stored chunk holds {values['g'].shape} values for W = "
                                  f"{float(values['strength'])}, tau_phi = {float(values['tau_phi'])}; expected "
                                  f"{expected} for W = {w}, tau_phi = {tau}; delete the file to recompute it.")
        g[i, j, span[0]:span[1]], slope[i, j, span[0]:span[1]] = values["g"], values["slope"]
        seconds += float(values["seconds"])
    sample, model = _dephasing_sample(system, L, d["field_region"]), _model(system)
    channels = np.asarray(_channels(sample, model, _fluxes(fluxes)))
    return {"g": g, "slope": slope, "channels": channels, "seconds": seconds}


def run_dephasing(c: dict, out: pathlib.Path, stem: str, data: dict) -> dict:
    """The table and figure of a dephasing study: per (W, tau_phi) the mean g, the raw zero-field slope and, per
    field, the subtracted slope, beta_phi = 2 <slope(0) - slope(B)> / <g> (``DephasingSlopes.beta``) and the
    paired magnetoconductance <g(B) - g(0)> (``DephasingSlopes.magnetoconductance``), each with its standard
    error, and the one-loop beta at the mean g with the deviation in standard errors; with
    ``dephasing.diffusion`` > 0 also beta_phi with the field-residual correction at L_phi = sqrt(D tau_phi)
    (``corrected``: divided by ``theory.cooperon_slope_fraction``). In 3D (cubes, zero field only) each row holds
    instead s = d ln <g> / d ln tau_phi and ``beta_einstein`` = (1 + 3s)/(1 + s) (``DephasingSlopes.
    beta_einstein``), and with ``dephasing.density_of_states`` rho > 0 also sigma = <g>/L, L_phi = sqrt(sigma
    tau_phi / (2 pi rho)) and g_phi = sigma L_phi, the g that beta belongs to."""
    from .._core.scaling import DephasingSlopes, beta_one_loop
    from .._core.stats import mean_stderr
    from .._core.theory import cooperon_slope_fraction

    d = c["dephasing"]
    contact, symmetry = d["contact_correction"], d["one_loop"]
    rows = []
    for i, w in enumerate(d["strengths"]):
        for j, tau in enumerate(d["tau_phi"]):
            s = DephasingSlopes.from_values(d["fluxes"], data["g"][i, j], data["slope"][i, j], data["channels"])
            g0 = np.asarray(s.g_contact if contact else s.g)[:, 0]
            raw = np.asarray(s.slope_contact if contact else s.slope)[:, 0]
            (g_mean, g_se), (raw_mean, raw_se) = (tuple(float(x) for x in mean_stderr(a)) for a in (g0, raw))
            row = {"strength": w, "tau_phi": tau, "g": g_mean, "g_stderr": g_se,
                   "finite": bool(np.all(np.isfinite(g0))), "slope_raw": raw_mean, "slope_raw_stderr": raw_se, "beta_raw": s.beta(None, contact=contact),
                   "fields": []}
            one_loop = float(beta_one_loop(g_mean, symmetry)) if symmetry != "none" and g_mean > 0 else None
            row["one_loop"] = one_loop
            l_phi = float(np.sqrt(d["diffusion"] * tau)) if d["diffusion"] > 0 else None
            row["l_phi"] = l_phi
            for k, flux in enumerate(d["fluxes"][1:], start=1):
                beta, se = s.beta(k, contact=contact)
                entry = {"flux": flux, "subtracted": s.subtracted(k, contact=contact), "beta": beta, "beta_stderr": se,
                         "magnetoconductance": s.magnetoconductance(k, contact=contact)}
                if one_loop is not None:
                    entry.update(ratio_to_one_loop=beta / one_loop, z=(beta - one_loop) / se)
                if l_phi is not None:  # the field-residual correction (DephasingSlopes.beta)
                    value, error = s.beta(k, contact=contact, l_phi=l_phi)
                    entry["corrected"] = {"field_fraction": float(cooperon_slope_fraction(l_phi, flux)),
                                          "beta": value, "beta_stderr": error}
                    if one_loop is not None:
                        entry["corrected"].update(ratio_to_one_loop=value / one_loop, z=(value - one_loop) / error,
                                                  ratio_stderr=error / abs(one_loop))
                row["fields"].append(entry)
            if c["system"]["dimension"] == 3:
                row.update(_einstein_row(s, contact, d["length"], tau, d["density_of_states"]))
            rows.append(row)
    summary = {"kind": "dephasing", "title": c["study"]["title"], "seconds": data["seconds"],
               "data": {"dimension": c["system"]["dimension"], "length": d["length"], "strengths": d["strengths"],
                        "tau_phi": d["tau_phi"],
                        "fluxes": d["fluxes"], "realizations": d["realizations"],
                        "open_channels": np.asarray(data["channels"]).tolist(), "contact_correction": contact,
                        "one_loop": symmetry, "table": rows}}
    _plot_dephasing(c, rows, out / f"{stem}.png")
    return summary


def _einstein_row(s, contact: bool, length: int, tau: float, rho: float) -> dict:
    """The 3D entries of a dephasing study's row (``run_dephasing``)."""
    from .._core.theory import coherence_length, diffusion_constant

    g0 = np.asarray(s.g_contact if contact else s.g)[:, 0]
    slope = np.asarray(s.slope_contact if contact else s.slope)[:, 0]
    out = {"s": float(slope.mean() / g0.mean())}
    try:
        out["beta_einstein"] = s.beta_einstein(contact=contact)
    except ValueError as err:  # s <= -1: L_phi by the Einstein rule does not grow with tau_phi
        out["beta_einstein"], out["beta_einstein_note"] = None, str(err)
    if rho > 0:
        sigma = float(g0.mean()) / length
        l_phi = float(coherence_length(diffusion_constant(sigma, rho), tau))
        out.update(sigma=sigma, l_phi=l_phi, g_phi=sigma * l_phi)
    return out


def _plot_dephasing(c, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._core.scaling import beta_one_loop

    d = c["dephasing"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    ax = axes[0]
    markers = "osD^v<>"
    taus = d["tau_phi"]
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(taus)))
    three = c["system"]["dimension"] == 3
    for row in rows:
        if not row["finite"] or row["g"] <= 0:
            continue
        col = colors[taus.index(row["tau_phi"])]
        x = np.log(row["g"])
        if three:  # beta with the Einstein L_phi, against g_phi = sigma L_phi where rho was given
            if row["beta_einstein"] is not None:
                ax.errorbar(np.log(row.get("g_phi", row["g"])), row["beta_einstein"][0],
                            yerr=row["beta_einstein"][1], fmt="o", ms=4, color=col, capsize=2)
            continue
        ax.errorbar(x, row["beta_raw"][0], yerr=row["beta_raw"][1], fmt="x", color=col, alpha=0.5, capsize=1.5)
        for k, f in enumerate(row["fields"]):
            corrected = "corrected" in f
            ax.errorbar(x + 0.01 * k, f["beta"], yerr=f["beta_stderr"], fmt=markers[k % len(markers)], ms=4,
                        color=col, capsize=2, mfc="none" if corrected else col, alpha=0.5 if corrected else 1.0)
            if corrected:
                ax.errorbar(x + 0.01 * k + 0.005, f["corrected"]["beta"], yerr=f["corrected"]["beta_stderr"],
                            fmt=markers[k % len(markers)], ms=4, color=col, capsize=2)
    finite = [r["g"] for r in rows if r["finite"] and r["g"] > 0]
    if d["one_loop"] != "none" and finite:
        gg = np.exp(np.linspace(np.log(min(finite)) - 0.2, np.log(max(finite)) + 0.2, 100))
        ax.plot(np.log(gg), np.asarray(beta_one_loop(gg, d["one_loop"])), "k--", lw=1,
                label=f"one loop ({d['one_loop']})")
    for j, tau in enumerate(taus):
        ax.plot([], [], "s", color=colors[j], label=rf"$\tau_\varphi$ = {tau:g}")
    for k, flux in enumerate(d["fluxes"][1:]):
        ax.plot([], [], markers[k % len(markers)], color="0.3", label=f"subtracted at flux {flux:g}"
                + (", field residual corrected" if d["diffusion"] > 0 else ""))
    if d["diffusion"] > 0:
        ax.plot([], [], "o", color="0.3", mfc="none", alpha=0.5, label="subtracted, field residual not corrected")
    if three:
        ax.plot([], [], "o", color="0.3", label=r"$\beta = (1 + 3s)/(1 + s)$, Einstein $L_\varphi$")
        ax.set_xlabel(r"$\ln g_\varphi$, $g_\varphi = \sigma L_\varphi$ ($e^2/h$)" if d["density_of_states"] > 0
                      else r"$\ln \langle g\rangle$ of the cube ($e^2/h$; no $\rho$ given)")
        ax.set_ylabel(r"$\beta = 1 + d\ln\sigma / d\ln L_\varphi$")
    else:
        ax.plot([], [], "x", color="0.3", label="raw (Drude term included)")
        ax.set_xlabel(r"$\ln g$  ($g$ in $e^2/h$" + (", contacts removed)" if d["contact_correction"] else ")"))
        ax.set_ylabel(r"$\beta_\varphi = 2\,d\ln g / d\ln \tau_\varphi$")
    ax.axhline(0, color="k", lw=0.5)
    size = " x ".join([str(d["length"])] * c["system"]["dimension"])
    ax.set_title(f"{c['study']['title']}: {size}, {d['realizations']} realizations",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    strengths = d["strengths"]
    wcol = plt.cm.plasma(np.linspace(0, 0.85, len(strengths)))
    for i, w in enumerate(strengths):
        sel = [r for r in rows if r["strength"] == w]
        ax.errorbar([r["tau_phi"] for r in sel], [r["g"] for r in sel], yerr=[r["g_stderr"] for r in sel], fmt="o-",
                    ms=3.5, color=wcol[i], capsize=2, label=f"W = {w:g}")
    ax.set_xscale("log")
    ax.set_xlabel(r"$\tau_\varphi$ ($\hbar/t$)")
    ax.set_ylabel(r"$\langle g\rangle$ at zero field")
    ax.set_title("the conductance the slopes belong to", fontsize=9)
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _error(message) -> int:
    print(f"difftransport scale: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    """Run (or resume, or with ``--refit`` refit) the study in ``args.config``; 0 on success, 2 on a bad
    config or a failed study (one line on stderr), 130 on Ctrl-C."""
    try:
        config = load(args.config)
    except ValueError as err:
        return _error(err)
    out = args.out if args.out is not None else pathlib.Path("out") / args.config.stem
    if args.refit and not (out / "data").is_dir():
        return _error(f"--refit: no stored data in {out} (no {out / 'data'}); rerun without --refit.")
    from .._runs.store import DirectoryLocked, directory_lock

    try:
        with directory_lock(out, wait=args.wait):
            return _locked_main(args, config, out)
    except DirectoryLocked as err:
        return _error(err)
    except KeyboardInterrupt:
        print("difftransport scale: interrupted; the data computed so far are stored in "
              f"{out / 'data'}: rerun the same command to resume.", file=sys.stderr)
        return 130


def _locked_main(args, config: dict, out: pathlib.Path) -> int:
    from .._runs.store import atomic_write_bytes, write_json

    kind, stem, digest = config["study"]["kind"], config["study"]["figure"], config_hash(config)
    try:
        store = _refit_store(config, out) if args.refit else _prepare_store(config, out)
    except StoredDataError as err:
        return _error(err)
    _log(f"difftransport scale: {config['study']['title']} ({kind}) -> {out}"
         + (" (refit of stored ensembles)" if args.refit else ""))
    try:
        if kind == "fss":
            summary = run_fss(config, out, stem, store, quiet=args.quiet)
        elif kind == "dephasing":
            data = _dephasing_ensembles(config, store, quiet=args.quiet)
        else:
            data = _beta_ensembles(config, store, compute=not args.refit, quiet=args.quiet)
    except StoredDataError as err:
        return _error(err)
    except Exception as err:  # noqa: BLE001  (the CLI reports one line; what was computed is on disk)
        # The fss fits run between its stages, so a failing fss fit also lands here.
        what, rerun = (("transfer-matrix runs", "rerunning the same command (with [fit] changed if a fit failed)")
                       if kind == "fss" else ("ensemble chunks", "rerunning the same command"))
        return _error(f"the {kind} study stopped ({_one_line(err)}); the {what} computed so far are stored in "
                      f"{store}, and {rerun} reuses them.")
    if kind != "fss":
        try:
            summary = (run_beta if kind == "beta" else run_dephasing)(config, out, stem, data)
        except Exception as err:  # noqa: BLE001
            if kind == "dephasing":
                return _error(f"the table or figure failed ({_one_line(err)}); the slopes are stored in {store}, "
                              "and rerunning the same command recomputes none of them.")
            return _error(f"the fit or figure failed ({_one_line(err)}); the ensembles are stored in {store}: "
                          f"change [fit] in {args.config} and rerun with --refit (nothing is recomputed).")
    summary["config_hash"] = digest
    write_json(out / f"{stem}.json", summary)
    atomic_write_bytes(out / "config.toml", dumps(config).encode())
    write_json(out / "config.json", {"hash": digest, "config": config})
    _log(f"wrote {out / (stem + '.png')} and {out / (stem + '.json')} ({summary['seconds']:.0f} s of computation)")
    return 0
