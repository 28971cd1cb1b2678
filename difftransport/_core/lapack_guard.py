"""Work around a deadlock in batched CPU LAPACK kernels of jaxlib 0.9 - 0.11.1.

These jaxlib versions split a batched LAPACK call (LU, triangular solve, eig, eigh, QR, SVD, ...) into chunks
that they schedule on XLA's intra-op thread pool, and then block until the chunks are done
(``jax::ParallelBatchMap``). When the thunk executor runs as many such calls concurrently as the pool has
threads, every thread waits for work that no thread is free to run: the program hangs forever. On a
2-core machine two concurrent batched inverses of a vmapped RGF sweep are enough (observed with jaxlib
0.10.2; jaxlib 0.11.2 removes the parallel path).

A batch of one always runs inline, so the guard re-registers the CPU lowering of each affected
``lax.linalg`` primitive: a call with batch dimensions becomes a loop (``lax.map``) over unbatched calls. Only
the lowering changes; batching and differentiation rules are untouched, so results are identical and every
transformation keeps working. Set ``DIFFTRANSPORT_LAPACK_GUARD=0`` to disable it.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import math
import os

import jax
from jax import lax
from jax._src.interpreters import mlir
from jax._src.lax import linalg as _linalg

# Core rank of the first operand of every primitive whose CPU kernel uses ParallelBatchMap in the affected
# versions (found by disassembling jaxlib 0.10.2's _lapack.so); the remaining leading dimensions are batch.
_CORE_RANK = {
    "lu": 2, "triangular_solve": 2, "cholesky": 2, "eig": 2, "eigh": 2, "hessenberg": 2,
    "householder_product": 2, "ormqr": 2, "geqrf": 2, "geqp3": 2, "schur": 2, "svd": 2, "tridiagonal": 2,
    "tridiagonal_solve": 1,
}


def _affected(version: str) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    return (0, 9, 0) <= parts < (0, 11, 2)


def _looped(prim, core_rank: int, original):
    def rule(ctx, *args, **params):
        aval = ctx.avals_in[0]
        nbatch = aval.ndim - core_rank
        batch_shape = tuple(aval.shape[:nbatch])
        if nbatch <= 0 or math.prod(batch_shape) <= 1:
            return original.rule(ctx, *args, **params)

        def impl(*operands):
            flat = [x.reshape((-1,) + x.shape[nbatch:]) for x in operands]
            out = lax.map(lambda ops: prim.bind(*ops, **params), flat)
            outs = out if prim.multiple_results else [out]
            outs = [o.reshape(batch_shape + o.shape[1:]) for o in outs]
            return outs if prim.multiple_results else outs[0]

        return mlir.lower_fun(impl, multiple_results=prim.multiple_results)(ctx, *args)

    return rule


def install() -> list[str]:
    """Install the guard if the running jaxlib is affected; returns the names of the patched primitives."""
    if os.environ.get("DIFFTRANSPORT_LAPACK_GUARD", "1") == "0" or not _affected(jax.lib.__version__):
        return []
    table = mlir._platform_specific_lowerings["cpu"]
    patched = []
    for name, rank in _CORE_RANK.items():
        prim = getattr(_linalg, f"{name}_p", None)
        original = table.get(prim) if prim is not None else None
        if original is None or getattr(original.rule, "_difftransport_guard", False):
            continue
        rule = _looped(prim, rank, original)
        rule._difftransport_guard = True
        mlir.register_lowering(prim, rule, platform="cpu", inline=original.inline)
        patched.append(name)
    return patched


def lapack_blas_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries bundled with scipy (``scipy.libs``), whose LAPACK jaxlib's CPU kernels call."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))
    return sorted(glob.glob(os.path.join(root, "scipy.libs", "*openblas*.so*")))


def _thread_functions(path: str, name: str):
    lib = ctypes.CDLL(path)
    for prefix in ("scipy_openblas", "openblas"):
        fn = getattr(lib, f"{prefix}_{name}", None)
        if fn is not None:
            return fn
    return None


def blas_threads() -> list[int]:
    """Threads of each library of :func:`lapack_blas_libraries` (for tests and reports)."""
    counts = []
    for path in lapack_blas_libraries():
        fn = _thread_functions(path, "get_num_threads")
        if fn is not None:
            fn.restype = ctypes.c_int
            counts.append(int(fn()))
    return counts


def limit_blas_threads() -> int | None:
    """Run the LAPACK that jaxlib's CPU kernels call on one thread (or ``DIFFTRANSPORT_BLAS_THREADS``).

    XLA already spreads work over the cores (its thread pool, the batched kernels, parallel runs); an OpenBLAS that
    also starts threads inside each call of an n <= 256 factorization contends with it. Measured on 2 cores
    (docs/benchmarks.md#openblas-threads): the transfer sweep on a 64 x 256 strip 15.3 -> 11.6 ms per realization, a
    14 x 14 Lyapunov run 6.0k -> 7.4k slices/s and two of them in parallel threads 6.0k -> 21.7k. Only scipy's
    bundled OpenBLAS is touched (numpy's is not). A user's ``OPENBLAS_NUM_THREADS`` is respected. Returns the
    thread count set, or None when nothing was changed.
    """
    wanted = os.environ.get("DIFFTRANSPORT_BLAS_THREADS")
    if wanted is None:
        if "OPENBLAS_NUM_THREADS" in os.environ:
            return None
        wanted = "1"
    try:
        threads = int(wanted)
    except ValueError:
        raise ValueError(f"DIFFTRANSPORT_BLAS_THREADS must be a whole number of threads, got {wanted!r}.") from None
    if threads <= 0:
        return None
    done = None
    for path in lapack_blas_libraries():
        try:
            fn = _thread_functions(path, "set_num_threads")
        except OSError:
            continue
        if fn is not None:
            fn(ctypes.c_int(threads))
            done = threads
    return done
