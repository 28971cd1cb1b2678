"""Coherent backscattering as cold-atom and optics experiments see it: the momentum-space CBS peak at -k0 and its
width law, its removal by a field, the symplectic dip, speckle disorder, the forward (CFS) peak of a localized
strip, and the backscattering cone of a reflecting slab.

    python experiments/coherent_backscattering.py [--config configs/coherent_backscattering.toml] [--out DIR] [--quiet]

Physics and estimators: docs/physics.md#momentum-backscattering and #backscattering-cone. Each part's comparator is
fixed before its run and every value is reported with its deviation in standard errors (report.json):

* **diffusive** (128 x 128 periodic box, box disorder W, plane wave k0 = (pi/4, pi/4) filtered to its band energy,
  one run per W): the peak profile n(-k0 + q) / n_L - 1 against the ladder read at the 90-degree rotated momenta
  (``dt.peak_pixels``, ``dt.peak_profile``), fitted by A exp(-q^2 / (2 s^2)). Comparators: contrast A = 1 averaged
  over t >= 7 tau_B; s^2 = 1 / (2 X) with X = Delta<r^2> / 4 - l_B^2, Delta<r^2> the spreading of a packet in the
  same realizations (``dt.ensemble_spreading``: D from the same simulation) and l_B = v tau_B the Born mean free
  path (1/tau_B = 2 pi nu W^2 / 12, nu the clean DOS per site at the band energy of k0): the Cooperon phase is set
  by the first and the last scatterer, while a packet's spread also holds its first and its current flight (mean
  square 2 l^2 each in 2D). Tested: s sqrt(2 X) = 1 and the exponent of s against X = -1/2 (fit of ln s on ln X
  over the same times). This comparator was derived after a first run had excluded the bare X = Delta<r^2> / 4
  (exponent -0.63 +- 0.05, s sqrt(2X) 1.12 +- 0.03); it was then fixed, and the W = 2.5 run tested it blind.
* **field** (open 64 x 64 box with hard walls, packet width 8 at the centre, measured in the symmetric gauge):
  the ring-referenced contrast (``dt.backscattering_contrast``) against the flux phi through the area X = D t; 0 at
  the strongest flux (4 pi phi X ~ 4), 1 at zero field.
* **symplectic** (64 x 64 spinful box, random SU(2) hoppings plus box disorder): the spin-summed contrast -1/2 (the
  triplet Cooperons dead, the singlet left).
* **speckle** (96 x 96 box, speckle V0 (|E|^2 / <|E|^2> - 1) with correlation length xi): contrast 1 late.
* **forward** (periodic strip 8 x 1024, localization length ~29): CFS contrast absent at t = 20, of order 1 (> 0.3)
  at t = 300 ... 1000 (Karpiuk et al., PRL 109, 190601 (2012)).
* **cone** (optics; docs/physics.md#backscattering-cone): the enhancement at exact backscattering of a periodic
  32 x 20 slab against 2 - S/L (S the Born single scattering), its removal by a flux in the slab (contrast against
  the neighbouring directions 1), the SU(2) (symplectic) cone against 1/2 + S/2L; **cone_width**: the crossed
  profile against k_y' + k_y at three Born l on 256-wide strips with one window of incident angles, whose
  equivalent half width times l must be constant (ratio of the extreme l: 1 within 15%); **cone_check** (fresh
  realizations, W_d = 2 and 1.4): eta against 2 - S/L with S from the modes' measured extinction lengths
  (``dt.extinction_lengths``), within 3% (the Born S of ``cone`` missed it by 4%).

Writes per part an npz of the reduced per-realization data (reused when the part's inputs are unchanged; written
atomically), report.json, momentum.png (n(k, t) images), contrast.png, width.png, cone.png.
"""

from __future__ import annotations

import math
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from common import Report, arguments, cached, pyplot
from difftransport import theory
from difftransport.runs import REQUIRED, Field, Validator, read as read_config
from difftransport.stats import jackknife

