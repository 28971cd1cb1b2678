"""The return probability of a diffusing quantum particle, against dimension and field.

    python experiments/return_probability.py --config configs/return_probability.toml [--out DIR]

A particle is released at the origin of a disordered periodic box (d = 1, 2, 3) with a Gaussian energy
filter (``EnergyWindow``: energy E +- sigma; sigma = 0 is the bare site state), and P(t), the probability to
find it back on the origin site, is averaged over disorder. In the diffusive window tau << t << L^2 / D:

* P(t) ~ t^(-d/2): fitted exponents, next to the exponent of the classical lattice walk over the same window;
* P(B = 0) = 2 P_cl (coherent backscattering: the Cooperon equals the diffuson at the origin) and
  P(B) = P_cl once a field has dephased the Cooperon. The clean measure is R = P(0) / P(B) -> 2 (theory
  2 / (1 + x / sinh x), x = 4 pi flux D t): same realizations, the classical part cancels.
* The classical comparison P_cl is the lattice random walk (master equation) in the same box whose walk time
  u_a(t) = D_a t is measured from the spreading of the same quantum ensemble (independent realizations),
  through the decay of the longest-wavelength density mode (``spreading``): exact for the walk at all times
  and insensitive to the periodic boundary. P / P_cl -> 2 at B = 0 and -> 1 in the field.
* An ``ergodic`` ensemble (small box, t >> Heisenberg time) shows why the window matters: there the ratio
  tends to the random-matrix value <|psi|^4>_GOE / <|psi|^4>_GUE = 3/2, not 2.

Every ensemble uses the same disorder realizations at every flux (common random numbers), so R has a small
error. Errors are delete-one-group jackknife errors over disorder realizations. Writes ``data.npz``,
``results.json`` and figures under ``--out``. Conventions and references: difftransport/_core/evolution.py,
docs/gallery.md#return-probability.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import sys
import time
import zlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import difftransport  # noqa: E402,F401  (float64)
from difftransport.runs import REQUIRED, ConfigError, Field, Validator, read as read_config  # noqa: E402
from difftransport.stats import jackknife  # noqa: E402
import equinox as eqx  # noqa: E402
from difftransport import (  # noqa: E402
    EnergyWindow,
    Model,
    Sample,
    bar,
    chain,
    classical_return_probability,
    cooperon_field_ratio,
    energy_filter,
    evolution_hamiltonian,
    evolve,
    return_probability,
    site_state,
    spreading,
    strip,
)

DEFAULT_CONFIG = ROOT / "configs" / "return_probability.toml"
REGIMES = ("diffusive", "ergodic")

# ---------------------------------------------------------------------------------------------------------
# Configuration

RUN = {
    "seed": Field(int, 0, minimum=0, doc="PRNG seed; realization r of ensemble NAME uses fold_in(fold_in(key(seed), crc32(NAME)), r)"),
    "title": Field(str, "Return probability of a released particle", doc="figure title"),
    "chunk": Field(int, 8, minimum=1, doc="realizations per vmapped batch (memory bound); does not change results"),
    "bins": Field(int, 24, minimum=4, doc="log-spaced time bins for the averages"),
    "groups": Field(int, 32, minimum=2, doc="jackknife groups over realizations"),
}
ENSEMBLE = {
    "label": Field(str, "", doc="legend label"),
    "regime": Field(str, "diffusive", allowed=REGIMES, doc="diffusive window (theory 2, 1, -d/2) or ergodic limit (3/2)"),
    "dimension": Field(int, REQUIRED, minimum=1, doc="effective dimension d of the diffusion (number of long axes)"),
    "shape": Field(list, REQUIRED, doc="box lengths [L], [Lx, Ly] or [Lx, Ly, Lz], each >= 3, periodic"),
    "strength": Field((int, float), REQUIRED, minimum=0, doc="box disorder W: on-site energies uniform in [-W/2, W/2]"),
    "hopping": Field((int, float), 1.0, minimum=0, exclusive_minimum=True, doc="hopping t"),
    "energy": Field((int, float), 0.0, doc="centre E of the released energy distribution (units of t)"),
    "energy_width": Field((int, float), REQUIRED, minimum=0, doc="its standard deviation sigma; 0: plain site state (all energies)"),
    "flux_windings": Field(list, [0], doc="fluxes k / Ly per plaquette (h/e), integers k, the first 0"),
    "realizations": Field(int, REQUIRED, minimum=2, doc="disorder realizations for P(t)"),
    "times": Field(dict, REQUIRED, doc="{start, stop, num}: log-spaced sample times (hbar / t)"),
    "window": Field(dict, REQUIRED, doc="{start, stop}: the time window of the fits and averages"),
    "spreading_realizations": Field(int, 0, minimum=0, doc="independent realizations for <x_a^2(t)> (0: none)"),
    "spreading_times": Field(dict, None, doc="{start, stop, num}: linear times for <x_a^2(t)> and the fit of D"),
}
TIMES = {"start": Field((int, float), REQUIRED, minimum=0, exclusive_minimum=True),
         "stop": Field((int, float), REQUIRED, minimum=0, exclusive_minimum=True),
         "num": Field(int, REQUIRED, minimum=2)}
WINDOW = {"start": Field((int, float), REQUIRED, minimum=0, exclusive_minimum=True),
          "stop": Field((int, float), REQUIRED, minimum=0, exclusive_minimum=True)}


def validate(data: dict, source: str = "<config>", text: str = "") -> dict:
    """Validate a parsed config; unknown keys, wrong types and out-of-range values raise ConfigError naming the
    key and the value. Returns the normalized config (all defaults written out)."""
    v = Validator(source, text)
    for key in data:
        if key not in ("run", "ensembles"):
            raise v.error((key,), "is not a known section; allowed: ['ensembles', 'run']")
    run = v.table(data.get("run", {}), RUN, ("run",))
    ensembles = data.get("ensembles")
    if not isinstance(ensembles, dict) or not ensembles:
        raise v.error(("ensembles",), "is missing: define at least one [ensembles.NAME] table")
    out = {"run": run, "ensembles": {}}
    for name, entry in ensembles.items():
        path = ("ensembles", name)
        e = v.table(entry, ENSEMBLE, path)
        shape = e["shape"]
        if not (1 <= len(shape) <= 3) or any(isinstance(x, bool) or not isinstance(x, int) or x < 3 for x in shape):
            raise v.error(path + ("shape",), f"= {shape!r} must be a list of 1 to 3 integers >= 3")
        if e["dimension"] > len(shape):
            raise v.error(path + ("dimension",), f"= {e['dimension']} exceeds the number of box axes ({len(shape)})")
        windings = e["flux_windings"]
        if not windings or any(isinstance(k, bool) or not isinstance(k, int) for k in windings):
            raise v.error(path + ("flux_windings",), f"= {windings!r} must be a non-empty list of integers")
        if windings[0] != 0:
            raise v.error(path + ("flux_windings",), f"= {windings!r} must start with 0 (the zero-field reference)")
        if len(shape) == 1 and any(windings):
            raise v.error(path + ("flux_windings",), f"= {windings!r}: a chain (d = 1 box) has no plaquettes, use [0]")
        if e["regime"] == "ergodic" and len(windings) < 2:
            raise v.error(path + ("flux_windings",), f"= {windings!r}: the ergodic regime compares B = 0 with B != 0")
        e["times"] = v.table(e["times"], TIMES, path + ("times",))
        e["window"] = v.table(e["window"], WINDOW, path + ("window",))
        t, w = e["times"], e["window"]
        if not t["stop"] > t["start"]:
            raise v.error(path + ("times", "stop"), f"= {t['stop']!r} must exceed times.start = {t['start']!r}")
        if not (t["start"] <= w["start"] < w["stop"] <= t["stop"]):
            raise v.error(path + ("window",), f"= {w!r} must satisfy times.start <= start < stop <= times.stop")
        if e["spreading_realizations"]:
            if e["spreading_times"] is None:
                raise v.error(path + ("spreading_times",), "is missing: spreading_realizations > 0 needs {start, stop, num}")
            s = v.table(e["spreading_times"], TIMES, path + ("spreading_times",))
            if not s["stop"] > s["start"]:
                raise v.error(path + ("spreading_times", "stop"), f"= {s['stop']!r} must exceed spreading_times.start")
            if not (s["start"] <= e["window"]["start"] and e["window"]["stop"] <= s["stop"]):
                raise v.error(path + ("spreading_times",),
                              f"= {s!r} must cover the window {e['window']!r} (the classical walk needs the spreading there)")
            e["spreading_times"] = s
        elif e["regime"] == "diffusive":
            raise v.error(path + ("spreading_realizations",), "= 0: the diffusive regime needs D from the spreading (> 0)")
        if e["energy_width"] == 0 and e["energy"] != 0:
            raise v.error(path + ("energy",), f"= {e['energy']!r} needs energy_width > 0 (0 means the plain site state)")
        if run["groups"] > e["realizations"]:
            raise v.error(("run", "groups"), f"= {run['groups']} exceeds ensembles.{name}.realizations = {e['realizations']}")
        out["ensembles"][name] = e
    return out


def load_config(path) -> dict:
    """Read and validate a TOML config."""
    data, source, text = read_config(path)  # ConfigError naming the file if unreadable or not TOML
    return validate(data, source, text)


# ---------------------------------------------------------------------------------------------------------
# Simulation


def _sample(shape) -> Sample:
    """The box of side lengths ``shape``, periodic along every axis: a chain, strip or bar closed along x."""
    lattice = (chain() if len(shape) == 1 else strip(shape[1], boundary="periodic") if len(shape) == 2
               else bar(shape[1], shape[2], boundary="periodic"))
    return Sample(lattice, shape[0], periodic=True)


def _ensemble_setup(e: dict):
    box = _sample(e["shape"])
    fluxes = [k / e["shape"][1] if len(e["shape"]) > 1 else 0.0 for k in e["flux_windings"]]
    window = None if e["energy_width"] == 0 else EnergyWindow(energy=e["energy"], energy_width=float(e["energy_width"]))
    t = e["times"]
    times = np.geomspace(t["start"], t["stop"], t["num"])
    return box, fluxes, window, times


def _model(e: dict):
    """The zero-field model, built outside jit: its hopping fixes the Chebyshev order, so it must stay concrete."""
    return Model(energy=0.0, hopping=float(e["hopping"]), flux=0.0 if len(e["shape"]) > 1 else None)


def _at_flux(model: Model, flux) -> Model:
    return model if model.flux is None else eqx.tree_at(lambda m: m.flux, model, flux)


def simulate(name: str, e: dict, seed: int, chunk: int, edges: np.ndarray, log=print) -> dict:
    """P(t) binned per realization (R, F, bins) and the spreading u_a(t) (R_s, F, T_s, d) of independent
    realizations (``difftransport.spreading``: the walk time D_a t of the classical walk)."""
    box, fluxes, window, times = _ensemble_setup(e)
    key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))
    model, strength = _model(e), float(e["strength"])
    index = np.digitize(times, edges) - 1
    members = [np.nonzero(index == b)[0] for b in range(len(edges) - 1)]

    def one(k, flux):
        return return_probability(k, box, _at_flux(model, flux), times, strength=strength, window=window)

    batched = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    flux_array = jnp.asarray(fluxes)
    binned = []
    start = time.perf_counter()
    for first in range(0, e["realizations"], chunk):
        count = min(chunk, e["realizations"] - first)
        keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(first, first + count))
        p = np.asarray(batched(keys, flux_array))  # (count, F, T)
        binned.append(np.stack([p[..., m].mean(-1) for m in members], axis=-1))
    binned = np.concatenate(binned)
    log(f"  {name}: P(t) for {e['realizations']} realizations x {len(fluxes)} fluxes in {time.perf_counter() - start:.1f} s")

    spread = None
    spread_times = None
    if e["spreading_realizations"]:
        s = e["spreading_times"]
        spread_times = np.linspace(s["start"], s["stop"], s["num"])

        def spread_one(k, flux):
            ham = evolution_hamiltonian(k, box, _at_flux(model, flux), strength=strength)
            state = site_state(box)
            if window is not None:
                state = energy_filter(state, ham, window)
            return evolve(state, ham, spread_times, observable=lambda psi: spreading(box, psi))

        batched_spread = jax.jit(jax.vmap(jax.vmap(spread_one, in_axes=(None, 0)), in_axes=(0, None)))
        start = time.perf_counter()
        chunks = []
        offset = e["realizations"]  # independent of the P(t) realizations
        for first in range(0, e["spreading_realizations"], chunk):
            count = min(chunk, e["spreading_realizations"] - first)
            keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(offset + first, offset + first + count))
            chunks.append(np.asarray(batched_spread(keys, flux_array)))
        spread = np.concatenate(chunks)  # (R_s, F, T_s, d)
        log(f"  {name}: spreading for {e['spreading_realizations']} realizations in {time.perf_counter() - start:.1f} s")
    return {"P": binned, "spread": spread, "spread_times": spread_times, "fluxes": np.asarray(fluxes)}


# ---------------------------------------------------------------------------------------------------------
# Statistics


def fit_diffusion(spread_times, walk, window):
    """Slope of the walk time u_a(t) = D_a t + c_a over the spreading times inside the window, per axis:
    the diffusion constants D_a. walk: (T_s, d)."""
    use = (spread_times >= window["start"]) & (spread_times <= window["stop"])
    if use.sum() < 2:
        use = np.argsort(np.abs(spread_times - window["start"]))[:2]
    return np.polyfit(spread_times[use], walk[use], 1)[0]


def classical_curve(box: Sample, spread_times, walk, times):
    """P_cl(t): the classical lattice walk in the same box with the measured walk time u_a(t) per axis
    (linear interpolation of u_a between spreading times; the walk is exact for u_a = D_a t); NaN outside
    the spreading times."""
    out = np.ones_like(times)
    for axis, length in enumerate(box.potential_shape):
        u = np.interp(times, spread_times, walk[:, axis])
        out = out * np.asarray(classical_return_probability((length,), 1.0, u))
    outside = (times < spread_times[0]) | (times > spread_times[-1])
    return np.where(outside, np.nan, out)  # no extrapolation outside the measured spreading


def log_slope(t, p):
    """Least-squares slope of log p against log t."""
    return np.polyfit(np.log(t), np.log(p), 1)[0]


def analyse(name: str, e: dict, data: dict, edges: np.ndarray, groups: int) -> dict:
    box, fluxes, window, times = _ensemble_setup(e)
    index = np.digitize(times, edges) - 1
    centres = np.array([math.exp(np.log(times[index == b]).mean()) for b in range(len(edges) - 1)])
    w = e["window"]
    inside = (centres >= w["start"]) & (centres <= w["stop"])
    d = e["dimension"]
    P = data["P"]  # (R, F, B)
    result = {"label": e["label"] or name, "regime": e["regime"], "dimension": d, "shape": e["shape"],
              "fluxes": [float(f) for f in fluxes], "bins": centres.tolist(), "window_bins": int(inside.sum())}
    mean, error = jackknife(lambda p: p.mean(0), P, blocks=groups)
    result["P_mean"], result["P_error"] = mean.tolist(), error.tolist()

    # Diffusion constants and the classical lattice walk from the spreading of independent realizations.
    classical = None
    if data["spread"] is not None:
        st = data["spread_times"]
        spread = data["spread"]  # (R_s, F, T_s, d)
        g = min(groups, spread.shape[0])
        fits = []
        for f in range(len(fluxes)):
            dval, derr = jackknife(lambda u: fit_diffusion(st, u.mean(0), w), spread[:, f], blocks=g)
            fits.append({"D": dval.tolist(), "D_error": derr.tolist()})
        result["spreading"] = fits
        result["spread_times"] = st.tolist()
        result["spread_mean"] = spread.mean(0).tolist()
        classical = np.stack([classical_curve(box, st, spread[:, f].mean(0), centres) for f in range(len(fluxes))])
        result["P_classical"] = classical.tolist()
        # Relative error of P_cl from the spreading: P_cl ~ prod_a u_a^(-1/2) (jackknife over realizations).
        rel = []
        for f in range(len(fluxes)):
            _, err = jackknife(lambda u: np.log(classical_curve(box, st, u.mean(0), centres[inside])), spread[:, f],
                               blocks=g)
            rel.append(float(np.mean(err)))
        result["P_classical_relative_error"] = rel

    # Exponents of P(t): least-squares slope of log <P> against log t over the window bins; the classical walk
    # with the measured spreading, over the same bins, shows the finite-time and finite-box corrections.
    exponents = []
    for f in range(len(fluxes)):
        tw = centres[inside]
        value, err = jackknife(lambda p: log_slope(tw, p.mean(0)[f, inside]), P, blocks=groups)
        entry = {"value": float(value), "error": float(err)}
        if classical is not None:
            entry["classical_walk"] = float(log_slope(tw, classical[f, inside]))
        exponents.append(entry)
    result["exponents"] = exponents
    result["exponent_theory"] = -d / 2

    # Enhancement: R = P(0) / P(B) with t^(d/2)-weighted window averages, per bin, and against theory.
    weight = centres[inside] ** (d / 2)
    if len(fluxes) > 1:
        ratios = []
        for f in range(1, len(fluxes)):
            value, err = jackknife(lambda p: np.sum(weight * p.mean(0)[0, inside]) / np.sum(weight * p.mean(0)[f, inside]),
                                   P, blocks=groups)
            curve, curve_err = jackknife(lambda p: p.mean(0)[0] / p.mean(0)[f], P, blocks=groups)
            entry = {"flux": float(fluxes[f]), "value": float(value), "error": float(err),
                     "curve": curve.tolist(), "curve_error": curve_err.tolist()}
            if classical is not None:
                dxy = float(np.mean(result["spreading"][0]["D"][:2]))
                theory = np.asarray(cooperon_field_ratio(centres, dxy, fluxes[f]))
                entry["theory_curve"] = theory.tolist()
                # The same window average of the theory, with the classical walk as the weight.
                entry["theory"] = float(np.sum(weight * classical[0, inside] * 2) /
                                        np.sum(weight * classical[0, inside] * 2 / theory[inside]))
            else:
                entry["theory"] = 1.5 if e["regime"] == "ergodic" else 2.0
            ratios.append(entry)
        result["ratio"] = ratios
    # P / P_cl per flux: -> 2 at B = 0, -> 1 in a field.
    if classical is not None:
        enh = []
        for f in range(len(fluxes)):
            value, err = jackknife(lambda p: np.sum(weight * p.mean(0)[f, inside]) / np.sum(weight * classical[f, inside]),
                                   P, blocks=groups)
            # Add the error of P_cl from the spreading (independent realizations) in quadrature.
            total = float(np.hypot(err, value * result["P_classical_relative_error"][f]))
            enh.append({"flux": float(fluxes[f]), "value": float(value), "error": total,
                        "theory": 2.0 if f == 0 else 1.0,
                        "curve": (P[:, f].mean(0) / classical[f]).tolist()})
        result["enhancement"] = enh
    return result


# ---------------------------------------------------------------------------------------------------------
# Report and figures


def report(results: dict, log=print) -> None:
    log("")
    log("Return probability: measured (jackknife standard errors) against theory")
    for name, r in results.items():
        log(f"[{name}] {r['label']}: box {r['shape']}, d = {r['dimension']}, regime {r['regime']}, "
            f"{r['window_bins']} bins in the window")
        if "spreading" in r:
            for f, fit in zip(r["fluxes"], r["spreading"]):
                ds = ", ".join(f"{x:.3f} +- {y:.3f}" for x, y in list(zip(fit["D"], fit["D_error"]))[: r["dimension"]])
                log(f"    flux {f:.5f}: D along the {r['dimension']} long axes = [{ds}] (slope of the walk time u_a(t))")
        if r["regime"] == "diffusive":
            for f, x in zip(r["fluxes"], r["exponents"]):
                walk = f", classical walk in this box {x['classical_walk']:+.3f}" if "classical_walk" in x else ""
                log(f"    exponent (flux {f:.5f}): {x['value']:+.3f} +- {x['error']:.3f}   theory {r['exponent_theory']:+.3f}{walk}")
        for x in r.get("ratio", []):
            log(f"    P(0)/P(flux {x['flux']:.5f}) = {x['value']:.3f} +- {x['error']:.3f}   theory {x['theory']:.3f}")
        for x in r.get("enhancement", []):
            log(f"    P/P_cl (flux {x['flux']:.5f}) = {x['value']:.3f} +- {x['error']:.3f}   theory {x['theory']:.1f}")


def figures(results: dict, out: pathlib.Path, title: str) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    diffusive = [(n, r) for n, r in results.items() if r["regime"] == "diffusive"]
    colors = ["C0", "C3", "C2", "C1", "C4"]

    # Figure 1: P(t) for every dimension (log-log) and the compensated t^(d/2) P(t) against the classical walk.
    if diffusive:
        fig, axes = plt.subplots(1, 1 + len(diffusive), figsize=(4.2 * (1 + len(diffusive)), 3.8))
        ax = axes[0]
        for i, (name, r) in enumerate(diffusive):
            t = np.asarray(r["bins"])
            p = np.asarray(r["P_mean"])[0]
            ax.loglog(t, p, "o", ms=3, color=colors[i], label=f"d = {r['dimension']} ({name})")
            if "P_classical" in r:
                ax.loglog(t, 2 * np.asarray(r["P_classical"])[0], "-", color=colors[i], lw=1)
            x = r["exponents"][0]
            ax.text(t[-1], p[-1], f" {x['value']:+.2f}", color=colors[i], fontsize=8, va="center")
        ax.set_xlabel("t (ħ/t)")
        ax.set_ylabel("P(t), B = 0")
        ax.set_title("P(t) (dots) and 2 P_cl (lines)", fontsize=9)
        ax.legend(fontsize=7)
        for ax, (name, r) in zip(axes[1:], diffusive):
            d = r["dimension"]
            t = np.asarray(r["bins"])
            scale = t ** (d / 2)
            mean, err = np.asarray(r["P_mean"]), np.asarray(r["P_error"])
            for f, flux in enumerate(r["fluxes"]):
                label = "B = 0" if f == 0 else f"φ = {flux:.4g}"
                ax.errorbar(t, scale * mean[f], scale * err[f], fmt="o", ms=3, color=colors[f], label=label)
            if "P_classical" in r:
                cl = np.asarray(r["P_classical"])
                ax.plot(t, scale * 2 * cl[0], "-", color=colors[0], lw=1, label="2 P_cl (B = 0)")
                for f in range(1, len(r["fluxes"])):
                    ax.plot(t, scale * cl[f], "--", color=colors[f], lw=1, label="P_cl (field)")
            w0, w1 = r["window_range"]
            ax.axvspan(w0, w1, color="0.9", zorder=0)
            ax.set_xscale("log")
            late = t >= w0 / 4
            ax.set_ylim(0, 1.8 * np.nanmax(scale[late] * (mean[:, late] + err[:, late])))
            ax.set_xlabel("t (ħ/t)")
            ax.set_ylabel(f"t^{d/2:g} P(t)")
            ax.set_title(f"{name}: {r['label']}", fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = out / "return_probability.png"
        fig.savefig(path, dpi=130)
        plt.close(fig)
        paths.append(path)

    # Figure 2: the enhancement ratio P(0)/P(B), P / P_cl, the ergodic limit and the spreading.
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    for i, (name, r) in enumerate(results.items()):
        for x in r.get("ratio", []):
            t = np.asarray(r["bins"])
            ax.errorbar(t, x["curve"], x["curve_error"], fmt="o", ms=3, color=colors[i],
                        label=f"{name} (φ = {x['flux']:.4g})")
            if "theory_curve" in x:
                ax.plot(t, x["theory_curve"], "-", color=colors[i], lw=1)
    ax.axhline(2, color="k", lw=0.8, ls=":")
    ax.axhline(1.5, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(0.8, 2.6)
    ax.set_xlabel("t (ħ/t)")
    ax.set_ylabel("P(B = 0) / P(B)")
    ax.set_title("enhancement: 2 / (1 + x/sinh x) (lines); 2 (dotted), 3/2 (dashed)", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax = axes[1]
    for i, (name, r) in enumerate(diffusive):
        t = np.asarray(r["bins"])
        for x, style in zip(r.get("enhancement", []), ("o", "s", "^")):
            ax.plot(t, x["curve"], style, ms=3, color=colors[i], mfc="none" if x["flux"] else colors[i],
                    label=f"{name}, {'B = 0' if x['flux'] == 0 else 'field'}")
    ax.axhline(2, color="k", lw=0.8, ls=":")
    ax.axhline(1, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 3)
    ax.set_xlabel("t (ħ/t)")
    ax.set_ylabel("P / P_cl")
    ax.set_title("P / P_cl: classical walk with the measured spreading", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax = axes[2]
    for i, (name, r) in enumerate(diffusive):
        if "spread_mean" not in r:
            continue
        st = np.asarray(r["spread_times"])
        m = np.asarray(r["spread_mean"])  # (F, T_s, d)
        for f in range(m.shape[0]):
            ax.plot(st, m[f][:, : r["dimension"]].mean(-1) / st, "-o" if f == 0 else "--s", ms=3, color=colors[i], mfc="none" if f else colors[i],
                    label=f"{name}, {'B = 0' if f == 0 else 'field'}")
    ax.set_xlabel("t (ħ/t)")
    ax.set_ylabel("u(t) / t  (mean over the long axes)")
    ax.set_title("spreading: walk time u_a(t) / t (= D when diffusive)", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "return_probability_ratio.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------------------


def _bin_edges(e: dict, bins: int) -> np.ndarray:
    t = e["times"]
    return np.geomspace(t["start"], t["stop"] * (1 + 1e-12), bins + 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="TOML config (default: %(default)s)")
    parser.add_argument("--out", default="out/return_probability", help="output directory (default: %(default)s)")
    parser.add_argument("--only", nargs="*", help="run only these ensembles")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = config["run"]
    names = list(config["ensembles"])
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"error: --only names unknown ensembles {unknown}; known: {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    started = time.perf_counter()
    print(f"return probability: {len(names)} ensembles, JAX {jax.__version__} on {jax.devices()[0].platform}")
    results, arrays = {}, {}
    for name in names:
        e = config["ensembles"][name]
        edges = _bin_edges(e, run["bins"])
        data = simulate(name, e, run["seed"], run["chunk"], edges)
        result = analyse(name, e, data, edges, run["groups"])
        result["window_range"] = [e["window"]["start"], e["window"]["stop"]]
        results[name] = result
        arrays[f"{name}_P"] = data["P"]
        arrays[f"{name}_bins"] = np.asarray(result["bins"])
        arrays[f"{name}_fluxes"] = data["fluxes"]
        if data["spread"] is not None:
            arrays[f"{name}_spread"] = data["spread"]
            arrays[f"{name}_spread_times"] = data["spread_times"]
    elapsed = time.perf_counter() - started
    report(results)
    np.savez_compressed(out / "data.npz", **arrays)
    summary = {"config": copy.deepcopy(config), "results": results, "runtime_s": elapsed,
               "jax": jax.__version__, "device": str(jax.devices()[0])}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    for path in figures(results, out, run["title"]):
        print(f"figure: {path}")
    print(f"data: {out / 'data.npz'}, {out / 'results.json'}; total {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
