"""Chebyshev time evolution on the library's samples, and the return probability.

The sample, the model and the disorder are those of every other solver (:class:`Sample`, :class:`Model`,
:func:`draw_disorder`), and H is the matrix :func:`build_hamiltonian` builds, so the conventions are those of
``_core/build.py`` (``docs/physics.md#conventions``): hbar = 1, lattice constant a = 1, energies in units of the
hopping t, times in hbar / t. A bond (i -> j) is the matrix element H[j, i] = -t (-t R with SU(2) disorder)
+ i alpha (d_x sigma_y - d_y sigma_x) for the bond direction d, times the Landau-gauge (A = -B y x) Peierls phase
exp(-2 pi i flux (x_j - x_i)(y_i + y_j) / 2), ``flux`` per plaquette in h/e; on a square lattice the x-bond
(x, y) -> (x + 1, y) carries exp(-2 pi i flux y). On-site: box disorder uniform in [-W/2, W/2] from
:func:`draw_disorder` (a pure function of (key, slice, site label), so enlarging a sample never changes the
value at a site), exchange J m.sigma with random moments, staggered mass. The closed periodic box of side
lengths (Lx, Ly) is ``Sample(strip(Ly, boundary="periodic"), Lx, periodic=True)`` (``bar`` in 3D, ``chain`` in
1D; periodic honeycomb ribbons give closed graphene tori); ``periodic=True`` closes the sample along x (slice
L - 1 bonded to slice 0), and an open sample evolves with hard walls at its ends (there are no leads).

:class:`EvolutionHamiltonian` applies H matrix-free: the on-site blocks, the intra-slice bonds and the inter-slice
hops (with the wrap hop) of the sample's :class:`SlicedHamiltonian`, each as a table of per-site couplings to
neighbour slots, so a product H psi costs O(sites x coordination) and H is never stored as a matrix.

Time evolution uses the Chebyshev expansion of the propagator (Tal-Ezer & Kosloff, J. Chem. Phys. 81, 3967
(1984); Weisse, Wellein, Alvermann & Fehske, Rev. Mod. Phys. 78, 275 (2006), Sec. II.F and IV.A): with the
spectrum of H inside [-a, a] and H~ = H / a,

    exp(-i H t) = sum_n c_n(a t) T_n(H~),    c_n(z) = (2 - delta_n0) (-i)^n J_n(z),

where T_n are Chebyshev polynomials (T_{n+1} = 2 H~ T_n - T_{n-1}) and J_n Bessel functions. Because
||T_n(H~)|| <= 1 on [-1, 1], truncating at order N changes any state by at most 2 sum_{n >= N} |J_n(z)|; the
order is the smallest N that keeps this tail below ``tol`` (:func:`chebyshev_order`). The Bessel functions
come from Miller's backward recurrence (stable; Abramowitz & Stegun 9.12), with rescaling against overflow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from .build import prepare
from .checks import positive_int, real_array
from .hamiltonian import SiteBlockHopping, SlicedHamiltonian
from .lattice import Sample
from .linalg import dag as _dag
from .model import Disorder, Model, draw_disorder

# ---------------------------------------------------------------------------------------------------------
# States and their spreading


def _state_shape(sample: Sample) -> tuple[int, ...]:
    return sample.potential_shape + ((2,) if sample.spinful else ())


def site_state(sample: Sample, site=None, *, spin: int = 0) -> Complex[Array, "..."]:
    """The normalized state localized on ``site``, complex128 of shape ``sample.potential_shape`` (plus a spin axis
    of size 2 on spinful samples). ``site`` indexes the potential array, (slice, y) on a strip, (slice, y, z) on
    a bar, (slice, site) on a ribbon, modulo its shape; default the origin (all 0). Spinful samples: spin
    component ``spin`` (0 = up, 1 = down along z)."""
    shape = sample.potential_shape
    site = (0,) * len(shape) if site is None else tuple(site)
    if len(site) != len(shape) or any(not isinstance(c, (int, np.integer)) for c in site):
        raise ValueError(f"site must be {len(shape)} integer indices into the potential shape {shape}, got {site!r}.")
    site = tuple(int(c) % n for c, n in zip(site, shape))
    if spin not in (0, 1):
        raise ValueError(f"spin must be 0 (up) or 1 (down), got {spin!r}.")
    index = site + ((spin,) if sample.spinful else ())
    return jnp.zeros(_state_shape(sample), jnp.result_type(1j)).at[index].set(1.0)


def _grid(sample: Sample) -> tuple[int, ...]:
    """The lengths of a chain, strip or bar, whose sites sit on the integer grid ``sample.potential_shape``."""
    if sample.lattice.period != 1.0 or not sample.lattice.site_diagonal_hopping:
        raise ValueError(f"sample must be a chain, strip or bar (sites on the integer grid), got {sample.lattice.name}")
    return sample.potential_shape


def _density(sample: Sample, state):
    density = jnp.abs(state) ** 2
    return density.sum(-1) if sample.spinful else density


def displacements(sample: Sample) -> tuple[Float[Array, "..."], ...]:
    """Minimal-image displacement from the origin along each axis of a chain, strip or bar, each broadcastable to
    ``sample.potential_shape``: the coordinate x in [0, L) mapped to x - L round(x / L), i.e. into [-L/2, L/2)."""
    shape = _grid(sample)
    out = []
    for axis, length in enumerate(shape):
        x = np.arange(length)
        d = ((x + length // 2) % length) - length // 2
        d = d.reshape([length if a == axis else 1 for a in range(len(shape))])
        out.append(jnp.asarray(d, jnp.result_type(float)))
    return tuple(out)


def mean_square_displacement(sample: Sample, state, *, per_axis: bool = False):
    """<r^2> = sum_r |psi(r)|^2 |r|^2 / sum_r |psi(r)|^2 (spin summed), with r the minimal-image displacement
    from the origin (:func:`displacements`), in lattice constants squared. With ``per_axis``, the array of
    <x_a^2> per axis. Meaningful while the packet is well inside the box (|x_a| << L_a / 2)."""
    density = _density(sample, state)
    moments = jnp.stack([jnp.sum(density * d**2) for d in displacements(sample)]) / jnp.sum(density)
    return moments if per_axis else jnp.sum(moments)


_EQUILIBRATED = 1e-12


def spreading(sample: Sample, state) -> Float[Array, " d"]:
    """Spreading of a packet released at the origin of a periodic chain, strip or bar, per axis of
    ``sample.potential_shape``, from the longest-wavelength Fourier mode of its density: with
    S_a = sum_r n(r) cos(2 pi x_a / L_a) / sum_r n(r),

        u_a = -ln(S_a) / (2 (1 - cos(2 pi / L_a)))        (lattice constants squared; 0 on an axis of length 1).

    For the classical lattice walk with hop rate D_a (:func:`classical_return_probability`) u_a = D_a t
    exactly, at all times and across the periodic boundary; for a narrow packet u_a = <x_a^2> / 2. So u_a(t)
    is the "walk time" of the classical walk that relaxes the density like the quantum packet, and its slope
    in t is the diffusion constant D_a. Unlike :func:`mean_square_displacement` it stays exact when the
    packet wraps around the box. S_a is floored at 1e-12 (u_a capped at about 14 / (1 - cos(2 pi / L_a))):
    the axis has then equilibrated, and the walk along it gives 1 / L_a."""
    shape = _grid(sample)
    density = _density(sample, state)
    density = density / jnp.sum(density)
    out = []
    for axis, length in enumerate(shape):
        if length == 1:
            out.append(jnp.zeros((), density.dtype))
            continue
        wave = np.cos(2 * math.pi * np.arange(length) / length)
        mode = jnp.sum(density * jnp.asarray(wave.reshape([length if a == axis else 1 for a in range(len(shape))])))
        # Once the packet has spread evenly along a short axis the mode fluctuates around 0: cap u there.
        mode = jnp.maximum(mode, _EQUILIBRATED)
        out.append(-jnp.log(mode) / (2 * (1 - math.cos(2 * math.pi / length))))
    return jnp.stack(out)


# ---------------------------------------------------------------------------------------------------------
# Hamiltonian


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def spectral_half_width(sample: Sample, model: Model, *, strength=0.0, su2: bool = False) -> float:
    """A priori bound a on the spectrum, |E| <= a (Gershgorin: the largest on-site norm plus the norms of the
    bonds at a site),

        a = z sqrt(t^2 + alpha^2) + W / 2 + |mass| + |J|,

    z the largest coordination number of the lattice (2d on the square and cubic lattices, 3 on honeycomb), W the
    box disorder ``strength``; with SU(2) hopping a bond's norm is bounded by |t| + |alpha| instead. Valid for any
    flux (Peierls phases keep the norms). Needs concrete ``strength`` and model hopping, rashba, mass and
    exchange (they fix the Chebyshev order; a Model built inside ``jit`` is traced): under a transformation over
    them pass ``half_width`` explicitly. Returns a Python float."""
    values = {"strength": strength}
    values.update({f"model.{n}": getattr(model, n) for n in ("hopping", "rashba", "mass", "exchange")})
    for name, value in values.items():
        if _is_tracer(value):
            raise ValueError(
                f"{name} is traced, but the spectral bound (which fixes the Chebyshev order) needs a concrete value: "
                "build the Model outside jit, close over it, or pass half_width= (a static upper bound of |E|)."
            )
    t, alpha, mass, exchange = (0.0 if v is None else abs(float(v)) for v in list(values.values())[1:])
    ends = np.asarray(sample.lattice.intra_bonds + sample.lattice.inter_bonds, int).ravel()  # bonds per site: z
    bond = t + alpha if su2 else math.hypot(t, alpha)
    return int(np.bincount(ends).max()) * bond + abs(float(strength)) / 2 + mass + exchange


def _act(block, x):
    """block x per site: a product (spinless) or a 2 x 2 matrix product (spinful; written out for speed, XLA's
    batched dot of 2 x 2 blocks is slow on CPU)."""
    return block * x if block.ndim == x.ndim else jnp.sum(block * x[..., None, :], axis=-1)


class EvolutionHamiltonian(eqx.Module):
    """Matrix-free Hamiltonian of a sample, applied in O(bonds); built by :func:`evolution_hamiltonian`.

    H psi[l, j] = site[l, j] psi[l, j] + sum over terms and slots k of coupling[l, j, k] psi[l - shift, source[j, k]]
    (slices modulo L): per term, ``shift`` = 0 for the intra-slice bonds, 1 for the hops from the previous slice,
    -1 for those from the next. The couplings across the ends of an open sample are zero.

    Attributes:
        site: on-site blocks, (L, m) real (spinless) or (L, m, 2, 2) (spinful).
        couplings: per term, (L or 1, m, K) or (L or 1, m, K, 2, 2): coupling[l, j, k] = H[(l, j), (l - shift,
            source[j, k])] (0 in unused slots).
        terms: static; per term (shift, sources): sources None where site j couples to site j only (square and
            cubic inter-slice hops), else per slot k ("take", source[:, k]) or ("roll", axis, step) where
            source[:, k] is the cross-section grid rolled by ``step`` along ``axis`` (periodic strips and bars).
        sample: static; fixes the state shape, ``sample.potential_shape`` (+ (2,) when spinful).
        half_width: a static upper bound a >= max |E| of the spectrum; the Chebyshev variable is H / a. It is
            static because it fixes the expansion order (a shape), so a new value recompiles.
    """

    site: Array
    couplings: tuple[Array, ...]
    terms: tuple = eqx.field(static=True)
    sample: Sample = eqx.field(static=True)
    half_width: float = eqx.field(static=True)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return _state_shape(self.sample)

    def __call__(self, state):
        """H applied to ``state`` (shape ``state_shape``)."""
        on_grid = lambda c: c.reshape(c.shape[0], *self.sample.lattice.cross_section, *c.shape[2:])  # noqa: E731
        sites = (self.sample.length, self.sample.lattice.sites, *state.shape[len(self.sample.potential_shape):])
        out = _act(on_grid(self.site), state)
        for coupling, (shift, sources) in zip(self.couplings, self.terms):
            x = jnp.roll(state, shift, axis=0) if shift else state
            # For speed: per slot a roll (periodic grids) or one gather along the sites with static indices; XLA's
            # scatter-add is slower on CPU.
            for k, (kind, *how) in enumerate(sources or [("identity",)]):
                if kind == "roll":
                    y = jnp.roll(x, how[1], 1 + how[0])
                else:
                    y = x if kind == "identity" else x.reshape(sites)[:, np.asarray(how[0])].reshape(x.shape)
                out = out + _act(on_grid(coupling[:, :, k]), y)
        return out


def _slots(grid, targets, sources, values, classes=None):
    """Directed couplings values[..., e] = H[target_e, source_e] ((..., E, s, s)) as per-site slots: couplings
    (..., m, K, s, s), K the most couplings of a site, and the slot sources of :class:`EvolutionHamiltonian` (None
    for the identity). Sorted by ``classes`` (bond directions), the couplings fill the slots in the same order at
    every site, so that on a periodic grid (``grid``: the cross-section's site indices) a slot is a roll."""
    m = grid.size
    if classes is not None:
        order = np.asarray(sorted(range(len(targets)), key=lambda e: classes[e]), int)
        targets, sources, values = targets[order], sources[order], values[..., order, :, :]
    filled, slot = np.zeros(m, int), []
    for t in targets:
        slot.append(filled[t])
        filled[t] += 1
    table = np.tile(np.arange(m)[:, None], (1, max(1, filled.max())))  # an unused slot points at the site itself
    table[targets, slot] = sources
    couplings = jnp.zeros(values.shape[:-3] + table.shape + values.shape[-2:], values.dtype)
    couplings = couplings.at[..., targets, np.asarray(slot, int), :, :].set(values)
    if table.shape[1] == 1 and np.array_equal(table[:, 0], np.arange(m)):
        return couplings, None
    used = np.zeros(table.shape, bool)
    used[targets, slot] = True
    rolls = {(a, step): np.roll(grid, step, a).ravel() for a in range(grid.ndim) for step in (1, -1)}
    return couplings, tuple(next((("roll", *k) for k, r in rolls.items() if np.array_equal(column[u], r[u])),
                                 ("take", tuple(column.tolist()))) for column, u in zip(table.T, used.T))


def _from_sliced(ham: SlicedHamiltonian, sample: Sample, half_width: float) -> EvolutionHamiltonian:
    """The slot form of a (periodic or open) sample's sliced Hamiltonian; each bond of ``ham`` is read once."""
    lat, s = sample.lattice, sample.orbitals
    m, grid = lat.sites, np.arange(lat.sites).reshape(lat.cross_section)

    def blocks(matrix, pairs):  # blocks H[j, i] (..., B, s, s) of (..., m s, m s) matrices, for the pairs (i, j)
        i, j = np.asarray(pairs, int).reshape(-1, 2).T
        return jnp.swapaxes(matrix.reshape(*matrix.shape[:-2], m, s, m, s), -3, -2)[..., j, i, :, :]

    if ham.bond_values is not None:  # SU(2) bonds, per slice
        pairs, intra = ham.bond_index, ham.bond_values
    else:  # clean bonds, the same in every slice; the dense base holds the sum of the bonds of a pair, read once
        pairs = tuple(dict.fromkeys(tuple(sorted(b)) for b in ham.base_bonds))
        intra = blocks(ham.base, pairs)[None]
    if isinstance(ham.hops, SiteBlockHopping):
        links, hops = tuple((i, i) for i in range(m)), ham.hops.blocks
    else:
        links = tuple(dict.fromkeys(lat.inter_bonds))
        hops = blocks(ham.hops.matrix, links)
    if not sample.periodic:  # hops[L-1] would be the wrap H[0, L-1]: zero across the ends of an open sample
        hops = jnp.concatenate([hops, jnp.zeros_like(hops[:1])])
    elif ham.bond_values is None:  # clean hops, the same between all slices: one copy (for speed, less memory traffic)
        hops = hops[:1]
    i, j = np.asarray(pairs, int).reshape(-1, 2).T
    a, b = np.asarray(links, int).T
    # H[l, l-1] = hops[l-1] and H[l, l+1] = hops[l]^dagger (slices modulo L)
    parts = [(1, b, a, jnp.roll(hops, 1, axis=0)), (-1, a, b, _dag(hops))]
    if len(i):
        vectors = {}  # bond vector from source to target of every directed intra-slice coupling
        for (u, v), d in zip(lat.intra_bonds, np.round(lat.intra_vectors, 9).tolist()):
            vectors.setdefault((u, v), tuple(d))
            vectors.setdefault((v, u), tuple(-x for x in d))
        targets, sources = np.concatenate([j, i]), np.concatenate([i, j])
        classes = [vectors[(u, t)] for t, u in zip(targets, sources)]
        parts.insert(0, (0, targets, sources, jnp.concatenate([intra, _dag(intra)], -3), classes))
    couplings, terms = [], []
    for shift, targets, sources, values, *classes in parts:
        coupling, source = _slots(grid, targets, sources, values, *classes)
        couplings.append(coupling[..., 0, 0] if s == 1 else coupling)
        terms.append((shift, source))
    site = jnp.real(ham.site[..., 0, 0]) if s == 1 else ham.site
    return EvolutionHamiltonian(site, tuple(couplings), tuple(terms), sample, float(half_width))


def evolution_hamiltonian(key, sample: Sample, model: Model, *, strength=0.0, su2: bool = False,
                          half_width: float | None = None, disorder=None) -> EvolutionHamiltonian:
    """The Hamiltonian of one disorder realization, drawn from ``key``, of ``sample``, for the time evolution.

    H is the matrix :func:`build_hamiltonian` (and so :func:`conductance`) uses for ``draw_disorder(key, sample,
    strength=strength, su2=su2, moments=model.exchange is not None)``, with the wrap hop of a periodic sample
    (conventions in the module docstring), applied matrix-free (:class:`EvolutionHamiltonian`).

    Args:
        key: PRNG key of the realization (``jax.random.key``); traceable, so ``vmap`` over keys works.
        sample: the geometry (static); periodic along x or open (hard walls at its ends).
        model: hopping, flux, rashba, exchange and mass as for transport (``energy`` is not used; ``tau_phi``
            is refused: the evolution is unitary). ``flux`` may be traced (``vmap`` over fields); a periodic
            transverse boundary needs an integer ``flux * lattice.flux_period``, checked at run time.
        strength: box disorder W: on-site energies uniform in [-W/2, W/2] (units of t).
        su2: SU(2) random hopping (Asada-Slevin-Ohtsuki) on every bond (spinful samples).
        half_width: static bound a >= max |E|; default :func:`spectral_half_width` (needs concrete strength and
            model hopping, rashba, mass and exchange; with ``disorder``, strength = 2 max |V| of its potential,
            which must then be concrete).
        disorder: optional given realization instead of the draw from ``key`` (then ``key``, ``strength`` and
            ``su2`` are not used): a :class:`Disorder` (e.g. from :func:`draw_disorder`), or a real potential
            array of shape ``sample.potential_shape`` (e.g. a speckle potential). May be traced (``vmap`` over
            potentials) when ``half_width`` is given.
    """
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    if not isinstance(model, Model):
        raise ValueError(f"model must be a difftransport Model, got {type(model).__name__}.")
    if model.tau_phi is not None:
        raise ValueError("model.tau_phi must be None: the time evolution is unitary (no absorption).")
    if disorder is not None:
        disorder = _given_disorder(disorder, sample)
        su2 = disorder.su2_intra is not None
    if half_width is None:
        if disorder is not None:
            if _is_tracer(disorder.potential):
                raise ValueError("disorder is traced: pass half_width= (a static upper bound of |E|).")
            strength = 2 * float(jnp.max(jnp.abs(disorder.potential))) if disorder.potential is not None else 0.0
        half_width = spectral_half_width(sample, model, strength=strength, su2=su2)
    elif isinstance(half_width, bool) or not isinstance(half_width, (int, float)) or not half_width > 0:
        raise ValueError(f"half_width must be a positive Python number (static), got {half_width!r}.")
    if disorder is not None:
        return _given_hamiltonian(sample, model, disorder, float(half_width))
    return _evolution_hamiltonian(key, sample, model, real_array(strength, "strength", required=True), su2,
                                  float(half_width))


def _given_disorder(disorder, sample: Sample, what: str = "disorder") -> Disorder:
    """A :class:`Disorder` from ``disorder``: itself, or a potential array of shape ``sample.potential_shape``
    (``what`` names it in the error)."""
    if isinstance(disorder, Disorder):
        return disorder
    if not hasattr(disorder, "shape") or tuple(disorder.shape) != tuple(sample.potential_shape):
        raise ValueError(f"{what} must be a Disorder or a potential array of shape {sample.potential_shape}, "
                         f"got {getattr(disorder, 'shape', type(disorder).__name__)}.")
    if jnp.iscomplexobj(disorder):
        raise ValueError("disorder potential must be real (an imaginary potential is absorption).")
    return Disorder(potential=jnp.asarray(disorder, jnp.result_type(float)))


@eqx.filter_jit
def _given_hamiltonian(sample, model, disorder, half_width):
    return _from_sliced(prepare(sample, model, disorder)[0], sample, half_width)


@eqx.filter_jit
def _evolution_hamiltonian(key, sample, model, strength, su2, half_width):
    disorder = draw_disorder(key, sample, strength=strength, moments=model.exchange is not None, su2=su2)
    return _from_sliced(prepare(sample, model, disorder)[0], sample, half_width)


# ---------------------------------------------------------------------------------------------------------
# Bessel functions and Chebyshev coefficients

_RESCALE = 1e150
_SMALL_ARGUMENT = 1e-6


def bessel_j(z, count: int) -> Float[Array, "... count"]:
    """J_0(z), ..., J_{count-1}(z) for real z >= 0 (any shape), last axis the order.

    Miller's backward recurrence J_{n-1} = (2n / z) J_n - J_{n+1}, started at order ``count + 32 +
    z + 12 z^(1/3)`` (static: needs concrete ``z`` or ``count`` >= the orders :func:`chebyshev_order`
    returns for the largest z) and normalized with J_0 + 2 sum_k J_2k = 1 (Abramowitz & Stegun 9.1.46,
    9.12). The running values are rescaled by 1e-150 whenever they exceed 1e150 and the scales are
    undone at the end. For z < 1e-6 the two-term power series is used. Accuracy: ~1e-15 absolute.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive integer (static), got {count!r}.")
    z = jnp.asarray(z, jnp.result_type(float))
    if _is_tracer(z):
        start = int(count) + 32
    else:
        zmax = float(jnp.max(z)) if z.size else 0.0
        start = max(int(count), int(zmax + 12 * zmax ** (1 / 3))) + 32
    return _bessel_j(z, int(count), start)


def _bessel_j(z, count: int, start: int):
    small = z < _SMALL_ARGUMENT
    safe = jnp.where(small, 1.0, z)
    n = jnp.arange(start, 0, -1, dtype=z.dtype)  # step n computes J_{n-1}

    def body(carry, n):
        above, here, log_scale = carry  # J_{n+1}, J_n (scaled)
        below = (2.0 * n / safe) * here - above
        big = jnp.abs(below) > _RESCALE
        factor = jnp.where(big, 1.0 / _RESCALE, 1.0)
        log_scale = log_scale + jnp.where(big, math.log(_RESCALE), 0.0)
        return (here * factor, below * factor, log_scale), (below * factor, log_scale)

    init = (jnp.zeros_like(safe), jnp.ones_like(safe) * 1e-30, jnp.zeros_like(safe))
    (_, _, final), (values, scales) = jax.lax.scan(body, init, n)
    # values[k] is J_{start-1-k}; bring every value to the final scale, then reverse to ascending order.
    values = values * jnp.exp(scales - final)
    values = jnp.flip(values, axis=0)  # J_0 ... J_{start-1}
    norm = values[0] + 2.0 * jnp.sum(values[2::2], axis=0)
    miller = jnp.moveaxis(values[:count] / norm, 0, -1)
    # Power series for tiny z: J_n(z) ~ (z/2)^n / n! (1 - (z/2)^2 / (n + 1)).
    orders = jnp.arange(count, dtype=z.dtype)
    half = jnp.where(small, z, 1.0)[..., None] / 2
    positive = half > 0
    log_term = orders * jnp.log(jnp.where(positive, half, 1.0)) - jax.scipy.special.gammaln(orders + 1)
    series = jnp.where(positive, jnp.exp(log_term), (orders == 0).astype(z.dtype))
    series = series * (1 - half**2 / (orders + 1))
    return jnp.where(small[..., None], series, miller)


def chebyshev_order(z: float, tol: float = 1e-13) -> int:
    """Truncation order N of the Chebyshev propagator series for a dimensionless time step z = a t.

    N is the smallest order with 2 sum_{n >= N} |J_n(z)| <= tol, which bounds the change of any normalized
    state when the terms n >= N are dropped (||T_n(H / a)|| <= 1). Grows as z + O(z^(1/3)) (about
    z + 14 (z/2)^(1/3) + 10 at tol = 1e-13). ``z`` and ``tol`` are Python numbers (the order is a shape)."""
    if _is_tracer(z) or _is_tracer(tol):
        raise ValueError("chebyshev_order needs concrete z and tol (the order is a static shape).")
    z = float(z)
    if not (z >= 0 and math.isfinite(z)):
        raise ValueError(f"z must be a finite number >= 0, got {z!r}.")
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}.")
    count = int(z + 20 * z ** (1 / 3) + 60)
    with jax.ensure_compile_time_eval():
        values = np.asarray(bessel_j(jnp.asarray(z), count))
    tail = 2 * np.cumsum(np.abs(values)[::-1])[::-1]  # tail[n] = 2 sum_{m >= n} |J_m|
    below = np.nonzero(tail > tol)[0]
    return int(below[-1]) + 1 if below.size else 1


def propagator_coefficients(z, order: int) -> Complex[Array, "... order"]:
    """Chebyshev coefficients of exp(-i z x) on [-1, 1]: c_n(z) = (2 - delta_n0) (-i)^n J_n(z), n < order
    (Jacobi-Anger expansion; Tal-Ezer & Kosloff 1984, Weisse et al. RMP 78, 275, Eq. (4.6) with a shifted
    and scaled spectrum). With H~ = H / a, exp(-i H t) = sum_n c_n(a t) T_n(H~). Shape ``z.shape + (order,)``."""
    j = bessel_j(z, order)
    n = np.arange(order)
    phase = jnp.asarray((-1j) ** n * np.where(n == 0, 1.0, 2.0))
    return j * phase


# ---------------------------------------------------------------------------------------------------------
# Time evolution


def _concrete_times(times) -> np.ndarray:
    if _is_tracer(times):
        raise ValueError(
            "times must be concrete (a NumPy array or list): they fix the number of Chebyshev steps and orders."
        )
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1D array, got shape {times.shape}.")
    if not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"times must be finite and >= 0, got min {times.min()!r}.")
    if np.any(np.diff(times) < 0):
        raise ValueError("times must be sorted in increasing order.")
    return times


def _chebyshev_step(hamiltonian: EvolutionHamiltonian, state, coefficients):
    """sum_n coefficients[n] T_n(H / a) state by the three-term recurrence (one H product per order)."""
    scale = 1.0 / hamiltonian.half_width

    def apply(psi):
        return scale * hamiltonian(psi)

    order = coefficients.shape[0]
    previous = state
    current = apply(state)
    acc = coefficients[0] * previous + coefficients[1] * current

    def body(n, carry):
        previous, current, acc = carry
        following = 2 * apply(current) - previous
        return current, following, acc + coefficients[n] * following

    _, _, acc = jax.lax.fori_loop(2, order, body, (previous, current, acc))
    return acc


def evolve(
    state,
    hamiltonian: EvolutionHamiltonian,
    times,
    *,
    tol: float = 1e-13,
    max_step: float = 100.0,
    observable: Callable | None = None,
):
    """exp(-i H t) state at each of ``times`` (hbar = 1; t in units of hbar / hopping).

    Each interval between consecutive times (the first from t = 0) is split into the fewest equal substeps
    with a t_step <= ``max_step`` (a = ``hamiltonian.half_width``); every substep applies the truncated
    Chebyshev series of :func:`propagator_coefficients` at the order of :func:`chebyshev_order` for the
    largest substep, so each substep changes the state by at most ``tol`` in norm (the errors add up over
    substeps). One ``lax.scan`` over substeps; ``jit``/``vmap``-able over the state and the Hamiltonian
    (e.g. over disorder keys or flux). Cost: about (number of substeps) x (order) products H psi; large
    ``max_step`` is cheaper per unit time, small ``max_step`` cheaper for densely spaced output times.

    Args:
        state: initial state, shape ``hamiltonian.state_shape`` (complex), e.g. :func:`site_state`.
        hamiltonian: an :class:`EvolutionHamiltonian`.
        times: concrete, sorted, non-negative 1D array (T,).
        tol: truncation tolerance per substep.
        max_step: largest dimensionless substep a t_step (> 0).
        observable: optional function of a state; then its value at each time is returned instead of the
            states (saves memory, e.g. :func:`mean_square_displacement`).

    Returns:
        The states, shape (T, *state.shape), or the stacked observable values.

    References: Tal-Ezer & Kosloff, J. Chem. Phys. 81, 3967 (1984); Weisse et al., Rev. Mod. Phys. 78, 275
    (2006), Sec. IV.A.
    """
    times = _concrete_times(_check_hamiltonian(hamiltonian, times))
    state = jnp.asarray(state)
    if state.shape != hamiltonian.state_shape:
        raise ValueError(f"state has shape {state.shape}, the sample needs {hamiltonian.state_shape}.")
    if not isinstance(max_step, (int, float)) or not max_step > 0:
        raise ValueError(f"max_step must be a positive number, got {max_step!r}.")
    a = hamiltonian.half_width
    intervals = np.diff(times, prepend=0.0)
    counts = np.maximum(1, np.ceil(a * intervals / max_step).astype(int))
    steps = np.repeat(intervals / counts, counts)  # (S,) substep lengths
    outputs = np.cumsum(counts) - 1  # substep index after which each output time is reached
    order = max(2, chebyshev_order(a * steps.max(), tol))
    return _evolve(state.astype(jnp.result_type(1j)), hamiltonian, jnp.asarray(steps), jnp.asarray(outputs),
                   order, observable)


@eqx.filter_jit
def _evolve(state, hamiltonian, steps, outputs, order, observable):
    coefficients = propagator_coefficients(hamiltonian.half_width * steps, order)  # (S, order)
    record = (lambda s: s) if observable is None else observable

    def body(psi, c):
        psi = _chebyshev_step(hamiltonian, psi, c)
        return psi, record(psi)

    _, history = jax.lax.scan(body, state, coefficients)
    return jax.tree_util.tree_map(lambda h: h[outputs], history)


def chebyshev_moments(hamiltonian: EvolutionHamiltonian, states, order: int) -> Float[Array, "order k k"]:
    """Chebyshev moments mu_n[i, j] = <s_i| T_n(H / a) |s_j>, n < ``order``, for k states (kernel polynomial
    method; Weisse et al., RMP 78, 275, Eqs. (31), (36)).

    Uses the doubling identities T_{2m} = 2 T_m T_m - T_0 and T_{2m+1} = 2 T_{m+1} T_m - T_1, so ``order``
    moments cost about order / 2 products H psi per state.

    Args:
        states: shape (k, *state_shape); k = 1 for a single state.
        order: number of moments (static).

    Returns:
        Complex array (order, k, k); Hermitian in (i, j) for each n (real diagonal).
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 2:
        raise ValueError(f"order must be an integer >= 2 (static), got {order!r}.")
    states = jnp.asarray(states)
    if states.shape[1:] != hamiltonian.state_shape:
        raise ValueError(f"states must have shape (k, *{hamiltonian.state_shape}), got {states.shape}.")
    return _chebyshev_moments(hamiltonian, states.astype(jnp.result_type(1j)), int(order))


@eqx.filter_jit
def _chebyshev_moments(hamiltonian, states, order):
    scale = 1.0 / hamiltonian.half_width
    apply = jax.vmap(lambda psi: scale * hamiltonian(psi))
    k = states.shape[0]
    flat = states.reshape(k, -1)

    def overlap(a, b):  # <a_i | b_j>
        return jnp.conj(a.reshape(k, -1)) @ b.reshape(k, -1).T

    mu0 = jnp.conj(flat) @ flat.T
    first = apply(states)
    mu1 = overlap(states, first)
    half = (order + 1) // 2  # T_m states needed for m <= half

    def body(carry, _):
        previous, current = carry  # T_{m-1} s, T_m s
        following = 2 * apply(current) - previous
        even = 2 * overlap(current, current) - mu0  # mu_{2m}
        odd = 2 * overlap(following, current) - mu1  # mu_{2m+1}
        return (current, following), (even, odd)

    _, (even, odd) = jax.lax.scan(body, (states, first), None, length=half)
    # Stack (mu_{2m}, mu_{2m+1}) for m = 1 .. half and prepend mu_0, mu_1.
    interleaved = jnp.stack([even, odd], axis=1).reshape(2 * half, k, k)
    return jnp.concatenate([mu0[None], mu1[None], interleaved], axis=0)[:order]


class EnergyWindow(eqx.Module):
    """A Gaussian energy filter g(E) = exp(-(E - energy)^2 / (4 energy_width^2)) applied to a released state.

    The filtered state g(H)|0> has the energy distribution (local density of states) x
    exp(-(E - energy)^2 / (2 energy_width^2)): a particle released at a site *with energy energy +- energy_width*.
    Restricting the energy makes the diffusion constant, the mean free path and the magnetic dephasing time well
    defined, which an unfiltered site state (all energies of the band) does not have.

    Attributes:
        energy: centre of the window (units of t); may be traced (``vmap`` over energies).
        energy_width: standard deviation of the energy distribution (units of t); static, because it fixes the
            Chebyshev order of g (about half_width / energy_width x sqrt(ln(1/tol)) terms).
    """

    energy: Float[Array, ""] = eqx.field(converter=functools.partial(real_array, name="window.energy", required=True))
    energy_width: float = eqx.field(static=True)

    def __check_init__(self):
        w = self.energy_width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w > 0 and math.isfinite(w)):
            raise ValueError(f"energy_width must be a positive Python number (static), got {w!r}.")

    def __call__(self, energies):
        """g(E) at the given energies."""
        return jnp.exp(-((energies - self.energy) ** 2) / (4 * self.energy_width**2))

    def order(self, half_width: float, tol: float) -> int:
        """Chebyshev terms needed for g on [-a, a]: the coefficients of a Gaussian of width s = w / a decay as
        exp(-n^2 s^2), so n = sqrt(ln(1 / tol)) / s (+ 8)."""
        return int(math.ceil(half_width / self.energy_width * math.sqrt(math.log(1 / tol)))) + 8


