"""Two-terminal observables from the Green's function: conductance (with dephasing), transmission,
reflection, transmission eigenvalues and Fano factor. All in units of e^2/h, summed over every orbital
(spin included when it is an orbital); no spin-degeneracy factor is applied.

Conventions: T(a -> b) = Tr[Gamma_b G_{ba} Gamma_a G_{ba}^+] (Fisher & Lee, PRB 23, 6851 (1981)),
Gamma = i (Sigma - Sigma^+). Dephasing (``docs/physics.md#dephasing``) enters as the absorption
-i eta on every sample site, eta = hbar / (2 tau_phi), and ``dephasing`` chooses how the absorbed current is
treated:

* ``"probe"`` (default): the absorbed current is re-injected by one fictitious voltage probe phi with zero
  net current: G = T(L->R) + T(L->phi) T(phi->R) / (T(L->phi) + T(R->phi)). Onsager symmetric and cheap (two
  sweeps), but the probe is global: it is a good model of dephasing only while absorption is weak
  (L_phi >~ L); for L_phi << L current bypasses the sample through the probe.
* ``"absorb"``: the raw transmission T(L->R) of the absorbing sample (not current conserving, not
  Onsager symmetric; this is what Kwant computes for an imaginary potential).
* ``"buttiker"``: a Buttiker voltage probe on every site (D'Amato & Pastawski, PRB 41, 7411 (1990)): local,
  exact and current conserving, for any L_phi. Solved with recursive Green's functions (``_core/buttiker.py``):
  directly up to 1024 orbitals (L n), with GMRES above (O(L n^3) per Krylov iteration, O(L n^2) memory).
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .build import prepare
from .buttiker import buttiker_currents_rgf
from .hamiltonian import SlicedHamiltonian
from .lattice import Sample
from .leads import distinct_lead_self_energies, LeadSelfEnergies, lead_self_energies
from .linalg import dag as _dag
from .model import Disorder, Model, draw_disorder
from .rgf import sweep
from .transfer import unsupported as _transfer_unsupported
from .transfer import transfer_sweep

Dephasing = Literal["probe", "absorb", "buttiker"]
_DEPHASING = ("probe", "absorb", "buttiker")
Method = Literal["rgf", "transfer", "auto"]
_METHODS = ("rgf", "transfer", "auto")
TRANSFER_OBSERVABLES = ("conductance", "transmission", "fano_factor", "transmission_eigenvalues", "open_channels")


def _gamma(sigma):
    return 1j * (sigma - _dag(sigma))


def _trace_product(a, b):
    """Re Tr[a b] without forming the product."""
    return jnp.real(jnp.sum(a * b.T))


def _transmission(g_out_in, gamma_out, gamma_in):
    """Tr[Gamma_out G Gamma_in G^+]."""
    return _trace_product(gamma_out @ g_out_in, gamma_in @ _dag(g_out_in))


class _Solution(eqx.Module):
    """Green's-function blocks of one sample at one energy (the transfer sweep gives G_N1 only)."""

    leads: LeadSelfEnergies
    g_last: jax.Array | None  # G_NN
    g_last_first: jax.Array  # G_N1


def _left_to_right(sol: _Solution):
    """T(L -> R) = Tr[Gamma_R G_N1 Gamma_L G_N1^+]."""
    return _transmission(sol.g_last_first, _gamma(sol.leads.right), _gamma(sol.leads.left))


def _lead_self_energies(ham: SlicedHamiltonian, energy) -> LeadSelfEnergies:
    """The leads' self-energies on the first and last slice (restricted to ``ham.lead_sites`` if given)."""
    if ham.lead is None:
        raise ValueError("sample is periodic along x (closed, no leads): transport needs Sample(..., periodic=False).")
    if ham.right_lead is not None:
        leads = distinct_lead_self_energies(energy, (ham.lead.cell, ham.lead.hop, ham.lead.factor),
                                            (ham.right_lead.cell, ham.right_lead.hop, ham.right_lead.factor))
    else:
        leads = lead_self_energies(energy, ham.lead.cell, ham.lead.hop, ham.lead.factor)
    if not ham.lead_sites:
        return leads
    first, last = (np.asarray(i) for i in ham.lead_sites)
    return LeadSelfEnergies(left=leads.left[np.ix_(first, first)], right=leads.right[np.ix_(last, last)],
                            open_channels=leads.open_channels, energy=leads.energy)


