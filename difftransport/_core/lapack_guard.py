"""Work around a deadlock in batched CPU LAPACK kernels of jaxlib 0.10 - 0.11.1.

These jaxlib versions split a batched LAPACK call (LU, triangular solve, eig, eigh, QR, SVD, ...) into chunks
that they schedule on XLA's intra-op thread pool, and then block until the chunks are done
(``ParallelBatchMap`` in ``jaxlib/cpu/lapack_kernels.cc``). When the thunk executor runs as many such calls
concurrently as the pool has threads, every thread waits for work that no thread is free to run: the program
hangs forever. On a 2-core machine two concurrent batched inverses of a vmapped RGF sweep are enough (observed
with jaxlib 0.10.2). jaxlib 0.9 has no parallel path; later versions disable it outside Google's own builds.

When a call splits is fixed by the kernel source (jaxlib 0.10.0 - 0.11.0, ``GetLapackBatchChunkSize``): each
kernel estimates ``cost``, the flops of one matrix of the batch (e.g. m n min(m, n), times 3 for complex, for
LU), and a batch of B matrices runs inline, on the calling thread, whenever B * cost < 200 000 or B <= ceil(200 000
/ cost) (its minimum chunk); otherwise it is split over the pool. The guard therefore re-registers the CPU
lowering of each affected ``lax.linalg`` primitive so that a call whose batch could split becomes a loop
(``lax.map``) over chunks of ``chunk_limit`` matrices, each of which runs inline. Calls that cannot split
(a batch of one, or small matrices in small batches: 2 x 2 blocks, 4 x 4 blocks in batches of hundreds) keep
the original lowering. ``cost`` below is the kernel's own formula, or an upper bound of it where the kernel's
choice of dimension is not visible from the operands, so that a chunk is never larger than the kernel runs
inline. Only the lowering changes; batching and differentiation rules are untouched, so results are identical
and every transformation keeps working. With no call ever scheduled on the pool, concurrent programs (worker
threads, ``runs.ChunkRunner``) are safe too. ``DIFFTRANSPORT_LAPACK_GUARD=0`` disables the guard,
``=wide`` loops every batched call matrix by matrix (the previous guard, kept for benchmarks).
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

# jaxlib's threshold: a batch whose estimated work is below it, or whose size is at most the minimum chunk
# ceil(MIN_WORK / cost), runs inline.
MIN_WORK = 200_000


def _mnk(shape):
    m, n = shape[-2], shape[-1]
    return m, n, min(m, n)


def _cost(name: str, shapes: list[tuple], complex_: bool) -> int:
    """Upper bound of jaxlib's flop estimate for one matrix of a batched call of primitive ``name`` whose
    operands have ``shapes`` (jaxlib 0.10.0 - 0.11.0, lapack_kernels.cc; c = 3 for complex, else 1)."""
    c = 3 if complex_ else 1
    a = shapes[0]
    if name == "tridiagonal_solve":  # operands dl, d, du, b (..., m, k): 5 m k
        m, k = shapes[3][-2], shapes[3][-1]
        return 5 * m * k * c
    m, n, k = _mnk(a)
    if name == "triangular_solve":  # rows x cols x (rows or cols) of b, whichever side: bounded by the larger
        bm, bn = shapes[1][-2], shapes[1][-1]
        return bm * bn * max(bm, bn) * c
    if name == "ormqr":  # 4 k rows cols of c, k <= its dimensions
        cm, cn = shapes[-1][-2], shapes[-1][-1]
        return 4 * max(cm, cn) * cm * cn * c
    per = {
        "lu": m * n * k,
        "cholesky": -(-n ** 3 // 3),
        "geqrf": 2 * m * n * k,  # 2 m n k - 2 k^3 / 3
        "geqp3": 2 * m * n * k,
        "householder_product": 4 * m * n * k,  # 4 m n k - 2 k^2 (m + n) + 4 k^3 / 3 <= 4 m n k
        "svd": 10 * m * n * k,
        "eig": 10 * n ** 3,  # real 10 n^3, complex n^3
        "eigh": 4 * n ** 3,  # real 5 n^3, complex 4 n^3 (x 3)
        "hessenberg": 2 * n ** 3,
        "schur": 5 * n ** 3,
        "tridiagonal": -(-4 * n ** 3 // 3),
    }[name]
    if name == "eig":  # no complex factor: the real kernel's estimate bounds both
        return per
    return 5 * n ** 3 if name == "eigh" and not complex_ else per * c


def chunk_limit(name: str, shapes: list[tuple], complex_: bool) -> int:
    """The most matrices of one batched call of ``name`` that jaxlib runs inline: ceil(MIN_WORK / cost)."""
    return max(1, -(-MIN_WORK // max(1, _cost(name, shapes, complex_))))


# Core rank of the first operand of every primitive whose CPU kernel uses ParallelBatchMap in the affected
# versions (found by disassembling jaxlib 0.10.2's _lapack.so); the remaining leading dimensions are batch.
_CORE_RANK = {
    "lu": 2, "triangular_solve": 2, "cholesky": 2, "eig": 2, "eigh": 2, "hessenberg": 2,
    "householder_product": 2, "ormqr": 2, "geqrf": 2, "geqp3": 2, "schur": 2, "svd": 2, "tridiagonal": 2,
    "tridiagonal_solve": 1,
}


def _affected(version: str) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    return (0, 10, 0) <= parts < (0, 11, 2)


def _looped(prim, name: str, core_rank: int, original, wide: bool = False):
    def rule(ctx, *args, **params):
        aval = ctx.avals_in[0]
        nbatch = aval.ndim - core_rank
        batch_shape = tuple(aval.shape[:nbatch])
        batch = math.prod(batch_shape) if nbatch > 0 else 1
        if wide:
            size = 1
        else:
            complex_ = any(jax.numpy.issubdtype(a.dtype, jax.numpy.complexfloating) for a in ctx.avals_in)
            size = chunk_limit(name, [tuple(a.shape) for a in ctx.avals_in], complex_)
        if batch <= size:
            return original.rule(ctx, *args, **params)
        full, rest = divmod(batch, size)

        def impl(*operands):
            flat = [x.reshape((batch,) + x.shape[nbatch:]) for x in operands]
            bind = lambda ops: prim.bind(*ops, **params)
            heads = [x[: full * size].reshape((full, size) + x.shape[1:]) for x in flat]
            out = lax.map(bind, heads)
            outs = list(out) if prim.multiple_results else [out]
            outs = [o.reshape((full * size,) + o.shape[2:]) for o in outs]
            if rest:
                tail = bind([x[full * size:] for x in flat])
                tails = list(tail) if prim.multiple_results else [tail]
                outs = [lax.concatenate([o, t], 0) for o, t in zip(outs, tails)]
            outs = [o.reshape(batch_shape + o.shape[1:]) for o in outs]
            return outs if prim.multiple_results else outs[0]

        return mlir.lower_fun(impl, multiple_results=prim.multiple_results)(ctx, *args)

    return rule


def install() -> list[str]:
    """Install the guard if the running jaxlib is affected; returns the names of the patched primitives."""
    setting = os.environ.get("DIFFTRANSPORT_LAPACK_GUARD", "1")
    if setting not in ("0", "1", "wide"):
        raise ValueError(f"DIFFTRANSPORT_LAPACK_GUARD must be 1 (default), wide or 0, got {setting!r}.")
    if setting == "0" or not _affected(jax.lib.__version__):
        return []
    table = mlir._platform_specific_lowerings["cpu"]
    patched = []
    for name, rank in _CORE_RANK.items():
        prim = getattr(_linalg, f"{name}_p", None)
        original = table.get(prim) if prim is not None else None
        if original is None or getattr(original.rule, "_difftransport_guard", False):
            continue
        rule = _looped(prim, name, rank, original, wide=setting == "wide")
        rule._difftransport_guard = True
        mlir.register_lowering(prim, rule, platform="cpu", inline=original.inline)
        patched.append(name)
    return patched


def concurrency_safe() -> bool:
    """Whether programs may run concurrently (threads) without the batched-LAPACK deadlock: the running jaxlib is
    not affected, or the guard is installed (every LAPACK call then runs inline)."""
    if not _affected(jax.lib.__version__):
        return True
    original = mlir._platform_specific_lowerings["cpu"].get(_linalg.lu_p)
    return bool(original is not None and getattr(original.rule, "_difftransport_guard", False))


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
