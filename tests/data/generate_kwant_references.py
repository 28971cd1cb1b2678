"""Kwant 1.5 reference conductances for the SU(2), periodic-boundary and spinful honeycomb cross-checks.

Writes su2_strip.npz, periodic_spinless.npz, periodic_rashba.npz, zigzag_spinful.npz, armchair_spinful.npz,
zigzag_periodic.npz and armchair_periodic.npz next to this file, or only the files named on the command line. Run
it with a Python that has Kwant 1.5 (Kwant is not a dependency of difftransport):

    python tests/data/generate_kwant_references.py [zigzag_periodic.npz ...]

Every random number comes from ``numpy.random.default_rng(seed)`` with the fixed seed of its file, so a rerun
writes the same disorder and the same G (up to the roundoff of Kwant's MUMPS solve). The other files in
tests/data were made by an earlier script; they follow the same conventions (REFERENCE_README.md).

Conventions (docs/physics.md#conventions), in units of the hopping t = 1 and the lattice constant a = 1:
- A bond from r1 to r2 is the matrix element (Kwant's ``syst[site2, site1]``)
      H[r2, r1] = (-t R + i alpha (d_x sigma_y - d_y sigma_x)) exp(-2 pi i phi (x2 - x1)(y1 + y2) / 2),
  d = (r2 - r1) / |r2 - r1| the unit bond vector, phi the flux per area a^2 in flux quanta h/e (Landau gauge
  A = -B y x), alpha the Rashba strength, R = 1 except on the random-hopping bonds of su2_strip.npz.
  Spinors are ordered (up, down); the Pauli matrices are the standard ones.
- On-site: V + J m.sigma + (+mass on sublattice A, -mass on B), sample sites only.
- Transport along x. Two clean semi-infinite leads of the sample's cross-section continue it on both sides; they
  carry t, phi and alpha but no disorder, SU(2) rotations, exchange or mass. The sample-lead bonds are clean.
- G = T(left lead -> right lead) in e^2/h, summed over every orbital (no spin-degeneracy factor).

Files:
- su2_strip.npz: spinful hard-wall strip, sites x = 0..L-1, y = 0..W-1. ``R_intra[r, x, y]`` is R of the bond
  (x, y) -> (x, y+1), ``R_inter[r, x, y]`` of the bond (x, y) -> (x+1, y); Haar-random in SU(2) (a normalized
  Gaussian quaternion a: R = [[a0 + i a3, a2 + i a1], [-a2 + i a1, a0 - i a3]]). Box disorder ``V[r, x, y]``.
  These are exactly difftransport's ``Disorder.su2_intra`` / ``su2_inter`` for ``strip(W)``.
- periodic_*.npz: strip with periodic transverse boundaries (a cylinder): site y = W-1 bonds to y = 0 (the
  physical neighbour at y = W, bond vector +y), in the sample and in the leads. Only x-bonds carry Peierls phases,
  so the seam bond has none; the gauge is single valued, and every plaquette (the seam's included) holds flux phi,
  only if phi W is an integer: the stored fluxes satisfy it and no twist is used.
- zigzag_spinful.npz / armchair_spinful.npz: honeycomb ribbons as in zigzag_anderson.npz / armchair_smooth.npz
  (REFERENCE_README.md), spinful, with Rashba along the three bond directions, exchange ``J m.sigma`` with unit
  vectors ``m[r, site]``, a staggered mass ``meta["mass"]`` and Anderson disorder ``V[r, site]``, listed in the
  order of ``pos[site]`` (x, y) and ``sub[site]`` (0 = A, 1 = B).
- zigzag_periodic.npz / armchair_periodic.npz: spinless honeycomb cylinders: the ribbon's sites 0 <= y < C,
  C = N sqrt(3)/2 (zigzag) or N/2 (armchair) = ``meta["circumference"]``, listed as above, with Anderson disorder
  ``V[r, site]`` and the staggered masses ``masses``. Seam: a site u of the top rows bonds to each bottom-row site w
  whose image w + C y is its neighbour, H[w, u] = the bond from r_u to r_w + C y (its physical neighbour), in the
  sample and in the leads; no twist. A hexagon across the seam then holds its flux b (sqrt(3)/2) plus b C dX, dX the
  x-extent of its part on the far side of the seam, so the field is uniform only if b C dX is an integer for every
  hexagon. Zigzag: dX = 1, so b C an integer (the stored bs; b = k / C is k / N flux quanta per hexagon). Armchair:
  dX = 1/sqrt(3) or 2/sqrt(3), so b C / sqrt(3) an integer. The one such flux tried (N = 18, b C / sqrt(3) = 2)
  makes the inter-cell hopping singular (Kwant 3.36, difftransport then gave G = 0 and now refuses it), no
  regular one has been compared, so difftransport refuses a field on the armchair cylinder and the armchair file
  is at b = 0.
- field_in_sample.npz: spinless cylinders with a field in the sample only (difftransport's
  ``Sample(..., field_region="sample")``): a square cylinder (W = 8 sites around, ``square_V[r, x, y]``) and a
  zigzag honeycomb cylinder (N = 6, C = 3 sqrt(3), ``zigzag_V[r, site]`` in the order of ``zigzag_pos``). The field
  b fills X0 < x < X1, X0 the largest x of the first cell, X1 the smallest x of the last, in the transverse gauge
  A = b (clip(x, X0, X1) - X0) y: the bond from r1 to r2 carries -t exp(2 pi i b dy <clip(x) - X0>) (mean over the
  straight bond), the seam bonds to the physical neighbour across y = C. The left lead is field free, the right
  lead carries the constant A_y = b (X1 - X0) (an Aharonov-Bohm flux b (X1 - X0) C through it); b C is not an
  integer. ``*_G[r, energy, b]``.
"""

