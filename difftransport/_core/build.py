"""From (sample, model, disorder) to a :class:`SlicedHamiltonian`, checking the input on the way.

Structural problems (shapes, dtypes, spin terms on spinless samples, missing data) raise ``ValueError`` at trace
time; value problems (non-finite parameters or disorder, zero hopping, negative tau_phi, moments that are not unit
vectors, a flux too large to keep the Peierls phases precise, an inconsistent periodic gauge) are checked at run
time with ``equinox.error_if``, also under ``jit`` and ``vmap``. The ``Model`` and ``Disorder`` docstrings list
both kinds.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .hamiltonian import (PAULI, DenseHopping, Lead, SiteBlockHopping, SlicedHamiltonian, lead_factor, scatter_bonds,
                          scatter_hop)
from .lattice import Lattice, Sample, column_slicing
from .model import Disorder, Model

_UNIT_TOLERANCE = 1e-6  # of |m| for disorder.moments: a user's float32 normalization still passes


def check_x64():
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "difftransport needs float64: jax_enable_x64 was switched off after import. "
            "Call jax.config.update('jax_enable_x64', True)."
        )


def check_inputs(sample: Sample, model: Model, disorder: Disorder | None) -> Disorder:
    """Trace-time structural checks; returns a Disorder (empty if None)."""
    check_x64()
    if not isinstance(sample, Sample):
        raise ValueError(f"sample must be a difftransport Sample, got {type(sample).__name__}.")
    if not isinstance(model, Model):
        raise ValueError(f"model must be a difftransport Model, got {type(model).__name__}.")
    if disorder is None:
        disorder = Disorder()
    if not isinstance(disorder, Disorder):
        raise ValueError(f"disorder must be a difftransport Disorder or None, got {type(disorder).__name__}.")
    for name in ("energy", "hopping", "flux", "rashba", "exchange", "tau_phi", "mass", "twist"):
        value = getattr(model, name)
        if value is not None and jnp.shape(value) != ():
            raise ValueError(
                f"model.{name} must be a scalar, got shape {jnp.shape(value)}; sweep parameters with jax.vmap."
            )
    spin_terms = [n for n in ("rashba", "exchange") if getattr(model, n) is not None]
    if disorder.moments is not None:
        spin_terms.append("disorder.moments")
    if disorder.su2_intra is not None or disorder.su2_inter is not None:
        spin_terms.append("disorder.su2")
    if spin_terms and not sample.spinful:
        raise ValueError(
            f"{', '.join(spin_terms)} act on spin, but the sample is spinless; use Sample(..., spinful=True)."
        )
    if model.twist is not None and sample.lattice.transverse_period is None:
        raise ValueError(f"model.twist needs a periodic transverse boundary (a cylinder); {sample.lattice.name} "
                         "has none.")
    if model.mass is not None and len(set(sample.lattice.sublattice)) < 2:
        raise ValueError(f"model.mass needs a lattice with two sublattices; {sample.lattice.name} has one.")
    for name in ("potential", "moments"):
        value = getattr(disorder, name)
        if value is not None and jnp.iscomplexobj(value):
            what = "on-site energies" if name == "potential" else "unit vectors in 3D space"
            raise ValueError(
                f"disorder.{name} must be real ({what}), got dtype {jnp.result_type(value)}"
                + ("; absorption enters through model.tau_phi." if name == "potential" else ".")
            )
    shape = sample.potential_shape
    flat = (sample.length, sample.lattice.sites)
    if disorder.potential is not None and jnp.shape(disorder.potential) not in (shape, flat):
        raise ValueError(
            f"disorder.potential has shape {jnp.shape(disorder.potential)}, but this sample needs {shape} "
            f"(length, *cross_section) for {sample.lattice.name} of length {sample.length}."
        )
    if (model.exchange is None) != (disorder.moments is None):
        raise ValueError(
            "magnetic impurities need both model.exchange (J) and disorder.moments (unit vectors); "
            f"got exchange={'set' if model.exchange is not None else 'None'} and "
            f"moments={'set' if disorder.moments is not None else 'None'}."
        )
    if disorder.moments is not None and jnp.shape(disorder.moments) not in ((*shape, 3), (*flat, 3)):
        raise ValueError(f"disorder.moments has shape {jnp.shape(disorder.moments)}, expected {(*shape, 3)}.")
    if (disorder.su2_intra is None) != (disorder.su2_inter is None):
        raise ValueError("disorder.su2_intra and disorder.su2_inter must be given together.")
    if disorder.su2_intra is not None:
        lat = sample.lattice
        want = ((sample.length, len(lat.intra_bonds), 2, 2), (sample.inter_slices, len(lat.inter_bonds), 2, 2))
        got = (jnp.shape(disorder.su2_intra), jnp.shape(disorder.su2_inter))
        if got != want:
            raise ValueError(f"disorder.su2_intra/su2_inter have shapes {got}, expected {want}.")
    return disorder


def checked_model(sample: Sample, model: Model) -> Model:
    """Run-time value checks (``equinox.error_if``); returns the model to use downstream."""
    def finite(name):
        value = getattr(model, name)
        return value if value is None else eqx.error_if(
            value, ~jnp.isfinite(value), f"model.{name} is not finite (NaN or inf)."
        )

    fields = {n: finite(n) for n in ("energy", "hopping", "flux", "rashba", "exchange", "mass", "twist")}
    fields["hopping"] = eqx.error_if(fields["hopping"], fields["hopping"] == 0, "model.hopping is zero: leads carry no current.")
    tau = model.tau_phi
    if tau is not None:
        tau = eqx.error_if(tau, jnp.isnan(tau) | (tau <= 0), "model.tau_phi must be positive (inf for coherent), got NaN or <= 0.")
    if fields["flux"] is not None and sample.field_region == "sample":
        c_max = max(float(np.max(np.abs(c), initial=0.0)) for c in _transverse_coefficients(sample))
        limit = _MAX_FLUX_WINDING / max(c_max, 1e-300)
        fields["flux"] = eqx.error_if(
            fields["flux"], jnp.abs(fields["flux"]) > limit,
            f"model.flux must satisfy |flux| <= {limit:.3g} on this sample: the transverse-gauge phases lose "
            f"precision beyond |flux| * {c_max:.3g} = {_MAX_FLUX_WINDING:g}.",
        )
        return Model(**fields, tau_phi=tau)
    if fields["flux"] is not None:
        fields["flux"] = _reduced_flux(sample.lattice, fields["flux"])
    period = sample.lattice.flux_period
    if period == math.inf and fields["flux"] is not None:
        fields["flux"] = eqx.error_if(
            fields["flux"], fields["flux"] != 0,
            f"model.flux: {sample.lattice.name} takes no field (its seam gauge is not verified); use a zigzag "
            "cylinder or a hard-wall ribbon.",
        )
    elif period is not None and fields["flux"] is not None:
        winding = fields["flux"] * period
        fields["flux"] = eqx.error_if(
            fields["flux"], jnp.abs(winding - jnp.round(winding)) > 1e-9,
            f"model.flux: with periodic transverse boundaries the Landau gauge needs flux * {period:g} to be an "
            "integer.",
        )
    return Model(**fields, tau_phi=tau)


# Bond phases are exp(-2 pi i flux c) with c = dx (y1 + y2) / 2, computed in float64: their absolute error is
# about 1e-16 |flux c| rad, so |flux c| <= 1e6 keeps them to ~1e-9 rad.
_MAX_FLUX_WINDING = 1e6
_MAX_FLUX_PERIOD = 64


def _flux_gauge(lat: Lattice) -> tuple[int | None, float]:
    """(P, c_max) of the Landau gauge on ``lat``: the smallest integer period P <= 64 of the Peierls phases in the
    flux (P c an integer for every bond c = dx (y1 + y2) / 2), None if there is none, and the largest |c|."""
    coefficients = [np.zeros(0)]
    for bonds, vectors in ((lat.intra_bonds, lat.intra_vectors), (lat.inter_bonds, lat.inter_vectors)):
        if bonds:
            dx, ysum, _ = _bond_geometry(lat, bonds, vectors)
            coefficients.append(dx * ysum / 2)
    c = np.concatenate(coefficients)
    c_max = float(np.max(np.abs(c), initial=0.0))
    for p in range(1, _MAX_FLUX_PERIOD + 1):
        if np.all(np.abs(p * c - np.round(p * c)) <= 1e-9 * max(1.0, p * c_max)):
            return p, c_max
    return None, c_max


def _reduced_flux(lat: Lattice, flux):
    """``flux`` reduced modulo the gauge period P of ``lat`` into [-P/2, P/2]; the bond phases are unchanged, and
    exact in float64 (the subtraction of the nearest multiple of P is exact), so any finite flux keeps its phases
    precise. Without a period, a run-time error if |flux| c_max > 1e6 (the phases would lose precision)."""
    period, c_max = _flux_gauge(lat)
    if period is not None:
        # flux - P round(flux / P): exactly flux for |flux| < P/2, and gradient 1 everywhere.
        return flux - period * jnp.round(flux / period)
    limit = _MAX_FLUX_WINDING / c_max
    return eqx.error_if(
        flux, jnp.abs(flux) > limit,
        f"model.flux must satisfy |flux| <= {limit:.3g} on {lat.name}: the Peierls phases 2 pi flux dx (y1+y2)/2 "
        f"lose precision beyond |flux| * {c_max:.3g} = {_MAX_FLUX_WINDING:g}, and this lattice's Landau gauge has "
        "no flux period to reduce by.",
    )


# ---------------------------------------------------------------------------------------------------------


def _bond_geometry(lat: Lattice, index, vectors):
    """Static per-bond arrays: dx, y1 + y2 (Peierls), in-plane unit direction (Rashba)."""
    pos = lat.position_array()
    idx = np.asarray(index, dtype=int).reshape(-1, 2)
    vec = np.asarray(vectors, dtype=float).reshape(-1, 3)
    y1 = pos[idx[:, 0], 1]
    y2 = y1 + vec[:, 1]  # the physical neighbour, also across a periodic seam
    norm = np.linalg.norm(vec, axis=1)
    return vec[:, 0], y1 + y2, vec[:, :2] / norm[:, None]


def _clip_mean(a, b, x0, x1):
    """Mean of clip(x, x0, x1) over the segment x in [a, b] (arrays; a == b allowed)."""
    def antiderivative(x):
        inside = np.clip(x, x0, x1)
        return x0 * x + 0.5 * (inside - x0) ** 2 + (x1 - x0) * np.maximum(x - x1, 0.0)

    same = np.abs(b - a) < 1e-12
    width = np.where(same, 1.0, b - a)
    return np.where(same, np.clip(a, x0, x1), (antiderivative(b) - antiderivative(a)) / width)


def _transverse_coefficients(sample: Sample):
    """Static coefficients c of the transverse-gauge phases exp(2 pi i flux c), c = dy <clip(x, X0, X1) - X0>
    over the straight bond (exact: A_y is piecewise linear in x), for ``field_region='sample'``: (intra (L, B_a),
    inter (L - 1, B_e), right-lead intra (B_a,), right-lead inter (B_e,)); the left lead has c = 0."""
    lat = sample.lattice
    x0, x1 = sample.field_bounds()
    xs = lat.position_array()[:, 0]

    def coefficients(bonds, vectors, slices):
        if not bonds:
            return np.zeros((len(slices), 0)), np.zeros(0)
        idx = np.asarray(bonds, dtype=int).reshape(-1, 2)
        vec = np.asarray(vectors, dtype=float).reshape(-1, 3)
        start = slices[:, None] * lat.period + xs[idx[:, 0]][None, :]
        mean = _clip_mean(start, start + vec[None, :, 0], x0, x1)
        return vec[None, :, 1] * (mean - x0), vec[:, 1] * (x1 - x0)

    intra, right_intra = coefficients(lat.intra_bonds, lat.intra_vectors, np.arange(sample.length))
    inter, right_inter = coefficients(lat.inter_bonds, lat.inter_vectors, np.arange(sample.inter_slices))
    return intra, inter, right_intra, right_inter


def _bond_values(model: Model, sample: Sample, index, vectors, rotations=None):
    """Hopping blocks H[j, i] (..., B, s, s) for the bonds (i -> j): (-t R + i alpha (d x sigma)_z) times the
    Peierls phase exp(-2 pi i flux dx (y1 + y2) / 2). ``rotations`` (..., B, 2, 2) replaces R = 1."""
    s = sample.orbitals
    nb = len(index)
    dx, ysum, direction = _bond_geometry(sample.lattice, index, vectors)
    dtype = jnp.result_type(model.hopping, 1j)
    if rotations is None:
        values = jnp.broadcast_to(-model.hopping * jnp.eye(s, dtype=dtype), (nb, s, s))
    else:
        values = -model.hopping * rotations.astype(dtype)
    if model.rashba is not None:
        so = direction[:, 0, None, None] * PAULI[1] - direction[:, 1, None, None] * PAULI[0]
        values = values + 1j * model.rashba * jnp.asarray(so)
    if model.flux is not None:
        phase = jnp.exp(-2j * math.pi * model.flux * jnp.asarray(dx * ysum / 2))
        values = values * phase[:, None, None]
    if model.twist is not None:
        dy = np.asarray(vectors, dtype=float).reshape(-1, 3)[:, 1] / sample.lattice.transverse_period
        values = values * jnp.exp(2j * math.pi * model.twist * jnp.asarray(dy))[:, None, None]
    return values


def _site_blocks(model: Model, sample: Sample, disorder: Disorder):
    """On-site blocks (L, m, s, s): potential, exchange J m.sigma, staggered mass, absorption -i eta."""
    L, m, s = sample.length, sample.lattice.sites, sample.orbitals
    dtype = jnp.result_type(model.energy, 1j)
    eye = jnp.eye(s, dtype=dtype)
    blocks = jnp.zeros((L, m, s, s), dtype)
    if disorder.potential is not None:
        potential = jnp.reshape(disorder.potential, (L, m))
        potential = eqx.error_if(
            potential, ~jnp.all(jnp.isfinite(potential)), "disorder.potential is not finite (NaN or inf)."
        )
        blocks = blocks + potential[..., None, None] * eye
    if model.exchange is not None:
        moments = jnp.reshape(disorder.moments, (L, m, 3))
        moments = eqx.error_if(
            moments, ~jnp.all(jnp.isfinite(moments)), "disorder.moments is not finite (NaN or inf)."
        )
        norm = jnp.linalg.norm(moments, axis=-1)
        moments = eqx.error_if(
            moments, jnp.any(jnp.abs(norm - 1) > _UNIT_TOLERANCE),
            f"disorder.moments must be unit vectors: | |m| - 1 | <= {_UNIT_TOLERANCE:g} at every site.",
        )
        blocks = blocks + model.exchange * jnp.einsum("lmk,kab->lmab", moments, jnp.asarray(PAULI))
    if model.mass is not None:
        sign = jnp.asarray(np.where(np.asarray(sample.lattice.sublattice) == 0, 1.0, -1.0))
        blocks = blocks + model.mass * sign[:, None, None] * eye
    if model.absorption is not None:
        blocks = blocks - 1j * model.absorption * eye
    return blocks


def build_hamiltonian(sample: Sample, model: Model, disorder: Disorder | None = None, *,
                      columns: bool = False) -> SlicedHamiltonian:
    """The sliced Hamiltonian of ``sample`` with parameters ``model`` and realization ``disorder``.

    Checks the input (see the module docstring). The leads are clean continuations of the lattice carrying
    the model's hopping, flux and Rashba terms, but no disorder, exchange, mass or absorption. One slice per cell,
    or with ``columns=True``, where the lattice allows it (:func:`~difftransport._core.lattice.column_slicing`:
    zigzag honeycomb cylinders) and the sample has leads, one slice per column (k slices per cell, site-diagonal
    hopping): the same Hamiltonian, sliced finer (:func:`_column_hamiltonian`).
    """
    return prepare(sample, model, disorder, columns=columns)[0]


def prepare(sample: Sample, model: Model, disorder: Disorder | None = None, *,
            columns: bool = False) -> tuple[SlicedHamiltonian, Model]:
    """(Hamiltonian, checked model): solvers must take E and tau_phi from the returned model, whose values
    carry the run-time checks (an unused check is compiled away). ``columns``: see :func:`build_hamiltonian`."""
    disorder = check_inputs(sample, model, disorder)
    model = checked_model(sample, model)
    plan = column_slicing(sample.lattice) if columns and not sample.periodic else None
    if sample.field_region == "sample" and model.flux is not None:
        return _transverse_hamiltonian(sample, model, disorder, plan), model
    lat = sample.lattice
    m, s = lat.sites, sample.orbitals

    clean_intra = _bond_values(model, sample, lat.intra_bonds, lat.intra_vectors) if lat.intra_bonds else None
    clean_inter = _bond_values(model, sample, lat.inter_bonds, lat.inter_vectors)
    dtype = clean_inter.dtype
    zero = jnp.zeros((m * s, m * s), dtype)
    lead_cell = zero if clean_intra is None else scatter_bonds(clean_intra, lat.intra_bonds, m)
    lead = None if sample.periodic else Lead(  # a closed sample has no leads
        cell=lead_cell, hop=scatter_hop(clean_inter, lat.inter_bonds, m),
        factor=lead_factor(lat.inter_bonds, m, s),
    )

    if disorder.su2_intra is None:
        base, bond_values = lead_cell, None
        inter = jnp.broadcast_to(clean_inter, (sample.inter_slices, *clean_inter.shape))
    else:
        base = zero
        bond_values = _bond_values(model, sample, lat.intra_bonds, lat.intra_vectors, disorder.su2_intra)
        inter = _bond_values(model, sample, lat.inter_bonds, lat.inter_vectors, disorder.su2_inter)
    if plan is not None:
        intra = clean_intra if bond_values is None else bond_values
        site = _site_blocks(model, sample, disorder).astype(dtype)
        return _column_hamiltonian(sample, plan, site, intra, inter, lead, None), model
    site = _site_blocks(model, sample, disorder)
    ham = SlicedHamiltonian(
        base=base.astype(dtype), site=site.astype(dtype), hops=_hops(sample, disorder, inter), lead=lead,
        bond_values=bond_values, bond_index=lat.intra_bonds if bond_values is not None else (),
        base_bonds=lat.intra_bonds,  # the clean bonds, or a zero base beside the bond values
        scalar_sites=model.exchange is None,
    )
    return ham, model


def _transverse_hamiltonian(sample: Sample, model: Model, disorder: Disorder, plan=None) -> SlicedHamiltonian:
    """``field_region='sample'``: per-slice bond values with the transverse-gauge phases (Sample docstring), a
    field-free left lead and a right lead with the constant A_y = B (X1 - X0)."""
    lat = sample.lattice
    m, s = lat.sites, sample.orbitals
    plain = Model(energy=model.energy, hopping=model.hopping, rashba=model.rashba, twist=model.twist)  # no field
    intra_c, inter_c, right_intra_c, right_inter_c = _transverse_coefficients(sample)

    def phases(c):
        return jnp.exp(2j * math.pi * model.flux * jnp.asarray(c))[..., None, None]

    clean_intra = _bond_values(plain, sample, lat.intra_bonds, lat.intra_vectors) if lat.intra_bonds else None
    clean_inter = _bond_values(plain, sample, lat.inter_bonds, lat.inter_vectors)
    dtype = clean_inter.dtype
    factor = lead_factor(lat.inter_bonds, m, s)

    def lead(c_intra, c_inter):
        cell = (jnp.zeros((m * s, m * s), dtype) if clean_intra is None
                else scatter_bonds(clean_intra * phases(c_intra), lat.intra_bonds, m))
        return Lead(cell=cell, hop=scatter_hop(clean_inter * phases(c_inter), lat.inter_bonds, m), factor=factor)

    if disorder.su2_intra is None:
        intra = None if clean_intra is None else jnp.broadcast_to(clean_intra, (sample.length, *clean_intra.shape))
        inter = jnp.broadcast_to(clean_inter, (sample.inter_slices, *clean_inter.shape))
    else:
        intra = _bond_values(plain, sample, lat.intra_bonds, lat.intra_vectors, disorder.su2_intra)
        inter = _bond_values(plain, sample, lat.inter_bonds, lat.inter_vectors, disorder.su2_inter)
    bond_values = None if intra is None else intra * phases(intra_c)
    inter = inter * phases(inter_c)
    left, right = lead(np.zeros_like(right_intra_c), np.zeros_like(right_inter_c)), lead(right_intra_c, right_inter_c)
    if plan is not None:
        site = _site_blocks(model, sample, disorder).astype(dtype)
        return _column_hamiltonian(sample, plan, site, bond_values, inter, left, right)
    return SlicedHamiltonian(
        base=jnp.zeros((m * s, m * s), dtype), site=_site_blocks(model, sample, disorder).astype(dtype),
        hops=_hops(sample, disorder, inter), lead=left, right_lead=right,
        bond_values=bond_values, bond_index=lat.intra_bonds if bond_values is not None else (),
        base_bonds=lat.intra_bonds,  # a zero base
        scalar_sites=model.exchange is None,
    )


def _hops(sample: Sample, disorder: Disorder, inter):
    """The inter-slice hopping from bond values (L - 1, B, s, s): site-diagonal blocks in site order where the
    lattice allows, with the spin axis that all blocks share (``SiteBlockHopping.axis``): sigma_y when every
    inter-slice bond runs along x and no SU(2) disorder rotates it (-t + i alpha sigma_y, times a phase)."""
    lat = sample.lattice
    if not lat.site_diagonal_hopping:
        return DenseHopping(jax.vmap(lambda v: scatter_hop(v, lat.inter_bonds, lat.sites))(inter))
    direction = _bond_geometry(lat, lat.inter_bonds, lat.inter_vectors)[2]
    shared = sample.orbitals == 2 and disorder.su2_inter is None and bool(np.all(direction[:, 1] == 0))
    order = np.argsort([i for i, _ in lat.inter_bonds])
    return SiteBlockHopping(inter[:, order], 1 if shared else None)


class _ColumnMaps(NamedTuple):
    """Static index maps from a cell's bond lists to column slices (:func:`_column_maps`)."""

    pairs: tuple[tuple[int, int], ...]  # the intra-column bonds of all columns, (a, b) with a < b
    columns: tuple  # per column: (index into pairs, intra-bond index, dagger) numpy arrays
    links: tuple  # per column c < k - 1: (intra-bond index, dagger) per chain, the hop to column c + 1
    cross: np.ndarray  # inter-bond index per chain: last column -> the next cell's first


