"""Coherent backscattering (CBS) and coherent forward scattering (CFS) in momentum space, as cold-atom experiments
see them: a packet launched with momentum k0 into a disordered potential, evolved (:func:`evolve`), and the
disorder-averaged momentum distribution n(k, t) read off the FFT grid.

Units and conventions are those of ``_core/evolution.py``: hbar = 1, lattice constant a = 1, energies in units of
the hopping t, times in hbar / t, flux per plaquette in h/e (Landau gauge A = -B y x). Samples are chains, strips or
bars (sites on the integer grid, site (x, y) = (slice, y)); a closed periodic box of side lengths (Lx, Ly) is
``Sample(strip(Ly, boundary="periodic"), Lx, periodic=True)``, whose FFT grid is k_a = 2 pi n_a / L_a. The clean
square-lattice band is eps(k) = -2 t sum_a cos k_a (plus +- 2 alpha |(sin k_x, sin k_y)| with Rashba coupling).

Physics (diffusive regime, k l >> 1; Cherroret, Karpiuk, Mueller, Gremaud & Miniatura, PRA 85, 011604 (2012);
experiment Jendrzejewski et al., PRL 109, 195302 (2012), Labeyrie et al., EPL 100, 66001 (2012)). After a few
scattering times tau the distribution is a ring on the energy shell |k| ~ |k0| (the diffuson) with a peak at -k0
(the Cooperon: each multiple-scattering path interferes with its time reverse). Its contrast n(-k0)/n_ring - 1
tends to 1 (minus the single-scattering share, which decays as (t/tau) exp(-t/tau)) for a plane wave, whose
momentum spread is below the Cooperon width ~ (D t)^(-1/2); a packet of momentum spread sigma_k > (D t)^(-1/2)
reduces the peak pixel's contrast to about the overlap of the two widths. A magnetic field dephases the Cooperon
once 4 pi flux D t >> 1 (``cooperon_field_ratio``) and removes the peak.

Spin-orbit coupling (symplectic class). With a spin-1/2 particle the Cooperon splits into a singlet (total spin
0) and three triplet channels. Derivation used here: a scattering path rotates the spin by U in SU(2); its time
reverse (T = i sigma_y K) carries the amplitude <beta| U_rev |alpha> = <T alpha| U |T beta>, with T|up> = -|down>,
T|down> = |up>. For an initial |up> and U = [[a, b], [-b*, a*]] the interference terms are
    final up:    Re[<up|U|up> <T up|U|T up>*]    = Re[a <down|U|down>*] = Re[a^2],
    final down:  Re[<dn|U|up> <T up|U|T dn>*]    = Re[(-b*) (-<down|U|up>)*] = -|b|^2,
while the diffuson gives |a|^2 and |b|^2. Without spin-orbit (U = 1) the spin-summed contrast is 1. When the
spin is randomized along each path (U Haar-distributed: strong spin-orbit, t >> tau_s), <a^2> = 0 and <|b|^2> = 1/2:
the interference sums to -1/2 against a diffuson of 1, so the spin-summed contrast at -k0 is -1/2 (a dip), for
any initial spin state (the singlet is rotation invariant). In the singlet/triplet language the spin-summed
contrast is (sum over the surviving triplets - singlet) / 2: (3 - 1) / 2 = 1 without spin-orbit, (0 - 1) / 2 = -1/2
with the triplets killed. Per final spin: contrast 0 in the co-polarized and -1 in the flipped channel.
This is the D'yakonov-Perel limit (spin splitting Omega with Omega tau << 1, t >> tau_s = 1 / (Omega^2 tau)).
When the spin-split rings are resolved (Omega tau >~ 1) each helicity band backscatters with a Berry phase pi
and the contrast moves towards -1 (on the lattice with Rashba coupling, measured: -0.45 +- 0.06, -0.60 +- 0.03
and -0.80 +- 0.01 at Omega tau ~ 0.4, 0.8, 1.6; ``tests/test_momentum_backscattering.py``).

Forward scattering (CFS): with Anderson localization a second peak at +k0 grows on the localization time scale
(the Heisenberg time of the localization volume), contrast -> 1 at long times; absent at t << t_loc (Karpiuk et
al., PRL 109, 190601 (2012); Ghosh et al., PRA 90, 063602 (2014)). A finite closed box grows a CFS peak too, on
its Heisenberg time t_H = 2 pi nu L^d (nu the density of states per site and unit energy): compare with a box
whose t_H is far beyond the times used.

Speckle potentials (:func:`speckle_potential`) are the cold-atom disorder: V = V0 (|E|^2 / <|E|^2> - 1), E a
complex Gaussian field (Goodman, Speckle Phenomena in Optics (2007), ch. 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .evolution import (
    EnergyWindow,
    _given_disorder,
    _concrete_times,
    _grid,
    energy_filter,
    evolution_hamiltonian,
    evolve,
    mean_square_displacement,
    spectral_half_width,
)
from .lattice import Sample
from .model import Model, anderson_potential
from .stats import jackknife

# ---------------------------------------------------------------------------------------------------------
# Geometry of the grid


def _periodic_axes(sample: Sample) -> tuple[bool, ...]:
    """Per axis of ``sample.potential_shape``: whether it closes on itself (x: ``sample.periodic``; the transverse
    axes: a periodic strip or bar)."""
    shape = _grid(sample)
    transverse = sample.lattice.transverse_period is not None
    return (bool(sample.periodic),) + (transverse,) * (len(shape) - 1)


def _coordinates(sample: Sample):
    """Site coordinates per axis, each broadcastable to the potential shape."""
    shape = _grid(sample)
    return tuple(jnp.asarray(np.arange(n, dtype=float).reshape([n if a == i else 1 for a in range(len(shape))]))
                 for i, n in enumerate(shape))


def momentum_grid(sample: Sample):
    """The FFT momenta k_a = 2 pi fftfreq(L_a) in [-pi, pi) of a chain, strip or bar: float array of shape
    (d, *sample.potential_shape), d = len(potential_shape), in the order of :func:`momentum_distribution`'s axes
    (unshifted FFT order). Spacing 2 pi / L_a per axis (the momentum resolution of the box)."""
    shape = _grid(sample)
    axes = [2 * np.pi * np.fft.fftfreq(n) for n in shape]
    return jnp.asarray(np.stack(np.meshgrid(*axes, indexing="ij")))


def nearest_grid_momentum(sample: Sample, k0):
    """The FFT-grid momentum (2 pi n_a / L_a, folded into [-pi, pi)) nearest to ``k0`` (d,), as a NumPy array: a
    plane wave of this momentum is an eigenstate of the clean periodic box, and -k0 is then on the grid too."""
    shape = _grid(sample)
    k0 = _momentum(k0, len(shape))
    n = np.round(k0 * np.asarray(shape) / (2 * np.pi))
    return np.angle(np.exp(2j * np.pi * n / np.asarray(shape)))


def _momentum(k0, d: int) -> np.ndarray:
    k0 = np.asarray(k0, dtype=float)
    if k0.shape != (d,) or not np.all(np.isfinite(k0)):
        raise ValueError(f"k0 must be {d} finite real numbers (one per axis of the sample), got {k0!r}.")
    return k0


def band_energy(model: Model, k0) -> float:
    """The clean square-lattice band energy eps(k0) = -2 t sum_a cos k0_a (units of t; the spin-independent part
    with Rashba coupling, the centre of the two helicity bands). A Python float (needs a concrete hopping)."""
    k0 = np.asarray(k0, dtype=float)
    return float(-2 * float(model.hopping) * np.sum(np.cos(k0)))


# ---------------------------------------------------------------------------------------------------------
# Speckle


def _smooth(field, sample: Sample, kernel_of: Callable):
    """Convolution of ``field`` (potential shape) with the separable kernel prod_a kernel_of(d_a) along each axis:
    circular with minimum-image distances along periodic axes, with zero padding (no field beyond the sample)
    along open ones; by FFT, O(N log N)."""
    for axis, (n, periodic) in enumerate(zip(field.shape, _periodic_axes(sample))):
        if n == 1:
            continue
        reach = 0 if periodic else n
        size = n + reach
        d = np.arange(size)
        d = np.minimum(d, size - d)  # circular distance on the (padded) axis
        kernel = jnp.asarray(kernel_of(d.astype(float)), field.dtype)
        moved = jnp.moveaxis(field, axis, -1)
        padded = jnp.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, reach)])
        out = jnp.fft.ifft(jnp.fft.fft(padded, axis=-1) * jnp.fft.fft(kernel), axis=-1)[..., :n]
        field = jnp.moveaxis(out if jnp.iscomplexobj(field) else out.real, -1, axis)
    return field


def speckle_potential(key, sample: Sample, strength, correlation_length, *, subtract_mean: bool = True):
    """An optical speckle potential, shape ``sample.potential_shape`` (chains, strips, bars):

        V(r) = V0 (|E(r)|^2 / <|E(r)|^2> - 1)     (or V0 |E|^2 / <|E|^2> with ``subtract_mean=False``),

    E(r) = sum_j K(r - r_j) (g_j + i h_j), g and h independent standard normal white noise on the sites (two
    Gaussian streams of :func:`anderson_potential` under ``fold_in(key, 0)`` and ``fold_in(key, 1)``: a pure
    function of the key, the draw at a site does not depend on the sample size), K(d) = exp(-|d|^2 / (2 xi^2))
    (minimum image along periodic axes; no field beyond the ends of open axes), and <|E(r)|^2> = 2 sum_j K(r -
    r_j)^2 the exact ensemble mean at r (so the statistics are the same at every site, also near walls).

    Statistics (Goodman, Speckle Phenomena in Optics, 2007, ch. 3): E is a circular complex Gaussian, so the
    intensity I = |E|^2 / <|E|^2> is exponentially distributed, P(I) = exp(-I): <V> = 0 (V0 without the -1),
    var V = V0^2, skewed to the sign of V0 (V0 > 0 blue-detuned, V0 < 0 red-detuned). The field correlation is
    <E(r) E*(r')> / <|E|^2> ~ exp(-|r - r'|^2 / (4 xi^2)), so the potential covariance is
    <dV(r) dV(r')> = V0^2 exp(-|r - r'|^2 / (2 xi^2)) (continuum limit, xi >~ 1; exact on the grid is the
    square of the normalized discrete kernel overlap). ``correlation_length=0`` gives uncorrelated sites.

    Args:
        key: PRNG key.
        sample: a chain, strip or bar (static).
        strength: V0 (units of t); real, may be traced, differentiable (V is linear in it).
        correlation_length: xi >= 0 in lattice constants (static, a Python number).
        subtract_mean: keep the -1 (zero-mean potential).
    """
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    _grid(sample)
    if isinstance(correlation_length, bool) or not isinstance(correlation_length, (int, float)) \
            or not (math.isfinite(correlation_length) and correlation_length >= 0):
        raise ValueError(f"correlation_length must be a Python number >= 0 (static), got {correlation_length!r}.")
    if jnp.iscomplexobj(strength) or jnp.ndim(strength) != 0:
        raise ValueError(f"strength must be a real scalar, got {strength!r}.")
    return _speckle_potential(key, sample, jnp.asarray(strength, jnp.result_type(float)),
                              float(correlation_length), bool(subtract_mean))


@eqx.filter_jit
def _speckle_potential(key, sample, strength, xi, subtract_mean):
    real = anderson_potential(jax.random.fold_in(key, 0), sample, 1.0, distribution="gaussian")
    imag = anderson_potential(jax.random.fold_in(key, 1), sample, 1.0, distribution="gaussian")
    field = (real + 1j * imag).astype(jnp.result_type(1j))
    if xi > 0:
        def kernel(d):
            return np.exp(-d * d / (2 * xi * xi))

        def squared(d):
            return kernel(d) ** 2

        field = _smooth(field, sample, kernel)
        mean = 2 * _smooth(jnp.ones(field.shape, strength.dtype), sample, squared)
    else:
        mean = 2.0
    intensity = jnp.abs(field) ** 2 / mean
    return strength * (intensity - 1.0 if subtract_mean else intensity)


# ---------------------------------------------------------------------------------------------------------
# States and momentum distributions


def symmetric_gauge_phase(sample: Sample, flux, center):
    """The phase exp(-i phi(r)) that takes a state from the library's Landau gauge (the x bond (x, y) -> (x+1, y)
    carries exp(-2 pi i flux y)) to the symmetric gauge about ``center`` = (x0, y0):
    psi_sym = exp(-i phi) psi_Landau with

        phi(r) = -pi flux (x - x0)(y - y0) - 2 pi flux y0 (x - x0).

    In this gauge the FFT momentum of the part of a state at r is its kinetic momentum plus
    pi flux z x (r - c) (e B = 2 pi flux), so it is the kinetic momentum at the centre and is smeared by
    ~ pi flux R over a cloud of radius R; in the Landau gauge the shift 2 pi flux y is twice as large and
    not centred. No gauge does better: the kinetic momenta do not commute, [Pi_x, Pi_y] = -i e B, so a momentum
    distribution in a field is resolved to ~ sqrt(2 pi flux) at best. Open strips only (a periodic boundary has
    no symmetric gauge); shape ``sample.potential_shape``. ``flux`` may be traced."""
    shape = _grid(sample)
    if len(shape) != 2:
        raise ValueError(f"symmetric_gauge_phase needs a strip (2D), got potential shape {shape}.")
    if any(_periodic_axes(sample)):
        raise ValueError("symmetric_gauge_phase needs an open sample (hard walls): a periodic box has no "
                         "symmetric gauge.")
    x0, y0 = (float(c) for c in center)
    x, y = _coordinates(sample)
    phi = -math.pi * flux * (x - x0) * (y - y0) - 2 * math.pi * flux * y0 * (x - x0)
    return jnp.exp(-1j * phi)


def plane_wave_packet(sample: Sample, k0, width=None, center=None, spin=None):
    """A normalized wave packet of mean momentum ``k0``,

        psi(r) = exp(i k0 . r) exp(-|r - c|^2 / (4 w^2)) chi / norm,

    complex of shape ``sample.potential_shape`` (+ (2,) on spinful samples): |psi|^2 has standard deviation w per
    axis, the momentum distribution 1 / (2 w). Distances to the centre c take the minimum image along periodic
    axes. ``width=None`` gives the plane wave exp(i k0 . r) over the whole sample (on a periodic box an
    eigenstate of the clean Hamiltonian when k0 is on the FFT grid, :func:`nearest_grid_momentum`).

    Args:
        k0: mean momentum (d,) in 1 / lattice constant.
        width: w > 0 in lattice constants, or None (plane wave).
        center: c (d,), default the middle of the sample ((L_a - 1) / 2).
        spin: spinful samples only: 0 (up along z, the default), 1 (down), or a spinor (2,) (normalized here).
    """
    shape = _grid(sample)
    d = len(shape)
    k0 = _momentum(k0, d)
    center = np.asarray([(n - 1) / 2 for n in shape] if center is None else center, dtype=float)
    if center.shape != (d,) or not np.all(np.isfinite(center)):
        raise ValueError(f"center must be {d} finite numbers, got {center!r}.")
    if width is not None and (isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0):
        raise ValueError(f"width must be a positive number or None (plane wave), got {width!r}.")
    coords = _coordinates(sample)
    psi = jnp.ones(shape, jnp.result_type(1j))
    for x, k, c, n, periodic in zip(coords, k0, center, shape, _periodic_axes(sample)):
        psi = psi * jnp.exp(1j * k * x)
        if width is not None:
            dx = x - c
            if periodic:
                dx = dx - n * jnp.round(dx / n)
            psi = psi * jnp.exp(-(dx**2) / (4 * width**2))
    if sample.spinful:
        chi = _spinor(spin)
        psi = psi[..., None] * chi
    elif spin is not None:
        raise ValueError(f"spin must be None on a spinless sample, got {spin!r}.")
    return psi / jnp.sqrt(jnp.sum(jnp.abs(psi) ** 2))


def _spinor(spin):
    if spin is None or (isinstance(spin, (int, np.integer)) and not isinstance(spin, bool) and spin in (0, 1)):
        return jnp.asarray([1.0, 0.0] if spin in (None, 0) else [0.0, 1.0], jnp.result_type(1j))
    chi = np.asarray(spin, dtype=complex)
    if chi.shape != (2,) or not np.all(np.isfinite(chi)) or np.linalg.norm(chi) == 0:
        raise ValueError(f"spin must be 0 (up), 1 (down) or a nonzero spinor of 2 numbers, got {spin!r}.")
    return jnp.asarray(chi / np.linalg.norm(chi))


def momentum_distribution(sample: Sample, state, *, gauge=None):
    """n(k) = |sum_r exp(-i k . r) psi_s(r)|^2 summed over spin s, normalized to sum_k n(k) = 1, on the FFT grid
    of :func:`momentum_grid` (unshifted order); shape ``sample.potential_shape``. ``gauge``: an optional phase
    array (e.g. :func:`symmetric_gauge_phase`) applied to the state first. Pure and jit/vmap-able."""
    shape = _grid(sample)
    state = jnp.asarray(state)
    expected = shape + ((2,) if sample.spinful else ())
    if state.shape != expected:
        raise ValueError(f"state has shape {state.shape}, the sample needs {expected}.")
    if gauge is not None:
        state = state * (gauge[..., None] if sample.spinful else gauge)
    axes = tuple(range(len(shape)))
    n = jnp.abs(jnp.fft.fftn(state, axes=axes)) ** 2
    if sample.spinful:
        n = n.sum(-1)
    return n / jnp.sum(n)


# ---------------------------------------------------------------------------------------------------------
# Ensemble


def ensemble_spreading(keys, sample: Sample, model: Model, potential_fn: Callable, k0, times, *, width: float,
                       energy_width: float = 0.1, energy=None, spin=None, batch: int = 16,
                       half_width: float | None = None, tol: float = 1e-12, max_step: float = 100.0):
    """Mean-square displacement <r^2>(t) (lattice constants squared; :func:`mean_square_displacement`, minimal
    image from the origin) of a packet of momentum ``k0`` and ``width`` launched at the origin, one row per
    realization: the same disorder (``potential_fn(keys[r])``), energy window and evolution as
    :func:`ensemble_momentum_distribution`, so that D of the CBS width law comes from the same simulation
    (<r^2>(t) - <r^2>(0) -> 4 D t in 2D after a few scattering times). Meaningful while sqrt(<r^2>) << L / 2.

    Returns:
        float (R, T).
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number (a packet at the origin), got {width!r}.")
    if model.flux is not None:
        raise ValueError("ensemble_spreading measures zero-field diffusion: model.flux must be None.")
    return _ensemble(keys, sample, model, potential_fn, k0, times, energy_width=energy_width, energy=energy,
                     width=width, center=np.zeros(len(_grid(sample))), spin=spin, batch=batch, half_width=half_width,
                     tol=tol, max_step=max_step, measure="spreading")


