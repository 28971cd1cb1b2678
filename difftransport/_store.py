"""The run directory: a self-describing, resumable store of an ensemble run (format: docs/ensembles.md).

    RUN_DIR/config.toml        the config as run, normalized (every default written out)
    RUN_DIR/config.json        {"hash": ..., "config": ...}; a rerun with a different hash is refused
    RUN_DIR/metadata.json      versions, git commit, devices, processes, seed, attempts with wall times
    RUN_DIR/chunks/NAME/p{process}-r{first}-{last}.npz   raw results as computed (index + arrays)
    RUN_DIR/results/NAME.npz   all realizations in index order, grid axes, statistics, histograms
    RUN_DIR/summary.json       reduced statistics of every ensemble
    RUN_DIR/figures/*.png      figures (``difftransport plot RUN_DIR`` redraws them)

Every file is written to a temporary name and renamed, so an interrupted run (Ctrl-C, ``kill -9``) leaves
only complete files; a rerun skips the realizations already stored.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
from typing import Any

import numpy as np

from ._config import config_hash, differences, dumps, result_relevant

_CHUNK = re.compile(r"^p(\d+)-r(\d+)-(\d+)\.npz$")


class ConfigMismatch(RuntimeError):
    """The run directory holds results of a different config."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # mkstemp makes private (0600) files; run directories are shared


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: pathlib.Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: pathlib.Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


class RunDirectory:
    def __init__(self, path: str | pathlib.Path, config: dict, process: int = 0):
        self.path = pathlib.Path(path)
        self.config = config
        self.process = process
        self.hash = config_hash(config)

    # -- config -------------------------------------------------------------------------------------
    def prepare(self) -> bool:
        """Create the directory or check that it belongs to this config. Returns True if it existed."""
        stored = self.path / "config.json"
        if stored.exists():
            old = json.loads(stored.read_text())
            if old["hash"] != self.hash:
                changed = differences(result_relevant(old["config"]), result_relevant(self.config))
                raise ConfigMismatch(
                    f"{self.path} holds results of a different config; refusing to mix them. Changed: "
                    + "; ".join(changed[:8]) + ". Use another --out directory, or delete the old one."
                )
            return True
        if self.process == 0:
            write_json(stored, {"hash": self.hash, "config": self.config})
            atomic_write_bytes(self.path / "config.toml", dumps(self.config).encode())
        return False

    # -- chunks -------------------------------------------------------------------------------------
    def chunk_dir(self, ensemble: str) -> pathlib.Path:
        return self.path / "chunks" / ensemble

    def chunk_files(self, ensemble: str) -> list[pathlib.Path]:
        d = self.chunk_dir(ensemble)
        return sorted(p for p in d.iterdir() if _CHUNK.match(p.name)) if d.exists() else []

    def completed(self, ensemble: str, count: int) -> np.ndarray:
        """Mask (count,) of the realizations stored in the chunk files this process can see."""
        done = np.zeros(count, bool)
        for path in self.chunk_files(ensemble):
            with np.load(path) as data:
                index = data["index"]
            done[index[index < count]] = True
        return done

    def write_chunk(self, ensemble: str, index: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        name = f"p{self.process}-r{int(index[0]):08d}-{int(index[-1]):08d}.npz"
        atomic_savez(self.chunk_dir(ensemble) / name, index=index, **arrays)

    def gather(self, ensemble: str, count: int, observables: list[str]) -> dict[str, np.ndarray]:
        """All realizations 0 .. count-1 in index order from the chunk files; raises if any is missing."""
        parts: dict[str, dict[int, np.ndarray]] = {name: {} for name in observables}
        for path in self.chunk_files(ensemble):
            with np.load(path) as data:
                index = data["index"]
                for name in observables:
                    for i, row in zip(index, data[name]):
                        parts[name][int(i)] = row
        missing = [i for i in range(count) if i not in parts[observables[0]]]
        if missing:
            raise RuntimeError(
                f"{len(missing)} of {count} realizations of ensemble {ensemble!r} are not in {self.chunk_dir(ensemble)} "
                f"(first missing: {missing[0]}). In a multi-host run every process must see the same run directory."
            )
        return {name: np.stack([parts[name][i] for i in range(count)]) for name in observables}

    # -- results ------------------------------------------------------------------------------------
    def results_path(self, ensemble: str) -> pathlib.Path:
        return self.path / "results" / f"{ensemble}.npz"

    def metadata(self) -> dict:
        path = self.path / "metadata.json"
        return json.loads(path.read_text()) if path.exists() else {"attempts": []}

    def write_metadata(self, data: dict) -> None:
        write_json(self.path / "metadata.json", data)