import json
import pathlib
import sys

import kwant
import numpy as np

HERE = pathlib.Path(__file__).parent
T = 1.0
SIGMA = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=complex)
CC = 1 / np.sqrt(3)  # carbon-carbon distance for a = 1


def hop(r1, r2, s, phi, alpha, rotation=None):
    """H[r2, r1] of a bond from r1 to r2 (r2 the physical neighbour, across a periodic seam too)."""
    r1, r2 = np.asarray(r1, float), np.asarray(r2, float)
    d = r2 - r1
    u = d / np.linalg.norm(d)
    value = -T * (np.eye(s) if rotation is None else rotation).astype(complex)
    if s == 2:
        value = value + 1j * alpha * (u[0] * SIGMA[1] - u[1] * SIGMA[0])
    return value * np.exp(-2j * np.pi * phi * d[0] * (r1[1] + r2[1]) / 2)


def onsite(s, v=0.0, moment=None, J=0.0, stagger=0.0):
    value = (v + stagger) * np.eye(s, dtype=complex)
    if moment is not None:
        value = value + J * np.einsum("k,kab->ab", moment, SIGMA)
    return value


def transmissions(fsyst, energies):
    return [kwant.smatrix(fsyst, float(e)).transmission(1, 0) for e in energies]


def haar_su2(rng, shape):
    a = rng.normal(size=(*shape, 4))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    return np.stack([np.stack([a[..., 0] + 1j * a[..., 3], a[..., 2] + 1j * a[..., 1]], -1),
                     np.stack([-a[..., 2] + 1j * a[..., 1], a[..., 0] - 1j * a[..., 3]], -1)], -2)


def unit_vectors(rng, shape):
    m = rng.normal(size=(*shape, 3))
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------
# Square strips