def ensemble_momentum_distribution(keys, sample: Sample, model: Model, potential_fn: Callable, k0, times, *,
                                   energy_width: float = 0.1, energy=None, width=None, center=None, spin=None,
                                   batch: int = 16, half_width: float | None = None, tol: float = 1e-12,
                                   max_step: float = 100.0):
    """Momentum distributions n(k, t) of a packet launched with momentum ``k0``, one per disorder realization.

    For each key: the potential V = ``potential_fn(key)`` (an array of ``sample.potential_shape`` or a
    :class:`Disorder`), H of :func:`evolution_hamiltonian` with that disorder, the initial state
    g(H) psi0 / ||g(H) psi0||, psi0 = :func:`plane_wave_packet` (``k0``, ``width``, ``center``, ``spin``) and g
    the Gaussian :class:`EnergyWindow` of standard deviation ``energy_width`` at ``energy`` (default the clean band
    energy :func:`band_energy` of k0; the filter keeps the ring sharp, width ~ 1 / l + energy_width / v), evolved
    to ``times`` (:func:`evolve`), and :func:`momentum_distribution` at each time. With ``model.flux`` (open
    strips) the state is prepared and measured in the symmetric gauge about the packet centre
    (:func:`symmetric_gauge_phase`), so k is the kinetic momentum there.

    Realizations are evaluated ``batch`` at a time (one compiled ``vmap``, the last batch padded), so memory is
    O(batch x state) for the evolution; the result holds R x T x N floats. Reproducible: realization r depends on
    ``keys[r]`` only. Average with ``.mean(0)``; :func:`backscattering_contrast` takes the stack.

    Args:
        keys: (R,) PRNG keys (``jax.random.split``).
        potential_fn: key -> potential array or Disorder (e.g. ``lambda k: speckle_potential(k, sample, 1.0, 2.0)``).
        times: concrete sorted times >= 0 (T,), hbar / t.
        half_width: static spectral bound; default :func:`spectral_half_width` with the largest |V| of the ensemble.

    Returns:
        float (R, T, *sample.potential_shape), each n(k, t) normalized to 1, on the grid of :func:`momentum_grid`.
    """
    return _ensemble(keys, sample, model, potential_fn, k0, times, energy_width=energy_width, energy=energy,
                     width=width, center=center, spin=spin, batch=batch, half_width=half_width, tol=tol,
                     max_step=max_step, measure="momentum")