def _chebyshev_nodes(count: int) -> np.ndarray:
    """Gauss-Chebyshev nodes x_k = cos(pi (k + 1/2) / K), k = 0 .. K - 1."""
    return np.cos(np.pi * (np.arange(count) + 0.5) / count)


def _spectral_weights(moments, count: int):
    """lambda_k = mu_0 + 2 sum_{n >= 1} mu_n T_n(x_k) at the K Gauss-Chebyshev nodes (a DCT-III of the moments).
    Then <s| f(H / a) |s> = (1 / K) sum_k f(x_k) lambda_k for any f whose Chebyshev series ends below K
    (Gauss-Chebyshev quadrature of the local density of states; Weisse et al., RMP 78, 275, Sec. II.B)."""
    padded = jnp.zeros((count,) + moments.shape[1:], moments.dtype).at[: moments.shape[0]].set(moments)
    # scipy/jax idct type 2 (norm=None) is DCT-III / (2K): y_k = (x_0 + 2 sum_n x_n cos(pi n (2k+1) / 2K)) / 2K.
    real = jax.scipy.fft.idct(padded.real, type=2, axis=0)
    imag = jax.scipy.fft.idct(padded.imag, type=2, axis=0)
    return 2 * count * (real + 1j * imag)


def energy_filter(state, hamiltonian: EvolutionHamiltonian, window: EnergyWindow, *, tol: float = 1e-13):
    """g(H) state for the Gaussian :class:`EnergyWindow` g (not normalized), by a Chebyshev series whose
    coefficients come from Gauss-Chebyshev quadrature (a DCT of g on the nodes), truncated at
    ``window.order(a, tol)``."""
    if not isinstance(window, EnergyWindow):
        raise ValueError(f"window must be an EnergyWindow, got {type(window).__name__}.")
    order = window.order(hamiltonian.half_width, tol)
    return _energy_filter(jnp.asarray(state).astype(jnp.result_type(1j)), hamiltonian, window, order)