def strip_system(W, L, s, phi, alpha, V, periodic=False, r_intra=None, r_inter=None):
    """Finalized strip of L x W sites with on-site V[x, y] and optional SU(2) bonds, plus its two leads."""
    lat = kwant.lattice.square(1, norbs=s)
    rot = lambda r, x, y: None if r is None else r[x, y]

    def cross_section(builder, x, intra=None):
        for y in range(W - 1):
            builder[lat(x, y + 1), lat(x, y)] = hop((x, y), (x, y + 1), s, phi, alpha, rot(intra, x, y))
        if periodic:  # the seam: (x, W-1) -> its physical neighbour (x, W), which is site (x, 0)
            builder[lat(x, 0), lat(x, W - 1)] = hop((x, W - 1), (x, W), s, phi, alpha)

    syst = kwant.Builder()
    for x in range(L):
        for y in range(W):
            syst[lat(x, y)] = onsite(s, V[x, y])
    for x in range(L):
        cross_section(syst, x, r_intra)
        if x + 1 < L:
            for y in range(W):
                syst[lat(x + 1, y), lat(x, y)] = hop((x, y), (x + 1, y), s, phi, alpha, rot(r_inter, x, y))
    lead = kwant.Builder(kwant.TranslationalSymmetry((-1, 0)))
    lead[(lat(0, y) for y in range(W))] = onsite(s)
    for y in range(W):
        lead[lat(0, y), lat(-1, y)] = hop((-1, y), (0, y), s, phi, alpha)
    cross_section(lead, 0)
    syst.attach_lead(lead)
    syst.attach_lead(lead.reversed())
    return syst.finalized()


def su2_strip():
    W, L, Wd, seed, realizations = 6, 12, 1.0, 101, 3
    rng = np.random.default_rng(seed)
    V = rng.uniform(-Wd / 2, Wd / 2, size=(realizations, L, W))
    r_intra = haar_su2(rng, (realizations, L, W - 1))
    r_inter = haar_su2(rng, (realizations, L - 1, W))
    energies, phis = np.array([-2.33, 0.41, 1.27]), np.array([0.0, 0.07, 0.31])
    G = np.array([[transmissions(strip_system(W, L, 2, p, 0.0, V[r], r_intra=r_intra[r], r_inter=r_inter[r]),
                                 energies) for p in phis] for r in range(realizations)]).transpose(0, 2, 1)
    meta = dict(lattice="square", W=W, L=L, spinful=True, t=T, Wd=Wd, seed=seed, boundary="hardwall", su2=True,
                axes=["realization", "energy", "phi"], note="conventions: generate_kwant_references.py docstring")
    return dict(meta=json.dumps(meta), V=V, R_intra=r_intra, R_inter=r_inter, energies=energies, phis=phis, G=G)


def periodic_strip(W, L, spinful, Wd, seed, energies, phis, alphas, realizations=3):
    assert all(abs(p * W - round(p * W)) < 1e-12 for p in phis)
    rng = np.random.default_rng(seed)
    V = rng.uniform(-Wd / 2, Wd / 2, size=(realizations, L, W))
    s = 2 if spinful else 1
    G = np.array([[[transmissions(strip_system(W, L, s, p, a, V[r], periodic=True), energies) for a in alphas]
                   for p in phis] for r in range(realizations)]).transpose(0, 3, 1, 2)
    meta = dict(lattice="square", W=W, L=L, spinful=spinful, t=T, Wd=Wd, seed=seed, boundary="periodic", J=0.0,
                eta=0.0, axes=["realization", "energy", "phi", "alpha"],
                note="conventions: generate_kwant_references.py docstring")
    m = np.zeros((realizations, L, W, 3))
    return dict(meta=json.dumps(meta), V=V, m=m, energies=np.asarray(energies), phis=np.asarray(phis),
                alphas=np.asarray(alphas), G=G)


# ---------------------------------------------------------------------------------------------------------
# Honeycomb ribbons