@eqx.filter_jit
def clean_leads(sample, model) -> LeadSelfEnergies:
    """The leads' self-energies of ``sample`` under ``model``: they do not depend on the disorder, so an ensemble
    whose realizations share the model computes them once and passes them to :func:`_evaluate` (``leads=``)
    instead of once per chunk (docs/benchmarks.md#flat-transfer-loop). Not for derivatives: passed in, they are
    constants."""
    ham, model = prepare(sample, model, None, columns=True)
    return _lead_self_energies(ham, model.energy)


def _solve(ham: SlicedHamiltonian, energy, method: Method = "rgf", leads: LeadSelfEnergies | None = None) -> _Solution:
    leads = _lead_self_energies(ham, energy) if leads is None else leads
    energy = leads.energy  # differs from the requested energy only at a subband edge
    if method == "transfer":
        return _Solution(leads=leads, g_last=None, g_last_first=transfer_sweep(energy, ham, leads.left, leads.right))
    g_nn, g_n1 = sweep(energy, ham, leads.left, leads.right)
    return _Solution(leads=leads, g_last=g_nn, g_last_first=g_n1)


def _first_blocks(ham: SlicedHamiltonian, leads: LeadSelfEnergies):
    """(G_11, G_1N) from the sweep over the reversed sample (its left lead is our right lead)."""
    return sweep(leads.energy, ham.reversed(), leads.right, leads.left)


def _probe_conductance(sol: _Solution, first):
    """Single-probe (current-conserving) conductance from the full G_11, G_1N (``first``), G_NN, G_N1."""
    gl, gr = _gamma(sol.leads.left), _gamma(sol.leads.right)
    g11, g1n = first
    gnn, gn1 = sol.g_last, sol.g_last_first
    t_lr = _transmission(gn1, gr, gl)
    t_rl = _transmission(g1n, gl, gr)
    # Sum rules: sum_j T(L -> j) = Tr[Gamma_L A_11] with A = i(G - G^+) = G Gamma G^+ (Gamma includes the
    # absorption); T(L -> L) = Tr[Gamma_L G_11 Gamma_L G_11^+].
    # The same trace also equals sum_j T(j -> L) (sum over sources), so for each lead
    # out = sum over j in {other lead, phi} of T(lead -> j) = sum over the same j of T(j -> lead).
    out_l = _trace_product(gl, _gamma(g11)) - _transmission(g11, gl, gl)
    out_r = _trace_product(gr, _gamma(gnn)) - _transmission(gnn, gr, gr)
    l_to_phi = out_l - t_lr
    r_to_phi = out_r - t_rl
    phi_to_r = out_r - t_lr
    denom = l_to_phi + r_to_phi
    # eta -> 0: both transmissions into the probe vanish like eta and the correction like eta; below 1e-12
    # it is below the precision of the subtraction, and dropped (double where keeps gradients finite).
    ok = denom > 1e-12
    correction = jnp.where(ok, l_to_phi * phi_to_r / jnp.where(ok, denom, 1.0), 0.0)
    return t_lr + correction


def dense_hamiltonian(ham: SlicedHamiltonian):
    """The sample Hamiltonian as a dense (L n) x (L n) matrix (small samples only)."""
    n, length = ham.size, ham.length
    site, bonds = ham.slice_data()
    blocks = jax.vmap(ham.block)(site, bonds) if bonds is not None else jax.vmap(lambda s: ham.block(s))(site)
    h = jnp.zeros((length, n, length, n), blocks.dtype)
    idx = jnp.arange(length)
    h = h.at[idx, :, idx, :].set(blocks)
    if length > 1:  # hops[s] = H[s+1, s]; a periodic sample also has the wrap H[0, L-1]
        hop = jax.vmap(lambda v: v.dense())(ham.hops)
        source = idx[: hop.shape[0]]
        h = h.at[(source + 1) % length, :, source, :].set(hop)
        h = h.at[source, :, (source + 1) % length, :].set(_dag(hop))
    return h.reshape(length * n, length * n)


