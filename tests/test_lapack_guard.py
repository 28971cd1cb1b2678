"""The guard against the batched-LAPACK deadlock of jaxlib 0.9 - 0.11.1 (difftransport/_core/lapack_guard.py)."""

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


@pytest.mark.skipif(not _lapack_guard._affected(jax.lib.__version__), reason="this jaxlib has no batched-LAPACK deadlock")
def test_concurrent_batched_lapack_calls_complete():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", REPRO], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr


def test_guarded_batched_linear_algebra_is_exact(rng):
    """Batched (two batch dimensions) results equal numpy's per-matrix results."""
    x = rng.normal(size=(3, 4, 6, 6)) + 1j * rng.normal(size=(3, 4, 6, 6))
    h = x + np.conj(np.swapaxes(x, -1, -2))
    np.testing.assert_allclose(jax.jit(jnp.linalg.inv)(x), np.linalg.inv(x), atol=1e-12)
    np.testing.assert_allclose(jax.jit(jnp.linalg.eigvalsh)(h), np.linalg.eigvalsh(h), atol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda m: jnp.linalg.svd(m, compute_uv=False))(x), np.linalg.svd(x, compute_uv=False), atol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda m: jnp.sort_complex(jnp.linalg.eigvals(m)))(x), np.sort_complex(np.linalg.eigvals(x)), atol=1e-12)
    b = np.ones(x.shape[:-1] + (2,))
    np.testing.assert_allclose(jax.jit(jnp.linalg.solve)(x, b), np.linalg.solve(x, b), atol=1e-12)
    # differentiation is untouched: the gradient of the batched (looped) call equals per-matrix gradients
    loss = lambda m: jnp.real(jnp.linalg.inv(m).sum() * (1 + 0.5j))
    batched = jax.grad(lambda m: jax.vmap(loss)(m).sum())(jnp.asarray(x[0]))
    single = np.stack([jax.grad(loss)(jnp.asarray(m)) for m in x[0]])
    np.testing.assert_allclose(batched, single, atol=1e-12)


@pytest.mark.skipif(not _lapack_guard.lapack_blas_libraries(), reason="scipy has no bundled OpenBLAS here")
@pytest.mark.parametrize("env, threads", [({}, 1), ({"DIFFTRANSPORT_BLAS_THREADS": "2"}, 2), ({"OPENBLAS_NUM_THREADS": "2"}, 2)])
def test_lapack_blas_threads(env, threads):
    """Importing the package runs jaxlib's LAPACK (scipy's OpenBLAS) on one thread unless the user says otherwise
    (docs/benchmarks.md#openblas-threads: threaded OpenBLAS inside XLA's threads cost 1.3-3.6x)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DIFFTRANSPORT_BLAS_THREADS", "OPENBLAS_NUM_THREADS")}
    code = "import difftransport; from difftransport._core import lapack_guard as g; print(g.blas_threads())"
    result = subprocess.run([sys.executable, "-c", code], env=dict(base, PYTHONPATH=str(ROOT), **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    counts = eval(result.stdout.strip())
    assert counts and all(c == threads for c in counts), counts
