"""Small linear-algebra helpers shared by the core."""

import jax
import jax.numpy as jnp


def dag(x):
    """Conjugate transpose x^dagger of the last two axes (batched over leading axes)."""
    return jnp.conj(jnp.swapaxes(x, -1, -2))


def lu_basis(x):
    """A well-conditioned basis of the columns of a tall x (m, k), m >= k: x = B U with B = P^T L.

    One LU factorization with partial pivoting, x[perm] = L U (L unit lower-trapezoidal with |L_ij| <= 1, U upper
    triangular k x k). Returns (B, U): B = P^T L spans the columns of x, contains the k x k identity among its
    rows (so its k-volume is >= 1) and has bounded entries. Renormalizing a growing frame by B instead of the Q of
    a QR keeps the column space and costs about a quarter of the flops (no Householder product, no Q to form);
    log |U_ii| then measure the growth of nested volumes up to the bounded volume of B, which telescopes
    between renormalizations (docs/physics.md#renormalizing-by-lu).
    """
    lu, _, perm = jax.lax.linalg.lu(x)  # x[perm] = L U
    m, k = x.shape[-2:]
    lower = jnp.tril(lu, -1) + jnp.eye(m, k, dtype=x.dtype)
    inverse_perm = jnp.zeros_like(perm).at[perm].set(jnp.arange(m, dtype=perm.dtype))  # a scatter: argsort sorts
    return lower[inverse_perm], jnp.triu(lu[:k])