@eqx.filter_jit
def _energy_filter(state, hamiltonian, window, order):
    count = 2 * order
    x = jnp.asarray(_chebyshev_nodes(count))
    values = window(hamiltonian.half_width * x)
    # a_n = (2 - delta_n0) / K sum_k g(x_k) T_n(x_k): DCT-II (jax/scipy y_n = 2 sum_k f_k cos(pi n (2k+1) / 2K)).
    coefficients = jax.scipy.fft.dct(values, type=2) / count
    coefficients = coefficients.at[0].multiply(0.5)[:order]
    return _chebyshev_step(hamiltonian, state, coefficients.astype(state.dtype))


def _site_states(hamiltonian: EvolutionHamiltonian, site):
    spins = (0, 1) if hamiltonian.sample.spinful else (0,)
    return jnp.stack([site_state(hamiltonian.sample, site, spin=s) for s in spins])


def _check_hamiltonian(hamiltonian, times):
    if not isinstance(hamiltonian, EvolutionHamiltonian):
        raise ValueError(f"hamiltonian must be an EvolutionHamiltonian, got {type(hamiltonian).__name__}.")
    return times


def _amplitude_order(hamiltonian, times, window, tol):
    order = chebyshev_order(hamiltonian.half_width * times.max(), tol)
    if window is not None:
        if not isinstance(window, EnergyWindow):
            raise ValueError(f"window must be an EnergyWindow or None, got {type(window).__name__}.")
        order += window.order(hamiltonian.half_width, tol)
    return max(2, order)