def honeycomb(ribbon, N, Lx, norbs=2):
    """(Kwant lattice, sample shape, lead shape, period) of the ribbon; geometry as in REFERENCE_README.md."""
    eps = 1e-9
    if ribbon == "zigzag":  # a1 = (1, 0), a2 = (1/2, sqrt(3)/2); B = A + (0, 1/sqrt(3)); N zigzag chains
        lat = kwant.lattice.general([(1, 0), (0.5, np.sqrt(3) / 2)], [(0, 0), (0, CC)], norbs=norbs)
        width, period = N * np.sqrt(3) / 2, 1.0
    else:  # A-B bonds along x: a1 = (sqrt(3)/2, 1/2), a2 = (0, 1); B = A + (1/sqrt(3), 0); N dimer lines
        lat = kwant.lattice.general([(np.sqrt(3) / 2, 0.5), (0, 1)], [(0, 0), (CC, 0)], norbs=norbs)
        width, period = N / 2, np.sqrt(3)
    across = lambda y: -eps < y < width - eps
    sample = lambda pos: -eps < pos[0] < Lx * period - eps and across(pos[1])
    lead = lambda pos: across(pos[1])
    return lat, sample, lead, period


def ribbon_system(ribbon, N, Lx, phi, alpha, J, mass, V, m, index):
    lat, shape, lead_shape, period = honeycomb(ribbon, N, Lx)
    key = lambda site: (round(float(site.pos[0]), 6), round(float(site.pos[1]), 6))
    stagger = lambda site: mass if site.family is lat.sublattices[0] else -mass
    hopping = lambda a, b: hop(b.pos, a.pos, 2, phi, alpha)  # Kwant's value f(a, b) is H[a, b]

    syst = kwant.Builder()
    syst[lat.shape(shape, (0, 0))] = lambda site: onsite(2, V[index[key(site)]], m[index[key(site)]], J,
                                                         stagger(site))
    syst[lat.neighbors()] = hopping
    lead = kwant.Builder(kwant.TranslationalSymmetry((-period, 0)))
    lead[lat.shape(lead_shape, (0, 0))] = lambda site: onsite(2)
    lead[lat.neighbors()] = hopping
    syst.attach_lead(lead)
    syst.attach_lead(lead.reversed())
    return syst.finalized()


def ribbon_sites(ribbon, N, Lx):
    """The sample's sites sorted by (x, y): positions, sublattices and the index of each rounded position."""
    lat, shape, _, _ = honeycomb(ribbon, N, Lx)
    probe = kwant.Builder()
    probe[lat.shape(shape, (0, 0))] = 0
    sites = sorted(probe.sites(), key=lambda site: (round(site.pos[0], 6), round(site.pos[1], 6)))
    pos = np.array([site.pos for site in sites])
    sub = np.array([0 if site.family is lat.sublattices[0] else 1 for site in sites])
    index = {(round(float(p[0]), 6), round(float(p[1]), 6)): k for k, p in enumerate(pos)}
    assert len(pos) == 2 * N * Lx
    return pos, sub, index


def spinful_ribbon(ribbon, N, Lx, Wd, mass, seed, energies, bs, alphas, Js, realizations=2):
    pos, sub, index = ribbon_sites(ribbon, N, Lx)
    rng = np.random.default_rng(seed)
    V = rng.uniform(-Wd / 2, Wd / 2, size=(realizations, len(pos)))
    m = unit_vectors(rng, (realizations, len(pos)))
    G = np.array([[[[transmissions(ribbon_system(ribbon, N, Lx, b, a, J, mass, V[r], m[r], index), energies)
                     for J in Js] for a in alphas] for b in bs] for r in range(realizations)]).transpose(0, 4, 1, 2, 3)
    meta = dict(lattice="honeycomb", ribbon=ribbon, N=N, Lx=Lx, spinful=True, t=T, a=1.0, disorder="anderson", Wd=Wd,
                mass=mass, seed=seed, n_sites=len(pos), axes=["realization", "energy", "b", "alpha", "J"],
                note="conventions: generate_kwant_references.py docstring")
    return dict(meta=json.dumps(meta), pos=pos, sub=sub, V=V, m=m, energies=np.asarray(energies), bs=np.asarray(bs),
                alphas=np.asarray(alphas), Js=np.asarray(Js), G=G)


