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
import numpy as np
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
        twist: Aharonov-Bohm flux through a cylinder (periodic transverse boundary of circumference C), in flux
            quanta h/e: every bond carries an extra exp(2 pi i twist dy / C) (dy its physical extent along y), in
            the sample and in the leads, a twisted boundary condition psi(y + C) = e^{2 pi i twist} psi(y) in
            another gauge. Curl-free (no field on the surface); averaging over a uniform twist in [0, 1) averages
            over boundary conditions (``docs/physics.md#field-in-the-sample``). Periodic lattices only.

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
    twist: Float[Array, ""] | None = eqx.field(converter=_parameter("twist"), default=None)

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
_TAG_OCCUPATION, _TAG_SHORT_OCCUPATION, _TAG_SHORT_AMPLITUDE = 4, 5, 6


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
    unit = _unit_draws(_site_keys(key, sample, _TAG_POTENTIAL, first_slice), distribution)
    return (jnp.asarray(strength, jnp.result_type(float)) * unit).reshape(sample.potential_shape)


def _unit_draws(keys, distribution: str):
    """One unit-strength draw per key of a (length, sites) array: uniform in [-1/2, 1/2] or standard normal."""
    dtype = jnp.result_type(float)
    if distribution == "box":
        return jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, (), dtype) - 0.5))(keys)
    return jax.vmap(jax.vmap(lambda k: jax.random.normal(k, (), dtype)))(keys)


def _occupied(key, sample: Sample, tag: int, density: float):
    """(length, sites) booleans, each True with probability ``density`` (uniform draw < density)."""
    dtype = jnp.result_type(float)
    keys = _site_keys(key, sample, tag)
    return jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, (), dtype)))(keys) < density


# Smooth (long-range, Gaussian-correlated) disorder and short-range (atomic) scatterers
# (docs/physics.md#correlated-disorder). The impurity draws (occupation, amplitude) keep the pure-function property
# above; the smooth potential at a site sums the impurities within the cutoff, so near a sample end it changes when
# the sample grows.

_CUTOFF = 4.0  # Gaussians are cut at 4 xi, where exp(-8) ~ 3.4e-4 of the peak remains


def _static_real(name: str, value, low: float, high: float = math.inf, *, low_open: bool = False) -> float:
    """A concrete real number in the given range, as a Python float: it decides a static structure (the kernel's
    shapes, whether a draw is made), so it cannot be traced."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if math.isfinite(high) else ')'}"
    if isinstance(value, (bool, str)) or np.ndim(value) != 0 or jnp.iscomplexobj(value):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise ValueError(f"{name} must be a concrete number, not traced (it is static), got {value!r}.") from None
    if not (math.isfinite(number) and (number > low if low_open else number >= low) and number <= high):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}.")
    return number


def _transverse_periods(lattice) -> tuple[float | None, float | None]:
    """Periods along y and z of a periodic transverse boundary (None: open), read off the bonds that cross the
    seam: their displacement vector differs from the difference of the sites' positions by one period."""
    pos = lattice.position_array()
    periods: list[float | None] = [None, None]
    for bonds, vectors, shift in ((lattice.intra_bonds, lattice.intra_vectors, 0.0),
                                  (lattice.inter_bonds, lattice.inter_vectors, lattice.period)):
        if not bonds:
            continue
        ends = np.asarray(bonds, dtype=np.int64)
        wrap = pos[ends[:, 1]] - pos[ends[:, 0]] - np.asarray(vectors, dtype=np.float64)
        wrap[:, 0] += shift
        for axis in (1, 2):
            crossing = np.abs(wrap[:, axis]) > 1e-9
            if crossing.any():
                periods[axis - 1] = float(np.abs(wrap[crossing, axis]).max())
    return periods[0], periods[1]