def _ensemble(keys, sample, model, potential_fn, k0, times, *, energy_width, energy, width, center, spin, batch,
              half_width, tol, max_step, measure):
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    if not isinstance(model, Model):
        raise ValueError(f"model must be a difftransport Model, got {type(model).__name__}.")
    shape = _grid(sample)
    k0 = _momentum(k0, len(shape))
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}.")
    if isinstance(energy_width, bool) or not isinstance(energy_width, (int, float)) or not energy_width > 0:
        raise ValueError(f"energy_width must be a positive Python number, got {energy_width!r}.")
    keys = jnp.asarray(keys)
    count = keys.shape[0] if keys.ndim else 0
    if count == 0:
        raise ValueError(f"keys must be a non-empty batch of PRNG keys, got shape {keys.shape}.")
    disorders = jax.vmap(lambda k: _given_disorder(potential_fn(k), sample, "the value of potential_fn"))(keys)
    if half_width is None:
        largest = float(jnp.max(jnp.abs(disorders.potential))) if disorders.potential is not None else 0.0
        half_width = spectral_half_width(sample, model, strength=2 * largest, su2=disorders.su2_intra is not None)
    center = np.asarray([(n - 1) / 2 for n in shape] if center is None else center, dtype=float)
    psi0 = plane_wave_packet(sample, k0, width, center, spin)
    gauge = None
    if model.flux is not None:
        gauge = symmetric_gauge_phase(sample, model.flux, center)
        psi0 = jnp.conj(gauge)[(...,) + ((None,) if sample.spinful else ())] * psi0
    window = EnergyWindow(band_energy(model, k0) if energy is None else energy, float(energy_width))
    times = tuple(float(t) for t in _concrete_times(times))
    size = min(int(batch), count)
    out = []
    for start in range(0, count, size):  # chunks bound the memory; one compiled shape (the last one padded)
        chunk = jax.tree_util.tree_map(lambda a: a[start:start + size], disorders)
        short = size - jax.tree_util.tree_leaves(chunk)[0].shape[0]
        if short:
            chunk = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a[:short]]), chunk)
        out.append(_ensemble_batch(chunk, sample, model, psi0, gauge, window, times, float(half_width), float(tol),
                                   float(max_step), measure)[: size - short])
    return jnp.concatenate(out)


