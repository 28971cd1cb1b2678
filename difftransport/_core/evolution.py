"""Chebyshev time evolution on closed, periodic hypercubic boxes, and the return probability.

A :class:`Box` is a closed lattice of shape ``(L,)``, ``(Lx, Ly)`` or ``(Lx, Ly, Lz)`` with periodic boundaries
along every axis (optionally spinful). Its Hamiltonian (:class:`BoxHamiltonian`) is applied matrix-free: an
on-site potential plus nearest-neighbour hops, one ``jnp.roll`` per axis and direction, so a product H psi
costs O(sites) and the Hamiltonian is never stored as a matrix.

Conventions (``docs/physics.md``; PHYSICS.md §7f, §7g): hbar = 1, lattice constant a = 1, energies in units of
the hopping t, times in hbar / t. A bond from site r to r + e_a is the matrix element H[r + e_a, r] = -t
(spinless), times the Peierls phase of the Landau gauge A = -B y x: the x-bond from (x, y) to (x + 1, y)
carries exp(-2 pi i flux y), y-bonds and z-bonds are real, and ``flux`` is the flux per plaquette in units of
h/e (field along z). Rashba (spinful boxes, d >= 2): H[r + x, r] = -t + i alpha sigma_y and
H[r + y, r] = -t - i alpha sigma_x (z-bonds stay -t). Box disorder: on-site energies uniform in
[-W/2, W/2], each a pure function of (key, site coordinates) through ``jax.random.fold_in`` (random access:
enlarging a box never changes the value at a site).

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

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

# ---------------------------------------------------------------------------------------------------------
# Geometry


def _check_dimension_lengths(shape) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)):
        raise ValueError(f"shape must be a tuple of 1 to 3 box lengths, got {shape!r}.")
    if not 1 <= len(shape) <= 3:
        raise ValueError(f"shape must have 1, 2 or 3 lengths (d = 1, 2, 3), got {tuple(shape)!r}.")
    out = []
    for length in shape:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 3:
            raise ValueError(
                f"shape must hold integer lengths >= 3 (a periodic ring needs two distinct neighbours), "
                f"got {tuple(shape)!r}."
            )
        out.append(int(length))
    return tuple(out)


class Box(eqx.Module):
    """A closed box of the hypercubic lattice with periodic boundaries along every axis (static geometry).

    Attributes:
        shape: box lengths ``(L,)``, ``(Lx, Ly)`` or ``(Lx, Ly, Lz)`` in lattice constants (each >= 3).
        spinful: whether a site carries a spin-1/2 (states then have a trailing axis of size 2).
    """

    shape: tuple[int, ...] = eqx.field(static=True, converter=_check_dimension_lengths)
    spinful: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.spinful, bool):
            raise ValueError(f"spinful must be True or False, got {self.spinful!r}.")

    @property
    def dimension(self) -> int:
        """d, the number of axes."""
        return len(self.shape)

    @property
    def sites(self) -> int:
        """Number of lattice sites."""
        return math.prod(self.shape)

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of a state: ``shape`` (spinless) or ``shape + (2,)`` (spinful)."""
        return self.shape + ((2,) if self.spinful else ())


def site_state(box: Box, site=None, *, spin: int = 0) -> Complex[Array, "..."]:
    """The normalized state localized on ``site`` (default: the origin, all coordinates 0), shape
    ``box.state_shape``, complex128. Spinful boxes: spin component ``spin`` (0 = up, 1 = down along z)."""
    site = (0,) * box.dimension if site is None else tuple(site)
    if len(site) != box.dimension or any(not isinstance(c, (int, np.integer)) for c in site):
        raise ValueError(f"site must be {box.dimension} integer coordinates, got {site!r}.")
    site = tuple(int(c) % n for c, n in zip(site, box.shape))
    if spin not in (0, 1):
        raise ValueError(f"spin must be 0 (up) or 1 (down), got {spin!r}.")
    index = site + ((spin,) if box.spinful else ())
    return jnp.zeros(box.state_shape, jnp.result_type(1j)).at[index].set(1.0)


