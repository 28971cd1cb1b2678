"""The run directory: a self-describing, resumable store of an ensemble run (format: docs/ensembles.md).

    RUN_DIR/config.toml        the config as run, normalized (every default written out)
    RUN_DIR/config.json        {"hash": ..., "config": ...}; a rerun with a different hash is refused
    RUN_DIR/metadata.json      versions, git commit, devices, processes, seed, attempts with wall times
    RUN_DIR/chunks/NAME/p{process}-r{first}-{last}.npz   raw results as computed (index + arrays)
    RUN_DIR/results/NAME.npz   all realizations in index order, grid axes, statistics, histograms
    RUN_DIR/summary.json       reduced statistics of every ensemble
    RUN_DIR/figures/*.png      figures (``difftransport plot RUN_DIR`` redraws them)

    RUN_DIR/.lock              held (``fcntl.flock``) by the run using the directory; holds its pid

Every file is written to a temporary name and renamed, so an interrupted run (Ctrl-C, ``kill -9``) leaves
only complete files; a rerun skips the realizations already stored, removes orphaned temporary files and
moves a damaged chunk aside (``*.damaged``) to recompute it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import re
import tempfile
import zipfile
from typing import Any, Callable, Iterator

import numpy as np

from .config import config_hash, differences, dumps, result_relevant

_CHUNK = re.compile(r"^p(\d+)-r(\d+)-(\d+)\.npz$")


class ConfigMismatch(RuntimeError):
    """The run directory holds results of a different config."""


class DirectoryLocked(RuntimeError):
    """Another process holds the lock of a run directory (``directory_lock``)."""


class RunDirectoryError(RuntimeError):
    """A run directory that cannot be used as it is: not creatable or writable, or a damaged file in it."""


LOCK_NAME = ".lock"


@contextlib.contextmanager
def directory_lock(path: pathlib.Path, *, wait: bool = False) -> Iterator[pathlib.Path]:
    """Hold an exclusive lock on the directory ``path`` (created if missing) for the ``with`` block.

    The lock is an OS lock (``fcntl.flock``) on ``path / ".lock"``, so it is released when the holder exits,
    however it exits (``kill -9`` included); the file itself stays and holds the holder's pid. Without
    ``wait`` a held lock raises ``DirectoryLocked`` at once; with ``wait`` the call blocks until it is free.
    The lock is per open file: taking it twice in one process, on two opens, also conflicts.
    """
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_pid(fd)
            raise DirectoryLocked(
                f"{path} is in use by another run (pid {holder if holder is not None else 'unknown'} holds "
                f"{lock}); wait for it to finish, or pass --wait to queue behind it"
            ) from None
        # The pid is informational (for the message above); the flock is what excludes.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        yield lock
    finally:
        os.close(fd)  # releases the flock


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def fsync_directory(path: pathlib.Path) -> None:
    """Flush a directory's entries (a rename into it) to disk, so a crash cannot undo the rename."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems (and platforms) refuse fsync on a directory; the data itself is already synced.
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # mkstemp makes private (0600) files; run directories are shared