@eqx.filter_jit
def _ensemble_batch(disorders, sample, model, psi0, gauge, window, times, half_width, tol, max_step, measure):
    """n(k, t) (``measure`` "momentum") or <r^2>(t) ("spreading") for a batch of realizations (module level, so
    repeated calls reuse the compiled batch)."""
    def observable(state):
        if measure == "spreading":
            return mean_square_displacement(sample, state)
        return momentum_distribution(sample, state, gauge=gauge)

    def one(disorder):
        ham = evolution_hamiltonian(None, sample, model, disorder=disorder, half_width=half_width)
        psi = energy_filter(psi0, ham, window, tol=tol)
        psi = psi / jnp.sqrt(jnp.sum(jnp.abs(psi) ** 2))
        return evolve(psi, ham, np.asarray(times), tol=tol, max_step=max_step, observable=observable)

    return jax.vmap(one)(disorders)


# ---------------------------------------------------------------------------------------------------------
# Contrast


class BackscatteringContrast(eqx.Module):
    """Peak contrasts at -k0 (CBS) and +k0 (CFS) against the ring background, per leading index (e.g. time).

    Attributes:
        backward, backward_se: n(-k0) / n_ring(|k0|) - 1 and its standard error over realizations.
        forward, forward_se: the same at +k0 (the unscattered packet also sits there at t <~ tau).
        background: n_ring(|k0|) of the mean distribution (per pixel; sum_k n = 1).
        width: rms radius sqrt(<|k + k0|^2>) of the positive excess n - n_ring around -k0 within ``exclude``
            (1 / lattice constant; ~ the grid spacing when the peak is one pixel: resolution-limited).
    """

    backward: jax.Array
    backward_se: jax.Array
    forward: jax.Array
    forward_se: jax.Array
    background: jax.Array
    width: jax.Array


