"""The guard against the batched-LAPACK deadlock of jaxlib 0.10 - 0.11.1 (difftransport/_core/lapack_guard.py)."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport  # noqa: F401  (installs the guard)
from difftransport._core import lapack_guard as _lapack_guard

ROOT = pathlib.Path(__file__).parents[1]

# Eight independent batched inverses in one program: jaxlib 0.10.2 without the guard hangs here on a
# 2-thread pool (every pool thread blocks in ParallelBatchMap waiting for chunks no thread can run).
REPRO = """
import jax, jax.numpy as jnp, numpy as np
import difftransport
rng = np.random.default_rng(0)
a = jnp.asarray(rng.normal(size=(16, 24, 24)) + 1j * rng.normal(size=(16, 24, 24)))
f = jax.jit(lambda a: sum(jnp.linalg.inv(a + i).sum() for i in range(8)))
for i in range(20):
    f(a + i).block_until_ready()
print("done")
"""


# The same calls from four Python threads at once (what runs.ChunkRunner's workers do): with every LAPACK call
# inline, concurrent programs cannot wait on each other's pool threads.
THREADS = """
import threading, jax, jax.numpy as jnp, numpy as np
import difftransport
rng = np.random.default_rng(0)
a = jnp.asarray(rng.normal(size=(16, 24, 24)) + 1j * rng.normal(size=(16, 24, 24)))
f = jax.jit(lambda a: sum(jnp.linalg.inv(a + i).sum() for i in range(4)))
f(a).block_until_ready()
def work(k):
    for i in range(10):
        f(a + k + i).block_until_ready()
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done")
"""

# Unguarded, batches of exactly jaxlib's inline limit (5 complex 24 x 24 inverses: LU and triangular-solve cost
# 3 * 24^3 = 41 472 flops each, ceil(200 000 / 41 472) = 5): the kernels' own rule runs them on the calling thread,
# so eight concurrent calls complete where eight of 16 hang (docs/benchmarks.md#the-lapack-guard).
AT_LIMIT = REPRO.replace("(16, 24, 24)", "(5, 24, 24)")


def _runs(code, **env):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=str(ROOT), **env)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr


affected = pytest.mark.skipif(not _lapack_guard._affected(jax.lib.__version__),
                              reason="this jaxlib has no batched-LAPACK deadlock")


@affected
@pytest.mark.parametrize("code, guard", [(REPRO, "1"), (THREADS, "1"), (AT_LIMIT, "0")],
                         ids=["guard", "threads", "at-limit-unguarded"])
def test_concurrent_batched_lapack_calls_complete(code, guard):
    _runs(code, DIFFTRANSPORT_LAPACK_GUARD=guard)


@pytest.mark.parametrize("name, shapes, complex_, limit", [
    ("lu", [(24, 24)], True, 5),  # 3 * 24^3 = 41 472 flops
    ("lu", [(64, 64)], True, 1),  # 786 432 > 200 000: every batch of two or more could split
    ("lu", [(2, 2)], True, 8334),  # 24 flops: 2 x 2 site blocks never split in batches below 8 334
    ("lu", [(32, 32)], False, 7),  # real: 32 768 flops
    ("triangular_solve", [(32, 32), (32, 64)], True, 1),  # 32 * 64 * 64 * 3 (upper bound over the side)
    ("triangular_solve", [(8, 8), (8, 8)], True, 131),  # 1 536 flops
    ("eig", [(6, 6)], False, 93),  # 10 * 216
    ("eigh", [(6, 6)], True, 78),  # 4 * 216 * 3
    ("tridiagonal_solve", [(10,), (10,), (10,), (10, 1)], False, 4000),  # 5 * 10
])
def test_chunk_limit_is_jaxlibs_inline_limit(name, shapes, complex_, limit):
    """ceil(200 000 / cost) with the cost formulas of jaxlib 0.10 - 0.11.0's lapack_kernels.cc."""
    assert _lapack_guard.chunk_limit(name, shapes, complex_) == limit


@affected
@pytest.mark.skipif(os.environ.get("DIFFTRANSPORT_LAPACK_GUARD", "1") != "1", reason="the default guard is not on")
@pytest.mark.parametrize("batch", [1, 5, 6, 13, 15])
def test_guard_loops_only_batches_that_could_split(batch):
    """Batches up to the inline limit keep one batched call; larger ones become a loop of chunks of the limit
    (plus one call for the remainder; a loop's body holds one call)."""
    text = jax.jit(lambda a: jax.lax.linalg.lu(a)[0]).lower(jnp.ones((batch, 24, 24), complex)).as_text()
    calls = [line.rsplit(": (tensor<", 1)[1].split("x24x24", 1)[0] for line in text.splitlines()
             if "lapack_zgetrf" in line]
    expected = {1: ["1"], 5: ["5"], 6: ["5", "1"], 13: ["5", "3"], 15: ["5"]}[batch]
    assert sorted(calls) == sorted(expected), calls
