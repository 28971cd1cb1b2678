"""Input checks shared by the core's entry functions: structural problems raise a one-line ``ValueError`` naming
the argument (at construction or trace time); value problems inside ``jit`` use ``equinox.error_if``."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np


def positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a Python or NumPy integer >= 1 (not a bool); else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {value!r} of type {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}.")
    return int(value)


def real_array(x, name: str | None = None, *, required: bool = False):
    """Convert at the API boundary: Python numbers become float arrays (never static, so no retracing).

    ``name`` is the argument named in the errors (e.g. ``"model.energy"``); ``required`` refuses None."""
    what = name or "a model parameter"
    if x is None:
        if required:
            raise ValueError(f"{what} is required: give a real number, got None.")
        return None
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise ValueError(f"{what} must be a real number or array, got {type(x).__name__} {x!r:.40}.") from None
    if jnp.iscomplexobj(x):
        if name is None or name.startswith("model."):
            raise ValueError(f"model parameters are real numbers, got {what} = a complex array of dtype {x.dtype}.")
        raise ValueError(f"{name} must be real, got a complex array of dtype {x.dtype}.")
    return x.astype(jnp.result_type(float))


def real_float(x):
    """``x`` as a float array; ValueError for a complex one (the theory functions' boundary)."""
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        raise ValueError(f"theory functions take real arrays, got dtype {x.dtype}.")
    return x.astype(jnp.result_type(float))


def positive(name, x):
    """``x``, checked inside jit to be > 0 (NaN fails)."""
    return eqx.error_if(x, ~(x > 0), f"{name} must be positive (and not NaN).")


def nonnegative(name, x):
    """``x``, checked inside jit to be >= 0 (NaN fails)."""
    return eqx.error_if(x, ~(x >= 0), f"{name} must be >= 0 (and not NaN).")
