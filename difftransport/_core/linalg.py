"""Small linear-algebra helpers shared by the core."""

import jax.numpy as jnp


def dag(x):
    """Conjugate transpose x^dagger of the last two axes (batched over leading axes)."""
    return jnp.conj(jnp.swapaxes(x, -1, -2))