def return_amplitude(hamiltonian: EvolutionHamiltonian, times, *, site=None, window: EnergyWindow | None = None,
                     tol: float = 1e-13):
    """Return amplitudes <s| g(H) exp(-i H t) |s> of a particle released at ``site`` (default the origin),
    g = 1 or the Gaussian :class:`EnergyWindow` ``window``; hbar = 1, t in hbar / hopping.

    Computed from the Chebyshev moments mu_n = <s| T_n(H / a) |s> (:func:`chebyshev_moments`), so a single
    expansion serves all times at about N / 2 products H psi, N = :func:`chebyshev_order` (a t_max, tol)
    (+ the window's order). Without a window: sum_n c_n(a t) mu_n with the Bessel coefficients of
    :func:`propagator_coefficients`. With a window: Gauss-Chebyshev quadrature over the local spectrum,
    (1 / N) sum_k g(a x_k) exp(-i a x_k t) lambda_k (:func:`_spectral_weights`), exact for the truncated series.

    Returns:
        Complex (T,) for spinless samples; (T, 2, 2) spin blocks A[t, s', s] = <site s'| g e^{-iHt} |site s>
        for spinful ones.
    """
    times = _concrete_times(_check_hamiltonian(hamiltonian, times))
    order = _amplitude_order(hamiltonian, times, window, tol)
    amplitude, _ = _return_amplitude(hamiltonian, _site_states(hamiltonian, site), jnp.asarray(times), window, order)
    return amplitude if hamiltonian.sample.spinful else amplitude[:, 0, 0]