def _ratio(peak, base):
    """mean(peak) / mean(base) - 1 over axis 0 and its delta-method standard error."""
    count = peak.shape[0]
    p, b = peak.mean(0), base.mean(0)
    ratio = p / b
    if count < 2:
        return ratio - 1, jnp.full_like(ratio, jnp.nan)
    residual = (peak - ratio * base) / b  # per realization, linearized
    return ratio - 1, jnp.std(residual, axis=0, ddof=1) / math.sqrt(count)


def backscattering_contrast(n_k, k_grid, k0, *, ring_halfwidth=None, exclude=None) -> BackscatteringContrast:
    """Contrasts of the CBS peak at -k0 and the CFS peak at +k0 over the diffusive ring.

    The background n_ring(|k0|) is a weighted least-squares fit n = c0 + c1 u + c2 u^2, u = |k| - |k0|, over the
    pixels of the annulus ||k| - |k0|| <= ``ring_halfwidth`` outside the discs |k -+ k0| <= ``exclude``
    (an azimuthal average at the same |k|, corrected for the ring's radial curvature): c0 is a fixed linear
    combination of the pixels, so it is evaluated per realization and the contrast
    C = <n(-k0)> / <n_ring> - 1 has the delta-method standard error of a ratio of means over realizations. The
    peak value is the pixel nearest to -k0 (+k0).

    Args:
        n_k: (R, ..., *grid) distributions per realization (R >= 2 for a standard error), e.g.
            :func:`ensemble_momentum_distribution`'s output; any leading axes after R (times) are kept.
        k_grid: (d, *grid) momenta (:func:`momentum_grid`).
        k0: (d,) launch momentum.
        ring_halfwidth: annulus half width; default the largest grid spacing (a wider annulus lets the quadratic
            miss the peaked ring profile: the background is then biased low).
        exclude: radius of the excluded peak discs; default 2.5 x the largest grid spacing.

    Returns:
        :class:`BackscatteringContrast` with arrays of the leading shape (...,).
    """
    k_grid = np.asarray(k_grid, dtype=float)
    d = k_grid.shape[0]
    grid = k_grid.shape[1:]
    if k_grid.ndim != d + 1:
        raise ValueError(f"k_grid must have shape (d, *grid) with d = len(grid), got {k_grid.shape}.")
    k0 = _momentum(k0, d)
    n_k = jnp.asarray(n_k)
    if n_k.ndim < d + 1 or tuple(n_k.shape[-d:]) != grid:
        raise ValueError(f"n_k must have shape (R, ..., *{grid}), got {n_k.shape}.")
    flat_k = k_grid.reshape(d, -1)
    spacing = max(float(np.max(np.abs(np.diff(np.unique(np.round(flat_k[a], 12)))))) if len(np.unique(flat_k[a])) > 1
                  else 0.0 for a in range(d))
    ring_halfwidth = spacing if ring_halfwidth is None else float(ring_halfwidth)
    exclude = 2.5 * spacing if exclude is None else float(exclude)
    radius = np.linalg.norm(flat_k, axis=0)
    # distances on the torus of momenta (folded into [-pi, pi))
    def distance(p):
        delta = np.angle(np.exp(1j * (flat_k - p[:, None])))
        return np.linalg.norm(delta, axis=0)
    back, fwd = distance(-k0), distance(k0)
    u = radius - np.linalg.norm(k0)
    mask = (np.abs(u) <= ring_halfwidth) & (back > exclude) & (fwd > exclude)
    if mask.sum() < 6:
        raise ValueError(f"the ring annulus holds {int(mask.sum())} pixels (< 6): widen ring_halfwidth "
                         f"(got {ring_halfwidth:g}) or use a larger box.")
    design = np.stack([np.ones(mask.sum()), u[mask], u[mask] ** 2], axis=1)
    weights = np.zeros(radius.size)
    weights[mask] = np.linalg.pinv(design)[0]  # c0 as a linear functional of the pixels
    flat = n_k.reshape(*n_k.shape[:-d], -1)
    base = flat @ jnp.asarray(weights)
    backward, backward_se = _ratio(flat[..., int(np.argmin(back))], base)
    forward, forward_se = _ratio(flat[..., int(np.argmin(fwd))], base)
    # excess over the fitted ring near -k0 (the fit's quadratic holds within the annulus; outside, c0 alone)
    mean = flat.mean(0)
    coefficients = jnp.einsum("...p,pc->...c", mean[..., mask], jnp.asarray(np.linalg.pinv(design).T))
    near = back <= exclude
    un = np.clip(u[near], -ring_halfwidth, ring_halfwidth)
    ring = coefficients[..., :1] + coefficients[..., 1:2] * un + coefficients[..., 2:] * un**2
    excess = jnp.maximum(mean[..., near] - ring, 0.0)
    total = excess.sum(-1)
    width = jnp.sqrt(jnp.sum(excess * back[near] ** 2, -1) / jnp.where(total > 0, total, 1.0))
    return BackscatteringContrast(backward, backward_se, forward, forward_se, base.mean(0), width)


