"""Disorder ensembles: realizations x parameter grid, vmapped in chunks and sharded over devices.

Realization r of an ensemble uses the key ``fold_in(key(seed), r)`` and nothing else, so its result does
not depend on the chunk size, the number of devices or processes, or on which other realizations ran.
Within a realization the disorder is drawn once at unit strength and reused at every grid point (common
random numbers), so differences between grid points have small errors.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import math
import os
import re
import threading
from typing import Callable, Iterable, Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._core import lapack_guard
from .._core import lattice as lat
from .._core.build import checked_model
from .._core.model import Disorder, Model, draw_disorder, realization_twist, short_range_potential
from .._core.observables import _evaluate, clean_leads, cpu_vmap_width, map_realizations


def make_sample(spec: dict) -> lat.Sample:
    """A Sample from a normalized ``[sample]`` table."""
    kind = spec["lattice"]
    if kind == "chain":
        lattice = lat.chain()
    elif kind == "strip":
        lattice = lat.strip(spec["width"], boundary=spec["boundary"])
    elif kind == "bar":
        lattice = lat.bar(spec["width"], spec["height"], boundary=spec["boundary"])
    elif kind == "zigzag_ribbon":
        lattice = lat.zigzag_ribbon(spec["n"], boundary=spec["boundary"])
    else:
        lattice = lat.armchair_ribbon(spec["n"], boundary=spec["boundary"])
    return lat.Sample(lattice, spec["length"], spinful=spec["spinful"],
                      field_region=spec.get("field_region", "everywhere"))


def grid_shape(entry: dict) -> tuple[int, ...]:
    return tuple(len(v) for v in entry["grid"].values())


def grid_points(entry: dict) -> dict[str, np.ndarray]:
    """The grid flattened to P points: parameter -> (P,) values (C order over the axes, first axis slowest)."""
    axes = list(entry["grid"].values())
    if not axes:
        return {}
    mesh = np.meshgrid(*[np.asarray(a, float) for a in axes], indexing="ij")
    return {name: m.ravel() for name, m in zip(entry["grid"], mesh)}


def realization_function(entry: dict, seed: int) -> Callable:
    """f(index) -> {observable: (*grid_shape, *observable_shape)} for one realization (pure, jittable)."""
    sample = make_sample(entry["sample"])
    base = {k: v for k, v in entry["model"].items() if v is not None}
    dis = entry["disorder"]
    points = grid_points(entry)
    shape = grid_shape(entry)
    names = tuple(entry["observables"])
    dephasing = entry["dephasing"]
    method = entry.get("method", "rgf")
    root = jax.random.key(seed)
    # The main potential term is linear in the disorder strength, so it is drawn once at unit strength and scaled
    # at every grid point; short-range scatterers have a strength of their own and are added unscaled. The sum is
    # draw_disorder(key, sample, strength=..., **disorder table). Entries written before these keys: their defaults.

    smooth = {"correlation_length": dis.get("correlation_length", 0.0), "density": dis.get("density", 1.0)}
    short_density = dis.get("short_range_density", 0.0)
    random_twist = dis.get("random_twist", False)
    grid_batch = entry.get("grid_batch", 0)  # grid points vmapped together; the batches run in sequence
    # Without a grid or a random twist every realization has the same leads: computed once here instead of in
    # every chunk (18-21 ms for 64 orbitals; 6-13% of a CPU ensemble's time, docs/benchmarks.md#flat-transfer-loop),
    # as host arrays, so that they enter the sharded function as constants on whatever devices it spans (None, and
    # computed in place, wherever a grid point or a realization's twist changes them)
    shared_leads = None if points or random_twist else jax.tree.map(np.asarray, clean_leads(sample, Model(**base)))

    def at_point(unit: Disorder, short, values: dict, twist=None):
        params = {**base, **{k: v for k, v in values.items() if k != "strength"}}
        if twist is not None:
            params["twist"] = twist
        strength = values.get("strength", dis["strength"])
        potential = strength * unit.potential
        if short is not None:
            potential = potential + short
        disorder = Disorder(
            potential=potential, moments=unit.moments,
            su2_intra=unit.su2_intra, su2_inter=unit.su2_inter,
        )
        return _evaluate(sample, Model(**params), disorder, names, dephasing, method, shared_leads)

    def one(index):
        key = jax.random.fold_in(root, index)
        unit = draw_disorder(key, sample, strength=1.0, distribution=dis["distribution"], **smooth,
                             moments=dis["moments"], su2=dis["su2"])
        short = None
        if short_density > 0:
            short = short_range_potential(key, sample, dis.get("short_range_strength", 0.0), density=short_density)
        twist = realization_twist(key) if random_twist else None
        if not points:
            return at_point(unit, short, {}, twist)
        values = {k: jnp.asarray(v) for k, v in points.items()}
        out = map_realizations(lambda vals: at_point(unit, short, vals, twist), values,
                               batch=grid_batch or len(next(iter(values.values()))))
        return {k: v.reshape(shape + v.shape[1:]) for k, v in out.items()}

    return one


def _runtime_message(exc: Exception) -> str:
    """The message of an ``equinox.error_if`` check, without the advice equinox wraps it in."""
    found = re.search(r"EquinoxRuntimeError: (.+)", str(exc))
    return found.group(1).strip() if found else str(exc).strip().splitlines()[0]


def check_values(entry: dict) -> None:
    """Run the value checks of the model (finite parameters, nonzero hopping, tau_phi > 0, a flux commensurate
    with a periodic width) and a finite disorder strength at every grid point of a normalized ensemble entry,
    before any realization is computed, so that a run can refuse before it writes anything. Raises ValueError
    naming the first bad point.
    """
    _check_values(json.dumps(entry))


@functools.lru_cache(maxsize=32)
def _check_values(encoded: str) -> None:
    # Cached by the JSON-encoded entry: a rerun in the same process (a resume, a test) checks once. A failed
    # check raises, and lru_cache stores only returns.
    entry = json.loads(encoded)
    sample = make_sample(entry["sample"])
    base = {k: v for k, v in entry["model"].items() if v is not None}
    points = grid_points(entry)
    size = len(next(iter(points.values()))) if points else 1
    strengths = np.asarray(points.get("strength", [entry["disorder"]["strength"]]), float)
    if not np.all(np.isfinite(strengths)):
        raise ValueError(f"disorder strength {float(strengths[~np.isfinite(strengths)][0])!r} is not finite")
    varied = {k: jnp.asarray(v) for k, v in points.items() if k != "strength"}

    # One compiled check over all points (vmapped), rather than many small eager operations.
    @eqx.filter_jit
    def check(values: dict):
        return jax.vmap(lambda one: checked_model(sample, Model(**{**base, **one})))(values)

    try:  # the scalars of [model] first, so that a bad scalar is not blamed on a grid point
        jax.block_until_ready(check({"energy": jnp.full(1, float(base["energy"]))}))
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as exc:
        raise ValueError(_runtime_message(exc)) from None
    if not varied:
        return
    try:
        jax.block_until_ready(check(varied))
        return
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError):
        pass
    for p in range(size):  # only after a failure: find the first bad point for the message
        try:
            jax.block_until_ready(check({k: v[p : p + 1] for k, v in varied.items()}))
        except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as exc:
            where = ", ".join(f"{k} = {float(v[p])!r}" for k, v in varied.items())
            raise ValueError(f"{_runtime_message(exc).rstrip('.')} at the grid point {where}") from None
    raise AssertionError("the batched check failed, but no single grid point does")


def select_devices(count: int | None) -> list:
    """The first ``count`` local devices of every process (all of them for None), as one global list."""
    devices = jax.devices()
    if count is None:
        return devices
    local = jax.local_device_count()
    if count < 1 or count > local:
        hint = " (on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting)" if devices[0].platform == "cpu" else ""
        raise ValueError(f"devices must be between 1 and the {local} local device(s), got {count}{hint}.")
    chosen = []
    for p in range(jax.process_count()):
        mine = sorted((d for d in devices if d.process_index == p), key=lambda d: d.id)
        chosen += mine[:count]
    return chosen


def _sharded(batched: Callable, devices: tuple, arguments: int = 0):
    """(mesh, sharding, jit of ``batched(indices, *arguments)``) with the indices split over a 1-D mesh of
    ``devices`` along the realization axis and the other arguments replicated."""
    mesh = Mesh(np.asarray(devices), ("r",))
    sharding = NamedSharding(mesh, PartitionSpec("r"))
    shardings = (sharding,) + (NamedSharding(mesh, PartitionSpec()),) * arguments
    return mesh, sharding, jax.jit(batched, in_shardings=shardings, out_shardings=sharding)


def vmap_width(devices, slice_size: int, per_realization: int = 1) -> int | None:
    """Realizations a chunk on ``devices`` vmaps at a time: :func:`cpu_vmap_width` on one CPU device; None (the
    whole chunk) on accelerators and meshes, where a sharded realization axis passes only a plain vmap."""
    if len(devices) == 1 and devices[0].platform == "cpu":
        return cpu_vmap_width(slice_size, per_realization)
    return None


@functools.lru_cache(maxsize=8)
def _batched(entry: str, seed: int, devices: tuple):
    """:func:`_sharded` of the realization function of a JSON-encoded ensemble entry, each chunk vmapped
    :func:`vmap_width` realizations at a time. Cached, so that a rerun in the same process (a resume, a
    test) reuses the compiled function instead of compiling again."""
    entry = json.loads(entry)
    one = realization_function(entry, seed)
    points = grid_points(entry)
    count = len(next(iter(points.values()))) if points else 1
    per_realization = min(entry.get("grid_batch", 0) or count, count)  # grid points vmapped within a realization
    width = vmap_width(devices, make_sample(entry["sample"]).slice_size, per_realization)
    return _sharded(lambda index: map_realizations(one, index, batch=width or index.shape[0]), devices)


def default_workers(devices: list) -> int:
    """Chunks run at once (threads) by default: one per usable core when a single process computes on a single CPU
    device, else 1.

    XLA runs one vmapped sweep on ~1.2-1.5 of 2 cores (its loop of small kernels is serial); independent chunks in
    threads fill the rest: 1.4-1.9x the realizations per second of one chunk at a time on 2 cores
    (docs/benchmarks.md#worker-threads). On accelerators and sharded or multi-process runs the devices are the
    parallelism (and multi-process runs must call in the same order), so 1. Also 1 where concurrent programs could
    deadlock: an affected jaxlib with the LAPACK guard turned off (``_core/lapack_guard.py``)."""
    if jax.process_count() > 1 or len(devices) != 1 or devices[0].platform != "cpu":
        return 1
    if not lapack_guard.concurrency_safe():
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(work: Callable, tasks: Iterable, workers: int, stop: threading.Event | None = None, *,
                 first_alone: bool = False) -> Iterator:
    """``work`` over ``tasks`` in ``workers`` threads, results in task order. ``first_alone`` runs the first task
    before the others start (it compiles what they share, once). When the caller stops iterating (an error,
    Ctrl-C) ``stop`` is set and queued tasks are cancelled; running ones finish the task in hand, so a ``work``
    that stores its result loses nothing computed."""
    tasks = list(tasks)
    if first_alone and tasks:
        yield work(tasks[0])
        tasks = tasks[1:]
    if workers <= 1:
        yield from map(work, tasks)
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    finished = False
    try:
        yield from pool.map(work, tasks)
        finished = True
    finally:
        if not finished and stop is not None:
            stop.set()
        pool.shutdown(wait=True, cancel_futures=not finished)


class ChunkRunner:
    """Evaluates chunks of realization indices, sharded over a 1-D device mesh along the realization axis.

    ``entry`` is a normalized ensemble entry of a run config (realization r uses ``seed``), or any function
    ``batched(indices, *arguments)`` returning {name: (len(indices), ...)} in which each index's result depends
    on that index alone (``seed`` is then unused; it compiles on its first call, so keep the runner).

    ``workers``: chunks :meth:`map` runs at once in threads (None: :func:`default_workers`); no number depends on
    it. A single call is safe from any thread."""

    def __init__(self, entry: dict | Callable, seed: int | None, devices: list, chunk: int, *, arguments: int = 0,
                 workers: int | None = None):
        self.mesh, self.sharding, self._batched = (_sharded(entry, tuple(devices), arguments) if callable(entry)
                                                   else _batched(json.dumps(entry), seed, tuple(devices)))
        # Every call has the same shape (one compilation): the chunk rounded up to a multiple of the devices.
        self.chunk = len(devices) * math.ceil(chunk / len(devices))
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a whole number >= 1 (chunks run at once), got {workers!r}.")
        self.workers = default_workers(devices) if workers is None else workers
        self._compiled = False

    def map(self, chunks: Iterable[np.ndarray], *arguments, sink: Callable | None = None,
            stop: threading.Event | None = None) -> Iterator[tuple[np.ndarray, list]]:
        """(indices, self(indices, *arguments)) for every chunk, in order, ``self.workers`` at a time (the first
        alone if nothing has run yet: it compiles). ``sink(indices, shards)`` runs in the worker as soon as a chunk
        is done (store it there: an interruption then loses only chunks in flight)."""

        def work(indices):
            shards = self(indices, *arguments)
            if sink is not None:
                sink(indices, shards)
            return indices, shards

        return parallel_map(work, chunks, self.workers, stop, first_alone=not self._compiled)

    def trace(self) -> None:
        """Trace the batched function once (no computation), so that its structural checks raise ValueError
        now; the call reuses the trace."""
        self._batched.trace(jax.ShapeDtypeStruct((self.chunk,), jnp.uint32, sharding=self.sharding))

    def __call__(self, indices: np.ndarray, *arguments) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Run one chunk of at most ``self.chunk`` indices (and the ``arguments`` of a ``batched`` function);
        returns the shards this process holds as (indices, arrays) pairs.

        ``indices`` is the same on every process; it is padded (with its last entry) to ``self.chunk`` and the
        padding is dropped from the result.
        """
        n = len(indices)
        if not 0 < n <= self.chunk:
            raise ValueError(f"a chunk holds 1 to {self.chunk} realizations, got {n}.")
        total = self.chunk
        padded = np.concatenate([indices, np.full(total - n, indices[-1])]).astype(np.uint32)
        array = jax.make_array_from_callback((total,), self.sharding, lambda idx: padded[idx])
        out = self._batched(array, *arguments)
        self._compiled = True
        shards: dict[int, tuple[slice, dict]] = {}
        for name, value in out.items():
            for shard in value.addressable_shards:
                sl = shard.index[0]
                start = sl.start or 0
                shards.setdefault(start, (sl, {}))[1][name] = np.asarray(shard.data)
        result = []
        for start, (sl, arrays) in sorted(shards.items()):
            stop = min(sl.stop if sl.stop is not None else total, n)
            if start >= n:
                continue
            result.append((np.asarray(indices[start:stop]), {k: v[: stop - start] for k, v in arrays.items()}))
        return result


# ---------------------------------------------------------------------------------------------------------
# Statistics (numpy, on the host, over the realization axis in index order)


def statistics(values: np.ndarray, bins: int = 40) -> dict[str, np.ndarray]:
    """Reduced statistics over axis 0 (realizations): mean, var (ddof 1), stderr, and for positive data
    <ln x> with its variance and standard error; a histogram per grid point over the remaining axes."""
    n = values.shape[0]
    grid = values.shape[1:]
    out = {
        "count": np.asarray(n),
        "mean": values.mean(0),
        "var": values.var(0, ddof=1) if n > 1 else np.zeros(grid),
        "stderr": (values.std(0, ddof=1) / math.sqrt(n)) if n > 1 else np.zeros(grid),
    }
    if np.all(values > 0):
        logs = np.log(values)
        out["mean_log"] = logs.mean(0)
        out["var_log"] = logs.var(0, ddof=1) if n > 1 else np.zeros(grid)
        out["stderr_log"] = (logs.std(0, ddof=1) / math.sqrt(n)) if n > 1 else np.zeros(grid)
    return out


def histograms(values: np.ndarray, grid_ndim: int, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Histogram per grid point, pooling realizations and any observable axes: (counts, edges) with shapes
    (*grid, bins) and (*grid, bins + 1)."""
    grid = values.shape[1 : 1 + grid_ndim]
    flat = np.moveaxis(values, 0, grid_ndim).reshape(int(np.prod(grid, dtype=int)), -1)
    counts = np.zeros((flat.shape[0], bins), np.int64)
    edges = np.zeros((flat.shape[0], bins + 1))
    for i, row in enumerate(flat):
        lo, hi = float(row.min()), float(row.max())
        if hi <= lo:
            hi = lo + 1e-12
        counts[i], edges[i] = np.histogram(row, bins=bins, range=(lo, hi))
    return counts.reshape(*grid, bins), edges.reshape(*grid, bins + 1)