def _seam(builder, sites, circumference, phi):
    """Bond every site u to each site w whose image w + C y is u's neighbour, H[w, u] = hop(r_u, r_w + C y): the
    seam of the cylinder, from the top rows up to the images of the bottom rows."""
    shift = np.array([0.0, circumference])
    for u in sites:
        for w in sites:
            if abs(np.linalg.norm(w.pos + shift - u.pos) - CC) < 1e-6:
                builder[w, u] = hop(u.pos, w.pos + shift, 1, phi, 0.0)


def periodic_honeycomb_system(ribbon, N, Lx, phi, mass, V, index):
    """Spinless honeycomb cylinder: the ribbon's sites 0 <= y < C (C = ``circumference(ribbon, N)``), the
    lattice's own bonds among them plus the seam, in the sample and in the leads."""
    lat, shape, lead_shape, period = honeycomb(ribbon, N, Lx, norbs=1)
    C = circumference(ribbon, N)
    key = lambda site: (round(float(site.pos[0]), 6), round(float(site.pos[1]), 6))
    stagger = lambda site: mass if site.family is lat.sublattices[0] else -mass
    hopping = lambda a, b: hop(b.pos, a.pos, 1, phi, 0.0)  # Kwant's value f(a, b) is H[a, b]

    syst = kwant.Builder()
    syst[lat.shape(shape, (0, 0))] = lambda site: onsite(1, V[index[key(site)]], stagger=stagger(site))
    syst[lat.neighbors()] = hopping
    _seam(syst, list(syst.sites()), C, phi)
    lead = kwant.Builder(kwant.TranslationalSymmetry((-period, 0)))
    lead[lat.shape(lead_shape, (0, 0))] = onsite(1)
    lead[lat.neighbors()] = hopping
    window = kwant.Builder()  # three lead cells: every seam bond of the lead, mapped into its unit cell
    window[lat.shape(lambda pos: -2.5 * period < pos[0] < 0.5 * period and lead_shape(pos), (0, 0))] = 0
    _seam(lead, list(window.sites()), C, phi)
    syst.attach_lead(lead)
    syst.attach_lead(lead.reversed())
    return syst.finalized()


def circumference(ribbon, N):
    return N * np.sqrt(3) / 2 if ribbon == "zigzag" else N / 2


def periodic_honeycomb(ribbon, N, Lx, Wd, masses, seed, energies, bs, realizations=2):
    C = circumference(ribbon, N)
    assert N % 2 == 0 and all(abs(b * C - round(b * C)) < 1e-12 for b in bs)
    pos, sub, index = ribbon_sites(ribbon, N, Lx)
    rng = np.random.default_rng(seed)
    V = rng.uniform(-Wd / 2, Wd / 2, size=(realizations, len(pos)))
    G = np.array([[[transmissions(periodic_honeycomb_system(ribbon, N, Lx, b, mass, V[r], index), energies)
                    for mass in masses] for b in bs] for r in range(realizations)]).transpose(0, 3, 1, 2)
    meta = dict(lattice="honeycomb", ribbon=ribbon, N=N, Lx=Lx, spinful=False, t=T, a=1.0, boundary="periodic",
                circumference=C, disorder="anderson", Wd=Wd, seed=seed, n_sites=len(pos),
                axes=["realization", "energy", "b", "mass"], note="conventions: generate_kwant_references.py docstring")
    return dict(meta=json.dumps(meta), pos=pos, sub=sub, V=V, energies=np.asarray(energies), bs=np.asarray(bs),
                masses=np.asarray(masses), G=G)


# ---------------------------------------------------------------------------------------------------------
# A field in the sample only (field_region="sample"), on cylinders: transverse gauge A = b (clip(x, X0, X1) - X0) y