# ---------------------------------------------------------------------------------------------------------
# Peak profile against the rotated ladder


class PeakPixels(eqx.Module):
    """Per-realization pixels of a square box's distributions that :func:`peak_profile` needs (see
    :func:`peak_pixels`): small enough to keep for thousands of realizations, where n(k, t) itself is not.
    Chunks of realizations: concatenate ``peak``, ``ladder``, ``ahead`` and ``aside`` along axis 0 (``q`` is
    shared).

    Attributes:
        q: (P, 2) offsets q = k + k0 (1 / lattice constant) of the disc |q| <= radius grid spacings.
        peak: (R, ..., P) n(-k0 + q).
        ladder: (R, ..., P) [n(R(-k0 + q)) + n(R^-1(-k0 + q))] / 2, R the 90-degree rotation.
        ahead, aside: (R, ...) n(+k0) and [n(R k0) + n(R^-1 k0)] / 2.
    """

    q: np.ndarray
    peak: np.ndarray
    ladder: np.ndarray
    ahead: np.ndarray
    aside: np.ndarray


def peak_pixels(n_k, sample: Sample, k0, *, radius: int = 6) -> PeakPixels:
    """The pixels around -k0 and +k0 of ``n_k`` and of their 90-degree rotations, per realization, for
    :func:`peak_profile`.

    Why the rotations: the square lattice and the disorder ensembles of this module (box, speckle with an isotropic
    correlation) are symmetric under the 90-degree rotation R, which maps the FFT grid of an L x L box onto itself
    and the energy shell onto itself. A few transport times after the launch the diffuse (ladder) intensity has
    forgotten the launch direction, so n_L(k) = [n(R k) + n(R^-1 k)] / 2, while the crossed term, peaked within
    ~(D t)^(-1/2) of -k0, has decayed at R(-k0 + q), a distance sqrt(2) |k0| away: the reference needs no fitted
    ring background (unlike :func:`backscattering_contrast`).

    Args:
        n_k: (R, ..., L, L) distributions per realization (:func:`ensemble_momentum_distribution`).
        sample: the L x L box, periodic along both axes.
        k0: (2,) launch momentum on the grid (:func:`nearest_grid_momentum`).
        radius: disc radius in grid spacings, 2 <= radius < L / 4.
    """
    shape = _grid(sample)
    if len(shape) != 2 or shape[0] != shape[1] or not all(_periodic_axes(sample)):
        raise ValueError(f"peak_pixels needs a square box periodic along both axes, got grid {shape} with "
                         f"periodic axes {_periodic_axes(sample)}.")
    size = shape[0]
    k0 = _momentum(k0, 2)
    index = np.rint(k0 * size / (2 * np.pi))
    if np.max(np.abs(index * 2 * np.pi / size - k0)) > 1e-9:
        raise ValueError(f"k0 = {k0.tolist()} is not on the box's FFT grid: use nearest_grid_momentum.")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or not 2 <= radius < size // 4:
        raise ValueError(f"radius must be an integer in [2, {size // 4}), got {radius!r}.")
    n_k = np.asarray(n_k, float)
    if n_k.ndim < 3 or n_k.shape[-2:] != shape:
        raise ValueError(f"n_k must have shape (R, ..., {size}, {size}), got {n_k.shape}.")
    i0 = index.astype(int)
    offsets = np.array([(a, b) for a in range(-radius, radius + 1) for b in range(-radius, radius + 1)
                        if a * a + b * b <= radius * radius])

    def pixels(p):
        return n_k[..., p[:, 0] % size, p[:, 1] % size]

    def rotated(p):  # R(x, y) = (-y, x) and R^-1(x, y) = (y, -x)
        return 0.5 * (pixels(np.stack([-p[:, 1], p[:, 0]], 1)) + pixels(np.stack([p[:, 1], -p[:, 0]], 1)))

    points, front = -i0 + offsets, i0[None, :]
    return PeakPixels(q=offsets * (2 * np.pi / size), peak=pixels(points), ladder=rotated(points),
                      ahead=pixels(front)[..., 0], aside=rotated(front)[..., 0])


