"""Block-tridiagonal Hamiltonians: the slice representation every solver works on.

A sample of L slices with n orbitals each is stored compactly, so that batches of large samples fit in
memory; dense n x n blocks exist only one at a time inside the solvers' ``lax.scan``:

    H_s         = base + blockdiag(site[s]) + bonds(bond_values[s])      (slice s, n x n)
    H[s+1, s]   = hops[s]                                                (a :class:`Hopping`)

Leads are clean copies of one cell: :class:`Lead` holds the cell Hamiltonian and the hopping H[j+1, j],
which also couples the leads to the sample's first and last slice.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .leads import HopFactor, hop_factor_from_structure
from .linalg import dag as _dag


PAULI = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=complex)  # sigma_x, y, z


def site_apply(blocks, x):
    """blockdiag(blocks) x for site blocks (m, s, s) and x (m s, k), written out over the s^2 block entries as
    broadcast products that XLA fuses into one loop: on CPU a batched dot of 2 x 2 blocks is ~2x slower and an
    einsum over a size-1 block several times slower (docs/benchmarks.md#the-stencils)."""
    m, s, _ = blocks.shape
    if s == 1:
        return blocks[:, 0, 0][:, None] * x
    xr = x.reshape(m, s, -1)
    rows = [sum(blocks[:, a, b, None] * xr[:, b] for b in range(s)) for a in range(s)]
    return jnp.stack(rows, 1).reshape(x.shape)


def stencil_apply(neighbours, coef, x):
    """(H x)[i] = sum_z coef[i, z] x[neighbours[i, z]] for a sparse slice Hamiltonian: ``neighbours`` (m, z) static
    integers, ``coef`` (m, z, s, s) blocks (zero where a row is padded), x (m s, k). One gather per neighbour slot,
    written out like :func:`site_apply`; on CPU 2.4-5.3x faster than the equivalent einsum over gathered blocks
    and far cheaper than the dense (m s)^2 k product for n >= 32 (docs/benchmarks.md#the-stencils)."""
    m, z, s, _ = coef.shape
    neighbours = np.asarray(neighbours)
    xr = x.reshape(m, s, -1)
    rows = [sum(coef[:, j, a, b, None] * xr[neighbours[:, j], b] for j in range(z) for b in range(s))
            for a in range(s)]
    return (rows[0] if s == 1 else jnp.stack(rows, 1)).reshape(x.shape)


def bond_stencil(bonds, sites: int):
    """Static row structure of the intra-slice hopping for ``stencil_apply``: (cols, bond, dagger, mask),
    each (m, z). Row j holds bond (i, j) as (i, value) and row i holds it as (j, value^dagger), the entries of
    ``scatter_bonds``; rows are padded to the largest coordination z with masked entries."""
    rows = [[] for _ in range(sites)]
    for b, (i, j) in enumerate(bonds):
        rows[j].append((i, b, False))
        rows[i].append((j, b, True))
    z = max(1, max(len(r) for r in rows))
    pad = [r + [(k, 0, False)] * (z - len(r)) for k, r in enumerate(rows)]
    cols, bond, dagger = (np.array([[e[c] for e in r] for r in pad]) for c in range(3))
    mask = np.array([[1.0] * len(r) + [0.0] * (z - len(r)) for r in rows])
    return cols.astype(np.int32), bond.astype(np.int32), dagger, mask


def stencil_blocks(structure, values):
    """Coefficient blocks (m, z, s, s) of the intra-slice hopping from bond values (B, s, s)."""
    _, bond, dagger, mask = structure
    if values.shape[0] == 0:
        return jnp.zeros(bond.shape + values.shape[1:], values.dtype)
    picked = jnp.where(dagger[:, :, None, None], jnp.conj(jnp.swapaxes(values, -1, -2))[bond], values[bond])
    return picked * mask[:, :, None, None].astype(picked.real.dtype)


def blockdiag(blocks):
    """(m, s, s) blocks -> (m s, m s) block-diagonal matrix."""
    m, s, _ = blocks.shape
    if s == 1:
        return jnp.diag(blocks[:, 0, 0])
    eye = jnp.eye(m, dtype=blocks.dtype)
    return jnp.einsum("iab,ij->iajb", blocks, eye).reshape(m * s, m * s)


class Hopping(eqx.Module):
    """Hopping matrix V = H[s+1, s] between consecutive slices, in a structure the solvers can exploit."""

    @abc.abstractmethod
    def sandwich(self, g):
        """V g V^dagger."""

    @abc.abstractmethod
    def apply(self, x):
        """V x."""

    @abc.abstractmethod
    def dagger(self) -> Hopping:
        """V^dagger, as a hopping of the same structure."""

    @abc.abstractmethod
    def dense(self):
        """V as an n x n matrix."""


class SiteBlockHopping(Hopping):
    """V = blockdiag(blocks): each site hops only to the same site of the next slice (square, cubic
    lattices). V g V^dagger then costs O(n^2) instead of two matrix products.

    ``axis`` (static; 2 x 2 blocks only): when 0, 1 or 2, every block is a + b sigma_axis (a, b complex), so one
    spin rotation diagonalizes all of them at once (the transfer sweep uses this); the builders set it where the
    model guarantees it (the x bonds of square and cubic lattices without SU(2) disorder: -t + i alpha sigma_y
    times a phase). None: no such promise. A promise is checked against the blocks wherever they are concrete
    (ValueError if a block has another form)."""

    blocks: jax.Array  # (m, s, s)
    axis: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.axis is None:
            return
        shape = getattr(self.blocks, "shape", ())
        if isinstance(self.axis, bool) or self.axis not in (0, 1, 2) or tuple(shape[-2:]) != (2, 2):
            raise ValueError(f"SiteBlockHopping.axis must be None or 0, 1, 2 (sigma_x, y, z) with 2 x 2 blocks, got "
                             f"axis={self.axis!r} with blocks of shape {tuple(shape)}.")
        if isinstance(self.blocks, jax.core.Tracer):
            return  # checked where the values are concrete
        b = np.asarray(self.blocks)
        sigma = PAULI[self.axis]
        a_part = np.trace(b, axis1=-2, axis2=-1)[..., None, None] / 2 * np.eye(2)
        s_part = np.trace(sigma @ b, axis1=-2, axis2=-1)[..., None, None] / 2 * sigma
        residual = np.max(np.abs(b - a_part - s_part), initial=0.0)
        if not residual <= 1e-12 * max(1.0, np.max(np.abs(b), initial=0.0)):
            raise ValueError(f"SiteBlockHopping(axis={self.axis}) needs every block of the form a + b sigma_"
                             f"{'xyz'[self.axis]}; these blocks are not (residual {residual:.2e}): pass axis=None.")

    def sandwich(self, g):
        m, s, _ = self.blocks.shape
        if s == 1:
            v = self.blocks[:, 0, 0]
            return v[:, None] * g * jnp.conj(v)[None, :]
        g4 = g.reshape(m, s, m, s)
        out = jnp.einsum("iab,ibjc,jdc->iajd", self.blocks, g4, jnp.conj(self.blocks))
        return out.reshape(m * s, m * s)

    def apply(self, x):
        return site_apply(self.blocks, x)

    def dagger(self):
        return SiteBlockHopping(_dag(self.blocks), self.axis)  # (a + b sigma)^dagger = a* + b* sigma

    def dense(self):
        return blockdiag(self.blocks)


class DenseHopping(Hopping):
    """A general hopping matrix (honeycomb ribbons, user-defined slicings)."""

    matrix: jax.Array  # (n, n)

    def sandwich(self, g):
        return self.matrix @ g @ _dag(self.matrix)

    def apply(self, x):
        return self.matrix @ x

    def dagger(self):
        return DenseHopping(_dag(self.matrix))

    def dense(self):
        return self.matrix


class Lead(eqx.Module):
    """A clean semi-infinite lead: cell Hamiltonian (n x n) and hopping H[j+1, j] (n x n), which also
    couples the lead to the sample. ``factor`` describes hop = u v^dagger (static)."""

    cell: jax.Array
    hop: jax.Array
    factor: HopFactor


class SlicedHamiltonian(eqx.Module):
    """A sample between two leads, as compact per-slice data (see the module docstring).

    Attributes:
        base: (n, n) part common to all slices (clean intra-slice bonds).
        site: (L, m, s, s) site-diagonal blocks per slice (potential, exchange, mass, absorption).
        hops: stacked :class:`Hopping` with leading axis L - 1: hops[s] = H[s+1, s] (axis L for a periodic
            sample, whose hops[L-1] = H[0, L-1] closes it).
        bond_values: optional (L, B, s, s) per-slice intra-slice bond values (random-hopping models), placed
            at ``bond_index`` (static (B, 2) pairs (i, j): H[j, i] = value, H[i, j] = value^dagger).
        lead: the clean lead (both sides, or the left one if ``right_lead`` is given); None for a periodic sample.
        right_lead: a distinct right lead (same structure and hopping pattern, other values: a field's vector
            potential in it), or None when both leads are ``lead``.
        base_bonds: static (i, j) site pairs outside which ``base`` vanishes (its site-diagonal blocks are zero
            too), so that solvers may apply it as a stencil; empty if unknown (then ``base`` is dense).
        lead_sites: static (first, last) orbital indices of the lead cell to which the first and the last slice
            attach, in slice order, when the slices are smaller than the lead cell (column slicing,
            :func:`~difftransport._core.lattice.column_slicing`): the lead self-energies, which vanish outside
            those orbitals, are restricted to them. Empty when slices and lead cells coincide.
        scalar_sites: static promise that every site block is a multiple of the identity (potential, mass,
            absorption; no exchange), which the transfer sweep applies as a diagonal. False: no promise; a
            promise is checked where the site blocks are concrete.
    """

    base: jax.Array
    site: jax.Array
    hops: Hopping
    lead: Lead | None
    bond_values: jax.Array | None = None
    bond_index: tuple[tuple[int, int], ...] = eqx.field(static=True, default=())
    base_bonds: tuple[tuple[int, int], ...] = eqx.field(static=True, default=())
    right_lead: Lead | None = None
    lead_sites: tuple[tuple[int, ...], tuple[int, ...]] | tuple[()] = eqx.field(static=True, default=())
    scalar_sites: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not self.scalar_sites or isinstance(self.site, jax.core.Tracer) or not hasattr(self.site, "shape"):
            return  # traced values are checked where they are concrete
        site = np.asarray(self.site)
        s = site.shape[-1]
        scale = max(1.0, np.max(np.abs(site), initial=0.0))
        if s > 1 and not np.max(np.abs(site - site[..., :1, :1] * np.eye(s)), initial=0.0) <= 1e-12 * scale:
            raise ValueError("SlicedHamiltonian(scalar_sites=True) needs every site block to be a multiple of the "
                             "identity; these are not (exchange?): pass scalar_sites=False.")

    @classmethod
    def from_dense(cls, onsite, hops, lead_cell, lead_hop) -> SlicedHamiltonian:
        """A sliced Hamiltonian from dense blocks: ``onsite`` (L, n, n) with Hermitian off-diagonal part
        (the diagonal may be complex, e.g. absorption), ``hops`` (L - 1, n, n) with hops[s] = H[s+1, s], and a
        lead given by its cell (n, n) and hopping H[j+1, j] (n, n). The lead's hopping pattern must be
        concrete (it fixes the structure of the mode solver)."""
        onsite, hops = jnp.asarray(onsite), jnp.asarray(hops)
        length, n, _ = onsite.shape
        if hops.shape != (length - 1, n, n) or jnp.shape(lead_cell) != (n, n) or jnp.shape(lead_hop) != (n, n):
            raise ValueError(
                f"from_dense needs onsite (L, n, n), hops (L-1, n, n), lead_cell and lead_hop (n, n); got "
                f"{onsite.shape}, {hops.shape}, {jnp.shape(lead_cell)}, {jnp.shape(lead_hop)}."
            )
        dtype = jnp.result_type(onsite, hops, lead_cell, lead_hop, 1j)
        pairs = tuple((i, j) for i in range(n) for j in range(i + 1, n))
        rows, cols = np.asarray([j for _, j in pairs], int), np.asarray([i for i, _ in pairs], int)
        lead_hop = jnp.asarray(lead_hop, dtype)
        return cls(
            base=jnp.zeros((n, n), dtype),
            site=jnp.diagonal(onsite, axis1=1, axis2=2).astype(dtype)[:, :, None, None],
            hops=DenseHopping(hops.astype(dtype)),
            lead=Lead(cell=jnp.asarray(lead_cell, dtype), hop=lead_hop,
                      factor=hop_factor_from_structure(np.asarray(lead_hop) != 0)),
            bond_values=onsite[:, rows, cols].astype(dtype)[:, :, None, None] if pairs else None,
            bond_index=pairs,
        )

    @property
    def length(self) -> int:
        return self.site.shape[0]

    @property
    def size(self) -> int:
        return self.base.shape[-1]

    def block(self, site, bond_values=None):
        """Dense on-site block of one slice from its compact data."""
        h = self.base + blockdiag(site)
        if bond_values is not None:
            h = h + scatter_bonds(bond_values, self.bond_index, self.site.shape[1])
        return h

    def slice_data(self):
        """Per-slice pytree (leading axis L) consumed by the sweeps: (site, bond_values)."""
        return self.site, self.bond_values

    def reversed(self) -> SlicedHamiltonian:
        """The same sample traversed from right to left (slices reversed, hoppings daggered); the lead is
        mirrored too (its hopping daggered), so the left lead of the result is the original right lead."""
        hops = jax.tree.map(lambda x: x[::-1], self.hops).dagger()  # dagger acts on the last two axes
        bonds = None if self.bond_values is None else self.bond_values[::-1]
        def mirrored(lead):
            return None if lead is None else Lead(cell=lead.cell, hop=_dag(lead.hop), factor=_mirror(lead.factor))

        left, right = (self.lead, None) if self.right_lead is None else (self.right_lead, self.lead)
        return SlicedHamiltonian(
            base=self.base, site=self.site[::-1], hops=hops, lead=mirrored(left), bond_values=bonds,
            bond_index=self.bond_index, base_bonds=self.base_bonds, right_lead=mirrored(right),
            lead_sites=self.lead_sites[::-1], scalar_sites=self.scalar_sites,
        )


def _mirror(factor: HopFactor) -> HopFactor:
    return HopFactor(sources=factor.targets, targets=factor.sources)


def scatter_bonds(values, index, sites):
    """Place bond values (B, s, s) into an (m s, m s) matrix: H[j, i] = value, H[i, j] = value^dagger."""
    b, s, _ = values.shape
    idx = np.asarray(index, dtype=np.int32).reshape(-1, 2)
    h = jnp.zeros((sites, s, sites, s), values.dtype)
    h = h.at[idx[:, 1], :, idx[:, 0], :].add(values)
    h = h.at[idx[:, 0], :, idx[:, 1], :].add(_dag(values))
    return h.reshape(sites * s, sites * s)


def scatter_hop(values, index, sites):
    """Place inter-slice bond values (B, s, s) into a dense hopping matrix V[j, i] = value."""
    b, s, _ = values.shape
    idx = np.asarray(index, dtype=np.int32).reshape(-1, 2)
    h = jnp.zeros((sites, s, sites, s), values.dtype)
    h = h.at[idx[:, 1], :, idx[:, 0], :].add(values)
    return h.reshape(sites * s, sites * s)


def lead_factor(index, sites: int, orbitals: int) -> HopFactor:
    """Static hop = u v^dagger description from the inter-slice bond list.

    Besides the structural rank (random values on the bonds, :func:`hop_factor_from_structure`), the bonds with
    their actual clean values (every bond -t, no field, no spin-orbit) must have that rank: a pattern can be
    structurally regular and still singular for equal values, e.g. the wrap bonds of an armchair cylinder with n
    divisible by 4 close an even cycle of equal bonds (a circulant 1 + shift of even size). The mode solver would
    then count no open channel and return G = 0, so such a lattice is refused (ValueError)."""
    mask = np.zeros((sites, orbitals, sites, orbitals), bool)
    unit = np.zeros((sites, sites))
    for i, j in index:
        mask[j, :, i, :] = True
        unit[j, i] += 1.0
    n = sites * orbitals
    factor = hop_factor_from_structure(mask.reshape(n, n))
    if np.linalg.matrix_rank(np.kron(unit, np.eye(orbitals))) != factor.rank:
        raise ValueError(
            "the inter-slice hopping of this lattice is singular for equal bond values (e.g. an armchair cylinder "
            "with n divisible by 4): the lead mode solver needs it regular; choose another width (n = 2 mod 4)."
        )
    return factor