def clip_mean(a, b, x0, x1):
    """Mean of clip(x, x0, x1) over the straight segment from x = a to x = b."""
    if abs(b - a) < 1e-12:
        return min(max(a, x0), x1)
    F = lambda x: x0 * x + 0.5 * (min(max(x, x0), x1) - x0) ** 2 + (x1 - x0) * max(x - x1, 0.0)
    return (F(b) - F(a)) / (b - a)


def transverse_hop(r1, r2, b, x0, x1):
    """H[r2, r1] = -t exp(2 pi i b dy <clip(x, X0, X1) - X0>) over the bond from r1 to r2 (physical neighbour)."""
    (xa, ya), (xb, yb) = np.asarray(r1, float)[:2], np.asarray(r2, float)[:2]
    return -T * np.exp(2j * np.pi * b * (yb - ya) * (clip_mean(xa, xb, x0, x1) - x0))


def sample_field_system(kind, N, Lx, b, V, index=None):
    """Spinless cylinder (kind "square": W = N sites around; "zigzag": honeycomb, C = N sqrt(3)/2) with a field b
    between X0 (the largest x of the first cell) and X1 (the smallest x of the last cell): the left lead field
    free, the right lead with the constant A_y = b (X1 - X0) (its own Builder), the seam bonds to the physical
    neighbour across y = C."""
    if kind == "square":
        lat, period, C = kwant.lattice.square(1, norbs=1), 1.0, float(N)
        shape = lambda pos: -0.5 < pos[0] < Lx - 0.5 and -0.5 < pos[1] < N - 0.5
        lead_shape = lambda pos: -0.5 < pos[1] < N - 0.5
        neighbour = 1.0
        onsite_value = lambda site: V[int(round(site.pos[0])), int(round(site.pos[1]))]
    else:
        lat, shape, lead_shape, period = honeycomb("zigzag", N, Lx, norbs=1)
        C, neighbour = circumference("zigzag", N), CC
        key = lambda site: (round(float(site.pos[0]), 6), round(float(site.pos[1]), 6))
        onsite_value = lambda site: V[index[key(site)]]
    syst = kwant.Builder()
    syst[lat.shape(shape, (0, 0))] = onsite_value
    xs = sorted(site.pos[0] for site in syst.sites())
    x0 = max(x for x in xs if x < xs[0] + period - 1e-9)
    x1 = min(x for x in xs if x > xs[-1] - period + 1e-9)

    def bonds(builder, sites, value):
        """Every bond among ``sites`` and across the seam, H[w, u] = value(r_u, r_w physical)."""
        for u in sites:
            for w in sites:
                for shift in (0.0, C, -C):
                    target = w.pos + np.array([0.0, shift])
                    if abs(np.linalg.norm(target - u.pos) - neighbour) < 1e-6 and (shift != 0 or u != w):
                        builder[w, u] = value(u.pos, target)

    bonds(syst, list(syst.sites()), lambda r1, r2: transverse_hop(r1, r2, b, x0, x1))
    leads = []
    for direction, a_y in ((-1, 0.0), (1, b * (x1 - x0))):
        lead = kwant.Builder(kwant.TranslationalSymmetry((direction * period, 0)))
        lead[lat.shape(lead_shape, (0, 0))] = 0.0
        window = kwant.Builder()  # three cells, every bond mapped into the lead's unit cell
        window[lat.shape(lambda pos: -1.5 * period < pos[0] < 1.5 * period and lead_shape(pos), (0, 0))] = 0
        constant = lambda r1, r2, a=a_y: -T * np.exp(2j * np.pi * a * (r2[1] - r1[1]))
        bonds(lead, list(window.sites()), constant)
        leads.append(lead)
    syst.attach_lead(leads[0])
    syst.attach_lead(leads[1])
    return syst.finalized()