_POSITIVE = dict(minimum=0, exclusive_minimum=True)
TIMES = {"t_stop": Field((int, float), REQUIRED, **_POSITIVE), "t_step": Field((int, float), REQUIRED, **_POSITIVE)}
SECTIONS = {
    "run": {"title": Field(str, "Coherent backscattering: the momentum-space peak, its width, its switches, the cone"),
            "seed": Field(int, 0, minimum=0, doc="part p, realization r use fold_in(fold_in(key(seed), p), r)"),
            "batch": Field(int, 16, minimum=1, doc="realizations per vmapped batch (memory only)"),
            "chunk": Field(int, 128, minimum=1, doc="realizations per host chunk of n(k, t) (memory only)")},
    "diffusive": {"box": Field(int, REQUIRED, minimum=16), "strengths": Field(list, REQUIRED),
                  "realizations": Field(int, REQUIRED, minimum=8),
                  "packet_width": Field((int, float), 4.0, **_POSITIVE), "energy_width": Field((int, float), 0.3, **_POSITIVE),
                  "radius": Field(int, 6, minimum=2), "late_taus": Field((int, float), 7.0, **_POSITIVE), **TIMES},
    "field": {"box": Field(int, REQUIRED, minimum=16), "strength": Field((int, float), REQUIRED, **_POSITIVE),
              "fluxes": Field(list, REQUIRED), "realizations": Field(int, REQUIRED, minimum=4),
              "packet_width": Field((int, float), 8.0, **_POSITIVE), "energy_width": Field((int, float), 0.3, **_POSITIVE),
              "late": Field((int, float), REQUIRED, minimum=0), **TIMES},
    "symplectic": {"box": Field(int, REQUIRED, minimum=16), "strength": Field((int, float), REQUIRED, minimum=0),
                   "realizations": Field(int, REQUIRED, minimum=8), "radius": Field(int, 4, minimum=2),
                   "energy_width": Field((int, float), 0.3, **_POSITIVE), "late": Field((int, float), REQUIRED, minimum=0),
                   **TIMES},
    "speckle": {"box": Field(int, REQUIRED, minimum=16), "strength": Field((int, float), REQUIRED, **_POSITIVE),
                "correlation_length": Field((int, float), REQUIRED, **_POSITIVE),
                "realizations": Field(int, REQUIRED, minimum=8), "radius": Field(int, 5, minimum=2),
                "energy_width": Field((int, float), 0.3, **_POSITIVE), "late": Field((int, float), REQUIRED, minimum=0),
                **TIMES},
    "cone": {"width": Field(int, REQUIRED, minimum=8), "length": Field(int, REQUIRED, minimum=2),
             "strength": Field((int, float), REQUIRED, **_POSITIVE), "energy": Field((int, float), -1.0),
             "realizations": Field(int, REQUIRED, minimum=8), "min_ky": Field((int, float), 0.3, minimum=0),
             "min_velocity": Field((int, float), 1.5, minimum=0),
             "slab_flux": Field((int, float), REQUIRED, **_POSITIVE, doc="flux in the slab; flux * width integer"),
             "symplectic_realizations": Field(int, REQUIRED, minimum=8)},
    "cone_width": {"width": Field(int, REQUIRED, minimum=16), "mean_free_paths": Field(list, REQUIRED),
                   "energy": Field((int, float), -1.0), "thickness_per_l": Field((int, float), 4.0, **_POSITIVE),
                   "realizations": Field(list, REQUIRED, doc="per mean free path (the shortest l needs the most)"),
                   "min_ky": Field((int, float), REQUIRED, minimum=0, doc="incident |k_y| window, the same for every l"),
                   "max_ky": Field((int, float), REQUIRED, **_POSITIVE), "min_velocity": Field((int, float), 1.0, minimum=0)},
    "cone_check": {"width": Field(int, REQUIRED, minimum=8), "strengths": Field(list, REQUIRED),
                   "lengths": Field(list, REQUIRED, doc="slab length per strength"),
                   "realizations": Field(list, REQUIRED, doc="per strength"),
                   "extinction_realizations": Field(int, REQUIRED, minimum=32,
                                                    doc="coherent transmission at 0.4, 0.8, 1.2 x the slab length"),
                   "energy": Field((int, float), -1.0), "min_ky": Field((int, float), 0.3, minimum=0),
                   "min_velocity": Field((int, float), 1.5, minimum=0)},
    "forward": {"width": Field(int, REQUIRED, minimum=2), "length": Field(int, REQUIRED, minimum=16),
                "strength": Field((int, float), REQUIRED, **_POSITIVE), "realizations": Field(int, REQUIRED, minimum=4),
                "times": Field(list, REQUIRED), "energy_width": Field((int, float), 0.3, **_POSITIVE)},
}
PARTS = ("diffusive", "field", "symplectic", "speckle", "forward", "cone", "cone_width", "cone_check")
K0 = (math.pi / 4, math.pi / 4)  # E = -2 sqrt(2) t, v = 2, on every box whose size is a multiple of 8


def _numbers(values) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)


def load_config(path) -> dict:
    """Read and validate the TOML config (ConfigError naming the file, line and key)."""
    data, source, text = read_config(path)
    v = Validator(source, text)
    for key in data:
        if key not in SECTIONS:
            raise v.error((key,), f"is not a known section; allowed: {sorted(SECTIONS)}")
    config = {name: v.table(data.get(name, {}), schema, (name,)) for name, schema in SECTIONS.items()}
    for part in ("diffusive", "field", "symplectic", "speckle"):
        if config[part]["box"] % 8:
            raise v.error((part, "box"), f"= {config[part]['box']} must be a multiple of 8 (k0 = (pi/4, pi/4) on the grid)")
    strengths = config["diffusive"]["strengths"]
    if not strengths or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0 for w in strengths):
        raise v.error(("diffusive", "strengths"), f"= {strengths!r} must be a non-empty list of numbers > 0")
    fluxes = config["field"]["fluxes"]
    if (len(fluxes) < 2 or not _numbers(fluxes) or fluxes[0] != 0 or sorted(fluxes) != fluxes
            or len(set(fluxes)) != len(fluxes)):
        raise v.error(("field", "fluxes"), f"= {fluxes!r} must be >= 2 increasing fluxes starting at 0")
    paths = config["cone_width"]["mean_free_paths"]
    if len(paths) < 2 or not _numbers(paths) or sorted(paths) != paths or min(paths) <= 0:
        raise v.error(("cone_width", "mean_free_paths"), f"= {paths!r} must be >= 2 increasing lengths > 0")
    counts = config["cone_width"]["realizations"]
    if len(counts) != len(paths) or any(isinstance(n, bool) or not isinstance(n, int) or n < 16 for n in counts):
        raise v.error(("cone_width", "realizations"), f"= {counts!r} must be one integer >= 16 per mean free path")
    if not config["cone_width"]["min_ky"] < config["cone_width"]["max_ky"]:
        raise v.error(("cone_width", "max_ky"), "must exceed cone_width.min_ky")
    check = config["cone_check"]
    if not check["strengths"] or not _numbers(check["strengths"]) or min(check["strengths"]) <= 0:
        raise v.error(("cone_check", "strengths"), f"= {check['strengths']!r} must be a non-empty list of numbers > 0")
    for key, low in (("lengths", 5), ("realizations", 16)):
        values = check[key]
        if len(values) != len(check["strengths"]) or any(
                isinstance(n, bool) or not isinstance(n, int) or n < low for n in values):
            raise v.error(("cone_check", key), f"= {values!r} must be one integer >= {low} per strength")
    turns = config["cone"]["slab_flux"] * config["cone"]["width"]
    if abs(turns - round(turns)) > 1e-9:
        raise v.error(("cone", "slab_flux"), "times cone.width must be an integer (periodic strip)")
    times = config["forward"]["times"]
    if len(times) < 2 or not _numbers(times) or sorted(times) != times or min(times) <= 0:
        raise v.error(("forward", "times"), f"= {times!r} must be >= 2 increasing times > 0")
    return config


