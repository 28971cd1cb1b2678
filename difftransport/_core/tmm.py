"""Transfer-matrix (MacKinnon-Kramer) Lyapunov exponents and localization lengths of long disordered bars.

A quasi-1D sample of n orbitals per slice, on any lattice of the library (chain, strip, bar, honeycomb ribbons), is
grown slice by slice. Its slices are those every solver reads: on-site blocks and bond values from ``build.py``
(potential, mass, Peierls phases, Rashba, SU(2) bonds), disorder from ``model.py``. With V_s = H[s+1, s]
(``docs/physics.md#conventions``) the Schroedinger equation of slice s,
V_{s-1} psi_{s-1} + H_s psi_s + V_s^+ psi_{s+1} = E psi_s, is iterated in one of two forms.

Transfer form, when every V_s is invertible (site-diagonal hopping: chains, strips, bars):

    (psi_{s+1}, psi_s) = T_s (psi_s, psi_{s-1}),     T_s = [[V_s^{+-1} (E - H_s), -V_s^{+-1} V_{s-1}], [1, 0]].

An orthonormal 2n x n frame is multiplied by the T_s and re-orthogonalized by a QR decomposition every
``qr_every`` slices; the logs of |diag R| accumulate to the n positive Lyapunov exponents
gamma_1 >= ... >= gamma_n > 0 (Benettin et al., Meccanica 15, 9 (1980); MacKinnon & Kramer, Z. Phys. B 53,
1 (1983); Kramer & MacKinnon, Rep. Prog. Phys. 56, 1469 (1993)). The other n exponents are -gamma_i (current
conservation). Inside a statistics batch the frame is renormalized by LU instead (X = P^T L U, the frame becomes
P^T L and log |U_ii| accumulate), at a quarter of the flops; the batch closes with a QR, which makes its sums those
of QR renormalizations throughout, to rounding (docs/physics.md#renormalizing-by-lu).

Green's-function form, for any V_s (honeycomb ribbons: only some sites bond to the next cell, so V_s has rank
r < n and no inverse). The left-connected Green's function g_s of slices 0..s and its block G_{s0},

    g_s = (E - H_s - V_{s-1} g_{s-1} V_{s-1}^+)^{-1},      G_{s0} = g_s V_{s-1} G_{s-1,0},

need no inverse of V (the recursive Green's function of MacKinnon & Kramer, PRL 47, 1546 (1981) and Z. Phys. B
53, 1 (1983), who take lambda_M from ln |G_{0N}|). The r nonzero singular values of G_{s0} decay as
exp(-gamma_i s), with gamma_1 >= ... >= gamma_r > 0 the positive exponents of the 2r x 2r transfer matrix of the
sites that couple forward (Pichard & Andre, Europhys. Lett. 2, 477 (1986)): an orthonormal n x r frame multiplied
by the g_s V_{s-1} and re-orthogonalized every ``qr_every`` slices gives them, -log |R_ii| (slowest first).
It costs an n x n inverse per slice (the transfer form: sparse products).

The localization length of the bar is lambda_M = 1 / gamma_min and the reduced localization length is
Lambda = lambda_M / M for a cross-section of width M (docs/physics.md#anderson-critical). Exponents are per
lattice constant (per slice divided by ``lattice.period``).

Statistics: the slices are grouped into ``chunk``-slice batches (batch means). Each batch gives an estimate
of every exponent; their running mean and variance (Welford) give the estimate and its standard error. With
batches much longer than the localization length they are nearly independent. The run stops as soon as the
relative standard error of gamma_n is below ``rtol`` (checked between batches inside one
``lax.while_loop``, so a vmapped batch of parameters runs on device without host round-trips) or when the
sample's ``length`` is used up.

Disorder is random access: slice s uses exactly the on-site potential and SU(2) hoppings that
``draw_disorder(key, Sample(lattice, L), ...)`` gives at slice s, for any L > s (inter-slice hopping s is the
bond from slice s to s + 1): each group of ``qr_every`` slices is drawn inside the scan by ``anderson_potential``
and ``su2_rotations`` with ``first_slice``, so memory is O(n^2) per realization whatever the length.

Derivatives: a long ``lax.scan``/``while_loop`` cannot be reverse-differentiated with O(n^2) memory, but the
exponents depend on only a few scalars (E, t, flux, rashba, W). Their Jacobian is computed in forward mode
(one tangent per differentiated scalar, alongside the primal run) and contracted with the tangents, which
is linear and so transposes: ``jax.grad``, ``jax.jvp`` and ``jax.jacfwd`` all work, with memory O(n^2).
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .build import _bond_values, _site_blocks, check_inputs, checked_model
from .hamiltonian import (bond_stencil, lead_factor, scatter_bonds, scatter_hop, site_apply, stencil_apply,
                          stencil_blocks)
from .lattice import Sample
from .linalg import lu_basis
from .model import _DISTRIBUTIONS, Disorder, Model, _real_array, anderson_potential, su2_rotations
from .stats import Estimate

Distribution = Literal["box", "gaussian"]


class TransferState(eqx.Module):
    """Where a transfer-matrix run stopped: everything needed to continue it (``resume=``). Carries no
    derivatives.

    Attributes:
        frame: (n, k + n): the propagated orthonormal frame x (n orbitals, k columns, one per exponent) and
            y (n, n): psi_{s-1} in the transfer form (x = psi_s), g_{s-1} in the Green's-function form.
        previous_hop: V_{s-1}, the hopping into the next slice to process: (m, s, s) site blocks in the
            transfer form, (n, n) in the Green's-function form.
        next_slice: index of the next slice to process.
        batches: number of completed statistics batches.
        mean: (k,) running mean over batches of the batch estimates of every exponent (per slice).
        m2: (k,) running sum of squared deviations (Welford).
    """

    frame: Array
    previous_hop: Array
    next_slice: Int[Array, ""]
    batches: Int[Array, ""]
    mean: Float[Array, " n"]
    m2: Float[Array, " n"]


class LyapunovSpectrum(Estimate, eqx.Module):
    """The positive half of the Lyapunov spectrum of a long bar, with statistical errors.

    Attributes:
        exponents: (n,) exponents gamma_1 >= ... >= gamma_n >= 0 in inverse lattice constants (1/a), in the
            order the QR columns give them (descending up to statistical noise; Kramers pairs for the
            symplectic class). n = orbitals per slice on chains, strips and bars; in general the rank r of the
            inter-slice hopping (the orbitals that bond to the next slice; see the module docstring).
        stderr: (n,) standard errors (batch means).
        slices: number of slices in the statistics (warm-up excluded).
        converged: whether the relative error of gamma_n reached ``rtol``.
        state: :class:`TransferState`, to continue the same realization with ``resume=``.

    An :class:`~difftransport.stats.Estimate` of ("gamma_1", ..., "gamma_n") with a diagonal covariance
    (stderr^2); no fit, so ``chi2`` and ``dof`` are None.
    """

    exponents: Float[Array, " n"]
    stderr: Float[Array, " n"]
    slices: Int[Array, ""]
    converged: Bool[Array, ""]
    state: TransferState
    chi2 = dof = None
    names = property(lambda self: tuple(f"gamma_{i + 1}" for i in range(self.exponents.shape[-1])))
    values = property(lambda self: self.exponents)
    covariance = property(lambda self: self.stderr[..., None, :] ** 2 * jnp.eye(self.exponents.shape[-1]))

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

    @property
    def transfer(self) -> bool:
        """The transfer form (V_s invertible: site-diagonal hopping), else the Green's-function form."""
        return self.sample.lattice.site_diagonal_hopping


