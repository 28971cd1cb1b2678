"""Transfer-matrix (MacKinnon-Kramer) Lyapunov exponents and localization lengths of long disordered bars.

A quasi-1D sample (chain, strip or bar) of n orbitals per slice is grown slice by slice. With V_s = H[s+1, s]
(the library's hopping convention, ``docs/physics.md``) the Schroedinger equation of slice s,
V_{s-1} psi_{s-1} + H_s psi_s + V_s^+ psi_{s+1} = E psi_s, gives the transfer matrix

    (psi_{s+1}, psi_s) = T_s (psi_s, psi_{s-1}),     T_s = [[V_s^{+-1} (E - H_s), -V_s^{+-1} V_{s-1}], [1, 0]].

An orthonormal 2n x n frame is multiplied by the T_s and re-orthogonalized by a QR decomposition every
``qr_every`` slices; the logs of |diag R| accumulate to the n positive Lyapunov exponents
gamma_1 >= ... >= gamma_n > 0 (Benettin et al., Meccanica 15, 9 (1980); MacKinnon & Kramer, Z. Phys. B 53,
1 (1983); Kramer & MacKinnon, Rep. Prog. Phys. 56, 1469 (1993)). The other n exponents are -gamma_i (current
conservation). The localization length of the bar is lambda_M = 1 / gamma_n and the reduced localization
length is Lambda = lambda_M / M for a cross-section of width M (PHYSICS.md 3, 5).

Statistics: the slices are grouped into ``chunk``-slice batches (batch means). Each batch gives an estimate
of every exponent; their running mean and variance (Welford) give the estimate and its standard error. With
batches much longer than the localization length they are nearly independent. The run stops as soon as the
relative standard error of gamma_n is below ``rtol`` (checked between batches inside one
``lax.while_loop``, so a vmapped batch of parameters runs on device without host round-trips) or when the
sample's ``length`` is used up.

Disorder is random access: slice s uses exactly the on-site potential and SU(2) hoppings that
``draw_disorder(key, Sample(lattice, L), ...)`` gives at slice s, for any L > s (inter-slice hopping s is the
bond from slice s to s + 1). Each group of slices is drawn inside the scan from (key, slice index), so memory
is O(n^2) per realization whatever the length.

Derivatives: a long ``lax.scan``/``while_loop`` cannot be reverse-differentiated with O(n^2) memory, but the
exponents depend on only a few scalars (E, t, flux, rashba, W). Their Jacobian is computed in forward mode
(one tangent per differentiated scalar, alongside the primal run) and contracted with the tangents, which
is linear and so transposes: ``jax.grad``, ``jax.jvp`` and ``jax.jacfwd`` all work, with memory O(n^2).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .build import _bond_values, check_x64, checked_model
from .lattice import Sample
from .model import (
    _TAG_POTENTIAL,
    _TAG_SU2_INTER,
    _TAG_SU2_INTRA,
    _DISTRIBUTIONS,
    Model,
    _haar_su2,
    _real_array,
)

Distribution = Literal["box", "gaussian"]


class TransferState(eqx.Module):
    """Where a transfer-matrix run stopped: everything needed to continue it (``resume=``). Carries no
    derivatives.

    Attributes:
        frame: (2, m, s, n) orthonormal frame: rows (psi_s, psi_{s-1}) on m sites x s orbitals, n columns.
        previous_hop: (m, s, s) blocks of V_{s-1}, the hopping into the next slice to process.
        next_slice: index of the next slice to process.
        batches: number of completed statistics batches.
        mean: (n,) running mean over batches of the batch estimates of every exponent.
        m2: (n,) running sum of squared deviations (Welford).
    """

    frame: Array
    previous_hop: Array
    next_slice: Int[Array, ""]
    batches: Int[Array, ""]
    mean: Float[Array, " n"]
    m2: Float[Array, " n"]


class LyapunovSpectrum(eqx.Module):
    """The positive half of the Lyapunov spectrum of a long bar, with statistical errors.

    Attributes:
        exponents: (n,) exponents gamma_1 >= ... >= gamma_n >= 0 in inverse lattice constants (1/a), in the
            order the QR columns give them (descending up to statistical noise; Kramers pairs for the
            symplectic class). n = orbitals per slice.
        stderr: (n,) standard errors (batch means).
        slices: number of slices in the statistics (warm-up excluded).
        converged: whether the relative error of gamma_n reached ``rtol``.
        state: :class:`TransferState`, to continue the same realization with ``resume=``.
    """

    exponents: Float[Array, " n"]
    stderr: Float[Array, " n"]
    slices: Int[Array, ""]
    converged: Bool[Array, ""]
    state: TransferState

    @property
    def localization_length(self):
        """lambda_M = 1 / gamma_n (lattice constants): the decay length of the most slowly decaying channel."""
        return 1.0 / self.exponents[..., -1]

    @property
    def localization_length_stderr(self):
        """Standard error of lambda_M, sigma_gamma / gamma^2 (first order)."""
        return self.stderr[..., -1] / self.exponents[..., -1] ** 2

    @property
    def relative_error(self):
        """sigma(gamma_n) / gamma_n, also the relative error of lambda_M and Lambda."""
        return self.stderr[..., -1] / self.exponents[..., -1]


# ---------------------------------------------------------------------------------------------------------
# Static description of a slice: neighbour tables for the sparse intra-slice Hamiltonian.


class _Geometry(NamedTuple):
    """Static numpy tables of a slice of a chain, strip or bar, whose sites form the grid ``cross_section``
    (C order). Intra-slice bonds join r to r + e_a along a transverse axis a (wrapping round for periodic
    boundaries); ``bonds[a]`` (cross_section) holds the index of the bond from r to r + e_a in the lattice's
    bond list, or B (a zero slot) where there is none."""

    grid: tuple[int, ...]
    bonds: tuple[tuple[int, np.ndarray], ...]  # (axis, bond index on the grid) for axes that have bonds
    labels: np.ndarray  # (m, k) transverse labels (disorder keys)
    pair_labels: np.ndarray  # (B, 2k) labels of the intra bonds' ends


def _geometry(sample: Sample) -> _Geometry:
    lat = sample.lattice
    grid = tuple(lat.cross_section)
    labels = np.asarray(lat.labels, np.int64).reshape(lat.sites, -1)
    if labels.shape[1] != len(grid) or not np.array_equal(labels, np.array(list(np.ndindex(*grid))).reshape(labels.shape)):
        raise ValueError(f"the transfer matrix needs a chain, strip or bar lattice; got {lat.name}.")
    nb = len(lat.intra_bonds)
    bonds = [np.full(grid, nb, np.int32) for _ in grid]
    for b, ((i, j), vec) in enumerate(zip(lat.intra_bonds, lat.intra_vectors)):
        axis = int(np.argmax(np.abs(vec[1:1 + len(grid)])))
        step = np.zeros(len(grid), np.int64)
        step[axis] = 1
        target = (labels[i] + step) % np.array(grid)
        if vec[1 + axis] != 1.0 or not np.array_equal(target, labels[j]):
            raise ValueError(f"the transfer matrix needs a chain, strip or bar lattice; got {lat.name}.")
        bonds[axis][tuple(labels[i])] = b
    ends = np.asarray(lat.intra_bonds, np.int64).reshape(-1, 2)
    labels32 = labels.astype(np.uint32)
    pair_labels = np.concatenate([labels32[ends[:, 0]], labels32[ends[:, 1]]], axis=1)
    with_bonds = tuple((a, b) for a, b in enumerate(bonds) if np.any(b < nb))
    return _Geometry(grid=grid, bonds=with_bonds, labels=labels32, pair_labels=pair_labels)


# ---------------------------------------------------------------------------------------------------------
# Random access disorder: the fold_in scheme of _model._site_keys / _bond_keys, one slice at a time.


def _fold_labels(key, labels):
    for c in range(labels.shape[0]):
        key = jax.random.fold_in(key, labels[c])
    return key


def _slice_potential(key, s, geo: _Geometry, distribution: str):
    """Unit draws (m,) of slice s: uniform - 1/2 (box) or standard normal, as ``anderson_potential``."""
    ks = jax.random.fold_in(jax.random.fold_in(key, _TAG_POTENTIAL), s)
    keys = jax.vmap(lambda lab: _fold_labels(ks, lab))(jnp.asarray(geo.labels))
    dtype = jnp.result_type(float)
    if distribution == "box":
        return jax.vmap(lambda k: jax.random.uniform(k, (), dtype) - 0.5)(keys)
    return jax.vmap(lambda k: jax.random.normal(k, (), dtype))(keys)


def _slice_rotations(key, s, tag, pair_labels):
    """Haar SU(2) matrices (B, 2, 2) of the bonds of slice s, as ``su2_rotations``."""
    ks = jax.random.fold_in(jax.random.fold_in(key, tag), s)
    keys = jax.vmap(lambda lab: _fold_labels(ks, lab))(jnp.asarray(pair_labels))
    return jax.vmap(_haar_su2)(keys)


# ---------------------------------------------------------------------------------------------------------
# The kernel: one realization, one parameter set.


class _Config(eqx.Module):
    sample: Sample = eqx.field(static=True)
    distribution: str = eqx.field(static=True)
    su2: bool = eqx.field(static=True)
    adaptive: bool = eqx.field(static=True)  # stop at rtol (a traced value, so sweeps do not recompile)
    chunk: int = eqx.field(static=True)
    warmup: int = eqx.field(static=True)
    qr_every: int = eqx.field(static=True)
    min_batches: int = eqx.field(static=True)


def _is_complex(model: Model, su2: bool) -> bool:
    """Real arithmetic (4x cheaper) unless a term makes H complex."""
    return su2 or model.flux is not None or model.rashba is not None


def _sites_apply(blocks, x):
    """Site-diagonal blocks (*grid, s, s) times x (*grid, s, k), as broadcasts that XLA fuses (a batched
    dot of 2 x 2 blocks is much slower on CPU)."""
    if blocks.shape[-1] == 1:
        return blocks[..., :1] * x
    return jnp.sum(blocks[..., :, :, None] * x[..., None, :, :], axis=-2)


def _block_inverse_dagger(blocks):
    """(V^+)^{-1} for site-diagonal V (*grid, s, s)."""
    dag = jnp.conj(jnp.swapaxes(blocks, -1, -2))
    if blocks.shape[-1] == 1:
        return 1.0 / dag
    return jnp.linalg.inv(dag)


def _initial_state(cfg: _Config, dtype, clean_inter) -> TransferState:
    sample = cfg.sample
    grid, s, n = tuple(sample.lattice.cross_section), sample.orbitals, sample.slice_size
    eye = jnp.eye(n, dtype=dtype).reshape(*grid, s, n)
    frame = jnp.stack([eye, jnp.zeros_like(eye)])  # psi_0 = 1, psi_{-1} = 0
    real = jnp.result_type(float)
    return TransferState(
        frame=frame, previous_hop=clean_inter, next_slice=jnp.asarray(0, jnp.int64),
        batches=jnp.asarray(0, jnp.int32), mean=jnp.zeros(n, real), m2=jnp.zeros(n, real),
    )


def _run(params, *, key, rtol, resume: TransferState | None, cfg: _Config):
    """Primal run: ((exponents, stderr), final state)."""
    model, strength = params
    sample = cfg.sample
    lat = sample.lattice
    s, n = sample.orbitals, sample.slice_size
    geo = _geometry(sample)
    grid = geo.grid
    complex_ = _is_complex(model, cfg.su2)
    dtype = jnp.result_type(float, 1j) if complex_ else jnp.result_type(float)
    cast = (lambda a: a.astype(dtype)) if complex_ else (lambda a: jnp.real(a).astype(dtype))

    def on_grid(values):  # (m, ...) in site order -> (*grid, ...)
        return values.reshape(*grid, *values.shape[1:])

    def axis_bonds(intra):
        """Per transverse axis a, the bond blocks h_a(r) = H[r + e_a, r] on the grid (zero where absent)."""
        ext = jnp.concatenate([intra, jnp.zeros((1, s, s), dtype)])
        return tuple(ext[jnp.asarray(b)] for _, b in geo.bonds)

    def clean_parts():
        inter = on_grid(cast(_bond_values(model, sample, lat.inter_bonds, lat.inter_vectors)))  # V[r, r]
        intra = (cast(_bond_values(model, sample, lat.intra_bonds, lat.intra_vectors)) if lat.intra_bonds
                 else jnp.zeros((0, s, s), dtype))
        return axis_bonds(intra), inter, _block_inverse_dagger(inter)

    clean = clean_parts()

    def slice_data(index):
        """On-site potential (*grid) and, for the SU(2) model, the random hoppings of slice ``index``."""
        potential = on_grid(strength * _slice_potential(key, index, geo, cfg.distribution))
        if not cfg.su2:
            return potential, None
        intra = jnp.zeros((0, 2, 2), dtype)
        if lat.intra_bonds:
            rot = _slice_rotations(key, index, _TAG_SU2_INTRA, geo.pair_labels)
            intra = cast(_bond_values(model, sample, lat.intra_bonds, lat.intra_vectors, rot))
        rot = _slice_rotations(key, index, _TAG_SU2_INTER, np.concatenate([geo.labels, geo.labels], axis=1))
        inter = on_grid(cast(_bond_values(model, sample, lat.inter_bonds, lat.inter_vectors, rot)))
        return potential, (axis_bonds(intra), inter, _block_inverse_dagger(inter))

    def hop_sum(bonds, x):
        """Intra-slice hopping applied to x: sum_a h_a(r - e_a) x(r - e_a) + h_a(r)^+ x(r + e_a). Shifts by
        roll (cheap, and GPU-friendly), the wrapped-round terms vanish through h_a = 0 for hard walls."""
        out = jnp.zeros_like(x)
        for (axis, _), h in zip(geo.bonds, bonds):
            out = out + jnp.roll(_sites_apply(h, x), 1, axis=axis)
            out = out + _sites_apply(jnp.conj(jnp.swapaxes(h, -1, -2)), jnp.roll(x, -1, axis=axis))
        return out

    def step(carry, data):
        x, y, v_prev = carry
        potential, hops = data
        bonds, v, v_inv = clean if hops is None else hops
        onsite = (model.energy - potential).astype(dtype)[..., None, None]
        z = onsite * x - hop_sum(bonds, x) - _sites_apply(v_prev, y)
        return (_sites_apply(v_inv, z), x, v), None

    q = cfg.qr_every

    def group(carry, start):
        """``qr_every`` transfer steps, then QR: returns log |diag R| (n,)."""
        x, y, v = carry
        data = jax.vmap(slice_data)(start + jnp.arange(q, dtype=start.dtype))
        (x, y, v), _ = jax.lax.scan(step, (x, y, v), data)
        qm, r = jnp.linalg.qr(jnp.concatenate([x.reshape(n, n), y.reshape(n, n)]))
        logs = jnp.log(jnp.abs(jnp.diagonal(r)))
        return (qm[:n].reshape(x.shape), qm[n:].reshape(y.shape), v), logs

    def advance(state: TransferState, slices: int):
        starts = state.next_slice + q * jnp.arange(slices // q, dtype=state.next_slice.dtype)
        carry = (state.frame[0], state.frame[1], state.previous_hop)
        (x, y, v), logs = jax.lax.scan(group, carry, starts)
        new = (jnp.stack([x, y]), v, state.next_slice + slices)
        return eqx.tree_at(lambda t: (t.frame, t.previous_hop, t.next_slice), state, new), \
            jnp.sum(logs, axis=0) / slices

    def batch(state: TransferState) -> TransferState:
        state, estimate = advance(state, cfg.chunk)
        count = state.batches + 1
        delta = estimate - state.mean
        mean = state.mean + delta / count
        m2 = state.m2 + delta * (estimate - mean)
        return eqx.tree_at(lambda t: (t.batches, t.mean, t.m2), state, (count, mean, m2))

    def keep_going(state: TransferState):
        room = state.next_slice + cfg.chunk <= sample.length
        return room & ~_converged(state, rtol, cfg)

    if resume is None:
        state = _initial_state(cfg, dtype, clean[1])
        if cfg.warmup:
            state, _ = advance(state, cfg.warmup)
    else:
        state = resume
    state = jax.lax.while_loop(keep_going, batch, state)
    return (state.mean, _stderr(state)), state


def _stderr(state: TransferState):
    """Standard error of the mean of the batch estimates (zero before two batches)."""
    count = jnp.maximum(state.batches, 2)
    return jnp.sqrt(state.m2 / (count - 1) / count)


def _converged(state: TransferState, rtol, cfg: _Config):
    if not cfg.adaptive:
        return jnp.asarray(False)
    return (state.batches >= cfg.min_batches) & (_stderr(state)[-1] <= rtol * jnp.abs(state.mean[-1]))


@eqx.filter_custom_jvp
def _spectrum(params, *, key, rtol, resume, cfg):
    return _run(params, key=key, rtol=rtol, resume=resume, cfg=cfg)


@_spectrum.def_jvp
def _spectrum_jvp(primals, tangents, *, key, rtol, resume, cfg):
    # Forward-mode Jacobian with respect to the differentiated scalars only, then a linear contraction with
    # the tangents: linear in the tangents, hence transposable (reverse mode) with O(n^2) memory.
    (params,), (tparams,) = primals, tangents
    if resume is not None:
        raise ValueError(
            "derivatives of a resumed transfer-matrix run are not supported (resume= carries no derivatives); "
            "differentiate a run from the start instead."
        )
    leaves, treedef = jax.tree.flatten(params)
    tleaves = treedef.flatten_up_to(tparams) if tparams is not None else [None] * len(leaves)
    active = [i for i, t in enumerate(tleaves) if t is not None]
    if not active:
        out, state = _run(params, key=key, rtol=rtol, resume=None, cfg=cfg)
        return (out, state), jax.tree.map(lambda _: None, (out, state))

    def f(values):
        new = list(leaves)
        for i, v in zip(active, values):
            new[i] = v
        out, state = _run(jax.tree.unflatten(treedef, new), key=key, rtol=rtol, resume=None, cfg=cfg)
        return out, (out, state)

    values = tuple(leaves[i] for i in active)
    jac, (out, state) = jax.jacfwd(f, has_aux=True)(values)
    # jac[o][a] = d out[o] / d value[a]
    t_out = tuple(sum(jac_o[a] * tleaves[i] for a, i in enumerate(active)) for jac_o in jac)
    return (out, state), (t_out, jax.tree.map(lambda _: None, state))


# ---------------------------------------------------------------------------------------------------------
# Public entry points.


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check(sample, model, strength, distribution, su2, rtol, chunk, warmup, qr_every, min_batches, resume):
    check_x64()
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    if not isinstance(model, Model):
        raise ValueError(f"model must be a difftransport Model, got {type(model).__name__}.")
    lat = sample.lattice
    if not lat.site_diagonal_hopping:
        raise ValueError(
            f"the transfer matrix needs site-diagonal inter-slice hopping (chain, strip, bar); "
            f"{lat.name} has a different structure."
        )
    for name in ("energy", "hopping", "flux", "rashba"):
        value = getattr(model, name)
        if value is not None and jnp.shape(value) != ():
            raise ValueError(f"model.{name} must be a scalar, got shape {jnp.shape(value)}; sweep with jax.vmap.")
    unsupported = [n for n in ("exchange", "tau_phi", "mass") if getattr(model, n) is not None]
    if unsupported:
        raise ValueError(
            f"the transfer matrix does not support model.{', model.'.join(unsupported)}; "
            "allowed terms: energy, hopping, flux, rashba (and su2=True)."
        )
    if model.rashba is not None and not sample.spinful:
        raise ValueError("model.rashba acts on spin, but the sample is spinless; use Sample(..., spinful=True).")
    if su2 and not sample.spinful:
        raise ValueError("su2=True needs a spinful sample (Sample(..., spinful=True)).")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    if jnp.shape(strength) != ():
        raise ValueError(f"strength must be a scalar, got shape {jnp.shape(strength)}; sweep with jax.vmap.")
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0):
        raise ValueError(f"rtol must be a positive number or None, got {rtol!r}.")
    qr_every = _positive_int("qr_every", qr_every)
    chunk = _positive_int("chunk", chunk)
    min_batches = _positive_int("min_batches", min_batches)
    if min_batches < 2:
        raise ValueError(f"min_batches must be >= 2 (an error needs two batches), got {min_batches}.")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}.")
    if chunk % qr_every or warmup % qr_every:
        raise ValueError(
            f"chunk ({chunk}) and warmup ({warmup}) must be multiples of qr_every ({qr_every})."
        )
    need = (0 if resume is not None else warmup) + 2 * chunk
    if resume is None and sample.length < need:
        raise ValueError(
            f"sample.length ({sample.length}) is the largest number of slices; it must be at least "
            f"warmup + 2 * chunk = {need}."
        )
    if resume is not None and not isinstance(resume, LyapunovSpectrum):
        raise ValueError(f"resume must be a LyapunovSpectrum or None, got {type(resume).__name__}.")
    return _Config(
        sample=sample, distribution=distribution, su2=bool(su2), adaptive=rtol is not None,
        chunk=chunk, warmup=int(warmup), qr_every=qr_every, min_batches=min_batches,
    )


@eqx.filter_jit
def _lyapunov(model, strength, key, rtol, resume, cfg):
    model = checked_model(cfg.sample, model)
    strength = eqx.error_if(
        strength, ~jnp.isfinite(strength) | (strength < 0), "strength (disorder W) must be finite and >= 0."
    )
    (mean, err), state = _spectrum((model, strength), key=key, rtol=rtol,
                                   resume=None if resume is None else resume.state, cfg=cfg)
    return LyapunovSpectrum(
        exponents=mean, stderr=err, slices=state.batches.astype(state.next_slice.dtype) * cfg.chunk,
        converged=_converged(state, rtol, cfg), state=state,
    )


def lyapunov_exponents(
    sample: Sample,
    model: Model,
    key,
    *,
    strength=0.0,
    distribution: Distribution = "box",
    su2: bool = False,
    rtol: float | None = 1e-2,
    chunk: int = 1024,
    warmup: int = 1024,
    qr_every: int = 8,
    min_batches: int = 8,
    resume: LyapunovSpectrum | None = None,
) -> LyapunovSpectrum:
    """Positive Lyapunov exponents of a long disordered bar by the MacKinnon-Kramer transfer-matrix method.

    The bar is ``sample.lattice`` (``chain()``, ``strip(M, boundary=...)`` or ``bar(M, M, boundary=...)``),
    spinless or spinful, with the Hamiltonian conventions of :func:`build_hamiltonian` (hopping -t, Landau-gauge
    Peierls phase exp(-2 pi i flux y) on x bonds, Rashba, SU(2) random hopping -t R). ``sample.length`` is the
    largest number of slices to use (warm-up included); with ``rtol`` the run usually stops earlier.

    Args:
        sample: geometry; ``length`` is the slice budget.
        model: energy E, hopping t, flux (flux quanta h/e per plaquette), rashba; all differentiable.
            ``exchange``, ``tau_phi`` and ``mass`` are not supported.
        key: PRNG key of the realization (the same fold_in scheme as :func:`draw_disorder`).
        strength: disorder W (box: uniform in [-W/2, W/2]; gaussian: standard deviation W); differentiable.
        distribution: ``"box"`` or ``"gaussian"``.
        su2: SU(2) random hopping (Asada-Slevin-Ohtsuki model; spinful samples).
        rtol: target relative standard error of the smallest exponent gamma_n; ``None`` runs the whole
            ``sample.length``.
        chunk: slices per statistics batch (a multiple of ``qr_every``); should be many localization lengths.
        warmup: slices discarded at the start (a multiple of ``qr_every``; ignored with ``resume``).
        qr_every: slices between QR re-orthogonalizations. exp((gamma_1 - gamma_n) qr_every) must stay well
            below 1e16 (8 is safe for 3D Anderson bars at W ~ 16; larger for weak disorder).
        min_batches: batches needed before ``rtol`` can stop the run (>= 2).
        resume: a previous result for the same sample, model and key, to continue the same realization
            (e.g. with a smaller ``rtol`` and larger ``sample.length``). Not differentiable.

    Returns:
        A :class:`LyapunovSpectrum`: exponents in 1/a (descending), standard errors, slices used, whether
        ``rtol`` was reached, and the state to resume from. ``.localization_length`` is lambda_M = 1/gamma_n.

    Units and conventions: lengths in lattice constants a, energies in units of the hopping. vmap over
    energies, strengths, flux or keys; batch over widths (static) with a Python loop. Derivatives by forward
    mode inside (see the module docstring); the error estimate is differentiated too.

    References: MacKinnon & Kramer, PRL 47, 1546 (1981); Z. Phys. B 53, 1 (1983); Kramer & MacKinnon, Rep.
    Prog. Phys. 56, 1469 (1993); Slevin & Ohtsuki, PRL 82, 382 (1999).
    """
    cfg = _check(sample, model, strength, distribution, su2, rtol, chunk, warmup, qr_every, min_batches, resume)
    rtol = jnp.asarray(jnp.inf if rtol is None else rtol, jnp.result_type(float))
    return _lyapunov(model, _real_array(strength), key, rtol, resume, cfg)


def localization_length(sample: Sample, model: Model, key, **kwargs):
    """Localization length lambda_M = 1 / gamma_n of a long bar, in lattice constants (a scalar array).

    gamma_n is the smallest positive Lyapunov exponent of :func:`lyapunov_exponents` (same arguments; see
    there for conventions). For a bar of width M the reduced localization length is Lambda = lambda_M / M.
    In 1D (``chain()``) it is the inverse Lyapunov exponent xi = 1/gamma with <ln T> = -2 L / xi.
    Differentiable with respect to ``model`` and ``strength`` (``jax.grad`` works).
    """
    return lyapunov_exponents(sample, model, key, **kwargs).localization_length
