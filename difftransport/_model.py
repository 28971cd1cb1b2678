"""Physical parameters (a differentiable pytree) and disorder realizations (data drawn from PRNG keys).

Units: energies in the unit of the hopping (t = 1 unless given), lengths in lattice constants, times in
hbar / (energy unit), magnetic flux per unit cell area a^2 in flux quanta h/e.
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._lattice import Sample

Distribution = Literal["box", "gaussian"]
_DISTRIBUTIONS = ("box", "gaussian")


def _real_array(x):
    """Convert at the API boundary: Python numbers become float arrays (never static, so no retracing)."""
    if x is None:
        return None
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        raise ValueError(f"model parameters are real numbers, got a complex array of dtype {x.dtype}.")
    return x.astype(jnp.result_type(float))


class Model(eqx.Module):
    """Continuous parameters of a tight-binding model; ``jax.grad`` returns a ``Model`` of the same shape.

    A parameter left as ``None`` removes its term from the Hamiltonian (a static choice); pass ``0.0`` to
    keep a term that is zero but differentiable.

    Attributes:
        energy: Fermi energy E (units of the energy scale; the clean 2D band is [-4t, 4t]).
        hopping: nearest-neighbour hopping t; bonds carry -t (default 1).
        flux: magnetic flux per plaquette (per area a^2) in flux quanta h/e, Landau gauge A = -B y x: the bond
            from r1 to r2 carries exp(-2 pi i flux (x2 - x1)(y1 + y2) / 2). In the sample and in the leads.
        rashba: Rashba spin-orbit strength alpha (spinful samples): a bond along unit vector d carries
            -t + i alpha (d_x sigma_y - d_y sigma_x), i.e. H[r+x, r] = -t + i alpha sigma_y and
            H[r+y, r] = -t - i alpha sigma_x. In the sample and in the leads.
        exchange: exchange coupling J of magnetic impurities, on-site J m.sigma with the unit vectors m of the
            disorder realization (spinful samples, sample only).
        tau_phi: phase-coherence time; every sample site gets the absorption -i eta, eta = hbar / (2 tau_phi)
            (``docs/physics.md``, dephasing). ``jnp.inf`` means coherent.
        mass: staggered sublattice potential, +mass on sublattice A and -mass on B (sample only).
    """

    energy: Float[Array, ""] = eqx.field(converter=_real_array)
    hopping: Float[Array, ""] = eqx.field(converter=_real_array, default=1.0)
    flux: Float[Array, ""] | None = eqx.field(converter=_real_array, default=None)
    rashba: Float[Array, ""] | None = eqx.field(converter=_real_array, default=None)
    exchange: Float[Array, ""] | None = eqx.field(converter=_real_array, default=None)
    tau_phi: Float[Array, ""] | None = eqx.field(converter=_real_array, default=None)
    mass: Float[Array, ""] | None = eqx.field(converter=_real_array, default=None)

    @property
    def absorption(self):
        """eta = hbar / (2 tau_phi) (zero for tau_phi = inf), or None without dephasing."""
        return None if self.tau_phi is None else 0.5 / self.tau_phi


class Disorder(eqx.Module):
    """One disorder realization of a sample: data, not parameters.

    Attributes:
        potential: on-site energies, shape ``sample.potential_shape`` = (length, *cross_section), e.g.
            (L, W) for a strip, (L, W, H) for a bar, (L, sites) for a ribbon (sites in lattice order).
        moments: unit vectors of classical magnetic moments, shape (*potential_shape, 3); they enter with the
            model's ``exchange`` J as J m.sigma.
        su2_intra, su2_inter: SU(2) matrices of the random-hopping (Asada-Slevin-Ohtsuki) model for every
            intra-slice bond, shape (L, intra_bonds, 2, 2), and every bond to the next slice, shape
            (L - 1, inter_bonds, 2, 2); a bond then carries -t R (times its Peierls phase). The bonds to the
            leads stay clean.
    """

    potential: Float[Array, "..."] | None = None
    moments: Float[Array, "... 3"] | None = None
    su2_intra: Array | None = None
    su2_inter: Array | None = None


# ---------------------------------------------------------------------------------------------------------
# Random draws. A value at a site is a pure function of (key, term, slice index, site label), so enlarging a
# sample, chunking an ensemble or sharding it never changes a realization.

_TAG_POTENTIAL, _TAG_MOMENTS, _TAG_SU2_INTRA, _TAG_SU2_INTER = 0, 1, 2, 3


def _fold(key, *ints):
    for i in ints:
        key = jax.random.fold_in(key, i)
    return key


def _site_keys(key, sample: Sample, tag: int):
    """Keys of shape (length, sites): fold_in(key, tag, slice, *label)."""
    labels = jnp.asarray(sample.lattice.labels, dtype=jnp.uint32)  # (sites, k)
    slices = jnp.arange(sample.length, dtype=jnp.uint32)

    def one(s, label):
        k = _fold(key, tag, s)
        for c in range(labels.shape[1]):
            k = jax.random.fold_in(k, label[c])
        return k

    return jax.vmap(lambda s: jax.vmap(lambda lab: one(s, lab))(labels))(slices)


def _bond_keys(key, sample: Sample, tag: int, bonds, count: int):
    """Keys of shape (count, bonds): fold_in(key, tag, slice, *label_i, *label_j)."""
    labels = jnp.asarray(sample.lattice.labels, dtype=jnp.uint32)
    ends = jnp.asarray(bonds, dtype=jnp.int32).reshape(-1, 2)
    pair_labels = jnp.concatenate([labels[ends[:, 0]], labels[ends[:, 1]]], axis=1)  # (bonds, 2k)

    def one(s, lab):
        k = _fold(key, tag, s)
        for c in range(pair_labels.shape[1]):
            k = jax.random.fold_in(k, lab[c])
        return k

    slices = jnp.arange(count, dtype=jnp.uint32)
    return jax.vmap(lambda s: jax.vmap(lambda lab: one(s, lab))(pair_labels))(slices)


def anderson_potential(key, sample: Sample, strength, *, distribution: Distribution = "box"):
    """On-site Anderson disorder of shape ``sample.potential_shape``.

    ``distribution="box"``: uniform in [-strength/2, strength/2] (variance strength^2/12), the convention of
    the Anderson-transition literature. ``"gaussian"``: normal with standard deviation ``strength``.
    Differentiable with respect to ``strength`` (the draw is strength times a fixed unit draw).
    """
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    return _anderson_potential(key, sample, _real_array(strength), distribution)


@eqx.filter_jit
def _anderson_potential(key, sample: Sample, strength, distribution: str):
    keys = _site_keys(key, sample, _TAG_POTENTIAL)
    dtype = jnp.result_type(float)
    if distribution == "box":
        unit = jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, (), dtype) - 0.5))(keys)
    else:
        unit = jax.vmap(jax.vmap(lambda k: jax.random.normal(k, (), dtype)))(keys)
    return (jnp.asarray(strength, dtype) * unit).reshape(sample.potential_shape)


@eqx.filter_jit
def random_moments(key, sample: Sample):
    """Independent unit vectors, uniform on the sphere, one per site: shape (*potential_shape, 3)."""
    keys = _site_keys(key, sample, _TAG_MOMENTS)
    dtype = jnp.result_type(float)

    def one(k):
        v = jax.random.normal(k, (3,), dtype)
        return v / jnp.linalg.norm(v)

    return jax.vmap(jax.vmap(one))(keys).reshape(*sample.potential_shape, 3)


def _haar_su2(k):
    """Haar-random SU(2) matrix [[e^{i a} cos b, e^{i c} sin b], [-e^{-i c} sin b, e^{-i a} cos b]] with
    a, c uniform in [0, 2 pi) and P(b) = sin(2b) on [0, pi/2] (Asada, Slevin, Ohtsuki, PRL 89, 256601)."""
    dtype = jnp.result_type(float)
    u = jax.random.uniform(k, (3,), dtype)
    a, c = 2 * math.pi * u[0], 2 * math.pi * u[1]
    b = jnp.arcsin(jnp.sqrt(u[2]))
    ea, ec = jnp.exp(1j * a), jnp.exp(1j * c)
    cb, sb = jnp.cos(b), jnp.sin(b)
    return jnp.array([[ea * cb, ec * sb], [-jnp.conj(ec) * sb, jnp.conj(ea) * cb]])


@eqx.filter_jit
def su2_rotations(key, sample: Sample):
    """Haar-random SU(2) hopping matrices for every bond of the sample: (intra, inter) with shapes
    (length, intra_bonds, 2, 2) and (length - 1, inter_bonds, 2, 2)."""
    lat = sample.lattice
    intra = jnp.zeros((sample.length, 0, 2, 2), complex)
    if lat.intra_bonds:
        keys = _bond_keys(key, sample, _TAG_SU2_INTRA, lat.intra_bonds, sample.length)
        intra = jax.vmap(jax.vmap(_haar_su2))(keys)
    keys = _bond_keys(key, sample, _TAG_SU2_INTER, lat.inter_bonds, sample.length - 1)
    inter = jax.vmap(jax.vmap(_haar_su2))(keys).reshape(sample.length - 1, len(lat.inter_bonds), 2, 2)
    return intra, inter


def draw_disorder(
    key,
    sample: Sample,
    *,
    strength=0.0,
    distribution: Distribution = "box",
    moments: bool = False,
    su2: bool = False,
) -> Disorder:
    """Draw one disorder realization from ``key``: Anderson potential of the given ``strength`` and
    ``distribution`` (see :func:`anderson_potential`), plus random magnetic moments and SU(2) hoppings if
    asked for. Each term uses its own stream, so adding one does not change the others."""
    if su2 and not sample.spinful:
        raise ValueError("su2=True needs a spinful sample (Sample(..., spinful=True)).")
    if moments and not sample.spinful:
        raise ValueError("moments=True needs a spinful sample (Sample(..., spinful=True)).")
    intra = inter = None
    if su2:
        intra, inter = su2_rotations(key, sample)
    return Disorder(
        potential=anderson_potential(key, sample, strength, distribution=distribution),
        moments=random_moments(key, sample) if moments else None,
        su2_intra=intra,
        su2_inter=inter,
    )