def _is_complex(model: Model, su2: bool) -> bool:
    """Real arithmetic (4x cheaper) unless a term makes H complex."""
    return su2 or model.flux is not None or model.rashba is not None


def _block_inverse_dagger(blocks):
    """(V^+)^{-1} for site-diagonal V (m, s, s)."""
    dag = jnp.conj(jnp.swapaxes(blocks, -1, -2))
    if blocks.shape[-1] == 1:
        return 1.0 / dag
    return jnp.linalg.inv(dag)


def _initial_state(cfg: _Config, clean_inter) -> TransferState:
    """psi_0 = 1, psi_{-1} = 0 (transfer form); g_{-1} = 0 and X_{-1} an orthonormal basis of the r directions
    that V_{-1} propagates (Green's-function form)."""
    sample = cfg.sample
    lat, n, dtype = sample.lattice, sample.slice_size, clean_inter.dtype
    if cfg.transfer:
        frame, k = jnp.concatenate([jnp.eye(n, dtype=dtype), jnp.zeros((n, n), dtype)], axis=1), n
    else:
        factor = lead_factor(lat.inter_bonds, lat.sites, sample.orbitals)
        basis = jnp.linalg.qr(factor.factors(clean_inter)[1])[0]
        frame, k = jnp.concatenate([basis, jnp.zeros((n, n), dtype)], axis=1), factor.rank
    real = jnp.result_type(float)
    return TransferState(
        frame=frame, previous_hop=clean_inter, next_slice=jnp.asarray(0, jnp.int64),
        batches=jnp.asarray(0, jnp.int32), mean=jnp.zeros(k, real), m2=jnp.zeros(k, real),
    )