# ---------------------------------------------------------------------------------------------------------
# Transmission eigenvalues


@jax.custom_jvp
def _eigen_transmissions(gamma_in, y):
    """Eigenvalues of Gamma_in Y (Y = G^+ Gamma_out G), i.e. of t^+ t, in descending order, from the
    Hermitian form W^+ Y W with Gamma_in = W W^+."""
    w, u = jnp.linalg.eigh(gamma_in)
    keep = w > 1e-12 * jnp.max(jnp.abs(w))  # closed channels: exactly zero columns
    root = u * jnp.where(keep, jnp.sqrt(jnp.where(keep, w, 1.0)), 0.0)
    t, _ = jnp.linalg.eigh(_dag(root) @ y @ root)
    return t[::-1]


@_eigen_transmissions.defjvp
def _eigen_transmissions_jvp(primals, tangents):
    # First-order perturbation theory for the eigenvalues of the (non-Hermitian, diagonalizable) product
    # P = Gamma Y: right eigenvector r = W q, left l = Y W q, l^+ r = T. Only eigenvalue derivatives are
    # formed, so degenerate eigenvalues (closed channels, Kramers pairs) give finite, consistent tangents.
    gamma_in, y = primals
    d_gamma, d_y = tangents
    w, u = jnp.linalg.eigh(gamma_in)
    keep = w > 1e-12 * jnp.max(jnp.abs(w))
    root = u * jnp.where(keep, jnp.sqrt(jnp.where(keep, w, 1.0)), 0.0)
    t, q = jnp.linalg.eigh(_dag(root) @ y @ root)
    right = root @ q
    left = y @ right
    dp = d_gamma @ y + gamma_in @ d_y
    num = jnp.real(jnp.einsum("an,ab,bn->n", jnp.conj(left), dp, right))
    ok = t > 1e-300
    dt = jnp.where(ok, num / jnp.where(ok, t, 1.0), 0.0)
    return t[::-1], dt[::-1]


# ---------------------------------------------------------------------------------------------------------
# Public entry points: check and build (trace time), then solve (jitted). One code path: ``observe``.

OBSERVABLES = ("conductance", "transmission", "reflection", "fano_factor", "transmission_eigenvalues", "open_channels")


def _coherent(sample, model, disorder, method: Method = "rgf", names=("conductance",), dephasing="probe",
              leads: LeadSelfEnergies | None = None):
    """Checked model, Hamiltonian and the forward-sweep solution (the sweep chosen by :func:`_sweep`); ``leads``:
    the leads' self-energies from :func:`clean_leads` of the same sample and model, or None to compute them."""
    ham, model = prepare(sample, model, disorder, columns=True)
    return model, ham, _solve(ham, model.energy, _sweep(method, names, model, dephasing, sample, ham), leads)


def _sweep(method, names, model, dephasing, sample, ham) -> str:
    """Checks the options; returns the sweep to run: ``method``, "auto" being transfer wherever it gives ``names``."""
    if dephasing not in _DEPHASING:
        raise ValueError(f"dephasing must be one of {_DEPHASING}, got {dephasing!r}.")
    unknown = [n for n in names if n not in OBSERVABLES]
    if unknown:
        raise ValueError(f"unknown observables {unknown}; available: {list(OBSERVABLES)}.")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    other = [n for n in names if n not in TRANSFER_OBSERVABLES]
    why = _transfer_unsupported(ham)
    if other:
        why = f"gives G_N1 only: {other} need method='rgf'."
    elif "conductance" in names and model.tau_phi is not None and dephasing != "absorb":
        why = (f"gives the coherent T(L->R) only; dephasing={dephasing!r} with tau_phi needs method='rgf' (or "
               "dephasing='absorb').")
    elif why:
        why += f", got {sample.lattice.name} of length {sample.length}: use method='rgf' or 'auto'."
    if method == "transfer" and why:
        raise ValueError(f"method='transfer' {why}")
    return "rgf" if method == "rgf" or why else "transfer"