# ---------------------------------------------------------------------------------------------------------
# Simulation


def part_keys(config, part: str, count: int, offset: int = 0):
    """Realization r of ``part`` uses fold_in(fold_in(key(seed), part index), r): a longer run extends a shorter."""
    base = jax.random.fold_in(jax.random.key(config["run"]["seed"]), PARTS.index(part))
    return jax.vmap(lambda r: jax.random.fold_in(base, r))(jnp.arange(offset, offset + count))


def grid_times(section) -> np.ndarray:
    return np.arange(0.0, section["t_stop"] + 1e-9, section["t_step"])


def box(size: int, *, spinful=False, periodic=True) -> dt.Sample:
    if periodic:
        return dt.Sample(dt.strip(size, boundary="periodic"), size, periodic=True, spinful=spinful)
    return dt.Sample(dt.strip(size), size)


def born_time(strength: float) -> float:
    """tau_B = 1 / (2 pi nu(E) W^2 / 12) at E = eps(k0) (hbar / t)."""
    energy = -4 * math.cos(K0[0])
    return 1.0 / (2 * math.pi * float(theory.square_lattice_dos(energy)) * strength**2 / 12)


def peak_run(config, part, tag, sample, model, potential_fn, times, realizations, energy_width, radius, log):
    """Chunks of n(k, t) reduced to the peak pixels and the running mean image (n(k, t) itself, 1024 x 17 x 128^2
    floats or 2.3 GB, is not kept)."""
    k0 = dt.nearest_grid_momentum(sample, K0)
    chunk, chunks, total = config["run"]["chunk"], [], None
    for start in range(0, realizations, chunk):
        count = min(chunk, realizations - start)
        n = np.asarray(dt.ensemble_momentum_distribution(
            part_keys(config, part, count, start) if tag is None else
            jax.vmap(lambda k: jax.random.fold_in(k, tag))(part_keys(config, part, count, start)),
            sample, model, potential_fn, k0, times, energy_width=energy_width, batch=config["run"]["batch"]))
        chunks.append(dt.peak_pixels(n, sample, k0, radius=radius))
        total = n.sum(0) if total is None else total + n.sum(0)
        log(f"  {part}: {start + count}/{realizations} realizations")
    joined = {name: np.concatenate([getattr(c, name) for c in chunks]) for name in ("peak", "ladder", "ahead", "aside")}
    return {**joined, "q": chunks[0].q, "mean": total / realizations, "times": times}


def simulate_diffusive(config, strength, log):
    c = config["diffusive"]
    sample, model, times = box(c["box"]), dt.Model(energy=0.0), grid_times(c)
    start = time.perf_counter()

    def potential(key):
        return dt.anderson_potential(key, sample, strength)

    out = peak_run(config, "diffusive", round(strength * 1000), sample, model, potential, times, c["realizations"],
                   c["energy_width"], c["radius"], log)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, round(strength * 1000)))(
        part_keys(config, "diffusive", c["realizations"]))  # the same realizations, row by row
    out["spread"] = np.asarray(dt.ensemble_spreading(keys, sample, model, potential, dt.nearest_grid_momentum(sample, K0),
                                                     times, width=c["packet_width"], energy_width=c["energy_width"],
                                                     batch=config["run"]["batch"]))
    out["seconds"] = time.perf_counter() - start
    return out


def simulate_field(config, log):
    c = config["field"]
    sample, times = box(c["box"], periodic=False), grid_times(c)
    k0 = dt.nearest_grid_momentum(sample, K0)
    keys = part_keys(config, "field", c["realizations"])
    start, n = time.perf_counter(), []
    for flux in c["fluxes"]:
        dist = dt.ensemble_momentum_distribution(
            keys, sample, dt.Model(energy=0.0, flux=float(flux) or None), lambda k: dt.anderson_potential(k, sample, c["strength"]),
            k0, times, energy_width=c["energy_width"], width=c["packet_width"], batch=config["run"]["batch"])
        late = np.asarray(dist)[:, times >= c["late"]].mean(1)
        n.append(late)
        log(f"  field: flux {flux}")
    return {"late": np.stack(n, 1), "times": times, "seconds": time.perf_counter() - start}


