"""Physical parameters (a differentiable pytree) and disorder realizations (data drawn from PRNG keys).

Units: energies in the unit of the hopping (t = 1 unless given), lengths in lattice constants, times in
hbar / (energy unit), magnetic flux per unit cell area a^2 in flux quanta h/e.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .checks import real_array as _real_array
from .lattice import Sample

Distribution = Literal["box", "gaussian"]
_DISTRIBUTIONS = ("box", "gaussian")


def _parameter(name: str, *, required: bool = False):
    """Converter of the Model field ``name`` (errors name ``model.<name>``)."""
    return functools.partial(_real_array, name=f"model.{name}", required=required)


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

    Checks. At construction (``ValueError``): every parameter is a real number or array (not complex, not a
    str), and ``energy`` and ``hopping`` are not None. When traced by a solver (``ValueError``): parameters are
    scalars, spin terms need a spinful sample, ``mass`` needs two sublattices. At run time, also under ``jit``
    and ``vmap`` (``equinox.error_if``, raising ``equinox.EquinoxRuntimeError`` whose message names the
    parameter and the rule): parameters are finite, ``hopping`` is nonzero, ``tau_phi`` is positive (inf for
    coherent), a periodic transverse boundary needs an integer flux winding. ``flux`` is reduced modulo the
    period P of the lattice's Landau gauge (P = 1 on square and cubic lattices; exact in float64, the phases
    are unchanged), so any finite flux keeps precise phases there; a lattice without such a period (the
    honeycomb ribbons) refuses |flux| * c_max > 1e6, c_max the largest |dx (y1 + y2) / 2| of its bonds, beyond
    which the phases lose precision.

    A run-time error under ``vmap`` says what is wrong but not which element: equinox reduces the check over
    the batch (with the environment variable ``EQX_ON_ERROR=nan`` the whole batch becomes NaN instead of
    raising). To find the element, call the function on one element at a time without ``vmap`` (a Python loop
    over the values, or over the keys of an ensemble's realizations), or set ``EQX_ON_ERROR=breakpoint`` and
    inspect the values in the debugger.
    """

    energy: Float[Array, ""] = eqx.field(converter=_parameter("energy", required=True))
    hopping: Float[Array, ""] = eqx.field(converter=_parameter("hopping", required=True), default=1.0)
    flux: Float[Array, ""] | None = eqx.field(converter=_parameter("flux"), default=None)
    rashba: Float[Array, ""] | None = eqx.field(converter=_parameter("rashba"), default=None)
    exchange: Float[Array, ""] | None = eqx.field(converter=_parameter("exchange"), default=None)
    tau_phi: Float[Array, ""] | None = eqx.field(converter=_parameter("tau_phi"), default=None)
    mass: Float[Array, ""] | None = eqx.field(converter=_parameter("mass"), default=None)

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
            (L - 1, inter_bonds, 2, 2), or (L, ...) with the wrap bonds of a periodic sample; a bond then carries
            -t R (times its Peierls phase). The bonds to the leads stay clean.

    Checks, when a solver traces the disorder (``ValueError``): shapes match the sample, ``potential`` and
    ``moments`` are real (an imaginary potential is absorption: use ``Model.tau_phi``), ``moments`` come with
    ``Model.exchange`` and vice versa. At run time (``equinox.error_if``, also under ``jit`` and ``vmap``):
    ``potential`` and ``moments`` are finite, and every moment is a unit vector within 1e-6 (they are not
    normalized for you). To find the offending realization of a batch, evaluate the realizations one at a time
    without ``vmap`` (see :class:`Model`).
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


def _keys(key, tag: int, labels, count: int, first_slice):
    """Keys of shape (count, len(labels)): fold_in(key, tag, first_slice + slice, *label), slice < count."""
    slices = jnp.arange(count, dtype=jnp.uint32) + jnp.asarray(first_slice).astype(jnp.uint32)

    def one(s, label):
        k = _fold(key, tag, s)
        for c in range(labels.shape[1]):
            k = jax.random.fold_in(k, label[c])
        return k

    return jax.vmap(lambda s: jax.vmap(lambda lab: one(s, lab))(labels))(slices)


def _site_keys(key, sample: Sample, tag: int, first_slice=0):
    """Keys of shape (length, sites): fold_in(key, tag, first_slice + slice, *label)."""
    return _keys(key, tag, jnp.asarray(sample.lattice.labels, dtype=jnp.uint32), sample.length, first_slice)


def _bond_keys(key, sample: Sample, tag: int, bonds, count: int, first_slice=0):
    """Keys of shape (count, bonds): fold_in(key, tag, first_slice + slice, *label_i, *label_j)."""
    labels = jnp.asarray(sample.lattice.labels, dtype=jnp.uint32)
    ends = jnp.asarray(bonds, dtype=jnp.int32).reshape(-1, 2)
    return _keys(key, tag, jnp.concatenate([labels[ends[:, 0]], labels[ends[:, 1]]], axis=1), count, first_slice)


def anderson_potential(key, sample: Sample, strength, *, distribution: Distribution = "box", first_slice=0):
    """On-site Anderson disorder of shape ``sample.potential_shape``; with ``first_slice`` s0 (an integer, may be
    traced) the slices [s0, s0 + length) of any longer sample drawn from the same key.

    ``distribution="box"``: uniform in [-strength/2, strength/2] (variance strength^2/12), the convention of
    the Anderson-transition literature. ``"gaussian"``: normal with standard deviation ``strength``.
    Differentiable with respect to ``strength`` (the draw is strength times a fixed unit draw).
    """
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    return _anderson_potential(key, sample, _real_array(strength, "strength", required=True), distribution, first_slice)


@eqx.filter_jit
def _anderson_potential(key, sample: Sample, strength, distribution: str, first_slice):
    keys = _site_keys(key, sample, _TAG_POTENTIAL, first_slice)
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
def su2_rotations(key, sample: Sample, *, first_slice=0):
    """Haar-random SU(2) hopping matrices for every bond of the sample: (intra, inter) with shapes
    (length, intra_bonds, 2, 2) and (sample.inter_slices, inter_bonds, 2, 2) (length - 1, or length when periodic);
    ``first_slice`` as in :func:`anderson_potential`."""
    lat = sample.lattice
    intra = jnp.zeros((sample.length, 0, 2, 2), complex)
    if lat.intra_bonds:
        keys = _bond_keys(key, sample, _TAG_SU2_INTRA, lat.intra_bonds, sample.length, first_slice)
        intra = jax.vmap(jax.vmap(_haar_su2))(keys)
    keys = _bond_keys(key, sample, _TAG_SU2_INTER, lat.inter_bonds, sample.inter_slices, first_slice)
    inter = jax.vmap(jax.vmap(_haar_su2))(keys).reshape(sample.inter_slices, len(lat.inter_bonds), 2, 2)
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