def _buttiker_rgf(ham, model, sol, orbitals, solver="auto"):
    """(I_L, I_R) with Buttiker probes; eta = 0 gives the coherent T(L -> R) (double where: finite gradients)."""
    eta = model.absorption
    ok = eta > 0
    i_l, i_r = buttiker_currents_rgf(ham, sol.leads.energy, sol.leads.left, sol.leads.right, jnp.where(ok, eta, 1.0),
                                     orbitals, sol.leads.open_channels, solver=solver)
    coherent = _left_to_right(sol)
    return jnp.where(ok, i_l, coherent), jnp.where(ok, i_r, coherent)


def _evaluate(sample, model, disorder, names, dephasing, method: Method = "rgf", leads: LeadSelfEnergies | None = None):
    model, ham, sol = _coherent(sample, model, disorder, method, names, dephasing, leads)
    gl, gr = _gamma(sol.leads.left), _gamma(sol.leads.right)
    cache = {}

    def first():  # (G_11, G_1N) from the reversed sweep, computed once if any observable needs it
        if "first" not in cache:
            cache["first"] = _first_blocks(ham, sol.leads)
        return cache["first"]

    out = {}
    for name in names:
        if name == "transmission":
            out[name] = _left_to_right(sol)
        elif name == "conductance":
            if model.absorption is None or dephasing == "absorb":
                out[name] = _left_to_right(sol)
            elif dephasing == "probe":
                out[name] = _probe_conductance(sol, first())
            else:
                out[name] = _buttiker_rgf(ham, model, sol, sample.orbitals)[1]
        elif name == "reflection":
            g11 = first()[0]
            out[name] = sol.leads.open_channels - _trace_product(gl, _gamma(g11)) + _transmission(g11, gl, gl)
        elif name == "transmission_eigenvalues":
            g = sol.g_last_first
            out[name] = _eigen_transmissions(gl, _dag(g) @ gr @ g)
        elif name == "fano_factor":
            g = sol.g_last_first
            p = gl @ _dag(g) @ gr @ g
            tr1, tr2 = jnp.real(jnp.trace(p)), _trace_product(p, p)
            ok = tr1 > 0
            out[name] = jnp.where(ok, 1 - tr2 / jnp.where(ok, tr1, 1.0), 1.0)
        else:
            out[name] = sol.leads.open_channels
    return out


@eqx.filter_jit
def observe(sample: Sample, model: Model, disorder: Disorder | None = None, *,
            observables: tuple[str, ...] = ("conductance",), dephasing: Dephasing = "probe",
            method: Method = "rgf") -> dict:
    """Several observables of one sample from one solve: {name: array} for names in :data:`OBSERVABLES`.

    Shared work (the forward sweep, the reversed sweep for reflection and the probe correction) is done
    once. ``observables`` is a sequence of names, or one name as a str. See the functions of the same names for
    units and conventions, and :func:`conductance` for ``method``.
    """
    # A str is one name, not a sequence of one-letter names.
    names = (observables,) if isinstance(observables, str) else tuple(observables)
    return _evaluate(sample, model, disorder, names, dephasing, method)