@functools.lru_cache(maxsize=32)
def _gaussian_factors(sample: Sample, correlation_length: float):
    """The Gaussian kernel g(r_i - r_j) = exp(-|r_i - r_j|^2 / (2 xi^2)) between a site i of slice s and a site j of
    slice s - m, factorized, built once per (sample, xi) with numpy.

    The sample is a stack of identical cells and g is a product of one-dimensional Gaussians, each cut at 4 xi
    (a box cutoff, which keeps the product form): g = along[class(i), j, k] * across[i, j], where class(i) numbers
    the distinct x offsets of the cell's sites and k the slice offsets m = ``residues[k]``. Distances take the
    minimum image across a periodic transverse boundary and, for a periodic (ring) sample, along x (there every
    source slice appears once). Memory O(sites per slice x (sites per slice + A M)), whatever the length.

    Returns (residues (M,), classes (sites,), along (A, sites, M), across (sites, sites)).
    """
    lat = sample.lattice
    pos = lat.position_array()
    period, length, cutoff = lat.period, sample.length, _CUTOFF * correlation_length
    ring = length * period if sample.periodic else None
    wrap_y, wrap_z = _transverse_periods(lat)

    def gauss(d, wrap):
        if wrap is not None:
            d = d - wrap * np.round(d / wrap)
        return np.where(np.abs(d) <= cutoff, np.exp(-d * d / (2 * correlation_length**2)), 0.0)

    reach = int(math.floor(cutoff / period)) + 1  # x offsets within a cell lie in [0, period)
    residues = np.arange(-reach, reach + 1)
    if sample.periodic and 2 * reach + 1 > length:
        residues = np.arange(length)
    _, first, classes = np.unique(np.round(pos[:, 0], 9), return_index=True, return_inverse=True)
    dx = pos[first, None, None, 0] - pos[None, :, None, 0] + residues[None, None, :] * period
    along = gauss(dx, ring)
    across = gauss(pos[:, None, 1] - pos[None, :, 1], wrap_y) * gauss(pos[:, None, 2] - pos[None, :, 2], wrap_z)
    return residues, classes.reshape(-1), along, across


def _gaussian_smooth(field, sample: Sample, correlation_length: float):
    """sum_j field_j g(r_i - r_j) over the sample sites j (see :func:`_gaussian_factors`); field (length, sites).
    A convolution along the slices per x class, then one (sites x sites) product per class: O(N (M + sites)) work
    and O(N M + sites^2) memory for N sites, not O(N^2)."""
    residues, classes, along, across = _gaussian_factors(sample, correlation_length)
    length, sites = field.shape
    if sample.periodic:
        shifted = jnp.stack([jnp.roll(field, int(m), axis=0) for m in residues])  # [k, s] = field[(s - m) % L]
    else:  # no impurity beyond the sample ends: the leads are clean
        reach = int(residues[-1])
        padded = jnp.pad(field, ((reach, reach), (0, 0)))
        shifted = jnp.stack([padded[reach - m : reach - m + length] for m in residues.tolist()])
    dtype = field.dtype
    h = jnp.einsum("ajk,ksj->asj", jnp.asarray(along, dtype), shifted)  # (classes, length, sites)
    u = jnp.einsum("asj,ij->asi", h, jnp.asarray(across, dtype))
    return u[classes, :, np.arange(sites)].T


def correlated_potential(key, sample: Sample, strength, *, correlation_length, density=1.0,
                         distribution: Distribution = "box"):
    """Smooth (Gaussian-correlated) disorder of shape ``sample.potential_shape``, the lattice model of Rycerz,
    Tworzydlo and Beenakker, EPL 79, 57003 (2007):

        V(r_i) = sum_j c_j U_j exp(-|r_i - r_j|^2 / (2 xi^2)),

    summed over the sample sites j with |x_i - x_j|, |y_i - y_j| and |z_i - z_j| all <= 4 xi (a box cutoff; the
    rest of the Gaussian, at most exp(-8) ~ 3.4e-4 of the peak, is dropped), with the minimum image across periodic
    boundaries (transverse, and along x for a periodic sample; a period below 8 xi keeps the nearest image only).
    ``c_j`` is 1 with probability ``density`` (an impurity on that site) and 0 otherwise; U_j is drawn
    from ``distribution`` with ``strength`` as in :func:`anderson_potential` (box: uniform in
    [-strength/2, strength/2]). Both draws are pure functions of (key, slice, site label), with the same key
    stream for U_j as :func:`anderson_potential`: ``correlation_length=0`` and ``density=1`` give exactly the
    Anderson potential. Impurities lie inside the sample only (the leads are clean), so <V^2> is lower within ~xi
    of the sample ends, and the smooth V near an end changes if the sample grows (the draws do not).

    Args:
        correlation_length: xi >= 0 in the lattice's length unit (lattice constant a = 1; the honeycomb C-C
            distance is 1/sqrt(3)); 0 keeps each U_j on its own site. Static (a Python number).
        density: fraction n of the sites that carry an impurity, 0 < n <= 1. Static.

    Valley conservation on honeycomb lattices needs xi >~ a. Differentiable with respect to ``strength``
    (linear in it). See ``docs/physics.md#correlated-disorder`` for the correlator and the strength K_0.
    """
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    xi = _static_real("correlation_length", correlation_length, 0.0)
    density = _static_real("density", density, 0.0, 1.0, low_open=True)
    if xi == 0.0 and density == 1.0:
        return anderson_potential(key, sample, strength, distribution=distribution)
    return _correlated_potential(key, sample, _real_array(strength, "strength", required=True), xi, density,
                                 distribution)