def simulate_symplectic(config, log):
    c = config["symplectic"]
    sample = box(c["box"], spinful=True)
    start = time.perf_counter()
    out = peak_run(config, "symplectic", None, sample, dt.Model(energy=0.0),
                   lambda k: dt.draw_disorder(k, sample, strength=c["strength"], su2=True), grid_times(c),
                   c["realizations"], c["energy_width"], c["radius"], log)
    return {**out, "seconds": time.perf_counter() - start}


def simulate_speckle(config, log):
    c = config["speckle"]
    sample = box(c["box"])
    start = time.perf_counter()
    out = peak_run(config, "speckle", None, sample, dt.Model(energy=0.0),
                   lambda k: dt.speckle_potential(k, sample, c["strength"], c["correlation_length"]), grid_times(c),
                   c["realizations"], c["energy_width"], c["radius"], log)
    return {**out, "seconds": time.perf_counter() - start}


def simulate_forward(config, log):
    c = config["forward"]
    sample = dt.Sample(dt.strip(c["width"], boundary="periodic"), c["length"], periodic=True)
    k0 = dt.nearest_grid_momentum(sample, [1.0, 0.0])
    times = np.concatenate([[0.0], np.asarray(c["times"], float)])
    start = time.perf_counter()
    n = np.asarray(dt.ensemble_momentum_distribution(
        part_keys(config, "forward", c["realizations"]), sample, dt.Model(energy=0.0),
        lambda k: dt.anderson_potential(k, sample, c["strength"]), k0, times, energy_width=c["energy_width"],
        batch=config["run"]["batch"]))
    k = dt.momentum_grid(sample)
    result = dt.backscattering_contrast(n, k, k0, ring_halfwidth=0.06, exclude=0.1)
    log("  forward: done")
    # per realization, the pixels the contrast needs are a few; keep the contrasts and their errors only
    return {"times": times, "forward": np.asarray(result.forward), "forward_se": np.asarray(result.forward_se),
            "backward": np.asarray(result.backward), "backward_se": np.asarray(result.backward_se),
            "seconds": time.perf_counter() - start}


def born_length(sample, energy, strength):
    """(l, tau): the Born rate of ``single_scattering``, 1/tau = 2 sigma^2 / W sum_open 1/|v_x| (sigma^2 = W_d^2/12),
    and l = v_bar tau, v_bar the density-of-states weighted |v| = 2 sqrt(sin^2 k_x + sin^2 k_y) over the open
    modes (weight 1/|v_x|)."""
    modes = dt.scattering_matrix(sample, dt.Model(energy=energy)).modes
    open_ = np.asarray(modes.open_in)
    vx = np.abs(np.asarray(modes.v_in))[open_]
    kx, ky = np.angle(np.asarray(modes.lam_in))[open_], np.asarray(modes.ky_in)[open_]
    speed = 2 * np.sqrt(np.sin(kx) ** 2 + np.sin(ky) ** 2)
    rate = 2 * strength**2 / 12 / (sample.lattice.sites * sample.orbitals) * np.sum(1 / vx)
    return float(np.sum(speed / vx) / np.sum(1 / vx) / rate), float(1 / rate)


def simulate_cone(config, log):
    """The enhancement (with and without a field in the slab) and the SU(2) (symplectic) cone."""
    c = config["cone"]
    energy = c["energy"]
    pool = dict(min_ky=c["min_ky"], min_velocity=c["min_velocity"])
    keys = part_keys(config, "cone", c["realizations"])
    start = time.perf_counter()
    out = {}
    sample = dt.Sample(dt.strip(c["width"], boundary="periodic"), c["length"])
    for name, model in (("clean", dt.Model(energy=energy)), ("field", dt.Model(energy=energy, flux=c["slab_flux"]))):
        cone = dt.reflection_cone(keys, sample, model, c["strength"], batch=config["run"]["batch"])
        e = dt.enhancement(cone, **pool)
        out[f"{name}_eta"], out[f"{name}_eta_se"] = float(e.factor), float(e.error)
        out[f"{name}_expected"], out[f"{name}_contrast"] = float(e.expected), float(e.contrast)
        out[f"{name}_contrast_se"] = float(e.contrast_error)
        log(f"  cone: {name}")
    spinful = dt.Sample(dt.strip(c["width"], boundary="periodic"), c["length"], spinful=True)
    cone = dt.reflection_cone(part_keys(config, "cone", c["symplectic_realizations"], c["realizations"]), spinful,
                              dt.Model(energy=energy), c["strength"], batch=config["run"]["batch"], su2=True)
    e = dt.enhancement(cone, **pool)
    out.update(su2_eta=float(e.factor), su2_eta_se=float(e.error), su2_share=float(e.single_share),
               su2_contrast=float(e.contrast), su2_contrast_se=float(e.contrast_error))
    log("  cone: SU(2)")
    out["seconds"] = time.perf_counter() - start
    return out


