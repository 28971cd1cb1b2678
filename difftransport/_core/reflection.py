"""Reflection and transmission matrices in the basis of the leads' propagating modes, and the angle-resolved
reflection of a disordered slab (coherent backscattering).

Modes. A clean lead cell has Hamiltonian H_0 (``lead.cell``) and hopping V = H[j+1, j] (``lead.hop``); a Bloch
mode psi_j = lambda^j phi solves (H_0 + V / lambda + V^+ lambda) phi = E phi, linearized as a 2n x 2n companion
problem (V must be invertible: square strips and cubic bars). |lambda| = 1 modes propagate with the group velocity
v = -2 Im(lambda phi^+ V^+ phi) (phi of unit norm; hbar = a = 1, velocity in units of t a / hbar): v > 0 moves
to +x. Modes of equal lambda (degenerate transverse modes) are made orthonormal and split by the current form and
a labelling operator that commutes with the lead Hamiltonian: on a periodic strip the transverse translation
(y -> y + 1), so that the modes are plane waves e^{i k_y y} (k_y = 2 pi m / W) times a spinor, and on spinful
samples sigma_z (spin up / down where spin is conserved). Without a field in the lead the labels are exact.

Scattering matrix (Fisher & Lee, PRB 23, 6851 (1981), in the mode form of Ando, PRB 44, 8017 (1991)): a
right-moving mode m (unit flux) incident from the left lead is the source s_m = (V / lambda_m - Sigma_L) phi_m on
slice 0; the wave in the sample is psi = G s_m (G the retarded Green's function with both leads). Its outgoing
part on slice 0, psi_0 - phi_m, is expanded in the left lead's n left-going modes (propagating and evanescent),
psi_N in the right lead's right-going modes, and

    r_{m'm} = sqrt|v_m'| c^-_{m'} / sqrt|v_m|,      t_{m'm} = sqrt|v_m'| c^+_{m'} / sqrt|v_m|

(flux-normalized amplitudes, phases referred to slice 0 and slice N-1). Only propagating entries are kept; the
rest of the fixed-size (n, n) arrays is zero. Sum_m' |r_m'm|^2 + |t_m'm|^2 = 1 for every open m (unitarity), and
Tr r^+ r is :func:`difftransport.reflection`. Element phases depend on the mode basis: use |r|^2 or invariants.

Coherent backscattering (optics: Wolf & Maret, PRL 55, 2696 (1985); van Albada & Lagendijk, PRL 55, 2692 (1985);
theory: Akkermans & Montambaux, *Mesoscopic Physics of Electrons and Photons* (Cambridge 2007), ch. 8): the
disorder-averaged <|r_{m'm}|^2> of a wide slab is a diffuse background (the ladder, single scattering included)
plus the crossed (maximally crossed, Cooperon) term, which equals the ladder minus its single-scattering part at
exact backscattering k_y' = -k_y and decays over |k_y + k_y'| ~ 1/l (an angular width ~ 1/(k l)). With
time-reversal symmetry (orthogonal class) the enhancement factor is 2 - S/L, S/L the single-scattering share
(:func:`reflection_cone`, :func:`single_scattering`, :func:`enhancement`).

Derivatives: r and t are differentiable in the disorder (the lead modes do not depend on it; the first Born term is
a forward-mode derivative at V = 0). The mode solver (``eig``) is not meant to be differentiated in the energy or
the lead parameters, and element phases jump with them anyway: differentiate |r|^2 sums or invariants through
:func:`difftransport.reflection` instead.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .build import prepare
from .lattice import Sample
from .leads import PROPAGATING_TOL
from .linalg import dag as _dag
from .model import Disorder, Model, anderson_potential, draw_disorder
from .observables import _first_blocks, _lead_self_energies, map_realizations
from .rgf import sweep
from .stats import jackknife

# Weights of the Hermitian form that splits a group of degenerate modes: the current form J (velocities up to
# ~4t), plus _LABEL times the labelling operator B = sin(k_y) + _SPIN sigma_z. The irrational-looking values keep
# accidental coincidences of v + _LABEL b between modes of one group away (they would leave the split arbitrary).
_LABEL = 0.0731
_SPIN = 0.0513
# Groups of equal lambda are kept apart by adding _GROUP * arg(lambda) to the form (eigh would otherwise mix
# equal eigenvalues of different groups); evanescent modes get distinct values above every propagating one.
_GROUP = 1e3
_EVANESCENT = 1e5


class Modes(eqx.Module):
    """Modes of a clean lead at one energy, as fixed-size arrays (n = orbitals per slice).

    ``incoming`` are the n right-going modes (propagating with v > 0, then evanescent decaying to +x), ``outgoing``
    the n left-going ones (v < 0, then growing to +x); propagating modes come first, sorted by (k_y, spin) on a
    periodic strip and by k_x elsewhere.

    Attributes:
        phi_in, phi_out: (n, n) mode vectors on a slice (columns, unit norm).
        lam_in, lam_out: (n,) Bloch factors lambda = exp(i k_x) per cell along +x.
        v_in, v_out: (n,) group velocities along x (t a / hbar); evanescent modes: 0.
        open_in, open_out: (n,) True for propagating modes (the first ``open_channels`` of each).
        ky_in, ky_out: (n,) transverse momenta k_y in (-pi, pi] (1/a) on a periodic strip without field in the
            lead; NaN elsewhere and for evanescent modes.
        spin_in, spin_out: (n,) <sigma_z> of each mode (0 for spinless samples).
    """

    phi_in: jax.Array
    phi_out: jax.Array
    lam_in: jax.Array
    lam_out: jax.Array
    v_in: jax.Array
    v_out: jax.Array
    open_in: jax.Array
    open_out: jax.Array
    ky_in: jax.Array
    ky_out: jax.Array
    spin_in: jax.Array
    spin_out: jax.Array


class Scattering(eqx.Module):
    """Reflection and transmission matrices of one sample at one energy, in the basis of :class:`Modes`.

    ``r[m', m]``: from incoming mode m of the left lead to outgoing mode m' of the left lead; ``t[m', m]``: to
    right-going mode m' of the right lead (same mode basis, ``modes.phi_in``). Entries with a closed mode are 0.
    """

    r: jax.Array
    t: jax.Array
    modes: Modes
    open_channels: jax.Array


def _shift_operator(sample: Sample, n: int):
    """(n, n) translation (S psi)(y) = psi(y + 1) of a periodic strip (site-major orbitals), or None: a plane wave
    e^{i k_y y} has eigenvalue e^{i k_y}."""
    lat = sample.lattice
    if lat.name.startswith("strip(") and lat.transverse_period is not None:
        w, s = lat.sites, sample.orbitals
        return jnp.asarray(np.kron(np.roll(np.eye(w), -1, axis=0), np.eye(s)))  # (S psi)(y) = psi(y + 1)
    return None


def _sigma_z(sample: Sample):
    if not sample.spinful:
        return None
    return jnp.asarray(np.kron(np.eye(sample.lattice.sites), np.diag([1.0, -1.0])))


def lead_modes(energy, cell, hop, *, shift=None, spin=None) -> Modes:
    """Propagating and evanescent modes of a clean lead (``cell`` H_0, ``hop`` V = H[j+1, j], both (n, n), V
    invertible) at ``energy``, split and labelled as described in the module docstring. ``shift``: the unitary
    transverse translation commuting with the lead (periodic strips), ``spin``: sigma_z on the slice, or None."""
    n = cell.shape[-1]
    dtype = jnp.result_type(cell, hop, 1j)
    cell, hop = cell.astype(dtype), hop.astype(dtype)
    eye = jnp.eye(n, dtype=dtype)
    hop_d = _dag(hop)
    # lambda^2 V^+ phi = lambda (E - H_0) phi - V phi, linearized on (phi, lambda phi).
    lower = jnp.linalg.solve(hop_d, jnp.concatenate([-hop, energy * eye - cell], axis=1))
    companion = jnp.concatenate([jnp.concatenate([jnp.zeros_like(eye), eye], axis=1), lower], axis=0)
    lam, vecs = jnp.linalg.eig(companion)
    phi = vecs[:n]
    phi = phi / jnp.linalg.norm(phi, axis=0, keepdims=True)

    propagating = jnp.abs(jnp.abs(lam) - 1) < PROPAGATING_TOL
    same = propagating[:, None] & propagating[None, :] & (jnp.abs(lam[:, None] - lam[None, :]) < PROPAGATING_TOL)
    metric = _dag(phi) @ phi
    # Current form J_ab = i (lambda_b phi_a^+ V^+ phi_b - conj(lambda_a) phi_a^+ V phi_b); J_aa = v_a.
    current = 1j * (_dag(phi) @ hop_d @ phi * lam[None, :] - jnp.conj(lam)[:, None] * (_dag(phi) @ hop @ phi))
    label = jnp.zeros_like(metric)
    if shift is not None:  # sin(k_y) = (S - S^+) / 2i on a plane wave
        label = label + _dag(phi) @ ((shift - _dag(shift)) / 2j) @ phi
    if spin is not None:
        label = label + _SPIN * (_dag(phi) @ spin.astype(dtype) @ phi)
    group = _GROUP * jnp.angle(lam)
    form = jnp.where(same, current + _LABEL * label + group[:, None] * metric, 0)
    index = jnp.arange(2 * n, dtype=jnp.result_type(float))
    form = form + jnp.diag(jnp.where(propagating, 0.0, _EVANESCENT * (1 + index)))
    metric = jnp.where(same, metric, 0) + jnp.diag(jnp.where(propagating, 0.0, 1.0))
    chol = jnp.linalg.cholesky(metric)
    half = jax.scipy.linalg.solve_triangular(chol, form, lower=True)
    _, y = jnp.linalg.eigh(jax.scipy.linalg.solve_triangular(chol, _dag(half), lower=True))
    rot = jax.scipy.linalg.solve_triangular(_dag(chol), y, lower=False)  # block diagonal: within groups
    weight = jnp.abs(rot) ** 2
    lam = (weight.T @ lam) / jnp.sum(weight, axis=0)  # the group's lambda (members agree to PROPAGATING_TOL)
    phi = phi @ rot
    phi = phi / jnp.linalg.norm(phi, axis=0, keepdims=True)
    propagating = jnp.abs(jnp.abs(lam) - 1) < PROPAGATING_TOL

    velocity = -2 * jnp.imag(lam * jnp.einsum("ia,ij,ja->a", jnp.conj(phi), hop_d, phi))
    velocity = jnp.where(propagating, velocity, 0.0)
    right = jnp.where(propagating, velocity > 0, jnp.abs(lam) < 1)
    if shift is not None:
        ky = jnp.angle(jnp.einsum("ia,ij,ja->a", jnp.conj(phi), shift.astype(dtype), phi))
    else:
        ky = jnp.full(lam.shape, jnp.nan)
    sz = (jnp.real(jnp.einsum("ia,ij,ja->a", jnp.conj(phi), spin.astype(dtype), phi)) if spin is not None
          else jnp.zeros(lam.shape))
    ky = jnp.where(propagating, ky, jnp.nan)
    primary = ky if shift is not None else jnp.angle(lam)
    # Sort key: propagating modes by (k_y or k_x, spin), evanescent after them; right-going before left-going.
    key = jnp.where(propagating, 10 * primary + sz, 1e3 + index) + jnp.where(right, 0.0, 1e5)
    order = jnp.argsort(key)
    take_in, take_out = order[:n], order[n:]

    def pick(x, idx):
        return x[..., idx]

    return Modes(
        phi_in=pick(phi, take_in), phi_out=pick(phi, take_out), lam_in=lam[take_in], lam_out=lam[take_out],
        v_in=velocity[take_in], v_out=velocity[take_out], open_in=propagating[take_in],
        open_out=propagating[take_out], ky_in=ky[take_in], ky_out=ky[take_out], spin_in=sz[take_in],
        spin_out=sz[take_out],
    )


def _check(sample: Sample, field_in_leads):
    if sample.field_region != "everywhere":
        raise ValueError("reflection needs identical leads (one mode basis): use Sample(..., field_region="
                         "'everywhere') and field_in_leads=False for a field in the slab only.")
    if not isinstance(field_in_leads, bool):
        raise ValueError(f"field_in_leads must be True or False, got {field_in_leads!r}.")
    if sample.periodic:
        raise ValueError("sample is periodic along x (closed, no leads): reflection needs Sample(..., periodic=False).")
    inter = sample.lattice.inter_bonds
    if sorted(i for i, _ in inter) != list(range(sample.lattice.sites)) or \
            sorted(j for _, j in inter) != list(range(sample.lattice.sites)):
        raise ValueError(
            f"reflection_matrix needs an invertible inter-slice hopping (one bond per site: square strips, cubic "
            f"bars), got {sample.lattice.name}."
        )


def _hamiltonian(sample: Sample, model: Model, disorder, field_in_leads: bool):
    ham, checked = prepare(sample, model, disorder)
    if not field_in_leads and model.flux is not None:
        clean_lead = prepare(sample, dataclasses.replace(model, flux=None))[0].lead
        ham = eqx.tree_at(lambda h: h.lead, ham, clean_lead)
    return ham, checked


@eqx.filter_jit
def scattering_matrix(sample: Sample, model: Model, disorder: Disorder | None = None, *,
                      field_in_leads: bool = True) -> Scattering:
    """Reflection r and transmission t matrices in the basis of the leads' modes (module docstring), for one
    sample at ``model.energy``; pure JAX, jit/vmap-able over ``disorder``.

    Args:
        sample: a square strip (hard-wall or periodic) or cubic bar between two clean leads.
        model: parameters (energy in units of t; flux per plaquette in h/e; Rashba alpha).
        disorder: realization, or None for a clean sample.
        field_in_leads: ``False`` keeps ``model.flux`` out of the leads (the field fills the sample only, the
            lead-sample bonds stay clean), so that the leads' modes stay plane waves; on a periodic strip the
            gauge is then consistent only for flux * W an integer (checked). Default True, as everywhere.

    Returns:
        :class:`Scattering`: ``r``, ``t`` (n, n) flux-normalized amplitudes (|r|^2 dimensionless), ``modes``,
        ``open_channels``.
    """
    _check(sample, field_in_leads)
    ham, model = _hamiltonian(sample, model, disorder, field_in_leads)
    leads = _lead_self_energies(ham, model.energy)
    energy = leads.energy
    modes = lead_modes(energy, ham.lead.cell, ham.lead.hop, shift=_lead_shift(sample, model, field_in_leads),
                       spin=_sigma_z(sample))
    g11, _ = _first_blocks(ham, leads)
    _, gn1 = sweep(energy, ham, leads.left, leads.right)
    source = ham.lead.hop @ (modes.phi_in / modes.lam_in[None, :]) - leads.left @ modes.phi_in
    out_first = g11 @ source - modes.phi_in
    c_out = jnp.linalg.solve(modes.phi_out, out_first)
    c_in = jnp.linalg.solve(modes.phi_in, gn1 @ source)
    root_in = jnp.sqrt(jnp.where(modes.open_in, jnp.abs(modes.v_in), 1.0))
    root_out = jnp.sqrt(jnp.where(modes.open_out, jnp.abs(modes.v_out), 1.0))
    r = jnp.where(modes.open_out[:, None] & modes.open_in[None, :], root_out[:, None] * c_out / root_in[None, :], 0)
    t = jnp.where(modes.open_in[:, None] & modes.open_in[None, :], root_in[:, None] * c_in / root_in[None, :], 0)
    return Scattering(r=r, t=t, modes=modes, open_channels=leads.open_channels)


def _lead_shift(sample, model, field_in_leads):
    """The translation labelling plane waves, where it commutes with the lead (no field in the lead)."""
    n = sample.slice_size
    if model.flux is not None and field_in_leads:
        return None
    return _shift_operator(sample, n)


def reflection_matrix(sample: Sample, model: Model, disorder: Disorder | None = None, *,
                      field_in_leads: bool = True):
    """(r, modes): the reflection matrix r[m', m] (n, n) of the left lead in the basis of its modes (see
    :func:`scattering_matrix` and :class:`Modes`: ``modes.ky_in``/``ky_out`` the transverse momenta, ``v_in``/
    ``v_out`` the velocities, ``open_in``/``open_out`` the propagating ones). sum |r|^2 is
    :func:`difftransport.reflection` (e^2/h)."""
    s = scattering_matrix(sample, model, disorder, field_in_leads=field_in_leads)
    return s.r, s.modes


# ---------------------------------------------------------------------------------------------------------
# Angle-resolved reflection of a disordered slab


class ReflectionCone(eqx.Module):
    """Disorder-averaged angle-resolved reflection of a slab, per pair of lead modes (n, n) [out, in].

    Attributes:
        intensity: <|r_{m'm}|^2> over the realizations.
        error: its standard error (sample standard deviation / sqrt(realizations)).
        coherent: the mean amplitude <r_{m'm}> (the mode basis is fixed, so it is defined): the coherent
            (specular, Fresnel-like) reflection of the mean wave at the lead-slab interface; the diffuse intensity is
            ``intensity - |coherent|^2``.
        single: the single-scattering part S_{m'm} (first order in the disorder potential, with the coherent
            waves attenuated by the Born self-energy; see :func:`single_scattering`).
        born: the bare first Born term sigma^2 L / (W v v') (no attenuation; grows with the slab length).
        modes: the lead's :class:`Modes` (labels ``ky_in``, ``ky_out``).
        samples: |r_{m'm}|^2 of every realization, (realizations, n, n).
        realizations: number of realizations averaged.
    """

    intensity: jax.Array
    error: jax.Array
    coherent: jax.Array
    single: jax.Array
    born: jax.Array
    modes: Modes
    samples: jax.Array
    realizations: int = eqx.field(static=True)
    orbitals: int = eqx.field(static=True, default=1)


def single_scattering(modes: Modes, sample: Sample, variance, *, extinction=None):
    """(S, S_bare), each (n, n) [out, in]: the single-scattering part of <|r_{m'm}|^2> for white-noise on-site
    disorder of variance ``variance`` (box strength W_d: W_d^2 / 12) on a periodic strip of W sites and L slices.

    First order in the potential with unit-flux plane waves phi_m(y) e^{i k_x x}, |phi_m(y)|^2 = 1/W: the bare
    (first Born) term is S_bare = sigma^2 L / (W |v_m| |v_m'|). Each wave is attenuated by the average Green's
    function (Born self-energy Im Sigma = -sigma^2 / (W s) sum_open 1/|v|, s orbitals per site; scattering rate
    1/tau = 2 |Im Sigma|), so that the single-scattering ladder term is

        S_{m'm} = sigma^2 / (W |v_m| |v_m'|) sum_{x=0}^{L-1} exp(-x / (tau |v_m|) - x / (tau |v_m'|))

    (Akkermans & Montambaux, ch. 8: the single-scattering contribution that the crossed term lacks at exact
    backscattering). Valid to leading order in sigma^2 (Born approximation for the attenuation). Spinful strips
    (plane waves times spinors chi): the potential conserves spin, so each entry carries |chi_m'^+ chi_m|^2.

    ``extinction``: optional (n,) intensity extinction lengths l_m (a) of the incoming modes, measured (e.g.
    :func:`extinction_lengths`, NaN for closed modes); each leg is then attenuated by exp(-x / l) with the measured
    l of its mode (an outgoing mode takes the l of the incoming mode with the same k_y and spin: the average slab is
    symmetric under x -> -x), in place of the Born rate x / (tau |v|). The vertex stays sigma^2 (first order)."""
    w, length = sample.lattice.sites, sample.length
    v_in = jnp.where(modes.open_in, jnp.abs(modes.v_in), jnp.inf)
    v_out = jnp.where(modes.open_out, jnp.abs(modes.v_out), jnp.inf)
    x = jnp.arange(length, dtype=jnp.result_type(float))
    if extinction is None:
        decay = _born_rate(modes, sample, variance) * (1 / v_out[:, None] + 1 / v_in[None, :])
    else:
        decay = _extinction_rates(modes, extinction)
    attenuation = jnp.sum(jnp.exp(-x[None, None, :] * decay[..., None]), axis=-1)
    prefactor = variance / (w * v_out[:, None] * v_in[None, :]) * _spinor_overlap(modes, sample)
    return prefactor * attenuation, prefactor * length


def _born_rate(modes: Modes, sample: Sample, variance):
    """The Born scattering rate 1/tau = 2 |Im Sigma| = (2 variance / (W s)) sum_open 1/|v| (s orbitals per site)."""
    v_in = jnp.where(modes.open_in, jnp.abs(modes.v_in), jnp.inf)
    return 2 * variance / sample.slice_size * jnp.sum(jnp.where(modes.open_in, 1 / v_in, 0.0))


def _extinction_rates(modes: Modes, extinction):
    """(n_out, n_in) 1/l_out + 1/l_in from the incoming modes' extinction lengths (n,); an outgoing mode takes the
    length of the incoming mode with the same k_y and spin (NaN lengths of closed modes never enter an open pair)."""
    extinction = jnp.asarray(extinction, jnp.result_type(float))
    if extinction.shape != modes.v_in.shape:
        raise ValueError(f"extinction must hold one length per mode, shape {modes.v_in.shape}, got "
                         f"{extinction.shape}.")
    inv_in = jnp.where(modes.open_in, 1 / extinction, 0.0)
    same = (jnp.abs(jnp.angle(jnp.exp(1j * (modes.ky_out[:, None] - modes.ky_in[None, :])))) < 1e-6) \
        & (jnp.abs(modes.spin_out[:, None] - modes.spin_in[None, :]) < 1e-6) & modes.open_in[None, :]
    inv_out = jnp.sum(jnp.where(same, inv_in[None, :], 0.0), axis=1) / jnp.maximum(jnp.sum(same, axis=1), 1)
    return inv_out[:, None] + inv_in[None, :]


def _spinor_overlap(modes: Modes, sample: Sample):
    """|chi_out^+ chi_in|^2 (n, n) of the modes' spinors (the potential conserves spin), 1 for spinless strips."""
    if sample.orbitals == 1:
        return 1.0
    w, s = sample.lattice.sites, sample.orbitals
    first_out = modes.phi_out.reshape(w, s, -1)[0] * math.sqrt(w)  # spinor times a phase at y = 0
    first_in = modes.phi_in.reshape(w, s, -1)[0] * math.sqrt(w)
    return jnp.abs(jnp.conj(first_out).T @ first_in) ** 2


def reflection_cone(keys, sample: Sample, model: Model, strength, *, batch: int = 32,
                    field_in_leads: bool = False, su2: bool = False, extinction=None) -> ReflectionCone:
    """Angle-resolved reflection <|r_{m'm}|^2> of a slab with box disorder (V uniform in [-W_d/2, W_d/2],
    ``strength`` W_d, realization r drawn from ``keys[r]`` by :func:`difftransport.anderson_potential`), averaged
    over the realizations (vmapped ``batch`` at a time), with standard errors and the single-scattering part
    (:func:`single_scattering`).

    The enhancement at exact backscattering k_y' = -k_y (``modes.ky_out`` = -``modes.ky_in``) over the ladder is
    2 - S/L with time reversal (module docstring). For on-site (isotropic) disorder the ladder depends on |k_y'|
    only, so it can be read off at the specular direction k_y' = +k_y, where the crossed term has decayed when
    2 |k_y| l >> 1. ``field_in_leads`` defaults to False here: a field then breaks time reversal in the slab only
    and the lead modes stay plane waves.

    ``su2=True`` (spinful strips) adds Haar-random SU(2) hoppings on every bond of the slab
    (:func:`difftransport.draw_disorder` with ``su2=True``, the same potential): time reversal is kept, the spin is
    randomized along every path (symplectic class), the leads stay clean and spin degenerate. ``single`` then
    still holds the on-site Born formula of :func:`single_scattering`, which does not describe the SU(2) hoppings.

    ``extinction``: optional measured extinction lengths per mode (:func:`extinction_lengths`, its ``length``),
    passed to :func:`single_scattering` for ``single`` (``born`` stays the bare first-order term).
    """
    keys = jnp.asarray(keys)
    if keys.ndim < 1 or keys.shape[0] < 2:
        raise ValueError(f"keys must hold at least two PRNG keys (for a standard error), got shape {keys.shape}.")
    if sample.lattice.transverse_period is None or not sample.lattice.name.startswith("strip("):
        raise ValueError(f"reflection_cone needs a periodic strip (plane-wave modes), got {sample.lattice.name}.")
    if not isinstance(su2, bool):
        raise ValueError(f"su2 must be True or False, got {su2!r}.")
    if su2 and not sample.spinful:
        raise ValueError("su2=True needs a spinful sample (Sample(..., spinful=True)).")
    strength = jnp.asarray(strength, jnp.result_type(float))

    def one(key):
        if su2:
            disorder = draw_disorder(key, sample, strength=strength, su2=True)
        else:
            disorder = Disorder(potential=anderson_potential(key, sample, strength))
        s = scattering_matrix(sample, model, disorder, field_in_leads=field_in_leads)
        return s.r

    amplitudes = jax.jit(lambda k: map_realizations(one, k, batch=batch))(keys)
    intensities = jnp.abs(amplitudes) ** 2
    count = intensities.shape[0]
    mean = jnp.mean(intensities, axis=0)
    error = jnp.std(intensities, axis=0, ddof=1) / math.sqrt(count)
    coherent = jnp.mean(amplitudes, axis=0)
    modes = scattering_matrix(sample, model, None, field_in_leads=field_in_leads).modes
    single, born = single_scattering(modes, sample, strength**2 / 12, extinction=extinction)
    return ReflectionCone(intensity=mean, error=error, coherent=coherent, single=single, born=born, modes=modes,
                          samples=intensities, realizations=count, orbitals=sample.orbitals)


class Extinction(eqx.Module):
    """Extinction of the coherent (disorder-averaged) wave in a slab, per incoming mode (see
    :func:`extinction_lengths`).

    Attributes:
        length: (n,) intensity extinction length l_m (a): |<t_mm(L)>|^2 ~ exp(-L / l_m); NaN for closed modes.
        error: (n,) its standard error (delete-a-block jackknife over the realizations, the lengths jointly).
        born: (n,) the Born value tau |v_m| (1/tau as in :func:`single_scattering`), for comparison.
        transmission: (lengths, n) |<t_mm(L)>|^2 at each slab length.
        lengths: the slab lengths (slices).
    """

    length: jax.Array
    error: jax.Array
    born: jax.Array
    transmission: jax.Array
    lengths: tuple = eqx.field(static=True)


def extinction_lengths(keys, sample: Sample, model: Model, strength, *, lengths, batch: int = 32,
                       blocks: int = 16) -> Extinction:
    """Measured extinction lengths of the lead modes in a box-disordered slab (strength W_d, realizations from
    ``keys`` as in :func:`reflection_cone`): the coherent transmission <t_mm(L)> of mode m decays as
    exp(-L / (2 l_m)) once the interfaces are passed, so l_m = -1/slope of ln |<t_mm(L)>|^2 against the slab
    length L over ``lengths`` (at least two, >= 2 slices each; the lattice, spin and field of ``sample``, its
    length ignored), fitted by least squares per mode. The intercept absorbs the two interfaces. Errors by
    :func:`difftransport.stats.jackknife` (``blocks``) over the realizations, which every length shares (keys[r]
    draws realization r at each length).

    This is the exact extinction of the averaged medium (all orders in the disorder, the real part of the
    self-energy included), the input that :func:`single_scattering` (``extinction=``) uses in place of the Born
    rate: at W_d = 2, E = -1 on a 32-wide periodic strip the measured l is about 12% shorter than the Born tau |v|.
    """
    keys = jnp.asarray(keys)
    if keys.ndim < 1 or keys.shape[0] < 2 * blocks:
        raise ValueError(f"keys must hold at least 2 * blocks = {2 * blocks} PRNG keys, got shape {keys.shape}.")
    lengths = tuple(lengths)
    if len(lengths) < 2 or len(set(lengths)) != len(lengths) or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 2 for n in lengths):
        raise ValueError(f"lengths must be >= 2 distinct integers >= 2 (slices), got {lengths!r}.")
    strength = jnp.asarray(strength, jnp.result_type(float))
    diagonals = []
    for n in lengths:
        slab = dataclasses.replace(sample, length=int(n))

        def one(key, slab=slab):
            s = scattering_matrix(slab, model, Disorder(potential=anderson_potential(key, slab, strength)),
                                  field_in_leads=False)
            return jnp.diagonal(s.t)

        diagonals.append(np.asarray(jax.jit(lambda k: map_realizations(one, k, batch=batch))(keys)))
    samples = np.stack(diagonals, axis=1)  # (realizations, lengths, n)
    modes = scattering_matrix(sample, model, None, field_in_leads=False).modes
    open_ = np.asarray(modes.open_in)
    x = np.asarray(lengths, float)
    x = x - x.mean()

    def fit(rows):
        log = np.log(np.abs(rows[:, :, open_].mean(axis=0)) ** 2)  # (lengths, open modes)
        length = np.full(open_.shape, np.nan)
        length[open_] = -1 / (x @ (log - log.mean(axis=0)) / (x @ x))
        return length

    length, error = jackknife(fit, samples, blocks=blocks)
    rate = float(_born_rate(modes, sample, strength**2 / 12))
    born = np.where(open_, np.abs(np.asarray(modes.v_in)) / rate, np.nan)
    transmission = np.abs(samples.mean(axis=0)) ** 2
    return Extinction(length=jnp.asarray(length), error=jnp.asarray(error), born=jnp.asarray(born),
                      transmission=jnp.asarray(transmission), lengths=lengths)


class Enhancement(eqx.Module):
    """Coherent-backscattering enhancement pooled over a set of incoming modes (see :func:`enhancement`).

    Attributes:
        factor: eta = sum_m <|r_{-m,m}|^2>_d / sum_m <|r_{m,m}|^2>_d, backscattering over specular diffuse intensity
            (<|r|^2>_d = <|r|^2> - |<r>|^2, the coherent Fresnel part removed).
        error: its standard error (delta method over the realizations).
        single_share: S/L = sum_m S_{-m,m} / sum_m <|r_{m,m}|^2>_d, the single-scattering share of the ladder.
        expected: 2 - S/L, the time-reversal-symmetric prediction for ``factor``.
        contrast, contrast_error: the local peak, sum_m <|r_{-m,m}|^2>_d over the mean of its two neighbours
            k_y' = -k_y +- 2 pi / W, and its standard error: 1 without a cone (the ladder is smooth in k_y'), > 1
            with one, whatever a field does to the ladder.
        incoming: (n,) bool, the incoming modes pooled.
    """

    factor: jax.Array
    error: jax.Array
    single_share: jax.Array
    expected: jax.Array
    contrast: jax.Array
    contrast_error: jax.Array
    incoming: jax.Array


def _pooled_weights(cone: ReflectionCone, target_of_in):
    """(n_out, n_in) 0/1 weights: outgoing mode m' is counted for incoming mode m when it is open and its k_y is
    ``target_of_in`` (n_in,) (mod 2 pi, to 1e-6): on a spinful strip both outgoing spins of that k_y (spin summed),
    on a spinless one the single mode. Also returns (n_in,) bool: the target exists (is an open k_y)."""
    modes = cone.modes
    ky_out = modes.ky_out
    dist = jnp.where(modes.open_out[:, None],
                     jnp.abs(jnp.angle(jnp.exp(1j * (ky_out[:, None] - target_of_in[None, :])))), jnp.inf)
    hit = dist < 1e-6
    return hit.astype(jnp.result_type(float)), jnp.any(hit, axis=0)


def _pool(cone: ReflectionCone, weights, use):
    """Per realization: sum over the incoming modes in ``use`` and the outgoing modes of ``weights`` of the
    diffuse intensity |r_{m'm}|^2 - |<r_{m'm}>|^2. Shape (realizations,)."""
    diffuse = cone.samples - jnp.abs(cone.coherent)[None] ** 2
    return jnp.einsum("soi,oi->s", diffuse, weights * use[None, :])


def _incoming(cone: ReflectionCone, min_ky, min_velocity, max_ky=math.inf):
    modes = cone.modes
    return (modes.open_in & (jnp.abs(modes.ky_in) >= max(min_ky, 1e-9)) & (jnp.abs(modes.ky_in) <= max_ky)
            & (jnp.abs(modes.v_in) >= min_velocity))


def enhancement(cone: ReflectionCone, *, min_ky=0.0, min_velocity=0.0) -> Enhancement:
    """The backscattering enhancement of ``cone`` pooled over the open incoming modes with |k_y| >= ``min_ky``
    (1/a; k_y != 0, where backscattering and specular coincide) and |v| >= ``min_velocity`` (t a / hbar).

    The ladder at the backscattering direction is read off at the specular one (k_y' = +k_y): for on-site white
    noise the ladder depends on |k_y'| only (isotropic scattering; Akkermans & Montambaux ch. 8), while the crossed
    term there has decayed if 2 |k_y| l >> 1 (choose ``min_ky`` accordingly). With time reversal
    eta = 2 - S/L (Wolf & Maret 1985; van Albada & Lagendijk 1985). A field in the slab removes the crossed term,
    but also bends the paths, which makes the ladder asymmetric in k_y' (to second order in omega_c tau in the
    pooled ratio): there ``contrast`` (backscattering over its two neighbours) is the cleaner measure, 1 without a
    cone. Incoming modes whose neighbours k_y' = -k_y +- 2 pi / W are closed are left out.

    Spinful strips: the intensities are summed over the outgoing spins of each k_y' and over the incoming modes
    (both spins of each k_y: unpolarized incidence), the same pooling as for spinless modes. With spin conserved
    ``expected`` is 2 - S/L again; with the spin randomized along every multiple-scattering path (strong spin-orbit
    scattering, symplectic class) the spin-summed crossed term is -1/2 of the ladder minus S, so that
    eta = 1/2 + S/(2 L) (``docs/physics.md#backscattering-cone``); ``expected`` keeps the orthogonal value.
    """
    ky_in = cone.modes.ky_in
    step = 2 * jnp.pi / sample_width(cone)
    back, has_back = _pooled_weights(cone, -ky_in)
    spec, _ = _pooled_weights(cone, ky_in)
    left, has_left = _pooled_weights(cone, -ky_in - step)
    right, has_right = _pooled_weights(cone, -ky_in + step)
    use = _incoming(cone, min_ky, min_velocity) & has_back & has_left & has_right
    a, b = _pool(cone, back, use), _pool(cone, spec, use)
    factor, error = _ratio(a, b)
    contrast, contrast_error = _ratio(a, (_pool(cone, left, use) + _pool(cone, right, use)) / 2)
    share = jnp.sum(cone.single * back * use[None, :]) / jnp.mean(b)
    return Enhancement(factor=factor, error=error, single_share=share, expected=2 - share, contrast=contrast,
                       contrast_error=contrast_error, incoming=use)


class ConeProfile(eqx.Module):
    """The crossed (Cooperon) intensity of a cone against Delta = k_y' + k_y (see :func:`cone_profile`).

    Attributes:
        delta: (K,) Delta = j 2 pi / W, j = -J..J (1/a).
        crossed: (realizations, K) per realization: sum over the pooled incoming modes of the diffuse intensity at
            k_y' = -k_y + Delta minus that at the mirrored direction k_y' = k_y - Delta (dimensionless, |r|^2).
        mean, error: (K,) the mean of ``crossed`` over the realizations and its standard error.
        incoming: (n,) bool, the incoming modes pooled (the same set at every Delta).
    """

    delta: jax.Array
    crossed: jax.Array
    mean: jax.Array
    error: jax.Array
    incoming: jax.Array


def cone_profile(cone: ReflectionCone, *, max_delta, min_ky=0.0, min_velocity=0.0, max_ky=math.inf) -> ConeProfile:
    """The crossed part of the cone as a function of Delta = k_y' + k_y, pooled over incoming modes.

    For on-site (isotropic) disorder the ladder depends on |k_y'| only, so the ladder at k_y' = -k_y + Delta
    equals the intensity at its mirror image k_y' = k_y - Delta, where the crossed term (a function of
    |k_y + k_y'|) is read at 2 k_y - Delta and has decayed when (2 |k_y| - |Delta|) l >> 1. The difference of the
    two diffuse intensities (coherent part |<r>|^2 removed) is the crossed term at Delta. Pooled over the open
    incoming modes with ``min_ky`` <= |k_y| <= ``max_ky`` (1/a) and |v| >= ``min_velocity`` (t a / hbar) for
    which every target and mirror direction with |Delta| <= ``max_delta`` (1/a) is open; on spinful strips summed
    over the outgoing spins and both incoming spins (as :func:`enhancement`). Choose ``min_ky`` so that
    (2 min_ky - max_delta) l is several units; a window [min_ky, max_ky] fixed across samples keeps the same
    incidence angles when comparing cones (the cone's shape depends on the angle). Errors: standard error of the mean over realizations per point;
    for a statistic of the whole curve use :func:`difftransport.stats.jackknife` over ``crossed``.
    """
    max_delta = float(max_delta)
    if not math.isfinite(max_delta) or max_delta < 0:
        raise ValueError(f"max_delta must be a finite number >= 0 (1/a), got {max_delta!r}.")
    width = sample_width(cone)
    step = 2 * math.pi / width
    count = int(math.floor(max_delta / step + 1e-9))
    ky_in = cone.modes.ky_in
    use = _incoming(cone, min_ky, min_velocity, max_ky)
    pairs = []
    for j in range(-count, count + 1):
        target, has_t = _pooled_weights(cone, -ky_in + j * step)
        mirror, has_m = _pooled_weights(cone, ky_in - j * step)
        use = use & has_t & has_m
        pairs.append((target, mirror))
    crossed = jnp.stack([_pool(cone, t, use) - _pool(cone, m, use) for t, m in pairs], axis=1)
    mean = jnp.mean(crossed, axis=0)
    error = jnp.std(crossed, axis=0, ddof=1) / math.sqrt(crossed.shape[0])
    delta = jnp.arange(-count, count + 1) * step
    return ConeProfile(delta=delta, crossed=crossed, mean=mean, error=error, incoming=use)


def sample_width(cone: ReflectionCone) -> int:
    """W of the periodic strip of ``cone`` (orbitals per slice / orbitals per site)."""
    return cone.modes.phi_in.shape[0] // cone.orbitals


def _ratio(a, b):
    """mean(a) / mean(b) over the realizations (leading axis) and its standard error by the delta method:
    var(A/B) = (var A - 2 f cov(A, B) + f^2 var B) / (N <B>^2)."""
    count = a.shape[0]
    ma, mb = jnp.mean(a), jnp.mean(b)
    f = ma / mb
    da, db = a - ma, b - mb
    var = (jnp.sum(da * da) - 2 * f * jnp.sum(da * db) + f**2 * jnp.sum(db * db)) / (count - 1)
    return f, jnp.sqrt(var / count) / mb