@functools.lru_cache(maxsize=64)
def _column_maps(lat: Lattice, plan: tuple[tuple[int, ...], ...]) -> _ColumnMaps:
    """Where each bond of the cell goes when the cell is cut into the columns of ``plan`` (chain order)."""
    k = len(plan)
    where = {site: (c, pos) for c, col in enumerate(plan) for pos, site in enumerate(col)}
    pairs, union = [], {}
    columns = [[] for _ in range(k)]
    links = [dict() for _ in range(k - 1)]
    for q, (i, j) in enumerate(lat.intra_bonds):
        (ci, a), (cj, b) = where[i], where[j]
        if ci == cj:  # H[b, a] = v, i.e. H[a, b] = v^+: stored as (min, max) with v^+ when a > b
            key = (min(a, b), max(a, b))
            if key not in union:
                union[key] = len(pairs)
                pairs.append(key)
            columns[ci].append((union[key], q, a > b))
        else:  # consecutive columns, the same chain: forward hop H[c + 1, c] = v, or v^+ if stored backwards
            links[min(ci, cj)][a] = (q, cj < ci)
    cross = np.array([dict((where[i][1], q) for q, (i, _) in enumerate(lat.inter_bonds))[a]
                      for a in range(len(plan[0]))], dtype=np.int32)
    as_arrays = tuple(tuple(np.array(v, dtype=dtype) for v, dtype in zip(zip(*c), (np.int32, np.int32, bool)))
                      if c else (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, bool)) for c in columns)
    link_arrays = tuple((np.array([lk[a][0] for a in range(len(plan[0]))], dtype=np.int32),
                         np.array([lk[a][1] for a in range(len(plan[0]))], dtype=bool)) for lk in links)
    return _ColumnMaps(pairs=tuple(pairs), columns=as_arrays, links=link_arrays, cross=cross)