def simulate_cone_width(config, log):
    """The crossed profile against Delta = k_y' + k_y at several Born l (W_d from l ~ 1/W_d^2), slab thickness
    proportional to l, pooled over one window of incident |k_y| for every l (the cone's shape depends on the
    angle); per realization the pooled crossed intensities."""
    c = config["cone_width"]
    energy, start, out = c["energy"], time.perf_counter(), {}
    probe = dt.Sample(dt.strip(c["width"], boundary="periodic"), 4)
    unit = born_length(probe, energy, 1.0)[0]  # l at W_d = 1
    for i, (target, count) in enumerate(zip(c["mean_free_paths"], c["realizations"])):
        strength = math.sqrt(unit / target)
        wide = dt.Sample(dt.strip(c["width"], boundary="periodic"), int(round(c["thickness_per_l"] * target)))
        ell = born_length(wide, energy, strength)[0]
        cone = dt.reflection_cone(part_keys(config, "cone_width", count, 10**6 * i), wide,
                                  dt.Model(energy=energy), strength, batch=config["run"]["batch"])
        profile = dt.cone_profile(cone, max_delta=2 / ell + 1e-9, min_ky=c["min_ky"], max_ky=c["max_ky"],
                                  min_velocity=c["min_velocity"])
        out[f"wide{i}_l"], out[f"wide{i}_strength"] = ell, strength
        out[f"wide{i}_delta"], out[f"wide{i}_crossed"] = np.asarray(profile.delta), np.asarray(profile.crossed)
        out[f"wide{i}_pooled"] = int(profile.incoming.sum())
        log(f"  cone width: l = {ell:.2f}")
    out["seconds"] = time.perf_counter() - start
    return out


def extinction_slabs(length: int) -> tuple[int, ...]:
    """Slab lengths of the extinction fit for a slab of ``length`` slices: 0.4, 0.8 and 1.2 times it."""
    return tuple(max(2, round(f * length)) for f in (0.4, 0.8, 1.2))


def simulate_cone_check(config, log):
    """Fresh realizations: per strength the enhancement of a slab and, from independent realizations, the measured
    extinction lengths of its modes (dt.extinction_lengths); the single-scattering shares with the measured and with
    the Born attenuation, and the first with every l moved by one standard error (the comparator's error)."""
    c = config["cone_check"]
    start, out = time.perf_counter(), {}
    model = dt.Model(energy=c["energy"])
    pool = dict(min_ky=c["min_ky"], min_velocity=c["min_velocity"])
    for i, (strength, length, count) in enumerate(zip(c["strengths"], c["lengths"], c["realizations"])):
        sample = dt.Sample(dt.strip(c["width"], boundary="periodic"), length)
        ext = dt.extinction_lengths(part_keys(config, "cone_check", c["extinction_realizations"], 10**6 * i + 5 * 10**5),
                                    sample, model, strength, lengths=extinction_slabs(length),
                                    batch=config["run"]["batch"])
        cone = dt.reflection_cone(part_keys(config, "cone_check", count, 10**6 * i), sample, model, strength,
                                  batch=config["run"]["batch"], extinction=ext.length)
        e = dt.enhancement(cone, **pool)

        def share(extinction):
            single = dt.single_scattering(cone.modes, sample, strength**2 / 12, extinction=extinction)[0]
            return float(dt.enhancement(eqx.tree_at(lambda x: x.single, cone, single), **pool).single_share)

        out[f"check{i}_eta"], out[f"check{i}_eta_se"] = float(e.factor), float(e.error)
        out[f"check{i}_share"], out[f"check{i}_share_born"] = float(e.single_share), share(None)
        out[f"check{i}_share_se"] = abs(share(ext.length + ext.error) - share(ext.length - ext.error)) / 2
        use = np.asarray(e.incoming)
        out[f"check{i}_ratio"] = float(np.mean(np.asarray(ext.length)[use] / np.asarray(ext.born)[use]))
        out[f"check{i}_pooled"] = int(use.sum())
        log(f"  cone check: W_d = {strength:g}")
    out["seconds"] = time.perf_counter() - start
    return out


def simulate(config, out: pathlib.Path, log=print) -> dict:
    """Every part, each cached in out/<part>.npz under the hash of its inputs."""
    data = {}
    for strength in config["diffusive"]["strengths"]:
        inputs = {"seed": config["run"]["seed"], "strength": strength,
                  **{k: v for k, v in config["diffusive"].items() if k != "strengths"}}
        data[f"diffusive_{strength:g}"] = cached(out / f"diffusive_W{strength:g}.npz", inputs,
                                                 lambda s=strength: simulate_diffusive(config, s, log), log)
    for part, fn in (("field", simulate_field), ("symplectic", simulate_symplectic), ("speckle", simulate_speckle),
                     ("forward", simulate_forward), ("cone", simulate_cone), ("cone_width", simulate_cone_width),
                     ("cone_check", simulate_cone_check)):
        inputs = {"seed": config["run"]["seed"], **config[part]}
        data[part] = cached(out / f"{part}.npz", inputs, lambda f=fn: f(config, log), log)
    return data


# ---------------------------------------------------------------------------------------------------------
# Analysis


def pixels_of(d, times=None) -> dt.PeakPixels:
    """The stored pixels as dt.PeakPixels, all times or averaged over the boolean mask ``times``."""
    pick = (lambda a: a) if times is None else (lambda a: a[:, times].mean(1))
    return dt.PeakPixels(q=d["q"], peak=pick(d["peak"]), ladder=pick(d["ladder"]), ahead=pick(d["ahead"]),
                         aside=pick(d["aside"]))