class PeakProfile(eqx.Module):
    """The CBS peak around -k0 as a ratio to the rotated ladder and its Gaussian fit (see :func:`peak_profile`),
    per leading index of the distributions after the realizations (e.g. time).

    Attributes:
        q: (P, 2) offsets q = k + k0 of the pixels used (1 / lattice constant).
        ratio: (..., P) n(-k0 + q) / n_L(-k0 + q) - 1 of the mean distributions.
        amplitude, amplitude_se: A of the fit A exp(-|q|^2 / (2 s^2)), the peak contrast (1 for a plane wave
            after a few transport times), and its jackknife standard error.
        width, width_se: s (1 / lattice constant) and its jackknife standard error.
        backward, backward_se: the single pixel at -k0, n(-k0) / n_L(-k0) - 1 (ratio of means).
        forward, forward_se: the same at +k0 against +k0 rotated (CFS; the unscattered packet at t <~ tau).
        over_amplitude, over_backward, over_forward (and ``_se``): with ``over``, the means of ``amplitude``,
            ``backward`` and ``forward`` over the selected times, with joint jackknife errors; NaN without.
    """

    q: np.ndarray
    ratio: np.ndarray
    amplitude: np.ndarray
    amplitude_se: np.ndarray
    width: np.ndarray
    width_se: np.ndarray
    backward: np.ndarray
    backward_se: np.ndarray
    forward: np.ndarray
    forward_se: np.ndarray
    over_amplitude: float = np.nan
    over_amplitude_se: float = np.nan
    over_backward: float = np.nan
    over_backward_se: float = np.nan
    over_forward: float = np.nan
    over_forward_se: float = np.nan


def _gaussian_fit(ratio, q2, scales):
    """Least-squares A exp(-q2 / (2 s^2)) to ``ratio`` (..., P): A is linear for each s, s from a fine log grid
    ``scales`` refined by a parabola through the three best points in log s. Returns (A, s), each (...,)."""
    g = np.exp(-q2[None, :] / (2 * scales[:, None] ** 2))  # (S, P)
    amp = ratio @ g.T / np.sum(g * g, axis=1)  # (..., S)
    cost = np.sum(ratio**2, -1)[..., None] - amp**2 * np.sum(g * g, axis=1)
    best = np.clip(np.argmin(cost, axis=-1), 1, len(scales) - 2)
    lo, mid, hi = (np.take_along_axis(cost, (best + o)[..., None], -1)[..., 0] for o in (-1, 0, 1))
    curvature = lo - 2 * mid + hi
    shift = np.where(curvature > 0, 0.5 * (lo - hi) / np.where(curvature > 0, curvature, 1.0), 0.0)
    s = scales[best] * np.exp(np.clip(shift, -1, 1) * np.log(scales[1] / scales[0]))
    gs = np.exp(-q2 / (2 * s[..., None] ** 2))
    return np.sum(ratio * gs, -1) / np.sum(gs * gs, -1), s


def _fit_grid(q):
    """|q|^2 of the disc's pixels and the grid of widths s the fit scans (0.2 grid spacings to 2 disc radii)."""
    q2 = np.sum(q**2, 1)
    spacing = float(np.min(np.linalg.norm(q[q2 > 0], axis=1)))
    return q2, np.geomspace(0.2 * spacing, 2.0 * float(np.sqrt(q2.max())), 2000)


def peak_profile(pixels: PeakPixels, *, blocks: int = 32, over=None) -> PeakProfile:
    """The CBS peak profile n(-k0 + q) / n_L(-k0 + q) - 1 of the mean distributions (:func:`peak_pixels`) and
    its fit A exp(-|q|^2 / (2 s^2)) by least squares over the disc.

    Physics: the pixel-by-pixel ratio is the Cooperon profile exp(-D_c |q|^2 t), D_c t the spread between the
    first and the last scattering event (docs/physics.md#momentum-backscattering), so s^2 = 1 / (2 D_c t), and
    ``amplitude`` A is the peak contrast, which the single pixel at -k0 (``backward``) measures with a larger
    error. Standard errors: delete-a-block jackknife over the realizations (``stats.jackknife``, ``blocks``
    blocks, at most R), so the error of each time is right although the times share realizations.

    ``over``: a boolean mask of the times (pixels of shape (R, T, P)); the means over those times of the per-time
    amplitude, pixel and forward contrasts, with jackknife errors of the means (``over_*``). Average the fitted
    amplitudes, not the distributions: the profile narrows with time, and one Gaussian fitted to a mixture of
    widths underestimates its peak (by 11 % over t = 7 - 28 tau in the 128^2 runs).
    """
    if not isinstance(pixels, PeakPixels):
        raise ValueError(f"pixels must be the PeakPixels of peak_pixels(...), got {type(pixels).__name__}.")
    if pixels.peak.shape[0] < 2:
        raise ValueError(f"peak_profile needs at least 2 realizations, got {pixels.peak.shape[0]}.")
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 2:
        raise ValueError(f"blocks must be an integer >= 2, got {blocks!r}.")
    q2, scales = _fit_grid(pixels.q)
    centre = int(np.argmin(q2))

    if over is not None:
        over = np.asarray(over)
        if over.dtype != bool or pixels.peak.ndim != 3 or over.shape != pixels.peak.shape[1:2] or not over.any():
            raise ValueError(f"over must be a boolean mask of the {pixels.peak.shape[1:2]} times of pixels (R, T, P) "
                             f"with at least one True, got {over!r}.")

    def statistic(rows):
        ratio = pixels.peak[rows].mean(0) / pixels.ladder[rows].mean(0) - 1
        amplitude, width = _gaussian_fit(ratio, q2, scales)
        forward = pixels.ahead[rows].mean(0) / pixels.aside[rows].mean(0) - 1
        per_time = np.stack([amplitude, width, ratio[..., centre], forward])
        if over is None:
            return per_time.reshape(-1)
        means = [amplitude[over].mean(), ratio[..., centre][over].mean(), forward[over].mean()]
        return np.concatenate([per_time.reshape(-1), means])

    value, error = jackknife(statistic, np.arange(pixels.peak.shape[0]), blocks=blocks)
    shape = (4,) + pixels.peak.shape[1:-1]
    size = int(np.prod(shape))
    per, per_se = value[:size].reshape(shape), error[:size].reshape(shape)
    means = {}
    if over is not None:
        means = dict(over_amplitude=float(value[size]), over_amplitude_se=float(error[size]),
                     over_backward=float(value[size + 1]), over_backward_se=float(error[size + 1]),
                     over_forward=float(value[size + 2]), over_forward_se=float(error[size + 2]))
    return PeakProfile(q=pixels.q, ratio=pixels.peak.mean(0) / pixels.ladder.mean(0) - 1, amplitude=per[0],
                       amplitude_se=per_se[0], width=per[1], width_se=per_se[1], backward=per[2],
                       backward_se=per_se[2], forward=per[3], forward_se=per_se[3], **means)