@eqx.filter_jit
def conductance(sample: Sample, model: Model, disorder: Disorder | None = None, *, dephasing: Dephasing = "probe",
                method: Method = "rgf"):
    """Two-terminal Landauer conductance G in units of e^2/h (all orbitals, spin included; no degeneracy
    factor), from a recursive Green's function sweep.

    Args:
        sample: geometry (lattice, length, spin).
        model: parameters; differentiable (``jax.grad`` returns a ``Model``).
        disorder: realization (potential, moments, SU(2) hoppings), or None for a clean sample.
        dephasing: how absorption from a finite ``model.tau_phi`` is treated: ``"probe"`` (single
            current-conserving probe, default; valid for weak absorption), ``"absorb"`` (raw T(L->R)) or
            ``"buttiker"`` (a probe on every site: local dephasing, exact for any tau_phi). Without
            ``tau_phi`` all three give the coherent T(L->R).
        method: ``"rgf"`` (default), ``"transfer"``: a transfer-matrix sweep renormalized every 8 slices
            (``_core/transfer.py``), 4-7x faster on CPU for square strips and cubic bars and up to 5x on zigzag
            honeycomb cylinders (site-diagonal inter-slice hopping, on the cylinders in column slices: any field,
            spin-orbit, exchange, absorption), agreeing with RGF to ~1e-11. It gives the coherent (or
            ``dephasing="absorb"``) conductance and raises ValueError elsewhere (hard-wall honeycomb ribbons,
            armchair cylinders, one slice, probes); ``"auto"`` runs it wherever it applies and RGF elsewhere.

    Returns:
        A scalar array. Zero where the leads have no open channel.
    """
    return _evaluate(sample, model, disorder, ("conductance",), dephasing, method)["conductance"]


@eqx.filter_jit
def buttiker_currents(sample: Sample, model: Model, disorder: Disorder | None = None, *, solver: str = "auto"):
    """(I_L, I_R) with a Buttiker probe on every site: the current leaving the left lead and entering the
    right lead per unit bias, in e^2/h. Current conservation makes them equal (a check of the solution);
    I_R is ``conductance(..., dephasing="buttiker")``. Needs ``model.tau_phi``. ``solver`` (static): "auto" (what
    ``conductance`` uses: the direct solve for small and near-square samples, docs/benchmarks.md#buttiker-solver),
    "dense" or "gmres"."""
    if model.tau_phi is None:
        raise ValueError("buttiker_currents needs model.tau_phi (the probes' dephasing time).")
    model, ham, sol = _coherent(sample, model, disorder)
    return _buttiker_rgf(ham, model, sol, sample.orbitals, solver)


@eqx.filter_jit
def transmission(sample: Sample, model: Model, disorder: Disorder | None = None):
    """Raw transmission T(L -> R) = Tr[Gamma_R G_N1 Gamma_L G_N1^+] (e^2/h). Equals the conductance without
    dephasing; with absorption it is the non-conserving transmission that Kwant computes."""
    return _evaluate(sample, model, disorder, ("transmission",), "absorb")["transmission"]


@eqx.filter_jit
def reflection(sample: Sample, model: Model, disorder: Disorder | None = None):
    """Reflection R = Tr[r^+ r] of the left lead: N_L - Tr[Gamma_L A_11] + Tr[Gamma_L G_11 Gamma_L G_11^+]
    (Fisher-Lee). Without absorption T + R equals the number of open channels."""
    return _evaluate(sample, model, disorder, ("reflection",), "absorb")["reflection"]


@eqx.filter_jit
def transmission_eigenvalues(sample: Sample, model: Model, disorder: Disorder | None = None):
    """Eigenvalues T_n of t^+ t in descending order, shape (slice_size,): the first ``open_channels`` are the
    channel transmissions, the rest are zero. Derivatives of individual T_n are those of first-order
    perturbation theory (well defined where T_n is not degenerate); prefer ``conductance`` and
    ``fano_factor`` (traces, smooth everywhere) for gradients."""
    return _evaluate(sample, model, disorder, ("transmission_eigenvalues",), "absorb")["transmission_eigenvalues"]


@eqx.filter_jit
def fano_factor(sample: Sample, model: Model, disorder: Disorder | None = None):
    """Fano factor F = sum T_n (1 - T_n) / sum T_n (zero temperature shot noise over Poisson noise),
    computed from traces: F = 1 - Tr[P^2] / Tr[P] with P = Gamma_L G_N1^+ Gamma_R G_N1 (eigenvalues T_n).
    Equals 1 (the Poisson limit) where nothing is transmitted."""
    return _evaluate(sample, model, disorder, ("fano_factor",), "absorb")["fano_factor"]


