"""Lattices cut into slices along the transport direction x, and samples built from them.

A :class:`Lattice` describes one *cell* of a quasi-one-dimensional lattice: the sites of one period along x
(their positions and sublattices), the bonds inside the cell and the bonds from the cell to the next one.
Every sample is a stack of ``length`` identical cells (slices); the two leads are semi-infinite continuations
of the same stack. Any lattice whose cells couple only to neighbouring cells fits, which is all the RGF
solver needs (square strips, cubic bars, honeycomb ribbons of either orientation).

Conventions (``docs/physics.md#conventions``): lattice constant a = 1; positions are (x, y, z) with x the transport
direction; a bond (i -> j) is the matrix element H[j, i]; the cell at slice index s occupies
x in [s * period, (s + 1) * period).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import equinox as eqx
import numpy as np

from .checks import positive_int as _positive_int

Boundary = Literal["hardwall", "periodic"]
_BOUNDARIES = ("hardwall", "periodic")


def _check_boundary(boundary: str) -> str:
    if boundary not in _BOUNDARIES:
        raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}.")
    return boundary


class Lattice(eqx.Module):
    """One cell (slice) of a quasi-1D lattice. Immutable and hashable: it is static data under ``jit``.

    Attributes:
        name: human-readable description, e.g. ``"strip(W=32, hardwall)"``.
        positions: ``(sites, 3)`` tuple of (x offset within the cell, y, z) per site; lattice constant a = 1.
        sublattice: per-site sublattice index (0 for Bravais lattices; 0 = A, 1 = B for honeycomb).
        labels: per-site integer labels (transverse coordinates, e.g. (y,) or (y, z)) used to draw disorder
            as a pure function of (key, slice, label) so that a realization does not change when the sample grows.
        cross_section: the shape of a slice's potential array, e.g. ``(W,)`` or ``(W, H)``; its C-order
            flattening is the site order.
        intra_bonds: ``(i, j)`` pairs of bonded sites inside a cell (each bond once).
        intra_vectors: the displacement (dx, dy, dz) from site i to site j of each intra bond (through the seam
            for periodic boundaries, so it is the physical bond direction, used by spin-orbit terms).
        inter_bonds: ``(i, j)`` pairs: site i of cell s is bonded to site j of cell s + 1.
        inter_vectors: displacement from site i of cell s to site j of cell s + 1.
        period: cell length along x.
        transverse_period: for periodic transverse boundaries, the length of the period along y (else None).
        flux_winding: w such that a field fits the periodic boundary only if ``flux * w`` is an integer (every
            plaquette across the seam then holds its flux modulo one quantum); None means ``transverse_period``
            (square, cubic, zigzag cylinders); inf (the armchair cylinder) admits no field but flux = 0.
    """

    name: str = eqx.field(static=True)
    positions: tuple[tuple[float, float, float], ...] = eqx.field(static=True)
    sublattice: tuple[int, ...] = eqx.field(static=True)
    labels: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    cross_section: tuple[int, ...] = eqx.field(static=True)
    intra_bonds: tuple[tuple[int, int], ...] = eqx.field(static=True)
    intra_vectors: tuple[tuple[float, float, float], ...] = eqx.field(static=True)
    inter_bonds: tuple[tuple[int, int], ...] = eqx.field(static=True)
    inter_vectors: tuple[tuple[float, float, float], ...] = eqx.field(static=True)
    period: float = eqx.field(static=True)
    transverse_period: float | None = eqx.field(static=True, default=None)
    flux_winding: float | None = eqx.field(static=True, default=None)

    @property
    def flux_period(self) -> float | None:
        """The w of ``flux * w`` integer for a periodic transverse boundary (None when open); see flux_winding."""
        return self.transverse_period if self.flux_winding is None else self.flux_winding

    def __check_init__(self):
        n = len(self.positions)
        if n == 0:
            raise ValueError("a lattice cell needs at least one site.")
        if math.prod(self.cross_section) != n:
            raise ValueError(f"cross_section {self.cross_section} does not match the {n} sites of the cell.")
        if not self.inter_bonds:
            raise ValueError("a lattice cell needs at least one bond to the next cell, or no current can flow.")
        if len(self.intra_vectors) != len(self.intra_bonds) or len(self.inter_vectors) != len(self.inter_bonds):
            raise ValueError("every bond needs exactly one displacement vector.")
        for i, j in self.intra_bonds + self.inter_bonds:
            if not (0 <= i < n and 0 <= j < n):
                raise ValueError(f"bond {(i, j)} refers to a site outside the cell of {n} sites.")

    @property
    def sites(self) -> int:
        """Number of sites per cell."""
        return len(self.positions)

    @property
    def site_diagonal_hopping(self) -> bool:
        """True if every inter-cell bond joins site i to the same site i of the next cell (square, cubic):
        the inter-slice hopping is then (block-)diagonal, which the solver exploits."""
        return all(i == j for i, j in self.inter_bonds) and len(self.inter_bonds) == self.sites

    def position_array(self) -> np.ndarray:
        return np.asarray(self.positions, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# Square and cubic lattices


def strip(width: int, *, boundary: Boundary = "hardwall") -> Lattice:
    """2D square-lattice strip of ``width`` sites across (y = 0 .. width - 1), transport along x.

    ``boundary="periodic"`` closes the strip into a cylinder (needs width >= 3).
    """
    width = _positive_int("width", width)
    _check_boundary(boundary)
    intra = [(y, y + 1) for y in range(width - 1)]
    if boundary == "periodic":
        if width < 3:
            raise ValueError(f"a periodic strip needs width >= 3, got width={width}.")
        intra.append((width - 1, 0))
    return Lattice(
        name=f"strip(W={width}, {boundary})",
        positions=tuple((0.0, float(y), 0.0) for y in range(width)),
        sublattice=(0,) * width,
        labels=tuple((y,) for y in range(width)),
        cross_section=(width,),
        intra_bonds=tuple(intra),
        intra_vectors=((0.0, 1.0, 0.0),) * len(intra),
        inter_bonds=tuple((y, y) for y in range(width)),
        inter_vectors=((1.0, 0.0, 0.0),) * width,
        period=1.0,
        transverse_period=float(width) if boundary == "periodic" else None,
    )


def chain() -> Lattice:
    """1D tight-binding chain (a strip of width 1)."""
    return dataclasses.replace(strip(1), name="chain")


def bar(width: int, height: int, *, boundary: Boundary = "hardwall") -> Lattice:
    """3D cubic-lattice bar with a ``width`` x ``height`` cross-section (y, z), transport along x.

    Site order within a slice is C order of (y, z): index = y * height + z, matching potential arrays of shape
    ``(length, width, height)``. ``boundary="periodic"`` closes both transverse directions (each must then be
    >= 3, or 1). A magnetic field points along z (Landau gauge A = -B y x).
    """
    width = _positive_int("width", width)
    height = _positive_int("height", height)
    _check_boundary(boundary)
    index = {(y, z): y * height + z for y in range(width) for z in range(height)}
    intra, vectors = [], []
    for (y, z), i in index.items():
        if y + 1 < width:
            intra.append((i, index[(y + 1, z)]))
            vectors.append((0.0, 1.0, 0.0))
        if z + 1 < height:
            intra.append((i, index[(y, z + 1)]))
            vectors.append((0.0, 0.0, 1.0))
    if boundary == "periodic":
        for size, axis in ((width, "width"), (height, "height")):
            if size == 2:
                raise ValueError(f"a periodic bar needs {axis} >= 3 (or 1), got {axis}=2.")
        if width >= 3:
            intra += [(index[(width - 1, z)], index[(0, z)]) for z in range(height)]
            vectors += [(0.0, 1.0, 0.0)] * height
        if height >= 3:
            intra += [(index[(y, height - 1)], index[(y, 0)]) for y in range(width)]
            vectors += [(0.0, 0.0, 1.0)] * width
    n = width * height
    return Lattice(
        name=f"bar(W={width}, H={height}, {boundary})",
        positions=tuple((0.0, float(y), float(z)) for y in range(width) for z in range(height)),
        sublattice=(0,) * n,
        labels=tuple((y, z) for y in range(width) for z in range(height)),
        cross_section=(width, height),
        intra_bonds=tuple(intra),
        intra_vectors=tuple(vectors),
        inter_bonds=tuple((i, i) for i in range(n)),
        inter_vectors=((1.0, 0.0, 0.0),) * n,
        period=1.0,
        transverse_period=float(width) if boundary == "periodic" and width >= 3 else None,
    )


# ---------------------------------------------------------------------------------------------------------
# Honeycomb ribbons

_CC = 1.0 / math.sqrt(3.0)  # carbon-carbon distance for lattice constant a = 1


def _from_sites(name: str, xy: np.ndarray, sub: np.ndarray, period: float, bond_length: float,
                transverse: float | None = None, winding: float | None = None) -> Lattice:
    """Build a cell from explicit 2D site positions (x in [0, period)) by joining sites at ``bond_length``, also
    across the y seam (images at y +- ``transverse``) when the cell is periodic in y with that period."""
    order = np.lexsort((xy[:, 1], np.round(xy[:, 0], 9)))  # by x offset, then y
    xy, sub = xy[order], sub[order]
    n = len(xy)
    tol = 1e-6

    def bonds(shift: float, seams) -> tuple[list[tuple[int, int]], list[tuple[float, float, float]]]:
        pairs, vectors = [], []
        for dy in seams:  # j's image at y + dy; inside a cell each seam bond once (from the top, dy = +period)
            d = xy[None, :, :] + np.array([shift, dy]) - xy[:, None, :]
            close = np.abs(np.linalg.norm(d, axis=-1) - bond_length) < tol
            if shift == 0.0 and dy == 0.0:
                close = np.triu(close, 1)
            found = [(int(i), int(j)) for i, j in zip(*np.nonzero(close))]
            pairs += found
            vectors += [(float(d[i, j, 0]), float(d[i, j, 1]), 0.0) for i, j in found]
        return pairs, vectors

    seams = (0.0,) if transverse is None else (0.0, transverse, -transverse)
    (intra, intra_vec), (inter, inter_vec) = bonds(0.0, seams[:2]), bonds(period, seams)
    if bonds(2 * period, seams)[0]:
        raise ValueError("the cell is shorter than the bond range: bonds reach beyond the next cell.")
    return Lattice(
        name=name,
        positions=tuple((float(x), float(y), 0.0) for x, y in xy),
        sublattice=tuple(int(s) for s in sub),
        labels=tuple((i,) for i in range(n)),
        cross_section=(n,),
        intra_bonds=tuple(intra),
        intra_vectors=tuple(intra_vec),
        inter_bonds=tuple(inter),
        inter_vectors=tuple(inter_vec),
        period=period,
        transverse_period=transverse,
        flux_winding=winding,
    )


def _ribbon_boundary(kind: str, n: int, boundary: str) -> bool:
    if _check_boundary(boundary) == "periodic" and n % 2:
        raise ValueError(f"a periodic {kind} ribbon needs an even n (line n must fall on line 0), got n={n}.")
    return boundary == "periodic"


def zigzag_ribbon(n: int, *, boundary: Boundary = "hardwall") -> Lattice:
    """Honeycomb ribbon with zigzag edges along x (lattice constant a = 1, C-C distance 1/sqrt(3)).

    Bravais vectors a1 = (1, 0), a2 = (1/2, sqrt(3)/2); sublattice A at the lattice points, B shifted by
    (0, 1/sqrt(3)). The ribbon holds the rows n2 = 0 .. n-1 of both sublattices (2n sites per period 1).
    Its outermost A (bottom) and B (top) rows have one bond each (bearded edges), as in a ribbon cut by
    0 <= y < n sqrt(3)/2. ``boundary="periodic"`` rolls it into a zigzag cylinder of circumference
    n sqrt(3)/2 (row n is row 0; needs an even n), the ``transverse_period`` of the flux check.

    Valleys of the cylinder: its transverse momenta are k_y = 2 pi m / C, C = n sqrt(3)/2, and the Dirac points
    K, K' = (+-4 pi/3, 0) lie at k_y = 0, so every zigzag cylinder holds both valleys and is metallic (an
    armchair nanotube): clean, G = 2 e^2/h (one mode per valley) for 0 < |E| < t sin(2 pi / n), n >= 4, where
    the subbands m = +-1 open (|E| >= t |sin(2 pi m / n)|).
    """
    n = _positive_int("n", n)
    periodic = _ribbon_boundary("zigzag", n, boundary)
    xy, sub = [], []
    for n2 in range(n):
        base = np.array([0.5 * n2, n2 * math.sqrt(3.0) / 2])
        for s, off in ((0, 0.0), (1, _CC)):
            p = base + np.array([0.0, off])
            xy.append([p[0] % 1.0, p[1]])
            sub.append(s)
    name = f"zigzag_ribbon(N={n}{', periodic' if periodic else ''})"
    return _from_sites(name, np.array(xy), np.array(sub), 1.0, _CC, n * math.sqrt(3.0) / 2 if periodic else None)


def armchair_ribbon(n: int, *, boundary: Boundary = "hardwall") -> Lattice:
    """Honeycomb ribbon with armchair edges along x (A-B bonds along x), ``n`` dimer lines across.

    Dimer line k = 0 .. n-1 sits at y = k/2; its A site at x = 0 (k even) or sqrt(3)/2 (k odd) modulo the
    period sqrt(3), its B site 1/sqrt(3) further along x. 2n sites per period sqrt(3). ``boundary="periodic"``
    rolls it into an armchair cylinder of circumference n/2 (line n is line 0; needs an even n).

    Valleys of the cylinder: its transverse momenta are k_y = 2 pi m / C = 4 pi m / n, C = n/2, and the Dirac
    points K, K' = (0, +-4 pi/3) are among them only if n is a multiple of 6 (C a multiple of 3): only then does
    the cylinder hold both valleys and conduct at E -> 0 (a metallic zigzag nanotube; clean G = 2 e^2/h, one mode
    per valley). For other even n the subband m has |E| >= t |1 + 2 cos(2 pi m / n)|, a gap of half-width
    min_m t |1 + 2 cos(2 pi m / n)| (about 2 pi t / (sqrt(3) n)) in which a clean cylinder has G = 0.
    """
    n = _positive_int("n", n)
    periodic = _ribbon_boundary("armchair", n, boundary)
    period = math.sqrt(3.0)
    xy, sub = [], []
    for k in range(n):
        x0 = 0.0 if k % 2 == 0 else period / 2
        xy += [[x0, 0.5 * k], [x0 + _CC, 0.5 * k]]
        sub += [0, 1]
    name = f"armchair_ribbon(N={n}{', periodic' if periodic else ''})"
    # The armchair cylinder takes no field yet: its seam plaquettes are consistent for flux n / (2 sqrt 3) an
    # integer, but the one such flux compared with Kwant (n = 18, flux 4 sqrt(3)/n: G = 0 against 3.36) makes
    # the lead hopping singular (now refused at run time, leads.SINGULAR_HOP), and no regular flux has been
    # checked, so any field is refused (flux_winding = inf: only flux = 0 passes the check).
    return _from_sites(name, np.array(xy), np.array(sub), period, _CC, n / 2 if periodic else None,
                       math.inf if periodic else None)


# ---------------------------------------------------------------------------------------------------------
# Column slicing


@functools.lru_cache(maxsize=64)
def column_slicing(lattice: Lattice) -> tuple[tuple[int, ...], ...] | None:
    """The cell's sites grouped into k >= 2 columns of equal x offset that the solvers may use as slices, each
    column in *chain order*, or None if the lattice does not allow it.

    A cell allows column slicing when every bond joins sites of the same column or of consecutive columns (the
    last column to the first column of the next cell), and the bonds between each pair of consecutive columns are
    a perfect matching that, followed across the k columns, brings every site of the first column back to the
    same site one cell on. Numbering each column's sites along these chains (``order[c][l]`` is the cell site of
    chain l in column c) makes every hopping between consecutive columns site-diagonal: the sample becomes
    k * length slices of sites / k sites, with site-diagonal hopping and an intra-slice bond pattern that
    alternates between columns. The zigzag honeycomb cylinder is the case in point: its two columns (x = 0 and
    1/2) are joined by the zigzag bonds into chains along x, and the vertical bonds alternate between the
    columns (the brick wall). Hard-wall zigzag ribbons do not qualify (their bearded edge sites have no partner
    in one of the neighbouring columns), nor do square and cubic lattices (one column: they are sliced so
    already) or armchair ribbons (their A-B bonds along x are not a matching across the cell).
    """
    x = np.round(lattice.position_array()[:, 0], 9)
    offsets = np.unique(x)
    k, m = len(offsets), lattice.sites
    if k < 2 or m % k:
        return None
    column = np.searchsorted(offsets, x)
    if np.any(np.bincount(column, minlength=k) != m // k):
        return None
    links = [dict() for _ in range(k)]  # links[c][i] = j: site i of column c bonded to site j of column c + 1
    reverse = [dict() for _ in range(k)]

    def link(c, i, j):
        if i in links[c] or j in reverse[c]:
            return False
        links[c][i], reverse[c][j] = j, i
        return True

    for i, j in lattice.intra_bonds:
        ci, cj = column[i], column[j]
        if ci == cj:
            continue
        if abs(ci - cj) != 1 or not (link(ci, i, j) if cj == ci + 1 else link(cj, j, i)):
            return None
    for i, j in lattice.inter_bonds:  # site i of cell s to site j of cell s + 1
        if column[i] != k - 1 or column[j] != 0 or not link(k - 1, i, j):
            return None
    if any(len(links[c]) != m // k for c in range(k)):
        return None
    first = [int(i) for i in np.nonzero(column == 0)[0]]
    order = [first]
    for c in range(k - 1):
        order.append([links[c][i] for i in order[-1]])
    if [links[k - 1][i] for i in order[-1]] != first:
        return None
    return tuple(tuple(int(i) for i in col) for col in order)


# ---------------------------------------------------------------------------------------------------------


class Sample(eqx.Module):
    """A finite sample: ``length`` cells of ``lattice`` between two clean semi-infinite leads of the same cell.

    Static (hashable) data: sizes, spin and boundary conditions decide array shapes and are never
    differentiated. With ``spinful=True`` each site carries two orbitals (spin up, down), ordered site-major.
    With ``periodic=True`` the sample is closed along x instead (a ring, cylinder or torus without leads, for
    the time evolution; transport solvers refuse it): slice ``length - 1`` is bonded to slice 0 by the
    lattice's inter-cell bonds (needs length >= 3).

    ``field_region`` says where a magnetic field (``Model.flux``) is: ``"everywhere"`` (default; Landau gauge
    A = -B y x, the leads included, so a periodic transverse boundary needs flux * period an integer) or
    ``"sample"``: only between the last site of slice 0 and the first site of slice ``length - 1`` (along x), in
    the transverse gauge A = B (clip(x, X0, X1) - X0) y. The left lead is then field free and the right lead
    carries the constant A_y = B (X1 - X0), on a cylinder an Aharonov-Bohm flux B (X1 - X0) C through it (C the
    circumference); any flux is consistent with a periodic boundary (``docs/physics.md#field-in-the-sample``).
    """

    lattice: Lattice = eqx.field(static=True)
    length: int = eqx.field(static=True)
    spinful: bool = eqx.field(static=True, default=False)
    periodic: bool = eqx.field(static=True, default=False)
    field_region: str = eqx.field(static=True, default="everywhere")

    def __check_init__(self):
        if not isinstance(self.lattice, Lattice):
            raise ValueError(f"lattice must be a difftransport Lattice, got {type(self.lattice).__name__}.")
        _positive_int("length", self.length)
        for name in ("spinful", "periodic"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.periodic and self.length < 3:
            raise ValueError(f"a periodic sample needs length >= 3 (two distinct neighbours), got {self.length}.")
        if self.field_region not in ("everywhere", "sample"):
            raise ValueError(f"field_region must be 'everywhere' or 'sample', got {self.field_region!r}.")
        if self.field_region == "sample":
            if self.periodic:
                raise ValueError("field_region='sample' needs leads (a periodic sample has none): use 'everywhere'.")
            if self.field_bounds()[1] <= self.field_bounds()[0]:
                raise ValueError(
                    f"field_region='sample' needs the first site of slice length - 1 beyond the last site of slice 0 "
                    f"along x; length {self.length} is too short for {self.lattice.name}."
                )

    def field_bounds(self) -> tuple[float, float]:
        """(X0, X1): the x-range of a field with ``field_region='sample'``: the largest x of slice 0 and the
        smallest x of slice ``length - 1``."""
        x = self.lattice.position_array()[:, 0]
        return float(x.max()), float((self.length - 1) * self.lattice.period + x.min())

    @property
    def inter_slices(self) -> int:
        """Number of inter-slice hoppings H[s+1, s]: length - 1, or length with the wrap H[0, length-1]."""
        return self.length if self.periodic else self.length - 1

    @property
    def orbitals(self) -> int:
        """Orbitals per site (1 or 2)."""
        return 2 if self.spinful else 1

    @property
    def slice_size(self) -> int:
        """Orbitals per slice, the size of the RGF blocks."""
        return self.lattice.sites * self.orbitals

    @property
    def potential_shape(self) -> tuple[int, ...]:
        """Shape of an on-site potential array for this sample: ``(length, *cross_section)``."""
        return (self.length, *self.lattice.cross_section)

    def site_positions(self) -> np.ndarray:
        """Absolute positions ``(length, sites, 3)`` of every sample site; slice s starts at x = s * period."""
        pos = self.lattice.position_array()
        shift = np.arange(self.length)[:, None] * self.lattice.period
        out = np.broadcast_to(pos, (self.length, *pos.shape)).copy()
        out[..., 0] += shift
        return out