def equivalent_width(crossed_mean, delta, ell) -> float:
    """Equivalent half width h sum_{|Delta| <= 2/l} C(Delta) / (2 C(0)) of a crossed profile (1/a)."""
    step = float(delta[1] - delta[0])
    inside = np.abs(delta) <= 2 / ell + 1e-12
    return step * float(np.sum(crossed_mean[inside])) / (2 * float(crossed_mean[np.argmin(np.abs(delta))]))


def analyse(config, data, out: pathlib.Path) -> Report:
    plt = pyplot()
    report = Report(config["run"]["title"])
    blocks = 32
    c = config["diffusive"]
    curves, laws, seconds = {}, {}, {}
    for strength in c["strengths"]:
        d = data[f"diffusive_{strength:g}"]
        tau = born_time(strength)
        late = d["times"] >= c["late_taus"] * tau
        tmin = float(d["times"][late][0])
        curves[strength] = mean = dt.peak_profile(pixels_of(d), blocks=blocks, over=late)
        law = laws[strength] = dt.width_law(pixels_of(d), d["spread"], d["times"], tmin=tmin, offset=(2 * tau) ** 2,
                                            blocks=blocks)
        bare = dt.width_law(pixels_of(d), d["spread"], d["times"], tmin=tmin, blocks=blocks)
        seconds[f"diffusive_{strength:g}"] = float(d["seconds"])
        tag = f"W={strength:g} ({c['box']}^2, tau_B={tau:.2f}, l_B={2 * tau:.2f}, t>={tmin:g})"
        report.add(f"CBS contrast A, {tag}", mean.over_amplitude, mean.over_amplitude_se, 1.0,
                   "mean over the times of the profile fit's amplitude")
        report.add(f"CBS pixel contrast at -k0, {tag}", mean.over_backward, mean.over_backward_se, 1.0)
        mixed = dt.peak_profile(pixels_of(d, late), blocks=blocks)
        report.add(f"CBS contrast A of the time-averaged distributions, {tag}", float(mixed.amplitude),
                   float(mixed.amplitude_se), None, "biased low: one Gaussian fitted to a mixture of widths (the first "
                   "estimator of this run; replaced after it)")
        report.add(f"width exponent vs X = dr^2/4 - l_B^2, {tag}", law.exponent, law.exponent_se, -0.5)
        report.add(f"s sqrt(2X), {tag}", law.amplitude, law.amplitude_se, 1.0)
        report.add(f"width exponent vs bare dr^2/4, {tag}", bare.exponent, bare.exponent_se, -0.5,
                   "the comparator the first run excluded")
        report.add(f"s sqrt(2 dr^2/4) (bare), {tag}", bare.amplitude, bare.amplitude_se, 1.0)
        gone = d["times"] >= min(15 * tau, d["times"][-1])  # the unscattered packet at +k0, e^(-t/tau) < 3e-7
        forward = dt.peak_profile(pixels_of(d), blocks=blocks, over=gone)
        report.add(f"CFS pixel contrast at +k0 (no localization), {tag[:-1]}, t>={d['times'][gone][0]:g})",
                   forward.over_forward, forward.over_forward_se, 0.0,
                   "t >= 15 tau_B: at 7 tau_B the unscattered packet still sits at +k0 (window set after a first run)")

    f = config["field"]
    fd = data["field"]
    sample = box(f["box"], periodic=False)
    k0 = dt.nearest_grid_momentum(sample, K0)
    field = dt.backscattering_contrast(fd["late"], dt.momentum_grid(sample), k0)
    seconds["field"] = float(fd["seconds"])
    times = fd["times"]
    reference = laws.get(f["strength"])  # X = D t of the periodic run with the same disorder, over the same times
    area = (None if reference is None else
            float(np.mean(np.interp(times[times >= f["late"]], grid_times(c), reference.x))))
    for i, flux in enumerate(f["fluxes"]):
        expected = 1.0 if flux == 0 else (0.0 if flux == max(f["fluxes"]) else None)
        note = "" if area is None else f"flux through X = D t: {flux * area:.3f} h/e (4 pi phi X = {4 * math.pi * flux * area:.2f})"
        report.add(f"CBS contrast in a field, flux {flux:g} (open {f['box']}^2, t>={f['late']:g})",
                   float(field.backward[i]), float(field.backward_se[i]), expected, note)

    sy, sp = config["symplectic"], config["speckle"]
    sd, pd = data["symplectic"], data["speckle"]
    for part, label, expected in (
            ("symplectic", f"symplectic (SU(2) hoppings, W={sy['strength']:g}, t>={sy['late']:g})", -0.5),
            ("speckle", f"speckle (V0={sp['strength']:g}, xi={sp['correlation_length']:g}, t>={sp['late']:g})", 1.0)):
        d = data[part]
        curves[part] = curve = dt.peak_profile(pixels_of(d), blocks=blocks, over=d["times"] >= config[part]["late"])
        seconds[part] = float(d["seconds"])
        report.add(f"{label} CBS contrast A", curve.over_amplitude, curve.over_amplitude_se, expected)
        report.add(f"{label} pixel contrast at -k0", curve.over_backward, curve.over_backward_se, expected)
    symplectic_curve, speckle_curve = curves.pop("symplectic"), curves.pop("speckle")

    fw = data["forward"]
    seconds["forward"] = float(fw["seconds"])
    for t, value, err in zip(fw["times"][1:], fw["forward"][1:], fw["forward_se"][1:]):
        report.add(f"CFS contrast at t={t:g} (strip {config['forward']['width']}x{config['forward']['length']})",
                   float(value), float(err), None, "absent early (< 0.3), of order 1 late (> 0.3)")
    co = config["cone"]
    cd = data["cone"]
    seconds["cone"] = float(cd["seconds"])
    tag = f"(W={co['width']}, L={co['length']}, W_d={co['strength']:g}, E={co['energy']:g})"
    report.add(f"cone enhancement eta {tag}", float(cd["clean_eta"]), float(cd["clean_eta_se"]),
               float(cd["clean_expected"]), "2 - S/L, S by the Born single-scattering formula")
    report.add(f"cone contrast vs neighbours, flux {co['slab_flux']:g} in the slab", float(cd["field_contrast"]),
               float(cd["field_contrast_se"]), 1.0, f"zero field: {float(cd['clean_contrast']):.3f} +- "
               f"{float(cd['clean_contrast_se']):.3f}")
    report.add(f"symplectic cone eta (SU(2) hoppings) {tag}", float(cd["su2_eta"]), float(cd["su2_eta_se"]),
               0.5 + float(cd["su2_share"]) / 2, "1/2 + S/(2L) with the on-site Born S, which ignores the SU(2) "
               "scattering: not a valid input for this model")
    report.add("symplectic cone contrast vs neighbours", float(cd["su2_contrast"]), float(cd["su2_contrast_se"]), None,
               "< 1: a dip")
    ck, kd = config["cone_check"], data["cone_check"]
    seconds["cone_check"] = float(kd["seconds"])
    for i, (strength, length) in enumerate(zip(ck["strengths"], ck["lengths"])):
        eta, eta_se = float(kd[f"check{i}_eta"]), float(kd[f"check{i}_eta_se"])
        share, share_se, born = (float(kd[f"check{i}_share"]), float(kd[f"check{i}_share_se"]),
                                 float(kd[f"check{i}_share_born"]))
        tag = f"(W={ck['width']}, L={length}, W_d={strength:g}, fresh realizations)"
        report.add(f"cone eta vs 2 - S/L, S with the measured extinction {tag}", eta, math.hypot(eta_se, share_se),
                   2 - share, f"S/L = {share:.4f} +- {share_se:.4f} (l / l_Born = {float(kd[f'check{i}_ratio']):.3f}); "
                   f"eta alone +- {eta_se:.4f}; within 3%")
        report.add(f"cone eta vs 2 - S/L, Born S {tag}", eta, eta_se, 2 - born, "the comparator of the first run")
    cw, wd = config["cone_width"], data["cone_width"]
    seconds["cone_width"] = float(wd["seconds"])
    widths = []
    for i in range(len(cw["mean_free_paths"])):
        ell, delta, crossed = float(wd[f"wide{i}_l"]), wd[f"wide{i}_delta"], wd[f"wide{i}_crossed"]
        value, error = jackknife(lambda rows, d=delta, x=crossed, l=ell: equivalent_width(x[rows].mean(0), d, l),
                                 np.arange(crossed.shape[0]), blocks=16)
        widths.append((ell, float(value) * ell, float(error) * ell))
        report.add(f"cone equivalent half width x l, l={ell:.2f} (W={cw['width']}, |k_y| in [{cw['min_ky']:g}, "
                   f"{cw['max_ky']:g}], {int(wd[f'wide{i}_pooled'])} modes)", widths[-1][1], widths[-1][2], None)
    (l0, w0, e0), (l1, w1, e1) = widths[0], widths[-1]
    ratio = w1 / w0
    report.add(f"cone width x l, l={l1:.1f} over l={l0:.1f}", ratio, abs(ratio) * math.hypot(e0 / w0, e1 / w1), 1.0,
               "width proportional to 1/l: 1 within 15%")
    report.print()

    # Figures: n(k, t) images, contrasts against time, the width law.
    first = data[f"diffusive_{c['strengths'][0]:g}"]
    size = c["box"]
    shown = [i for i, t in enumerate(first["times"]) if t in (0.0, 8.0, 24.0, first["times"][-1])]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3.2 * (len(shown) + 1), 3.6))
    for ax, i in zip(axes[:-1], shown):
        image = np.fft.fftshift(first["mean"][i])
        extent = [-math.pi, math.pi - 2 * math.pi / size] * 2
        ax.imshow(np.log10(np.maximum(image, 1e-9)).T, origin="lower", extent=extent, cmap="magma",
                  vmin=np.log10(image.max()) - 3.5, vmax=np.log10(image.max()))
        ax.plot([-K0[0]], [-K0[1]], "c+", ms=10)
        ax.set_title(f"t = {first['times'][i]:g} hbar/t", fontsize=9)
        ax.set_xlabel("k_x")
    axes[0].set_ylabel("k_y")
    # zoom on -k0 (linear scale) at the middle time shown: the CBS spot on the ring
    i = shown[len(shown) // 2]
    image = np.fft.fftshift(first["mean"][i])
    k = np.fft.fftshift(2 * np.pi * np.fft.fftfreq(size))
    near = np.abs(k + K0[0]) <= 0.45
    axes[-1].imshow(image[np.ix_(near, near)].T, origin="lower", cmap="magma",
                    extent=[k[near][0], k[near][-1], k[near][0], k[near][-1]])
    axes[-1].plot([-K0[0]], [-K0[1]], "c+", ms=10)
    axes[-1].set_title(f"near -k0, t = {first['times'][i]:g} (linear)", fontsize=9)
    axes[-1].set_xlabel("k_x")
    fig.suptitle(f"log10 <n(k, t)>, {size}^2 box, W = {c['strengths'][0]:g}, launch k0 = (pi/4, pi/4) "
                 "(+ marks -k0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "momentum.png", dpi=130)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for strength, curve in curves.items():
        times = data[f"diffusive_{strength:g}"]["times"]
        a1.errorbar(times, curve.amplitude, curve.amplitude_se, fmt="o-", ms=3, label=f"CBS, W = {strength:g}")
        a1.errorbar(times, curve.forward, curve.forward_se, fmt="s:", ms=3, label=f"CFS, W = {strength:g}")
    a1.errorbar(sd["times"], symplectic_curve.amplitude, symplectic_curve.amplitude_se, fmt="v-", ms=3,
                label="CBS, SU(2) spin-orbit")
    a1.errorbar(pd["times"], speckle_curve.amplitude, speckle_curve.amplitude_se, fmt="d-", ms=3, label="CBS, speckle")
    for y in (1.0, 0.0, -0.5):
        a1.axhline(y, color="k", lw=0.6, ls="--")
    a1.set_ylim(-1.0, 1.6)
    a1.set_xlabel("t (hbar/t)")
    a1.set_ylabel("contrast")
    a1.legend(fontsize=7)
    a1.set_title("peak contrasts (fit amplitude at -k0; pixel at +k0)", fontsize=9)
    a2.errorbar(fw["times"][1:], fw["forward"][1:], fw["forward_se"][1:], fmt="o-", label="CFS, localized strip")
    a2.errorbar(fw["times"][1:], fw["backward"][1:], fw["backward_se"][1:], fmt="s:", label="CBS, same strip")
    a2.set_xscale("log")
    a2.axhline(0, color="k", lw=0.6)
    a2.axhline(1, color="k", lw=0.6, ls="--")
    a2.set_xlabel("t (hbar/t)")
    a2.legend(fontsize=8)
    a2.set_title(f"forward peak, strip {config['forward']['width']} x {config['forward']['length']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "contrast.png", dpi=130)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for strength, law in laws.items():
        ok = law.x > 0
        a1.errorbar(law.x[ok], law.width[ok], law.width_se[ok], fmt="o", ms=3, label=f"W = {strength:g}: "
                    f"exponent {law.exponent:.3f} +- {law.exponent_se:.3f}")
        a2.errorbar(data[f"diffusive_{strength:g}"]["times"][ok], law.scaled[ok], law.scaled_se[ok], fmt="o-", ms=3,
                    label=f"W = {strength:g}")
    grid = np.geomspace(10, 500, 50)
    a1.plot(grid, 1 / np.sqrt(2 * grid), "k--", lw=0.8, label="s = (2X)^(-1/2)")
    a1.axhline(2 * math.pi / size, color="grey", lw=0.6, ls=":", label="grid spacing")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("X = Delta<r^2>/4 - l_B^2")
    a1.set_ylabel("peak width s (1/a)")
    a1.legend(fontsize=7)
    a2.axhline(1, color="k", lw=0.6, ls="--")
    a2.set_xlabel("t (hbar/t)")
    a2.set_ylabel("s sqrt(2X)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "width.png", dpi=130)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (ell, wl, _) in enumerate(widths):
        delta, crossed = wd[f"wide{i}_delta"], wd[f"wide{i}_crossed"]
        mean, err = crossed.mean(0), crossed.std(0, ddof=1) / math.sqrt(crossed.shape[0])
        centre = mean[np.argmin(np.abs(delta))]
        a1.errorbar(delta, mean / centre, err / abs(centre), fmt="o-", ms=3, label=f"l = {ell:.1f}")
        a2.errorbar(delta * ell, mean / centre, err / abs(centre), fmt="o-", ms=3, label=f"l = {ell:.1f}: width x l = {wl:.2f}")
    a1.set_xlabel("Delta = k_y' + k_y (1/a)")
    a1.set_ylabel("crossed intensity / its peak")
    a1.set_title(f"backscattering cone, periodic strip W = {cw['width']}, slab {cw['thickness_per_l']:g} l",
                 fontsize=9)
    a1.legend(fontsize=8)
    a2.set_xlabel("Delta l")
    a2.set_title(f"eta = {float(cd['clean_eta']):.3f} +- {float(cd['clean_eta_se']):.3f} (2 - S/L = "
                 f"{float(cd['clean_expected']):.3f}); SU(2): {float(cd['su2_eta']):.3f} +- {float(cd['su2_eta_se']):.3f}",
                 fontsize=9)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cone.png", dpi=130)
    plt.close(fig)

    report.write(out, {"seconds": seconds})
    print(f"figures: {out / 'momentum.png'}, {out / 'contrast.png'}, {out / 'width.png'}, {out / 'cone.png'}")
    return report


def main():
    args = arguments("coherent_backscattering", __doc__)
    config = load_config(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    data = simulate(config, args.out, log=(lambda *_: None) if args.quiet else print)
    analyse(config, data, args.out)


if __name__ == "__main__":
    main()