_CHUNK_ELEMENTS = 2**22  # (times x orders) per chunk of the coefficient table: bounds memory for long runs


@eqx.filter_jit
def _return_amplitude(hamiltonian, states, times, window, order):
    """(amplitudes (T, k, k), norms <s_i| g(H)^2 |s_j> (k, k)). The (T, N) coefficient table is built in chunks
    of times (``lax.map``), so long expansions need O(chunk x N) memory, not O(T x N)."""
    mu = _chebyshev_moments(hamiltonian, states, order)  # (N, k, k)
    a = hamiltonian.half_width
    if window is None:
        weights, norm = mu, mu[0]

        def block(t):
            return jnp.einsum("tn,nij->tij", propagator_coefficients(a * t, order), weights)
    else:
        x = jnp.asarray(_chebyshev_nodes(order))
        weights = _spectral_weights(mu, order)  # (N, k, k)
        g = window(a * x)
        norm = jnp.einsum("n,nij->ij", g**2 / order, weights)

        def block(t):
            kernel = g * jnp.exp(-1j * a * jnp.outer(t, x)) / order  # (chunk, N)
            return jnp.einsum("tn,nij->tij", kernel, weights)

    count = times.shape[0]
    chunk = max(1, min(count, _CHUNK_ELEMENTS // order))
    pieces = -(-count // chunk)
    padded = jnp.concatenate([times, jnp.full(pieces * chunk - count, times[-1])])
    out = jax.lax.map(block, padded.reshape(pieces, chunk))
    return out.reshape(pieces * chunk, *out.shape[2:])[:count], norm


def return_probability(key, sample: Sample, model: Model, times, *, strength=0.0, su2: bool = False,
                       window: EnergyWindow | None = None, half_width: float | None = None,
                       tol: float = 1e-13) -> Float[Array, " T"]:
    """Return probability of a particle released at the origin of one disorder realization of ``sample``
    (drawn from ``key`` with box disorder ``strength`` and, with ``su2``, SU(2) hopping; the Hamiltonian of
    :func:`evolution_hamiltonian`, which also describes ``half_width``); hbar = 1, t in hbar / hopping.

    Without ``window``: P(t) = |<0| exp(-i H t) |0>|^2 (the particle released on the site, all energies).
    With a Gaussian :class:`EnergyWindow` g: the particle is released in the normalized state
    g(H)|0> / ||g(H)|0>|| (energy distribution LDOS x Gaussian of standard deviation ``energy_width``), and
    P(t) = |<0| g(H) exp(-i H t) |0>|^2 / <0| g(H)^2 |0> is the probability to find it on the origin site.
    Spinful samples: an unpolarized particle, P = sum_{s, s'} |<0 s'| g e^{-iHt} |0 s>|^2 / sum_s <0 s| g^2 |0 s>
    (back on the origin site, whatever the spin). Average over keys (``vmap``) for the disorder mean.

    Physics: averaged over disorder, for tau << t << L^2 / D, P(t) = 2 P_cl(t) with zero field (the Cooperon
    doubles the diffuson at the origin: coherent backscattering) and P(t) -> P_cl(t) once a field has
    dephased the Cooperon (:func:`cooperon_field_ratio`); P_cl ~ (4 pi D t)^(-d/2)
    (:func:`classical_return_probability`). See ``docs/gallery.md#return-probability``.

    ``jit``/``vmap``-able over ``key``, ``model.flux`` and ``window.energy``; ``times`` must be concrete
    (they fix the expansion order).
    """
    ham = evolution_hamiltonian(key, sample, model, strength=strength, su2=su2, half_width=half_width)
    times = _concrete_times(times)
    order = _amplitude_order(ham, times, window, tol)
    amplitude, norm = _return_amplitude(ham, _site_states(ham, None), jnp.asarray(times), window, order)
    return jnp.sum(jnp.abs(amplitude) ** 2, axis=(-1, -2)) / jnp.trace(norm).real


# ---------------------------------------------------------------------------------------------------------
# Classical comparison


def classical_return_probability(shape, diffusion, times, *, dimension: int | None = None):
    """Return probability of the classical lattice random walk with the same geometry: the master equation
    dP_r/dt = sum_a D_a sum_{+-} (P_{r +- e_a} - P_r) (hop rate D_a to each neighbour along axis a, so that
    <x_a^2> = 2 D_a t), started on one site.

    On a periodic box of lengths ``shape`` (exact, by Fourier series):
        P_cl(t) = prod_a (1 / L_a) sum_k exp(-2 D_a t (1 - cos(2 pi k / L_a)));
    on the infinite lattice (``shape=None``, give ``dimension``): P_cl(t) = prod_a exp(-2 D_a t) I_0(2 D_a t).
    Both tend to (4 pi D t)^(-d/2) for 1 << D t << L^2 / D; a box tends to 1 / sites for t >> L^2 / D.

    Args:
        shape: the box lengths (L_1, ..., L_d), e.g. ``sample.potential_shape`` of a periodic chain, strip or
            bar (an axis of length 1 contributes 1), or None for the infinite lattice.
        diffusion: D (lattice constants^2 per unit time hbar / t): a scalar, or one value per axis (d,).
        times: times (any shape, >= 0).
        dimension: d, only with ``shape=None``.

    Returns:
        P_cl with the shape of ``times``.
    """
    if shape is None:
        if dimension not in (1, 2, 3):
            raise ValueError(f"dimension must be 1, 2 or 3 with shape=None, got {dimension!r}.")
        lengths = (None,) * dimension
    else:
        lengths = tuple(positive_int("shape", n) for n in shape)
        if dimension is not None and dimension != len(lengths):
            raise ValueError(f"dimension={dimension!r} contradicts shape={lengths} (d = {len(lengths)}).")
    d = len(lengths)
    diffusion = jnp.asarray(diffusion, jnp.result_type(float))
    if diffusion.shape not in ((), (d,)):
        raise ValueError(f"diffusion must be a scalar or have shape ({d},), got shape {diffusion.shape}.")
    diffusion = jnp.broadcast_to(diffusion, (d,))
    times = jnp.asarray(times, jnp.result_type(float))
    out = jnp.ones_like(times)
    for axis, length in enumerate(lengths):
        rate = diffusion[axis] * times
        if length is None:
            out = out * jax.scipy.special.i0e(2 * rate)
        else:
            k = np.arange(length)
            spectrum = jnp.asarray(2 * (1 - np.cos(2 * math.pi * k / length)))
            out = out * jnp.mean(jnp.exp(-rate[..., None] * spectrum), axis=-1)
    return out


def cooperon_field_ratio(times, diffusion, flux):
    """Theory of the zero-field to in-field ratio of the quantum return probability in the diffusive regime,

        P(B = 0) / P(B) = 2 / (1 + x / sinh x),   x = t / tau_B,   tau_B = 1 / (4 pi flux D),

    (diffuson unchanged by the field; the Cooperon at coinciding points is the heat kernel of charge 2e:
    (4 pi D t)^(-1) x / sinh x with x = 2 e B D t / hbar; eB/hbar = 2 pi flux in lattice units). Valid for
    tau << t << L^2 / D and omega_c tau << 1. Arrays broadcast; ``flux`` in h/e per plaquette."""
    times, diffusion, flux = (jnp.asarray(v, jnp.result_type(float)) for v in (times, diffusion, flux))
    x = 4 * math.pi * jnp.abs(flux) * diffusion * times
    safe = jnp.where(x > 1e-8, x, 1.0)
    factor = jnp.where(x > 1e-8, safe / jnp.sinh(jnp.minimum(safe, 700.0)), 1.0)
    return 2.0 / (1.0 + factor)