def displacements(box: Box) -> tuple[Float[Array, "..."], ...]:
    """Minimal-image displacement from the origin along each axis, each broadcastable to ``box.shape``:
    the coordinate x in [0, L) mapped to x - L round(x / L), i.e. into [-L/2, L/2)."""
    out = []
    for axis, length in enumerate(box.shape):
        x = np.arange(length)
        d = ((x + length // 2) % length) - length // 2
        shape = [1] * box.dimension
        shape[axis] = length
        out.append(jnp.asarray(d.reshape(shape), jnp.result_type(float)))
    return tuple(out)


def mean_square_displacement(box: Box, state, *, per_axis: bool = False):
    """<r^2> = sum_r |psi(r)|^2 |r|^2 / sum_r |psi(r)|^2 (spin summed), with r the minimal-image displacement
    from the origin (:func:`displacements`), in lattice constants squared. With ``per_axis``, the (d,) array
    of <x_a^2>. Meaningful while the packet is well inside the box (|x_a| << L_a / 2)."""
    density = jnp.abs(state) ** 2
    if box.spinful:
        density = density.sum(-1)
    total = jnp.sum(density)
    moments = jnp.stack([jnp.sum(density * d**2) for d in displacements(box)]) / total
    return moments if per_axis else jnp.sum(moments)


_EQUILIBRATED = 1e-12


def spreading(box: Box, state) -> Float[Array, " d"]:
    """Spreading of a packet released at the origin, per axis, from the longest-wavelength Fourier mode of
    its density: with S_a = sum_r n(r) cos(2 pi x_a / L_a) / sum_r n(r),

        u_a = -ln(S_a) / (2 (1 - cos(2 pi / L_a)))        (lattice constants squared).

    For the classical lattice walk with hop rate D_a (:func:`classical_return_probability`) u_a = D_a t
    exactly, at all times and across the periodic boundary; for a narrow packet u_a = <x_a^2> / 2. So u_a(t)
    is the "walk time" of the classical walk that relaxes the density like the quantum packet, and its slope
    in t is the diffusion constant D_a. Unlike :func:`mean_square_displacement` it stays exact when the
    packet wraps around the box. S_a is floored at 1e-12 (u_a capped at about 14 / (1 - cos(2 pi / L_a))):
    the axis has then equilibrated, and the walk along it gives 1 / L_a."""
    density = jnp.abs(state) ** 2
    if box.spinful:
        density = density.sum(-1)
    density = density / jnp.sum(density)
    out = []
    for axis, length in enumerate(box.shape):
        x = np.arange(length)
        shape = [1] * box.dimension
        shape[axis] = length
        mode = jnp.sum(density * jnp.asarray(np.cos(2 * math.pi * x / length).reshape(shape)))
        # Once the packet has spread evenly along a short axis the mode fluctuates around 0: cap u there.
        mode = jnp.maximum(mode, _EQUILIBRATED)
        out.append(-jnp.log(mode) / (2 * (1 - math.cos(2 * math.pi / length))))
    return jnp.stack(out)


# ---------------------------------------------------------------------------------------------------------
# Parameters and disorder


def _real(x):
    """Scalars become float arrays. Python and NumPy numbers become NumPy arrays, which stay concrete inside a
    ``jit`` trace, so the spectral bound (a static shape parameter) can still be read from them."""
    if x is None:
        return None
    dtype = jnp.result_type(float)
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
        if np.iscomplexobj(x):
            raise ValueError(f"box model parameters are real numbers, got a complex value {x!r}.")
        if x.shape != ():
            raise ValueError(f"box model parameters are scalars, got an array of shape {x.shape}.")
        return x.astype(np.dtype(dtype))
    if jnp.iscomplexobj(x):
        raise ValueError(f"box model parameters are real numbers, got a complex array of dtype {x.dtype}.")
    if x.shape != ():
        raise ValueError(f"box model parameters are scalars, got an array of shape {x.shape}.")
    return x.astype(dtype)


class BoxModel(eqx.Module):
    """Continuous parameters of the box Hamiltonian; ``jax.grad`` returns a ``BoxModel`` of the same shape.

    Attributes:
        strength: box disorder width W: on-site energies uniform in [-W/2, W/2] (units of t).
        hopping: nearest-neighbour hopping t; a bond carries -t (default 1).
        flux: flux per plaquette in flux quanta h/e (Landau gauge A = -B y x, field along z), or None for no
            field. In a periodic box the gauge is single valued only if ``flux * Ly`` is an integer; needs d >= 2.
        rashba: Rashba spin-orbit strength alpha (spinful boxes with d >= 2), or None.
    """

    strength: Float[Array, ""] = eqx.field(converter=_real, default=0.0)
    hopping: Float[Array, ""] = eqx.field(converter=_real, default=1.0)
    flux: Float[Array, ""] | None = eqx.field(converter=_real, default=None)
    rashba: Float[Array, ""] | None = eqx.field(converter=_real, default=None)


_TAG_POTENTIAL = 0


def _site_keys(key, shape):
    """Keys of shape ``shape``: fold_in(key, tag, x, y, z), a pure function of the key and the coordinates."""
    key = jax.random.fold_in(key, _TAG_POTENTIAL)
    grids = np.meshgrid(*[np.arange(n, dtype=np.uint32) for n in shape], indexing="ij")
    coords = jnp.asarray(np.stack([g.ravel() for g in grids], axis=1))

    def one(c):
        k = key
        for i in range(len(shape)):
            k = jax.random.fold_in(k, c[i])
        return k

    return jax.vmap(one)(coords)


def box_potential(key, box: Box, strength) -> Float[Array, "..."]:
    """Box (Anderson) disorder of shape ``box.shape``: uniform in [-strength/2, strength/2] (variance
    strength^2 / 12). The value at a site is a pure function of (key, site coordinates) via
    ``jax.random.fold_in``, so enlarging the box or batching realizations never changes it. Differentiable
    with respect to ``strength`` (strength times a fixed unit draw)."""
    return _box_potential(key, box, _real(strength))


@eqx.filter_jit
def _box_potential(key, box: Box, strength):
    dtype = jnp.result_type(float)
    keys = _site_keys(key, box.shape)
    unit = jax.vmap(lambda k: jax.random.uniform(k, (), dtype) - 0.5)(keys)
    return (strength * unit).reshape(box.shape)


# ---------------------------------------------------------------------------------------------------------
# Hamiltonian


_SIGMA_X = np.array([[0, 1], [1, 0]], complex)
_SIGMA_Y = np.array([[0, -1j], [1j, 0]], complex)


class BoxHamiltonian(eqx.Module):
    """Matrix-free Hamiltonian of a periodic box: H psi = V psi + sum over axes of hops (``jnp.roll``).

    Attributes:
        potential: on-site energies, shape ``box.shape`` (real).
        hops: one array per axis a holding H[r + e_a, r] (Peierls phase and spin-orbit included), broadcastable
            to ``box.shape`` (spinless) or ``box.shape + (2, 2)`` (spinful).
        half_width: a static upper bound a >= max |E| of the spectrum; the Chebyshev variable is H / a. It is
            static because it fixes the expansion order (a shape), so a new value recompiles.
        spinful: static; whether states carry a trailing spin axis.
    """

    potential: Float[Array, "..."]
    hops: tuple[Array, ...]
    half_width: float = eqx.field(static=True)
    spinful: bool = eqx.field(static=True, default=False)

    def __call__(self, state):
        """H applied to ``state`` (shape ``potential.shape`` or ``potential.shape + (2,)``)."""
        if self.spinful:
            out = self.potential[..., None] * state
            for axis, hop in enumerate(self.hops):
                forward = jnp.matmul(hop, state[..., None])[..., 0]
                backward = jnp.matmul(jnp.conj(jnp.swapaxes(hop, -1, -2)), jnp.roll(state, -1, axis)[..., None])
                out = out + jnp.roll(forward, 1, axis) + backward[..., 0]
            return out
        out = self.potential * state
        for axis, hop in enumerate(self.hops):
            # H[r, r - e_a] psi(r - e_a) + H[r, r + e_a] psi(r + e_a), with H[r, r + e_a] = conj(H[r + e_a, r]).
            out = out + jnp.roll(hop * state, 1, axis) + jnp.conj(hop) * jnp.roll(state, -1, axis)
        return out


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def spectral_half_width(box: Box, model: BoxModel) -> float:
    """A priori bound a on the spectrum, |E| <= a: the clean bandwidth plus the disorder range,

        a = 2 d sqrt(t^2 + alpha^2) + W / 2        (Gershgorin: max |V| + sum over the 2d bonds of ||H[r', r]||),

    valid for any flux (Peierls phases keep |hop| = |t|). Needs concrete ``strength``, ``hopping`` and
    ``rashba`` (they fix the Chebyshev order); under a transformation over them pass ``half_width``
    explicitly to :func:`box_hamiltonian`. Returns a Python float."""
    values = {"strength": model.strength, "hopping": model.hopping, "rashba": model.rashba}
    for name, value in values.items():
        if value is not None and _is_tracer(value):
            raise ValueError(
                f"model.{name} is traced, but the spectral bound (which fixes the Chebyshev order) needs a concrete "
                f"value: close over it, or pass half_width= (a static upper bound of |E|) to box_hamiltonian."
            )
    t = abs(float(model.hopping))
    alpha = 0.0 if model.rashba is None else abs(float(model.rashba))
    return 2 * box.dimension * math.hypot(t, alpha) + abs(float(model.strength)) / 2


def _check_flux(box: Box, flux):
    """Single-valuedness of the Landau gauge on the torus: flux * Ly must be an integer."""
    ly = box.shape[1]
    message = (
        f"flux * Ly must be an integer for the Landau gauge A = -B y x to be single valued in a periodic box of "
        f"shape {box.shape} (Ly = {ly}): use flux = k / {ly} with an integer k"
    )
    if not _is_tracer(flux):
        winding = float(flux) * ly
        if abs(winding - round(winding)) > 1e-9 * max(1.0, abs(winding)):
            raise ValueError(f"{message}, got flux = {float(flux)!r}.")
        return flux
    winding = flux * ly
    bad = jnp.abs(winding - jnp.round(winding)) > 1e-9 * jnp.maximum(1.0, jnp.abs(winding))
    return eqx.error_if(flux, bad, message + ".")


def box_hamiltonian(key, box: Box, model: BoxModel, *, half_width: float | None = None) -> BoxHamiltonian:
    """The Hamiltonian of one disorder realization (drawn from ``key``) of a periodic box.

    H = sum_r V(r) |r><r| + sum_{r, a} (H[r + e_a, r] |r + e_a><r| + h.c.), with V from
    :func:`box_potential` (width ``model.strength``) and the bonds of the module docstring: -t, times
    exp(-2 pi i flux y) on x-bonds (Landau gauge A = -B y x, flux per plaquette in h/e), plus Rashba
    i alpha (d_x sigma_y - d_y sigma_x) on in-plane bonds of spinful boxes.

    Args:
        key: PRNG key of the realization (``jax.random.key``); traceable, so ``vmap`` over keys works.
        box: the geometry (static).
        model: parameters; ``flux`` may be traced (``vmap`` over fields), then the check that flux * Ly is an
            integer runs inside ``jit`` (``equinox.error_if``).
        half_width: static bound a >= max |E|; default :func:`spectral_half_width` (needs concrete strength,
            hopping and rashba).

    Raises:
        ValueError: flux in d = 1, rashba without spin or in d = 1, flux * Ly not an integer.
    """
    if not isinstance(box, Box):
        raise ValueError(f"box must be a Box, got {type(box).__name__}.")
    if not isinstance(model, BoxModel):
        raise ValueError(f"model must be a BoxModel, got {type(model).__name__}.")
    d = box.dimension
    if model.flux is not None:
        if d == 1:
            raise ValueError("model.flux needs a box with d >= 2 (a chain has no plaquettes); use flux=None.")
        model = BoxModel(strength=model.strength, hopping=model.hopping, flux=_check_flux(box, model.flux),
                         rashba=model.rashba)
    if model.rashba is not None and (not box.spinful or d == 1):
        raise ValueError(
            f"model.rashba needs a spinful box with d >= 2, got d = {d} and spinful = {box.spinful}."
        )
    if half_width is None:
        half_width = spectral_half_width(box, model)
    elif isinstance(half_width, bool) or not isinstance(half_width, (int, float)) or not half_width > 0:
        raise ValueError(f"half_width must be a positive Python number (static), got {half_width!r}.")
    potential = box_potential(key, box, model.strength)
    return BoxHamiltonian(potential, _box_hops(box, model), float(half_width), box.spinful)


def _box_hops(box: Box, model: BoxModel) -> tuple[Array, ...]:
    """H[r + e_a, r] for each axis, broadcastable to the box (spinless) or box + (2, 2) (spinful)."""
    d = box.dimension
    ctype = jnp.result_type(1j)
    t = model.hopping.astype(ctype)
    hops = []
    for axis in range(d):
        shape = [1] * d
        if axis == 0 and model.flux is not None:
            # Landau gauge: the x-bond from (x, y) to (x + 1, y) carries exp(-2 pi i flux y).
            y = np.arange(box.shape[1], dtype=float)
            shape[1] = box.shape[1]
            phase = jnp.exp(-2j * math.pi * model.flux * jnp.asarray(y)).reshape(shape)
        else:
            phase = jnp.ones(shape, ctype)
        if box.spinful:
            block = -t * jnp.eye(2, dtype=ctype)
            if model.rashba is not None and axis < 2:
                # i alpha (d_x sigma_y - d_y sigma_x): +i alpha sigma_y on x-bonds, -i alpha sigma_x on y-bonds.
                sigma = _SIGMA_Y if axis == 0 else -_SIGMA_X
                block = block + 1j * model.rashba * jnp.asarray(sigma, ctype)
            hops.append(phase[..., None, None] * block)
        else:
            hops.append(-t * phase)
    return tuple(hops)


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


def _chebyshev_step(hamiltonian: BoxHamiltonian, state, coefficients):
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
    hamiltonian: BoxHamiltonian,
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
        state: initial state, shape ``box.state_shape`` (complex), e.g. :func:`site_state`.
        hamiltonian: a :class:`BoxHamiltonian`.
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
    if not isinstance(hamiltonian, BoxHamiltonian):
        raise ValueError(f"hamiltonian must be a BoxHamiltonian, got {type(hamiltonian).__name__}.")
    times = _concrete_times(times)
    state = jnp.asarray(state)
    want = hamiltonian.potential.shape + ((2,) if hamiltonian.spinful else ())
    if state.shape != want:
        raise ValueError(f"state has shape {state.shape}, the box needs {want}.")
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


def chebyshev_moments(hamiltonian: BoxHamiltonian, states, order: int) -> Float[Array, "order k k"]:
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
    want = hamiltonian.potential.shape + ((2,) if hamiltonian.spinful else ())
    if states.shape[1:] != want:
        raise ValueError(f"states must have shape (k, *{want}), got {states.shape}.")
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

    energy: Float[Array, ""] = eqx.field(converter=_real)
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


def energy_filter(state, hamiltonian: BoxHamiltonian, window: EnergyWindow, *, tol: float = 1e-13):
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


def _site_states(hamiltonian: BoxHamiltonian, site):
    box = Box(hamiltonian.potential.shape, spinful=hamiltonian.spinful)
    if hamiltonian.spinful:
        return jnp.stack([site_state(box, site, spin=0), site_state(box, site, spin=1)])
    return site_state(box, site)[None]


def _amplitude_order(hamiltonian, times, window, tol):
    order = chebyshev_order(hamiltonian.half_width * times.max(), tol)
    if window is not None:
        if not isinstance(window, EnergyWindow):
            raise ValueError(f"window must be an EnergyWindow or None, got {type(window).__name__}.")
        order += window.order(hamiltonian.half_width, tol)
    return max(2, order)


def return_amplitude(hamiltonian: BoxHamiltonian, times, *, site=None, window: EnergyWindow | None = None,
                     tol: float = 1e-13):
    """Return amplitudes <s| g(H) exp(-i H t) |s> of a particle released at ``site`` (default the origin),
    g = 1 or the Gaussian :class:`EnergyWindow` ``window``; hbar = 1, t in hbar / hopping.

    Computed from the Chebyshev moments mu_n = <s| T_n(H / a) |s> (:func:`chebyshev_moments`), so a single
    expansion serves all times at about N / 2 products H psi, N = :func:`chebyshev_order` (a t_max, tol)
    (+ the window's order). Without a window: sum_n c_n(a t) mu_n with the Bessel coefficients of
    :func:`propagator_coefficients`. With a window: Gauss-Chebyshev quadrature over the local spectrum,
    (1 / N) sum_k g(a x_k) exp(-i a x_k t) lambda_k (:func:`_spectral_weights`), exact for the truncated series.

    Returns:
        Complex (T,) for spinless boxes; (T, 2, 2) spin blocks A[t, s', s] = <site s'| g e^{-iHt} |site s>
        for spinful ones.
    """
    if not isinstance(hamiltonian, BoxHamiltonian):
        raise ValueError(f"hamiltonian must be a BoxHamiltonian, got {type(hamiltonian).__name__}.")
    times = _concrete_times(times)
    order = _amplitude_order(hamiltonian, times, window, tol)
    amplitude, _ = _return_amplitude(hamiltonian, _site_states(hamiltonian, site), jnp.asarray(times), window, order)
    return amplitude if hamiltonian.spinful else amplitude[:, 0, 0]


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


def return_probability(key, box: Box, model: BoxModel, times, *, window: EnergyWindow | None = None,
                       tol: float = 1e-13) -> Float[Array, " T"]:
    """Return probability of a particle released at the origin of one disorder realization (drawn from
    ``key``) of a periodic box; hbar = 1, t in hbar / hopping.

    Without ``window``: P(t) = |<0| exp(-i H t) |0>|^2 (the particle released on the site, all energies).
    With a Gaussian :class:`EnergyWindow` g: the particle is released in the normalized state
    g(H)|0> / ||g(H)|0>|| (energy distribution LDOS x Gaussian of standard deviation ``energy_width``), and
    P(t) = |<0| g(H) exp(-i H t) |0>|^2 / <0| g(H)^2 |0> is the probability to find it on the origin site.
    Spinful boxes: an unpolarized particle, P = sum_{s, s'} |<0 s'| g e^{-iHt} |0 s>|^2 / sum_s <0 s| g^2 |0 s>
    (back on the origin site, whatever the spin). Average over keys (``vmap``) for the disorder mean.

    Physics: averaged over disorder, for tau << t << L^2 / D, P(t) = 2 P_cl(t) with zero field (the Cooperon
    doubles the diffuson at the origin: coherent backscattering) and P(t) -> P_cl(t) once a field has
    dephased the Cooperon (:func:`cooperon_field_ratio`); P_cl ~ (4 pi D t)^(-d/2)
    (:func:`classical_return_probability`). See ``docs/gallery_return_probability.md``.

    ``jit``/``vmap``-able over ``key``, ``model.flux`` and ``window.energy``; ``times`` must be concrete
    (they fix the expansion order).
    """
    ham = box_hamiltonian(key, box, model)
    times = _concrete_times(times)
    order = _amplitude_order(ham, times, window, tol)
    amplitude, norm = _return_amplitude(ham, _site_states(ham, None), jnp.asarray(times), window, order)
    return jnp.sum(jnp.abs(amplitude) ** 2, axis=(-1, -2)) / jnp.trace(norm).real


# ---------------------------------------------------------------------------------------------------------
# Classical comparison


def classical_return_probability(box: Box | None, diffusion, times, *, dimension: int | None = None):
    """Return probability of the classical lattice random walk with the same geometry: the master equation
    dP_r/dt = sum_a D_a sum_{+-} (P_{r +- e_a} - P_r) (hop rate D_a to each neighbour along axis a, so that
    <x_a^2> = 2 D_a t), started on one site.

    On a periodic box (exact, by Fourier series):
        P_cl(t) = prod_a (1 / L_a) sum_k exp(-2 D_a t (1 - cos(2 pi k / L_a)));
    on the infinite lattice (``box=None``, give ``dimension``): P_cl(t) = prod_a exp(-2 D_a t) I_0(2 D_a t).
    Both tend to (4 pi D t)^(-d/2) for 1 << D t << L^2 / D; a box tends to 1 / sites for t >> L^2 / D.

    Args:
        box: the box, or None for the infinite lattice.
        diffusion: D (lattice constants^2 per unit time hbar / t): a scalar, or one value per axis (d,).
        times: times (any shape, >= 0).
        dimension: d, only with ``box=None``.

    Returns:
        P_cl with the shape of ``times``.
    """
    if box is None:
        if dimension not in (1, 2, 3):
            raise ValueError(f"dimension must be 1, 2 or 3 with box=None, got {dimension!r}.")
        lengths = (None,) * dimension
    else:
        if dimension is not None and dimension != box.dimension:
            raise ValueError(f"dimension={dimension!r} contradicts the box (d = {box.dimension}).")
        lengths = box.shape
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