@eqx.filter_jit
def _correlated_potential(key, sample: Sample, strength, xi: float, density: float, distribution: str):
    field = _unit_draws(_site_keys(key, sample, _TAG_POTENTIAL), distribution)
    if density < 1.0:
        field = jnp.where(_occupied(key, sample, _TAG_OCCUPATION, density), field, 0.0)
    if xi > 0.0:
        field = _gaussian_smooth(field, sample, xi)
    return (jnp.asarray(strength, field.dtype) * field).reshape(sample.potential_shape)


def short_range_potential(key, sample: Sample, strength, *, density):
    """Short-range (atomic, single-site) scatterers, shape ``sample.potential_shape``: each site independently
    carries one with probability ``density`` (0 <= density <= 1, static), of amplitude uniform in
    [-strength/2, strength/2] (the box convention of :func:`anderson_potential`, variance strength^2/12), else 0.
    On a honeycomb lattice they scatter between valleys. Pure function of (key, slice, site label), from streams
    of its own. Differentiable with respect to ``strength`` (linear in it)."""
    density = _static_real("short_range_density", density, 0.0, 1.0)
    return _short_range_potential(key, sample, _real_array(strength, "short_range_strength", required=True), density)


@eqx.filter_jit
def _short_range_potential(key, sample: Sample, strength, density: float):
    amplitude = _unit_draws(_site_keys(key, sample, _TAG_SHORT_AMPLITUDE), "box")
    field = jnp.where(_occupied(key, sample, _TAG_SHORT_OCCUPATION, density), amplitude, 0.0)
    return (jnp.asarray(strength, field.dtype) * field).reshape(sample.potential_shape)


_TAG_TWIST = 0x7A157  # the twist's stream: fold_in(realization key, _TAG_TWIST), apart from the disorder's


def realization_twist(key):
    """The Aharonov-Bohm twist (flux quanta, uniform in [0, 1)) of the realization with key ``key``
    (``Model.twist``; ``disorder.random_twist = true`` in a run config), from a stream of its own."""
    return jax.random.uniform(jax.random.fold_in(key, _TAG_TWIST), dtype=jnp.result_type(float))


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
    correlation_length=0.0,
    density=1.0,
    short_range_density=0.0,
    short_range_strength=0.0,
    moments: bool = False,
    su2: bool = False,
) -> Disorder:
    """Draw one disorder realization from ``key``: the potential, plus random magnetic moments and SU(2) hoppings
    if asked for. Each term uses its own stream, so adding one does not change the others.

    The potential is the sum of two terms (``docs/physics.md#correlated-disorder``):

    - the main term, of ``strength`` and ``distribution``: :func:`correlated_potential` with
      ``correlation_length`` xi and impurity ``density`` n; with the defaults xi = 0 and n = 1 it is exactly the
      Anderson potential of :func:`anderson_potential` (the same numbers, bit for bit). It is linear in
      ``strength``.
    - short-range (atomic) scatterers, :func:`short_range_potential`: a fraction ``short_range_density`` of the
      sites, amplitudes uniform in [-short_range_strength/2, short_range_strength/2] (box convention), whatever
      ``distribution``; absent with the default ``short_range_density=0``.

    ``correlation_length``, ``density`` and ``short_range_density`` are static (Python numbers); ``strength`` and
    ``short_range_strength`` are differentiable.
    """
    if su2 and not sample.spinful:
        raise ValueError("su2=True needs a spinful sample (Sample(..., spinful=True)).")
    if moments and not sample.spinful:
        raise ValueError("moments=True needs a spinful sample (Sample(..., spinful=True)).")
    short_range_density = _static_real("short_range_density", short_range_density, 0.0, 1.0)
    if short_range_density == 0.0 and isinstance(short_range_strength, (int, float)) and short_range_strength != 0:
        raise ValueError(f"short_range_strength={short_range_strength!r} needs short_range_density > 0 "
                         "(the fraction of sites with a short-range scatterer).")
    potential = correlated_potential(key, sample, strength, correlation_length=correlation_length, density=density,
                                     distribution=distribution)
    if short_range_density > 0.0:
        potential = potential + short_range_potential(key, sample, short_range_strength, density=short_range_density)
    intra = inter = None
    if su2:
        intra, inter = su2_rotations(key, sample)
    return Disorder(
        potential=potential,
        moments=random_moments(key, sample) if moments else None,
        su2_intra=intra,
        su2_inter=inter,
    )