def _run(params, *, key, rtol, resume: TransferState | None, cfg: _Config):
    """Primal run: ((exponents per slice, stderr), final state)."""
    model, strength = params
    sample = cfg.sample
    lat, q = sample.lattice, cfg.qr_every
    m, s, n = lat.sites, sample.orbitals, sample.slice_size
    complex_ = _is_complex(model, cfg.su2)
    dtype = jnp.result_type(float, 1j) if complex_ else jnp.result_type(float)
    cast = (lambda a: a.astype(dtype)) if complex_ else (lambda a: jnp.real(a).astype(dtype))
    order = np.argsort([i for i, _ in lat.inter_bonds])  # site-diagonal V: its blocks in site order

    def hoppings(rotations=(None, None)):
        """The builder's bond values, prepared for a step: the intra-slice block H_s - diag (n, n) and V_s (site
        blocks and (V_s^+)^-1 in the transfer form, (n, n) in the Green's-function form)."""
        intra = cast(_bond_values(model, sample, lat.intra_bonds, lat.intra_vectors, rotations[0]))
        inter = cast(_bond_values(model, sample, lat.inter_bonds, lat.inter_vectors, rotations[1]))
        if cfg.transfer:
            return stencil_blocks(stencil, intra), inter[order], _block_inverse_dagger(inter[order])
        return scatter_bonds(intra, lat.intra_bonds, m), scatter_hop(inter, lat.inter_bonds, m)

    stencil = bond_stencil(lat.intra_bonds, m)

    clean = hoppings()

    def slice_data(start):
        """E - (on-site blocks) (q, n) and, with SU(2) disorder, the hoppings of slices [start, start + q): the
        builder's blocks of the realization that ``draw_disorder(key, Sample(lattice, L))`` has there."""
        window = Sample(lat, q, spinful=sample.spinful)
        potential = anderson_potential(key, window, strength, distribution=cfg.distribution, first_slice=start)
        site = cast(_site_blocks(model, window, Disorder(potential=potential)))[..., 0, 0]  # multiples of 1
        onsite = jnp.repeat(model.energy - site, s, axis=-1).astype(dtype)
        if not cfg.su2:
            return onsite, None
        intra, inter = su2_rotations(key, Sample(lat, q + 1, spinful=True), first_slice=start)
        return onsite, jax.vmap(lambda a, b: hoppings((a, b)))(intra[:q], inter)

    def step(carry, data):
        """Transfer form: (x, y) = (psi_s, psi_{s-1}) -> (psi_{s+1}, psi_s). Green's-function form: (x, y) =
        (X_{s-1}, g_{s-1}) -> (X_s, g_s)."""
        x, y, v_prev = carry
        onsite, hops = data
        h, v, *v_inv = clean if hops is None else hops
        if cfg.transfer:
            z = onsite[:, None] * x - stencil_apply(stencil[0], h, x) - site_apply(v_prev, y)
            return (site_apply(v_inv[0], z), x, v), None
        g = jnp.linalg.inv(jnp.diag(onsite) - h - v_prev @ y @ jnp.conj(v_prev.T))
        return (g @ (v_prev @ x), g, v), None

    def group(carry, start, factor=jnp.linalg.qr):
        """``qr_every`` steps, then a renormalization of the frame by ``factor`` (QR, or LU in the transfer form):
        returns the exponents' sums over the group (k,)."""
        (x, y, v), _ = jax.lax.scan(step, carry, slice_data(start))
        if cfg.transfer:
            basis, upper = factor(jnp.concatenate([x, y]))
            return (basis[:n], basis[n:], v), jnp.log(jnp.abs(jnp.diagonal(upper)))
        x, r = jnp.linalg.qr(x)  # G_{s1} decays as exp(-gamma s): slowest (gamma_r) first
        return (x, y, v), -jnp.log(jnp.abs(jnp.diagonal(r)))[::-1]

    def advance(state: TransferState, slices: int):
        k = state.mean.shape[-1]
        starts = state.next_slice + q * jnp.arange(slices // q, dtype=state.next_slice.dtype)
        carry = (state.frame[:, :k], state.frame[:, k:], state.previous_hop)
        # LU renormalizations inside, one QR at the end: the frame is orthonormal again, and the sums over these
        # slices are those of QR renormalizations throughout, to rounding (the LU frames' volumes telescope)
        carry, logs = jax.lax.scan(lambda c, s: group(c, s, lu_basis), carry, starts[:-1])
        (x, y, v), last = group(carry, starts[-1])
        new = (jnp.concatenate([x, y], axis=1), v, state.next_slice + slices)
        return eqx.tree_at(lambda t: (t.frame, t.previous_hop, t.next_slice), state, new), \
            (jnp.sum(logs, axis=0) + last) / slices

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
        state = _initial_state(cfg, clean[1])
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
    unsupported = [n for n in ("exchange", "tau_phi") if getattr(model, n, None) is not None]
    if unsupported:
        raise ValueError(
            f"the transfer matrix does not support model.{', model.'.join(unsupported)}; "
            "allowed terms: energy, hopping, flux, rashba, mass (and su2=True)."
        )
    check_inputs(sample, model, None)  # types, scalar parameters, spin terms on spinless samples, mass
    if sample.periodic:
        raise ValueError("the transfer matrix needs an open sample (periodic=False): it grows the bar slice by slice.")
    if sample.field_region != "everywhere":
        raise ValueError("the transfer matrix grows the bar slice by slice: it needs field_region='everywhere'.")
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
    period = cfg.sample.lattice.period  # exponents per slice -> per lattice constant
    return LyapunovSpectrum(
        exponents=mean / period, stderr=err / period, slices=state.batches.astype(state.next_slice.dtype) * cfg.chunk,
        converged=_converged(state, rtol, cfg), state=state,
    )


def lyapunov_exponents(
    key,
    sample: Sample,
    model: Model,
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

    The bar is ``sample.lattice``, any lattice of the library (``chain()``, ``strip``, ``bar``, ``zigzag_ribbon``,
    ``armchair_ribbon``), spinless or spinful, open (``periodic=False``), with the Hamiltonian of
    :func:`build_hamiltonian` (hopping -t, Landau-gauge Peierls phases on x bonds, Rashba, staggered mass, SU(2)
    random hopping -t R). ``sample.length`` is the largest number of slices to use (warm-up included); with
    ``rtol`` the run usually stops earlier. Slice s carries the disorder of ``draw_disorder(key, sample)``.

    Args:
        key: PRNG key of the realization (the same fold_in scheme as :func:`draw_disorder`).
        sample: geometry; ``length`` is the slice budget.
        model: energy E, hopping t, flux (flux quanta h/e per plaquette), rashba, mass; all differentiable.
            ``exchange`` and ``tau_phi`` are not supported.
        strength: disorder W (box: uniform in [-W/2, W/2]; gaussian: standard deviation W); differentiable.
        distribution: ``"box"`` or ``"gaussian"``.
        su2: SU(2) random hopping (Asada-Slevin-Ohtsuki model; spinful samples).
        rtol: target relative standard error of the smallest exponent gamma_n; ``None`` runs the whole
            ``sample.length``.
        chunk: slices per statistics batch (a multiple of ``qr_every``); should be many localization lengths.
        warmup: slices discarded at the start (a multiple of ``qr_every``; ignored with ``resume``).
        qr_every: slices between renormalizations of the frame. exp((gamma_1 - gamma_n) qr_every) must stay
            far below 1e16: on periodic 3D Anderson bars at W = 16.5 (gamma_1 - gamma_n ~ 1.5), 12 leaves 5e-7 in
            gamma_n at M = 14 but 16 already 2e-4 (docs/benchmarks.md#transfer-matrix-lyapunov-exponents).
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


def localization_length(key, sample: Sample, model: Model, **kwargs):
    """Localization length lambda_M = 1 / gamma_n of a long bar, in lattice constants (a scalar array).

    gamma_n is the smallest positive Lyapunov exponent of :func:`lyapunov_exponents` (same arguments; see
    there for conventions). For a bar of width M the reduced localization length is Lambda = lambda_M / M.
    In 1D (``chain()``) it is the inverse Lyapunov exponent xi = 1/gamma with <ln T> = -2 L / xi.
    Differentiable with respect to ``model`` and ``strength`` (``jax.grad`` works).
    """
    return lyapunov_exponents(key, sample, model, **kwargs).localization_length
