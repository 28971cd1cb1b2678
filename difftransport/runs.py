"""The run system (public namespace) behind ``difftransport run``; format: ``docs/ensembles.md``, code: ``_runs/``.

* Configs: :func:`load` (a TOML file) and :func:`validate` (a dict) return the normalized config (every default
  written out) or raise :class:`ConfigError` naming the file, line, key, value and what is allowed; :func:`dumps`,
  :func:`config_hash`. Experiments check their own tables with ``Validator(source, text).table(data, schema, path)``,
  a schema being ``{key: Field(kind, default, allowed=, minimum=, doc=)}`` (default ``REQUIRED``: must be given).
* Ensembles: :func:`make_sample` (the ``Sample`` of a ``[sample]`` table); :class:`ChunkRunner` (realization indices
  to observables on :func:`select_devices`; realization r's key is ``fold_in(key(seed), r)``; ``map`` runs chunks
  :func:`default_workers` at a time in threads, each vmapped :func:`cpu_vmap_width` realizations at a time on a CPU);
  :func:`parallel_map` (any work over tasks in threads, in order).
* Runs: :func:`run` runs or resumes a config into a :class:`RunDirectory` (``results_path(ensemble)``: its arrays) or
  raises :class:`ConfigMismatch`, :class:`DirectoryLocked`, :class:`RunDirectoryError`; :func:`plot_run`.
"""

from ._runs.config import REQUIRED, ConfigError, Field, Validator, config_hash, dumps, load, read, validate
from ._runs.ensemble import ChunkRunner, cpu_vmap_width, default_workers, make_sample, parallel_map, select_devices
from ._runs.plots import plot_run
from ._runs.runner import run
from ._runs.store import ConfigMismatch, DirectoryLocked, RunDirectory, RunDirectoryError

__all__ = [name for name in dir() if not name.startswith("_")]