def field_in_sample(seed=108, realizations=2):
    cases = {"square": (8, 10, 1.5, [-1.05, 0.13], [0.0, 0.0071, 0.0456]),
             "zigzag": (6, 12, 0.8, [0.13, 0.41, 1.07], [0.0, 0.0123, 0.047])}
    rng = np.random.default_rng(seed)
    out, meta = {}, dict(spinless=True, t=T, seed=seed, axes=["realization", "energy", "b"], cases={},
                         note="conventions: generate_kwant_references.py docstring (field_in_sample)")
    for kind, (N, Lx, Wd, energies, bs) in cases.items():
        if kind == "square":
            V, index, pos = rng.uniform(-Wd / 2, Wd / 2, size=(realizations, Lx, N)), None, None
        else:
            pos, _, index = ribbon_sites("zigzag", N, Lx)
            V = rng.uniform(-Wd / 2, Wd / 2, size=(realizations, len(pos)))
        G = np.array([[transmissions(sample_field_system(kind, N, Lx, b, V[r], index), energies) for b in bs]
                      for r in range(realizations)]).transpose(0, 2, 1)
        meta["cases"][kind] = dict(N=N, Lx=Lx, Wd=Wd)
        out.update({f"{kind}_V": V, f"{kind}_energies": np.asarray(energies), f"{kind}_bs": np.asarray(bs),
                    f"{kind}_G": G})
        if pos is not None:
            out[f"{kind}_pos"] = pos
    return dict(meta=json.dumps(meta), **out)


FILES = {
    "su2_strip.npz": su2_strip,
    "field_in_sample.npz": field_in_sample,
    # A cylinder in a field has no edges: its leads conduct only inside the (Hofstadter) Landau bands, so the
    # energies are picked inside bands of the fluxes: (-2.31: 3/8), (-1.05: 1/8, 1/4), (0.13: all of them);
    # (-2.4: -1/3), (0.2: 1/6 with alpha, -1/3), (0.54: 1/6 without alpha, -1/3).
    "periodic_spinless.npz": lambda: periodic_strip(8, 16, False, 1.5, 102, [-2.31, -1.05, 0.13],
                                                    [0.0, 1 / 8, 1 / 4, 3 / 8], [0.0]),
    "periodic_rashba.npz": lambda: periodic_strip(6, 12, True, 1.0, 103, [-2.4, 0.2, 0.54], [0.0, 1 / 6, -1 / 3],
                                                  [0.0, 0.35]),
    "zigzag_spinful.npz": lambda: spinful_ribbon("zigzag", 6, 12, 0.5, 0.0, 104, [0.31, 0.83], [0.0, 0.02],
                                                 [0.0, 0.2], [0.0, 0.3]),
    "armchair_spinful.npz": lambda: spinful_ribbon("armchair", 8, 8, 0.5, 0.1, 105, [0.47, 1.13], [0.0, 0.02],
                                                   [0.0, 0.2], [0.0, 0.3]),
    # Cylinders holding both valleys (zigzag: every even N; armchair: N a multiple of 6). Zigzag N = 6 in b = k / C,
    # k / 6 flux quanta per hexagon; its leads conduct only in Landau (Hofstadter) bands: at E = 0.04 (modes
    # 2, 6, 0 for k = 0, 1, 2), 0.13 (2, 3, 0), 0.41 (2, 0, 6), 1.07 (5, 3, 0). Armchair N = 18 at b = 0 only
    # (docstring): modes 2, 2, 2, 6 at its energies.
    "zigzag_periodic.npz": lambda: periodic_honeycomb("zigzag", 6, 12, 0.8, [0.0, 0.15], 106,
                                                      [0.04, 0.13, 0.41, 1.07], [k / circumference("zigzag", 6)
                                                                                 for k in range(3)]),
    "armchair_periodic.npz": lambda: periodic_honeycomb("armchair", 18, 6, 0.8, [0.0, 0.15], 107,
                                                        [0.03, 0.22, 0.48, 0.71], [0.0]),
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(FILES)
    unknown = sorted(set(names) - set(FILES))
    if unknown:
        sys.exit(f"unknown files {unknown}; this script writes {list(FILES)}")
    for name in names:
        np.savez_compressed(HERE / name, **FILES[name]())
        print(name, (HERE / name).stat().st_size, "bytes")