class WidthLaw(eqx.Module):
    """The CBS peak width against the spreading of the same realizations (see :func:`width_law`).

    Attributes:
        width, width_se: (T,) s(t) of the profile fit (1 / lattice constant) and jackknife errors.
        x, x_se: (T,) X(t) = (<r^2>(t) - <r^2>(0)) / 4 - offset (lattice constants squared), "D t".
        scaled, scaled_se: (T,) s sqrt(2 X): 1 for a Gaussian Cooperon exp(-q^2 X) (NaN where X <= 0).
        exponent, exponent_se: slope of ln s against ln X over the times >= ``tmin`` (-1/2 for the diffusive
            Cooperon) and its jackknife error.
        amplitude, amplitude_se: mean of ``scaled`` over the same times and its jackknife error.
    """

    width: np.ndarray
    width_se: np.ndarray
    x: np.ndarray
    x_se: np.ndarray
    scaled: np.ndarray
    scaled_se: np.ndarray
    exponent: float
    exponent_se: float
    amplitude: float
    amplitude_se: float


def width_law(pixels: PeakPixels, spread, times, *, tmin: float, offset: float = 0.0, blocks: int = 32) -> WidthLaw:
    """The width law of the CBS peak: s(t) of :func:`peak_profile` against X(t) = (<r^2>(t) - <r^2>(0)) / 4 -
    ``offset`` from :func:`ensemble_spreading` run with the same keys (row r of ``spread`` and of ``pixels`` is
    the same disorder realization), fitted as s ~ X^exponent over ``times`` >= ``tmin``.

    Physics (docs/physics.md#momentum-backscattering): the crossed intensity at -k0 + q carries the phase
    q . (r_N - r_1) of its first and last scatterers, so the profile is exp(-q^2 D t_c), with D t_c = <|r_N -
    r_1|^2> / 4; a packet's spread also holds the first flight and the current one (mean square 2 l^2 each in
    2D), so the diffusive comparator is ``offset`` = l^2: s sqrt(2 X) = 1 and exponent -1/2. Errors: delete-a-block
    jackknife over realizations, the profile and the spreading of one realization deleted together.

    Args:
        pixels: :func:`peak_pixels` of distributions at ``times``, (R, T, P).
        spread: (R, T) <r^2> per realization (:func:`ensemble_spreading`, same keys and order).
        times: (T,) the times of both.
        tmin: first time of the fit (a few scattering times: the Cooperon is diffusive after that).
        offset: subtracted from Delta<r^2> / 4 (l^2; 0 gives the bare spreading).
        blocks: jackknife blocks (>= 2).
    """
    if not isinstance(pixels, PeakPixels):
        raise ValueError(f"pixels must be the PeakPixels of peak_pixels(...), got {type(pixels).__name__}.")
    spread = np.asarray(spread, float)
    times = np.asarray(times, float)
    count = pixels.peak.shape[0]
    if pixels.peak.ndim != 3 or times.shape != (pixels.peak.shape[1],):
        raise ValueError(f"pixels must hold (R, T, P) = one time axis matching times {times.shape}, got "
                         f"{pixels.peak.shape}.")
    if spread.shape != (count, times.size):
        raise ValueError(f"spread must have shape (R, T) = {(count, times.size)} (the same realizations as pixels), "
                         f"got {spread.shape}.")
    late = times >= tmin
    if late.sum() < 2:
        raise ValueError(f"tmin = {tmin!r} leaves {int(late.sum())} times (< 2) for the fit.")
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 2:
        raise ValueError(f"blocks must be an integer >= 2, got {blocks!r}.")
    q2, scales = _fit_grid(pixels.q)
    size = times.size

    def statistic(rows):
        ratio = pixels.peak[rows].mean(0) / pixels.ladder[rows].mean(0) - 1
        _, width = _gaussian_fit(ratio, q2, scales)
        mean = spread[rows].mean(0)
        x = (mean - mean[0]) / 4 - offset
        scaled = np.where(x > 0, width * np.sqrt(2 * np.where(x > 0, x, 1.0)), np.nan)
        if np.any(x[late] <= 0):
            slope = np.nan
        else:
            slope = np.polyfit(np.log(x[late]), np.log(width[late]), 1)[0]
        return np.concatenate([width, x, scaled, [slope, np.mean(scaled[late])]])

    value, error = jackknife(statistic, np.arange(count), blocks=blocks)
    return WidthLaw(width=value[:size], width_se=error[:size], x=value[size:2 * size], x_se=error[size:2 * size],
                    scaled=value[2 * size:3 * size], scaled_se=error[2 * size:3 * size], exponent=float(value[-2]),
                    exponent_se=float(error[-2]), amplitude=float(value[-1]), amplitude_se=float(error[-1]))
