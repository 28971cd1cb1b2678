"""Run an ensemble config: chunks over devices and processes, with progress, resume and a results store.

This is the orchestration layer behind ``difftransport run``; the pure per-realization computation lives in
``_ensemble``, the files in ``_store``.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess
import time

import jax
import numpy as np

from . import config as _config
from . import ensemble as _ensemble
from .store import RunDirectory, RunDirectoryError, atomic_savez, directory_lock, write_json


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict | None:
    """Commit of the difftransport source tree if it is a git checkout (and whether it has local changes)."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"commit": commit.stdout.strip(), "local_changes": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Versions, devices and processes: what ``difftransport info`` prints and every run records."""
    devices = jax.devices()
    return {
        "difftransport": _version("difftransport"),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "equinox": _version("equinox"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
        "platform": devices[0].platform,
        "devices": [str(d) for d in devices],
        "device_kinds": sorted({d.device_kind for d in devices}),
        "local_devices": jax.local_device_count(),
        "processes": jax.process_count(),
        "git": _git_commit(),
    }


def _all_processes_or(mask: np.ndarray) -> np.ndarray:
    if jax.process_count() == 1:
        return mask
    from jax.experimental import multihost_utils

    return np.any(multihost_utils.process_allgather(mask), axis=0)


def _any_process(flag: bool) -> bool:
    return bool(_all_processes_or(np.asarray([flag]))[0])


def _check_out(out: pathlib.Path, given) -> None:
    """Refuse an --out that cannot become a run directory, before anything is written."""
    if given is not None and str(given).strip() == "":
        raise RunDirectoryError("--out '' is empty: name a run directory (by default out/<config name>)")
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"--out {out} is a file, not a directory: name a run directory")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(f"--out {out}: {existing} is a file, so the run directory cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"--out {out}: {existing} is not writable")


def preflight(config: dict, source, devices: list, workers: int | None = None) -> dict[str, _ensemble.ChunkRunner]:
    """Check every ensemble as far as possible without computing it: build its sample, run the model's value
    checks at every grid point and trace the batched function (structural checks). Returns the runners.
    Raises ConfigError naming the config file and the ensemble."""
    runners = {}
    for name, entry in config["ensembles"].items():
        try:
            _ensemble.check_values(entry)
            runners[name] = _ensemble.ChunkRunner(entry, config["run"]["seed"], devices, config["run"]["chunk"],
                                                  workers=workers)
            runners[name].trace()
        except ValueError as exc:
            raise _config.ConfigError(f"{source}: ensembles.{name} cannot be run: {str(exc).strip()}") from None
    return runners


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def run(config_path, out=None, *, chunk: int | None = None, devices: int | None = None, workers: int | None = None,
        quiet: bool = False, wait: bool = False, log=print) -> RunDirectory:
    """Run (or resume) the ensembles of a config file; returns the run directory.

    ``out`` defaults to ``out/<config file stem>``. ``chunk`` overrides ``run.chunk`` (results do not depend
    on it); ``devices`` limits the devices used per process; ``workers`` is how many chunks run at once in
    threads (None: one per core on a single CPU device, else 1: ``ensemble.default_workers``; no result depends on
    it). Everything that can be checked without computing (the config, ``out``, the devices, every ensemble's
    parameters and shapes) is checked before anything is written. The run holds the directory's lock
    (``directory_lock``, taken by process 0) until it returns; if another run holds it, this raises
    ``DirectoryLocked``, or waits for it with ``wait``.
    """
    config = _config.load(config_path)
    if chunk is not None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise _config.ConfigError(f"--chunk = {chunk!r} is out of range: must be an integer >= 1")
        config["run"]["chunk"] = chunk
    given = out
    out = pathlib.Path(out) if out is not None else pathlib.Path("out") / pathlib.Path(config_path).stem
    _check_out(out, given)
    try:
        chosen = _ensemble.select_devices(devices)
    except ValueError as exc:
        raise _config.ConfigError(f"--devices {devices}: {exc}") from None
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise _config.ConfigError(f"--workers = {workers!r} is out of range: must be an integer >= 1")
    runners = preflight(config, config_path, chosen, workers)
    process = jax.process_index()
    store = RunDirectory(out, config, process, log=log)
    with contextlib.ExitStack() as held:
        # Process 0 claims the directory for the whole run; the processes agree before any of them writes.
        error, resumed = None, False
        if process == 0:
            try:
                try:
                    held.enter_context(directory_lock(out, wait=wait))
                except OSError as exc:
                    raise RunDirectoryError(f"--out {out}: cannot create or lock the run directory: "
                                            f"{exc.strerror or exc}") from None
                removed = store.remove_temporary()
                if removed:
                    log(f"removed {removed} temporary file(s) an interrupted run left in {out}")
                resumed = store.prepare()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the other processes
                error = exc
        if _any_process(error is not None):
            if error is not None:
                raise error
            raise RunDirectoryError(f"process 0 could not claim the run directory {out}; see its error")
        _run_claimed(store, config, runners, chosen, resumed, quiet, log)
    return store


def _run_claimed(store: RunDirectory, config: dict, runners: dict, chosen: list, resumed: bool, quiet: bool,
                 log) -> None:
    process = store.process
    seed = config["run"]["seed"]
    started = time.perf_counter()
    meta = store.metadata()
    meta.update({"environment": environment(), "seed": seed, "config_hash": store.hash, "status": "running"})
    meta["attempts"] = meta.get("attempts", []) + [
        {"started": _now(), "resumed": resumed, "devices_used": len(chosen), "chunk": config["run"]["chunk"],
         "workers": max((r.workers for r in runners.values()), default=1)}
    ]
    if process == 0:
        store.write_metadata(meta)

    from tqdm.auto import tqdm

    for name, entry in config["ensembles"].items():
        n = entry["realizations"]
        runner = runners[name]
        done = _all_processes_or(store.completed(name, n, entry["observables"]))
        todo = np.nonzero(~done)[0]
        size = runner.chunk
        if resumed and process == 0:
            log(f"[{name}] resuming: {int(done.sum())} of {n} realizations already stored")
        def store_chunk(index, shards, name=name):
            if shards:
                merged_index = np.concatenate([i for i, _ in shards])
                merged = {k: np.concatenate([a[k] for _, a in shards]) for k in shards[0][1]}
                store.write_chunk(name, merged_index, merged)

        with tqdm(total=len(todo), desc=name, unit="real", disable=quiet or process != 0, dynamic_ncols=True,
                  smoothing=0.1) as bar:
            chunks = [todo[start : start + size] for start in range(0, len(todo), size)]
            for index, _ in runner.map(chunks, sink=store_chunk):  # each chunk stored by its worker when done
                bar.update(len(index))
    _barrier("difftransport-chunks-done")
    if process == 0:
        finalize(store)
        meta = store.metadata()
        meta["status"] = "complete"
        meta["attempts"][-1].update({"finished": _now(), "wall_seconds": round(time.perf_counter() - started, 3)})
        meta["wall_seconds_total"] = round(sum(a.get("wall_seconds", 0) for a in meta["attempts"]), 3)
        store.write_metadata(meta)
    _barrier("difftransport-finalized")


def finalize(store: RunDirectory) -> None:
    """Assemble every ensemble in index order, reduce statistics, write results, summary and figures."""
    config = store.config
    summary = {}
    for name, entry in config["ensembles"].items():
        n = entry["realizations"]
        raw = store.gather(name, n, entry["observables"])
        grid_ndim = len(entry["grid"])
        arrays = {"index": np.arange(n)}
        arrays.update({f"grid_{k}": np.asarray(v) for k, v in entry["grid"].items()})
        summary[name] = {"realizations": n, "grid": entry["grid"], "observables": {}}
        for obs, values in raw.items():
            stats = _ensemble.statistics(values)
            counts, edges = _ensemble.histograms(values, grid_ndim)
            arrays[obs] = values
            arrays.update({f"{obs}__{k}": v for k, v in stats.items()})
            arrays[f"{obs}__hist_counts"], arrays[f"{obs}__hist_edges"] = counts, edges
            summary[name]["observables"][obs] = {k: v for k, v in stats.items() if k != "count"}
        atomic_savez(store.results_path(name), **arrays)
    write_json(store.path / "summary.json", summary)
    from .plots import plot_run

    plot_run(store.path)