@eqx.filter_jit
def open_channels(sample: Sample, model: Model):
    """Number of open channels (right-moving propagating modes) in each lead at ``model.energy`` (the left lead
    where they differ, ``field_region="sample"``). Only the lead parameters (energy, hopping, flux, rashba, twist)
    matter; sample-only terms are ignored."""
    lead_model = Model(energy=model.energy, hopping=model.hopping, flux=model.flux, rashba=model.rashba,
                       twist=model.twist)
    ham, model = prepare(sample, lead_model, None)
    return _lead_self_energies(ham, model.energy).open_channels


@eqx.filter_jit
def hamiltonian_transmission(ham: SlicedHamiltonian, energy):
    """Raw transmission T(L -> R) of a user-built :class:`SlicedHamiltonian` at ``energy`` (e^2/h): the
    low-level entry for Hamiltonians that no lattice constructor describes."""
    return _left_to_right(_solve(ham, jnp.asarray(energy, jnp.result_type(float))))


def cpu_vmap_width(slice_size: int, per_realization: int = 1) -> int:
    """Realizations vmapped together inside a chunk on a single CPU device, for ``slice_size`` orbitals per slice
    and ``per_realization`` grid points vmapped within each realization.

    About 1024 / n^2 slices' n x n blocks at once (16 for n = 8, 4 for n = 16), at least two up to n = 64 and one
    beyond: narrower than a chunk of 64 because each step of a sweep is a chain of small kernels whose vmapped
    operands then stay in the core's caches: ensembles 1.3-2.1x faster than with the whole chunk of 64 vmapped,
    n = 8 to 128, RGF and transfer sweeps (docs/benchmarks.md#vmap-width). On accelerators the runner vmaps the
    whole chunk."""
    n2 = slice_size**2
    matrices = max(1024 // n2, 2 if n2 <= 64**2 else 1)
    return max(1, matrices // per_realization)


def map_realizations(f, realizations, *, batch: int):
    """``f`` over the leading (realization) axis of the pytree ``realizations`` (keys, indices or drawn
    disorders): vmapped over ``batch`` realizations at a time, ``lax.map`` over the batches, so that memory is
    bounded by one batch and large ensembles do not slow down superlinearly. Pure, jittable, differentiable;
    a realization's result does not depend on ``batch``. Returns the outputs of ``f`` with a leading axis."""
    count = jax.tree.leaves(realizations)[0].shape[0]
    if batch >= count:  # one batch: a plain vmap, which a sharded realization axis passes through unchanged
        return jax.vmap(f)(realizations)
    return jax.lax.map(f, realizations, batch_size=batch)


def ensemble_conductances(keys, sample: Sample, models, *, strength, distribution="box", correlation_length=0.0,
                          density=1.0, short_range_density=0.0, short_range_strength=0.0, moments: bool = False,
                          su2: bool = False, dephasing: Dephasing = "probe", method: Method = "rgf",
                          batch: int | None = None):
    """Conductance G (e^2/h, see :func:`conductance`) of every realization of an ensemble of PRNG ``keys``:
    realization r is ``draw_disorder(keys[r], sample, strength=strength, ...)`` with the disorder keywords passed
    on (correlated and short-range disorder: :func:`draw_disorder`). ``models`` is one ``Model``
    (shape (len(keys),)) or a sequence of them, all evaluated on the same realizations (paired: common random
    numbers; shape (len(keys), len(models))). Batched by :func:`map_realizations`, ``batch`` realizations at a
    time (None: :func:`cpu_vmap_width` on a CPU, 64 on an accelerator); differentiable in the models, ``strength``
    and ``short_range_strength``."""
    draw = dict(strength=strength, distribution=distribution, correlation_length=correlation_length, density=density,
                short_range_density=short_range_density, short_range_strength=short_range_strength, moments=moments,
                su2=su2)

    def one(key):
        disorder = draw_disorder(key, sample, **draw)
        if isinstance(models, Model):
            return conductance(sample, models, disorder, dephasing=dephasing, method=method)
        return jnp.stack([conductance(sample, m, disorder, dephasing=dephasing, method=method) for m in models])

    if batch is None:
        batch = cpu_vmap_width(sample.slice_size) if jax.default_backend() == "cpu" else 64
    return map_realizations(one, keys, batch=batch)