@contextlib.contextmanager
def _replacing(path: pathlib.Path, suffix: str = "") -> Iterator[str]:
    """A temporary file beside ``path`` to write in the block; then synced, made shared and renamed to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _name_target(exc, tmp, path)
        raise


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    with _replacing(path) as tmp:
        pathlib.Path(tmp).write_bytes(data)


def atomic_savez(path: pathlib.Path, **arrays) -> None:
    with _replacing(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def _name_target(exc: BaseException, tmp: str, path: pathlib.Path) -> None:
    """An OSError on the temporary file names the file being written instead (the temporary one is gone)."""
    if isinstance(exc, OSError) and exc.filename == tmp:
        exc.filename = str(path)


def write_json(path: pathlib.Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def stored_config(run_dir: pathlib.Path) -> dict | None:
    """The ``{"hash", "config"}`` record of ``run_dir/config.json``; None if there is none. Raises
    RunDirectoryError naming the file if it is damaged."""
    stored = pathlib.Path(run_dir) / "config.json"
    try:
        old = json.loads(stored.read_bytes())
        if not isinstance(old, dict) or not isinstance(old.get("hash"), str) or not isinstance(old.get("config"), dict):
            raise ValueError("it is not a {\"hash\": ..., \"config\": ...} record")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(
            f"{stored} is damaged ({_reason(exc)}), so the results in {run_dir} cannot be matched to a config: "
            f"restore the file, or use another --out directory (or delete {run_dir}) to start afresh"
        ) from None
    return old


def check_npz(path: pathlib.Path) -> None:
    """Read every array of an .npz file; raises RunDirectoryError naming the file if it is damaged."""
    try:
        with np.load(path) as data:
            for key in data.files:
                data[key]
    except _DAMAGED as exc:
        raise RunDirectoryError(f"{path} is damaged ({_reason(exc)})") from None


# Exceptions np.load raises on a truncated or corrupted .npz (a zip archive of .npy files).
_DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


class RunDirectory:
    """The files of one run directory (see the module docstring); ``process`` names this process's chunks.

    ``log`` receives one-line notices and warnings (a re-claimed directory, damaged files moved aside).
    """

    def __init__(self, path: str | pathlib.Path, config: dict, process: int = 0, log: Callable[[str], Any] = print):
        self.path = pathlib.Path(path)
        self.config = config
        self.process = process
        self.hash = config_hash(config)
        self.log = log

    # -- config -------------------------------------------------------------------------------------
    def has_realizations(self) -> bool:
        """Whether any chunk or result file is stored (of any config)."""
        chunks = self.path / "chunks"
        if chunks.is_dir() and any(_CHUNK.match(p.name) for d in chunks.iterdir() if d.is_dir() for p in d.iterdir()):
            return True
        results = self.path / "results"
        return results.is_dir() and any(p.suffix == ".npz" for p in results.iterdir())

    def prepare(self) -> bool:
        """Create the directory or check that it belongs to this config. Returns True if it existed.

        A directory whose config.json names another config but which holds no chunk and no result (a run that
        failed before computing anything) is re-claimed for this config, with a notice.
        """
        stored = self.path / "config.json"
        old = stored_config(self.path)
        if old is not None and old["hash"] != self.hash:
            if self.has_realizations():
                changed = differences(result_relevant(old["config"]), result_relevant(self.config))
                raise ConfigMismatch(
                    f"{self.path} holds results of a different config; refusing to mix them. Changed: "
                    + "; ".join(changed[:8]) + ". Use another --out directory, or delete the old one."
                )
            self.log(f"{self.path}: its config.json names a different config, but no realization of it is stored; "
                     "re-claiming the directory for this config")
            if self.process == 0:
                (self.path / "metadata.json").unlink(missing_ok=True)  # attempts of the abandoned config
            old = None
        if old is None and self.has_realizations():
            raise RunDirectoryError(
                f"{self.path} holds chunk or result files but no config.json, so they cannot be matched to a "
                "config: use another --out directory, or delete the old one"
            )
        if self.process == 0:
            if old is None:
                write_json(stored, {"hash": self.hash, "config": self.config})
            if old is None or not (self.path / "config.toml").exists():
                atomic_write_bytes(self.path / "config.toml", dumps(self.config).encode())
        return old is not None

    def remove_temporary(self) -> int:
        """Delete the temporary files (``.tmp-*``) an interrupted writer left; call only under the lock.
        Returns how many were removed."""
        folders = [self.path, self.path / "results", self.path / "figures"]
        chunks = self.path / "chunks"
        if chunks.is_dir():
            folders += [d for d in chunks.iterdir() if d.is_dir()]
        removed = 0
        for folder in folders:
            for path in folder.glob(".tmp-*") if folder.is_dir() else ():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- chunks -------------------------------------------------------------------------------------
    def chunk_dir(self, ensemble: str) -> pathlib.Path:
        return self.path / "chunks" / ensemble

    def chunk_files(self, ensemble: str) -> list[pathlib.Path]:
        d = self.chunk_dir(ensemble)
        return sorted(p for p in d.iterdir() if _CHUNK.match(p.name)) if d.exists() else []

    def completed(self, ensemble: str, count: int, observables: list[str]) -> np.ndarray:
        """Mask (count,) of the realizations stored in the chunk files this process can see.

        Every chunk is read in full; one that cannot be read (truncated, corrupted, an array missing) is moved
        aside to ``NAME.damaged`` with a warning, so its realizations count as missing and are recomputed.
        """
        done = np.zeros(count, bool)
        for path in self.chunk_files(ensemble):
            try:
                with np.load(path) as data:
                    index = np.asarray(data["index"])
                    if index.ndim != 1 or index.dtype.kind not in "iu":
                        raise ValueError(f"its index has shape {index.shape} and dtype {index.dtype}")
                    for name in observables:
                        if len(data[name]) != len(index):
                            raise ValueError(f"{name} holds {len(data[name])} rows for {len(index)} indices")
            except _DAMAGED as exc:
                self._move_aside(path, exc, "recomputing its realizations")
                continue
            done[index[index < count]] = True
        return done

    def _move_aside(self, path: pathlib.Path, exc: BaseException, then: str) -> None:
        aside = path.with_name(path.name + ".damaged")
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another process of a multi-process run moved it first
            return
        fsync_directory(path.parent)
        self.log(f"warning: {path} is damaged ({_reason(exc)}); moved it aside to {aside.name}, {then}")

    def write_chunk(self, ensemble: str, index: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        name = f"p{self.process}-r{int(index[0]):08d}-{int(index[-1]):08d}.npz"
        atomic_savez(self.chunk_dir(ensemble) / name, index=index, **arrays)

    def gather(self, ensemble: str, count: int, observables: list[str]) -> dict[str, np.ndarray]:
        """All realizations 0 .. count-1 in index order from the chunk files; raises if any is missing."""
        parts: dict[str, dict[int, np.ndarray]] = {name: {} for name in observables}
        for path in self.chunk_files(ensemble):
            try:
                with np.load(path) as data:
                    index = data["index"]
                    for name in observables:
                        for i, row in zip(index, data[name]):
                            parts[name][int(i)] = row
            except _DAMAGED as exc:
                raise RunDirectoryError(
                    f"{path} is damaged ({_reason(exc)}); rerun the same command: the run moves it aside and "
                    "recomputes its realizations"
                ) from None
        missing = [i for i in range(count) if i not in parts[observables[0]]]
        if missing:
            raise RunDirectoryError(
                f"{len(missing)} of {count} realizations of ensemble {ensemble!r} are not in {self.chunk_dir(ensemble)} "
                f"(first missing: {missing[0]}). In a multi-host run every process must see the same run directory."
            )
        return {name: np.stack([parts[name][i] for i in range(count)]) for name in observables}

    # -- results ------------------------------------------------------------------------------------
    def results_path(self, ensemble: str) -> pathlib.Path:
        return self.path / "results" / f"{ensemble}.npz"

    def metadata(self) -> dict:
        """The metadata record; a damaged metadata.json (it only records attempts) is moved aside to
        ``metadata.json.damaged`` with a warning, and the record starts afresh."""
        path = self.path / "metadata.json"
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or not isinstance(data.get("attempts", []), list):
                raise ValueError("it is not a record with a list of attempts")
            return data
        except FileNotFoundError:
            return {"attempts": []}
        except (OSError, ValueError) as exc:
            if self.process == 0:  # the only writer of metadata.json
                self._move_aside(path, exc, "starting a new record (the earlier attempts are in it)")
            return {"attempts": []}

    def write_metadata(self, data: dict) -> None:
        write_json(self.path / "metadata.json", data)


def _reason(exc: BaseException) -> str:
    """A one-line reason for a damaged file: the exception's first line."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