def _column_hamiltonian(sample: Sample, plan, site, intra, inter, lead: Lead, right_lead: Lead | None):
    """The sample cut into column slices (``plan`` from :func:`column_slicing`, k columns of n sites): slice
    k s + c is column c of cell s, its sites in chain order, so that every hopping between consecutive slices is
    site-diagonal (a :class:`SiteBlockHopping`); the intra-column bonds of all columns form one bond list whose
    values are zero on the columns that lack them. ``site`` (L, m, s, s), ``intra`` the intra-cell bond values
    (L, B_a, s, s) or one set (B_a, s, s) for every cell, ``inter`` (L - 1, B_e, s, s). The leads keep their
    period cell; the first slice attaches to its first column and the last slice to its last column
    (``lead_sites``). The same matrix as the cell slicing, entry by entry."""
    lat, length, s = sample.lattice, sample.length, sample.orbitals
    maps = _column_maps(lat, plan)
    k, n = len(plan), len(plan[0])
    dtype = site.dtype
    intra = jnp.broadcast_to(intra, (length, *intra.shape[-3:])).astype(dtype)
    inter = jnp.broadcast_to(inter, (length - 1, *inter.shape[-3:])).astype(dtype)

    def picked(values, index, dagger):  # values (..., B, s, s) at index, daggered where flagged
        v = values[..., index, :, :]
        return jnp.where(dagger[:, None, None], jnp.conj(jnp.swapaxes(v, -1, -2)), v)

    order = np.asarray(plan)
    cut_site = site[:, order].reshape(length * k, n, s, s)
    bonds = jnp.stack([jnp.zeros((length, len(maps.pairs), s, s), dtype).at[:, u].add(picked(intra, q, d))
                       for u, q, d in maps.columns], 1).reshape(length * k, len(maps.pairs), s, s)
    links = [picked(intra, q, d) for q, d in maps.links]  # (L, n, s, s) each
    cross = jnp.concatenate([inter[:, maps.cross], jnp.zeros((1, n, s, s), dtype)])
    hops = jnp.stack(links + [cross], 1).reshape(length * k, n, s, s)[:-1]
    orbitals = tuple(tuple(int(i) * s + a for i in col for a in range(s)) for col in (plan[0], plan[-1]))
    return SlicedHamiltonian(
        base=jnp.zeros((n * s, n * s), dtype), site=cut_site, hops=SiteBlockHopping(hops), lead=lead,
        bond_values=bonds if maps.pairs else None, bond_index=maps.pairs, base_bonds=maps.pairs,  # a zero base
        right_lead=right_lead, lead_sites=orbitals,
    )
