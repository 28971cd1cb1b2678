"""``difftransport scale CONFIG.toml [--out DIR]``: run a scaling study and write figures and a JSON.

Two kinds of study (``[study] kind``):

* ``"fss"``: transfer-matrix reduced localization lengths Lambda(W, M) = lambda_M / M for every width M and
  disorder W, refined in stages (each stage continues the same realizations to a smaller target error), a
  Slevin-Ohtsuki finite-size-scaling fit after every stage and for every largest width, a data collapse.
* ``"beta"``: conductance ensembles of square (2D) or cubic (3D) samples, <ln g> against L for many W, and
  the scaling function beta(ln g) fitted under single-parameter scaling, against the one-loop asymptote.

Every key of the config is required (no hidden defaults); unknown keys, wrong types and out-of-range
values are errors naming the key and the value. The library does no I/O: everything written is written here.
Outputs in ``--out`` (default ``out/<config name>``): ``<figure>.png``, ``<figure>.json`` (data, fits,
timings) and a copy of the config.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import pathlib
import shutil
import sys
import time
import tomllib

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Config schema: section -> key -> (type, check, what is allowed)


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _positive_ints(v):
    return len(v) > 0 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)


def _positive_numbers(v):
    return len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v)


def _non_negative_numbers(v):
    return len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v)


def _increasing(v):
    return all(b > a for a, b in zip(v, v[1:]))


_STUDY = {
    "kind": (str, lambda v: v in ("fss", "beta"), "'fss' or 'beta'"),
    "title": (str, lambda v: len(v) > 0, "a non-empty string"),
    "figure": (str, lambda v: len(v) > 0 and all(c.isalnum() or c in "_-" for c in v),
               "a file stem of letters, digits, '_' and '-'"),
}
_SYSTEM = {
    "dimension": (int, lambda v: v in (1, 2, 3), "1, 2 or 3"),
    "boundary": (str, lambda v: v in ("hardwall", "periodic"), "'hardwall' or 'periodic'"),
    "spinful": (bool, lambda v: True, "true or false"),
    "su2": (bool, lambda v: True, "true or false"),
    "energy": (float, math.isfinite, "a finite number"),
    "hopping": (float, lambda v: math.isfinite(v) and v != 0, "a finite non-zero number"),
    "flux": (float, math.isfinite, "a finite number (0 for no field)"),
    "distribution": (str, lambda v: v in ("box", "gaussian"), "'box' or 'gaussian'"),
}
_TMM = {
    "widths": (list, lambda v: _positive_ints(v) and _increasing(v), "increasing positive integers"),
    "strengths": (list, lambda v: _non_negative_numbers(v) and _increasing(v), "increasing numbers >= 0"),
    "rtol": (list, _positive_numbers, "one positive relative error per width"),
    "stages": (list, lambda v: _positive_numbers(v) and all(b < a for a, b in zip(v, v[1:])) and v[-1] == 1,
               "decreasing factors ending with 1 (stage k stops at rtol * stages[k])"),
    "max_slices": (list, _positive_ints, "one positive integer per width"),
    "chunk": (int, _positive, "a positive integer (slices per statistics batch)"),
    "warmup": (int, _non_negative, "an integer >= 0"),
    "qr_every": (int, _positive, "a positive integer"),
    "min_batches": (int, lambda v: v >= 2, "an integer >= 2"),
    "seed": (int, _non_negative, "an integer >= 0"),
    "workers": (int, _positive, "a positive integer (parallel runs)"),
}
_FSS_FIT = {
    "relevant_order": (int, lambda v: v >= 1, "an integer >= 1"),
    "irrelevant_order": (int, _non_negative, "an integer >= 0 (0: no correction to scaling)"),
    "relevant_field_order": (int, lambda v: v >= 1, "an integer >= 1"),
    "irrelevant_field_order": (int, _non_negative, "an integer >= 0"),
    "irrelevant_exponent": ((str, float), lambda v: v == "fit" or (not isinstance(v, str) and v < 0),
                            "'fit' or a fixed negative number"),
    "critical_guess": (float, _positive, "a positive number"),
    "exponent_guess": (float, _positive, "a positive number"),
    "irrelevant_guess": (float, lambda v: v < 0, "a negative number"),
    "min_width": (int, _positive, "a positive integer (smallest width in the main fit)"),
    "bootstrap": (int, _non_negative, "an integer >= 0"),
    "confidence": (float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "max_steps": (int, _positive, "a positive integer"),
}
_ENSEMBLE = {
    "lengths": (list, lambda v: _positive_ints(v) and _increasing(v) and len(v) >= 2,
                "at least two increasing positive integers (L: L x L or L x L x L samples)"),
    "strengths": (list, lambda v: _non_negative_numbers(v) and _increasing(v), "increasing numbers >= 0"),
    "realizations": (int, lambda v: v >= 2, "an integer >= 2"),
    "chunk": (int, _positive, "a positive integer (realizations per vmapped batch)"),
    "seed": (int, _non_negative, "an integer >= 0"),
    "contact_correction": (bool, lambda v: True, "true or false"),
    "workers": (int, _positive, "a positive integer (parallel runs)"),
}
_BETA_FIT = {
    "knots": (int, lambda v: v >= 2, "an integer >= 2"),
    "smoothing": (float, _non_negative, "a number >= 0"),
    "substeps": (int, _positive, "a positive integer"),
    "asymptote": (str, lambda v: v in ("orthogonal", "symplectic", "unitary", "none"),
                  "'orthogonal', 'symplectic', 'unitary' or 'none'"),
    "max_steps": (int, _positive, "a positive integer"),
    "min_strength": (float, _non_negative, "a number >= 0 (weaker disorder is left out of the fit)"),
    "min_length": (int, _positive, "a positive integer (shorter samples are left out of the fit)"),
}
SCHEMAS = {
    "fss": {"study": _STUDY, "system": _SYSTEM, "tmm": _TMM, "fit": _FSS_FIT},
    "beta": {"study": _STUDY, "system": _SYSTEM, "ensemble": _ENSEMBLE, "fit": _BETA_FIT},
}


def _type_name(kind):
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k) for k in kind)
    return {float: "number", int: "integer", str: "string", bool: "boolean", list: "array"}[kind]


def _coerce(path, name, value, kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if k in (str, bool, list) and isinstance(value, k):
            return value
    raise ValueError(f"{path}: {name} = {value!r} has the wrong type; expected {_type_name(kind)}.")


def validate(config: dict, path="config") -> dict:
    """Check a parsed config against its schema; returns it with numbers coerced. Raises ValueError naming
    the offending key and value."""
    study = config.get("study")
    if not isinstance(study, dict) or "kind" not in study:
        raise ValueError(f"{path}: missing [study] section with key 'kind' ('fss' or 'beta').")
    kind = study["kind"]
    if kind not in SCHEMAS:
        raise ValueError(f"{path}: study.kind = {kind!r} is not allowed; expected 'fss' or 'beta'.")
    schema = SCHEMAS[kind]
    for section in config:
        if section not in schema:
            raise ValueError(f"{path}: unknown section [{section}] for a {kind!r} study; allowed: {sorted(schema)}.")
    out = {}
    for section, keys in schema.items():
        table = config.get(section)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: missing section [{section}].")
        for key in table:
            if key not in keys:
                raise ValueError(f"{path}: unknown key {section}.{key} = {table[key]!r}; allowed: {sorted(keys)}.")
        out[section] = {}
        for key, (kind_, check, allowed) in keys.items():
            name = f"{section}.{key}"
            if key not in table:
                raise ValueError(f"{path}: missing key {name} ({allowed}).")
            value = _coerce(path, name, table[key], kind_)
            if not check(value):
                raise ValueError(f"{path}: {name} = {value!r} is out of range; expected {allowed}.")
            out[section][key] = value
    _cross_checks(out, kind, path)
    return out


def _cross_checks(c, kind, path):
    system = c["system"]
    if system["su2"] and not system["spinful"]:
        raise ValueError(f"{path}: system.su2 = true needs system.spinful = true.")
    if system["dimension"] == 1 and system["boundary"] != "hardwall":
        raise ValueError(f"{path}: system.boundary = {system['boundary']!r}: a chain (dimension 1) has no "
                         "transverse boundary; use 'hardwall'.")
    if kind == "fss":
        t = c["tmm"]
        for key in ("rtol", "max_slices"):
            if len(t[key]) != len(t["widths"]):
                raise ValueError(f"{path}: tmm.{key} = {t[key]!r} needs one entry per width "
                                 f"({len(t['widths'])} widths).")
        if t["chunk"] % t["qr_every"] or t["warmup"] % t["qr_every"]:
            raise ValueError(f"{path}: tmm.chunk = {t['chunk']} and tmm.warmup = {t['warmup']} must be multiples "
                             f"of tmm.qr_every = {t['qr_every']}.")
        for w, m in zip(t["widths"], t["max_slices"]):
            if m < t["warmup"] + t["min_batches"] * t["chunk"]:
                raise ValueError(f"{path}: tmm.max_slices = {m} (width {w}) is below warmup + min_batches * chunk "
                                 f"= {t['warmup'] + t['min_batches'] * t['chunk']}.")
        if system["dimension"] == 1:
            raise ValueError(f"{path}: system.dimension = 1: finite-size scaling needs strips (2) or bars (3).")
        if system["boundary"] == "periodic" and min(t["widths"]) < 3:
            raise ValueError(f"{path}: tmm.widths = {t['widths']}: periodic boundaries need widths >= 3.")
        f = c["fit"]
        if f["min_width"] not in t["widths"]:
            raise ValueError(f"{path}: fit.min_width = {f['min_width']} is not one of tmm.widths {t['widths']}.")
        if len([w for w in t["widths"] if w >= f["min_width"]]) < 2:
            raise ValueError(f"{path}: fit.min_width = {f['min_width']} leaves fewer than two widths to fit.")
    else:
        e = c["ensemble"]
        if system["dimension"] == 1:
            raise ValueError(f"{path}: system.dimension = 1: beta(g) needs 2D or 3D samples.")
        if system["boundary"] == "periodic" and e["lengths"][0] < 3:
            raise ValueError(f"{path}: ensemble.lengths = {e['lengths']}: periodic boundaries need L >= 3.")
        f = c["fit"]
        if len([w for w in e["strengths"] if w >= f["min_strength"]]) < 1:
            raise ValueError(f"{path}: fit.min_strength = {f['min_strength']} leaves no disorder strength to fit.")
        if len([L for L in e["lengths"] if L >= f["min_length"]]) < 2:
            raise ValueError(f"{path}: fit.min_length = {f['min_length']} leaves fewer than two lengths to fit.")
        if system["flux"] != 0 and system["boundary"] == "periodic":
            bad = [L for L in e["lengths"] if abs(system["flux"] * L - round(system["flux"] * L)) > 1e-9]
            if bad:
                raise ValueError(f"{path}: system.flux = {system['flux']} with periodic boundaries needs flux * L "
                                 f"to be an integer; fails for L = {bad}.")


def load_config(path: pathlib.Path) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    return validate(raw, str(path))


# ---------------------------------------------------------------------------------------------------------
# Studies


def _lattice(dt, system, width):
    if system["dimension"] == 1:
        return dt.chain()
    if system["dimension"] == 2:
        return dt.strip(width, boundary=system["boundary"])
    return dt.bar(width, width, boundary=system["boundary"])


def _model(dt, system):
    return dt.Model(energy=system["energy"], hopping=system["hopping"],
                    flux=system["flux"] if system["flux"] != 0 else None)


def _log(msg):
    print(msg, flush=True)


def run_fss(c: dict, out: pathlib.Path, stem: str) -> dict:
    import jax
    import jax.numpy as jnp

    import difftransport as dt

    from ._scaling import ScalingModel, fit_scaling
    from ._tmm import lyapunov_exponents

    system, t, f = c["system"], c["tmm"], c["fit"]
    model = _model(dt, system)
    strengths = t["strengths"]
    root = jax.random.key(t["seed"])
    runners = {}

    def runner(width, max_slices):
        sample = dt.Sample(_lattice(dt, system, width), max_slices, spinful=system["spinful"])

        def run(w, key, rtol, resume):
            return lyapunov_exponents(
                sample, model, key, strength=w, distribution=system["distribution"], su2=system["su2"],
                rtol=rtol, chunk=t["chunk"], warmup=t["warmup"], qr_every=t["qr_every"],
                min_batches=t["min_batches"], resume=resume,
            )

        return run

    for width, max_slices in zip(t["widths"], t["max_slices"]):
        runners[width] = runner(width, max_slices)

    results = {}
    stages = []
    fits_by_stage = []
    start_all = time.perf_counter()
    for stage, factor in enumerate(t["stages"]):
        stage_start = time.perf_counter()
        tasks = [(width, i, w) for width in reversed(t["widths"]) for i, w in enumerate(strengths)]

        def work(task):
            width, i, w = task
            rtol = t["rtol"][t["widths"].index(width)] * factor
            key = jax.random.fold_in(jax.random.fold_in(root, width), i)
            begin = time.perf_counter()
            res = runners[width](jnp.asarray(w, float), key, rtol, results.get((width, i), (None,))[0])
            jax.block_until_ready(res.exponents)
            seconds = time.perf_counter() - begin + results.get((width, i), (None, 0.0))[1]
            return task, res, seconds

        with concurrent.futures.ThreadPoolExecutor(t["workers"]) as pool:
            for (width, i, w), res, seconds in pool.map(work, tasks):
                results[(width, i)] = (res, seconds)
                lam = float(res.localization_length) / width
                _log(f"  stage {stage + 1} M={width:3d} W={w:7.3f}: Lambda = {lam:.5f} +- "
                     f"{lam * float(res.relative_error):.5f} ({int(res.slices)} slices, "
                     f"{'converged' if bool(res.converged) else 'NOT converged'}, {seconds:.1f} s)")
        data = _fss_table(results, t["widths"], strengths)
        stage_fit = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=f["min_width"], bootstrap=0, key=None)
        stage_fit.update(stage=stage + 1, target_factor=factor, seconds=time.perf_counter() - stage_start,
                         total_slices=int(np.sum(data["slices"])))
        fits_by_stage.append(stage_fit)
        _log(f"stage {stage + 1}: W_c = {stage_fit['W_c']['value']:.3f} +- {stage_fit['W_c']['stderr']:.3f}, "
             f"nu = {stage_fit['nu']['value']:.3f} +- {stage_fit['nu']['stderr']:.3f}, "
             f"Lambda_c = {stage_fit['Lambda_c']['value']:.4f} +- {stage_fit['Lambda_c']['stderr']:.4f}, "
             f"chi2/dof = {stage_fit['chi2']:.1f}/{stage_fit['dof']} ({time.perf_counter() - start_all:.0f} s)")
        stages.append(data)
    seconds = time.perf_counter() - start_all
    data = stages[-1]

    key = jax.random.key(t["seed"] + 1)
    main_fit = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=f["min_width"], bootstrap=f["bootstrap"],
                        key=key, keep=True)
    fit_obj = main_fit.pop("_fit")
    by_largest = []
    for largest in t["widths"]:
        kept = [w for w in t["widths"] if f["min_width"] <= w <= largest]
        if len(kept) >= 2 and largest != t["widths"][-1]:
            sub = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=f["min_width"], max_width=largest,
                           bootstrap=0, key=None, optional=True)
            by_largest.append(dict(sub, largest_width=largest))
    by_largest.append(dict({k: v for k, v in main_fit.items()}, largest_width=t["widths"][-1]))
    by_smallest = []
    for smallest in t["widths"]:
        if smallest != f["min_width"] and len([w for w in t["widths"] if w >= smallest]) >= 2:
            sub = _fss_fit(fit_scaling, ScalingModel, data, f, min_width=smallest, bootstrap=0, key=None,
                           optional=True)
            by_smallest.append(dict(sub, smallest_width=smallest))

    plain = dict(f, irrelevant_order=0, irrelevant_field_order=0)
    without = []
    for smallest in t["widths"]:
        if len([w for w in t["widths"] if w >= smallest]) >= 2:
            without.append(dict(_fss_fit(fit_scaling, ScalingModel, data, plain, min_width=smallest, bootstrap=0,
                                         key=None, optional=True), smallest_width=smallest))

    summary = {
        "kind": "fss", "title": c["study"]["title"], "seconds": seconds,
        "data": {k: np.asarray(v).tolist() for k, v in data.items()},
        "fit": main_fit, "fits_by_stage": fits_by_stage, "fits_by_largest_width": by_largest,
        "fits_by_smallest_width": by_smallest, "fits_without_corrections_by_smallest_width": without,
    }
    _plot_fss(c, data, fit_obj, main_fit, fits_by_stage, by_largest, out / f"{stem}.png")
    return summary


def _fss_table(results, widths, strengths):
    rows = {"width": [], "disorder": [], "Lambda": [], "Lambda_stderr": [], "slices": [], "converged": [],
            "seconds": []}
    for width in widths:
        for i, w in enumerate(strengths):
            res, seconds = results[(width, i)]
            lam = float(res.localization_length) / width
            rows["width"].append(width)
            rows["disorder"].append(w)
            rows["Lambda"].append(lam)
            rows["Lambda_stderr"].append(lam * float(res.relative_error))
            rows["slices"].append(int(res.slices))
            rows["converged"].append(bool(res.converged))
            rows["seconds"].append(seconds)
    return {k: np.asarray(v) for k, v in rows.items()}


def _fss_fit(fit_scaling, ScalingModel, data, f, *, min_width, max_width=None, bootstrap, key, keep=False,
             optional=False):
    """A fit as a JSON-able dict. ``optional`` fits (subsets) that cannot be done record why instead."""
    try:
        return _fss_fit_or_raise(fit_scaling, ScalingModel, data, f, min_width=min_width, max_width=max_width,
                                 bootstrap=bootstrap, key=key, keep=keep)
    except ValueError as err:
        if not optional:
            raise
        return {"error": str(err)}


def _fss_fit_or_raise(fit_scaling, ScalingModel, data, f, *, min_width, max_width, bootstrap, key, keep):
    y = f["irrelevant_exponent"]
    model = ScalingModel(f["relevant_order"], f["irrelevant_order"], f["relevant_field_order"],
                         f["irrelevant_field_order"], None if y == "fit" else y)
    sel = data["width"] >= min_width
    if max_width is not None:
        sel &= data["width"] <= max_width
    fit = fit_scaling(data["disorder"][sel], data["width"][sel], data["Lambda"][sel], data["Lambda_stderr"][sel],
                      model=model, critical_guess=f["critical_guess"], exponent_guess=f["exponent_guess"],
                      irrelevant_guess=f["irrelevant_guess"], bootstrap=bootstrap, key=key,
                      max_steps=f["max_steps"])
    conf = f["confidence"]

    def entry(name):
        lo, hi = fit.interval(name, conf)
        return {"value": float(fit.value(name)), "stderr": float(fit.stderr(name)), "interval": [lo, hi]}

    out = {name: entry(name) for name in fit.model.names}
    lc, lcs = float(fit.critical_lambda), float(fit.critical_lambda_stderr)
    if fit.bootstrap.shape[0]:
        boot = np.exp(np.asarray(fit.bootstrap[:, fit.model.names.index("a00")]))
        interval = np.percentile(boot, [50 * (1 - conf), 50 * (1 + conf)]).tolist()
    else:
        z = 1.959963984540054 if abs(conf - 0.95) < 1e-12 else _z(conf)
        interval = [lc - z * lcs, lc + z * lcs]
    out["Lambda_c"] = {"value": lc, "stderr": lcs, "interval": interval}
    out.update(chi2=float(fit.chi2), dof=int(fit.dof), p_value=float(fit.p_value), converged=bool(fit.converged),
               widths=sorted(set(int(w) for w in data["width"][sel])), confidence=conf,
               interval_method="bootstrap" if fit.bootstrap.shape[0] else "covariance",
               bootstrap=int(fit.bootstrap.shape[0]), parameters=list(fit.model.names))
    if keep:
        out["_fit"] = fit
    return out


def _z(conf):
    from scipy.special import erfinv

    return math.sqrt(2.0) * float(erfinv(conf))


def _plot_fss(c, data, fit, main, by_stage, by_largest, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted(set(data["width"].tolist()))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    ax = axes[0]
    grid = np.linspace(min(data["disorder"]), max(data["disorder"]), 200)
    for width, col in zip(widths, colors):
        sel = data["width"] == width
        ax.errorbar(data["disorder"][sel], data["Lambda"][sel], yerr=data["Lambda_stderr"][sel], fmt="o", ms=3.5,
                    color=col, capsize=2, label=f"M = {width}")
        if width >= c["fit"]["min_width"]:
            ax.plot(grid, np.asarray(fit.predict(grid, np.full_like(grid, width))), color=col, lw=1)
    wc, lc = main["W_c"], main["Lambda_c"]
    ax.axvspan(*wc["interval"], color="0.85", zorder=0)
    ax.axvline(wc["value"], color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("disorder W")
    ax.set_ylabel(r"$\Lambda = \lambda_M / M$")
    ax.set_title(f"{c['study']['title']}\n" + rf"$W_c$ = {wc['value']:.3f} [{wc['interval'][0]:.3f}, "
                 rf"{wc['interval'][1]:.3f}], $\nu$ = {main['nu']['value']:.3f} [{main['nu']['interval'][0]:.3f}, "
                 rf"{main['nu']['interval'][1]:.3f}], $\Lambda_c$ = {lc['value']:.4f}", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[1]
    sel = data["width"] >= c["fit"]["min_width"]
    x, lam_c, sign = (np.asarray(a) for a in fit.collapse(data["disorder"][sel], data["width"][sel],
                                                          data["Lambda"][sel]))
    for width, col in zip(widths, colors):
        s = data["width"][sel] == width
        if not np.any(s):
            continue
        for side, marker in ((1, "o"), (-1, "s")):
            m = s & (sign == side)
            ax.errorbar(x[m], lam_c[m], yerr=(data["Lambda_stderr"][sel] * lam_c / data["Lambda"][sel])[m], fmt=marker,
                        ms=3.5, color=col, capsize=1.5, mfc="none" if side < 0 else col)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$M / \xi$,  $\xi = |u_r|^{-\nu}$")
    ax.set_ylabel(r"$\Lambda$ (irrelevant correction removed)" if fit.model.irrelevant_order else r"$\Lambda$")
    ax.set_title(r"data collapse (filled: $W > W_c$, open: $W < W_c$)", fontsize=9)

    ax = axes[2]
    slices = [s["total_slices"] for s in by_stage]
    ax.errorbar(slices, [s["nu"]["value"] for s in by_stage], yerr=[s["nu"]["stderr"] for s in by_stage],
                fmt="o-", color="C0", capsize=2, label=r"$\nu$ vs total slices (all widths)")
    ax.set_xscale("log")
    ax.set_xlabel("total slices in the data set")
    ax.set_ylabel(r"$\nu$", color="C0")
    ax2 = ax.twinx()
    ax2.errorbar(slices, [s["W_c"]["value"] for s in by_stage], yerr=[s["W_c"]["stderr"] for s in by_stage],
                 fmt="s--", color="C3", capsize=2, label=r"$W_c$")
    ax2.set_ylabel(r"$W_c$", color="C3")
    text = "\n".join(
        rf"M$\leq${b['largest_width']}: $W_c$={b['W_c']['value']:.3f}$\pm${b['W_c']['stderr']:.3f}, "
        rf"$\nu$={b['nu']['value']:.3f}$\pm${b['nu']['stderr']:.3f}" for b in by_largest if "nu" in b
    )
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=7, va="bottom",
            bbox=dict(fc="white", ec="0.7", alpha=0.85))
    ax.set_title(r"convergence: fits after each stage (1$\sigma$); inset: by largest width", fontsize=9)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _beta_ensembles(c: dict) -> dict:
    """Run the conductance ensembles of a beta study: the table of <ln g> (contacts removed if asked) over
    (strength, length), with its standard errors; a dict as stored under "data" in the study's JSON."""
    import jax
    import jax.numpy as jnp

    import difftransport as dt

    system, e = c["system"], c["ensemble"]
    model = _model(dt, system)
    lengths, strengths = e["lengths"], e["strengths"]
    n = e["realizations"]
    root = jax.random.key(e["seed"])
    samples = {L: dt.Sample(_lattice(dt, system, L), L, spinful=system["spinful"]) for L in lengths}
    batches = {}
    for L, sample in samples.items():
        def one(key, w, sample=sample):
            disorder = dt.draw_disorder(key, sample, strength=w, distribution=system["distribution"],
                                        su2=system["su2"])
            return dt.conductance(sample, model, disorder)

        batches[L] = jax.jit(jax.vmap(one, in_axes=(0, None)))
    channels = {L: float(dt.open_channels(samples[L], model)) for L in lengths}

    start = time.perf_counter()
    tasks = [(L, i, w) for L in reversed(lengths) for i, w in enumerate(strengths)]

    def work(task):
        L, i, w = task
        base = jax.random.fold_in(jax.random.fold_in(root, L), i)
        keys = jax.vmap(lambda j: jax.random.fold_in(base, j))(jnp.arange(n))
        begin = time.perf_counter()
        g = np.concatenate([np.asarray(batches[L](keys[k:k + e["chunk"]], jnp.asarray(w, float)))
                            for k in range(0, n, e["chunk"])])
        return task, g, time.perf_counter() - begin

    g = np.zeros((len(strengths), len(lengths), n))
    with concurrent.futures.ThreadPoolExecutor(e["workers"]) as pool:
        for (L, i, w), values, seconds in pool.map(work, tasks):
            g[i, lengths.index(L)] = values
            _log(f"  L={L:3d} W={w:7.3f}: <g> = {values.mean():.4f}, <ln g> = {np.log(values).mean():.4f} "
                 f"({n} samples, {seconds:.1f} s)")
    seconds = time.perf_counter() - start

    used = g.copy()
    dropped = 0
    if e["contact_correction"]:
        # Remove the contact (Sharvin) resistance of the ideal leads: 1/g_int = 1/g - 1/N.
        N = np.array([channels[L] for L in lengths])[None, :, None]
        ok = g < N * (1 - 1e-9)
        dropped = int((~ok).sum())
        used = np.where(ok, 1.0 / (1.0 / g - 1.0 / np.where(ok, N, 1.0) + (~ok)), np.nan)
    logs = np.log(used)
    mean = np.nanmean(logs, axis=2)
    count = np.sum(np.isfinite(logs), axis=2)
    err = np.nanstd(logs, axis=2, ddof=1) / np.sqrt(count)
    return {"lengths": lengths, "strengths": strengths, "open_channels": [channels[L] for L in lengths],
            "mean_g": g.mean(axis=2).tolist(), "mean_log_g": mean.tolist(), "stderr_log_g": err.tolist(),
            "var_log_g": np.nanvar(logs, axis=2, ddof=1).tolist(), "realizations": n,
            "contact_correction": e["contact_correction"], "dropped_ballistic": dropped, "seconds": seconds}


def run_beta(c: dict, out: pathlib.Path, stem: str, stored: dict | None = None) -> dict:
    """A beta study: the ensembles (or ``stored``, the "data" of an earlier run of the same ensembles), the
    single-parameter-scaling fit over strengths >= fit.min_strength and lengths >= fit.min_length, figure."""
    from ._scaling import beta_one_loop, finite_difference_beta, fit_beta

    f = c["fit"]
    data = stored if stored is not None else _beta_ensembles(c)
    seconds = data.pop("seconds", 0.0)
    use_w = [i for i, w in enumerate(data["strengths"]) if w >= f["min_strength"]]
    use_l = [j for j, L in enumerate(data["lengths"]) if L >= f["min_length"]]
    lengths = [data["lengths"][j] for j in use_l]
    strengths = [data["strengths"][i] for i in use_w]
    mean = np.asarray(data["mean_log_g"])[np.ix_(use_w, use_l)]
    err = np.asarray(data["stderr_log_g"])[np.ix_(use_w, use_l)]
    fit = fit_beta(np.asarray(lengths, float), mean, err, knots=f["knots"], smoothing=f["smoothing"],
                   substeps=f["substeps"], max_steps=f["max_steps"])
    xm, bm, sm = finite_difference_beta(lengths, mean, err)
    lo, hi = float(np.min(mean)), float(np.max(mean))
    grid = np.linspace(lo, hi, 200)
    beta, band = np.asarray(fit(grid)), np.asarray(fit.stderr(grid))
    crossings = _zero_crossings(grid, beta, band)
    summary = {
        "kind": "beta", "title": c["study"]["title"], "seconds": seconds,
        "data": data,
        "fit": {"chi2": float(fit.chi2), "dof": fit.dof, "converged": bool(fit.converged),
                "strengths": strengths, "lengths": lengths,
                "log_g": grid[::10].tolist(), "beta": beta[::10].tolist(), "beta_stderr": band[::10].tolist(),
                "zero_crossings_log_g": crossings},
    }
    if f["asymptote"] != "none":
        gg = np.exp(grid)
        ref = np.asarray(beta_one_loop(gg, f["asymptote"]))
        big = gg >= 3
        summary["fit"]["one_loop"] = f["asymptote"]
        if np.any(big):
            rel = (beta[big] - ref[big]) / np.abs(ref[big])
            summary["fit"]["one_loop_relative_deviation_g_ge_3"] = {
                "g": gg[big][::10].tolist(), "relative": rel[::10].tolist(),
                "max_abs": float(np.max(np.abs(rel))), "band_over_one_loop_max": float(np.max(band[big] / np.abs(ref[big]))),
            }
    finite = None
    if f["asymptote"] in ("orthogonal", "symplectic") and c["system"]["dimension"] == 2:
        channels = [data["open_channels"][j] for j in use_l]
        finite = _finite_size_one_loop(c, lengths, channels, mean)
        metal = np.exp(xm) >= ONE_LOOP_MIN_G  # the one-loop domain; deep in the insulator 1/g explodes
        if np.any(metal):
            w = np.where(metal, 1.0 / sm**2, 0.0)
            amp = float(np.sum(w * bm * finite) / np.sum(w * finite**2))
            summary["fit"]["finite_size_one_loop"] = {
                "g_min": ONE_LOOP_MIN_G, "points": int(metal.sum()), "amplitude": amp,
                "amplitude_stderr": float(1.0 / np.sqrt(np.sum(w * finite**2))),
                "chi2": float(np.sum(w * (bm - amp * finite) ** 2)), "dof": int(metal.sum() - 1),
                "beta": finite.tolist(), "log_g_mid": xm.tolist()}
        finite = np.where(metal, finite, np.nan)
    summary["fit"]["max_beta"] = float(np.max(beta))
    summary["fit"]["min_beta"] = float(np.min(beta))
    _plot_beta(c, lengths, strengths, mean, err, fit, grid, beta, band, (xm, bm, sm), out / f"{stem}.png",
               finite=finite)
    return summary


ONE_LOOP_MIN_G = 2.0  # raw slopes compared with the finite-size one-loop beta from this g (e^2/h, all channels)


def _finite_size_one_loop(c, lengths, channels, mean_log_g):
    """One-loop beta of the raw slopes, for the finite L x L squares of a 2D study: (curves, lengths - 1).

    Between successive lengths, [dG(L2) - dG(L1)] / ln(L2/L1) / g_mid with dG = theory.lattice_wl_correction of
    the square (its boundaries; the Cooperon vanishes z0 = g L / 2N beyond each lead, the length that reproduces
    the Sharvin resistance, g = exp<ln g> with contacts removed) and g_mid = exp of the mean <ln g>; the sign of
    the symplectic class (total g) is opposite. The modes beyond q ~ 1/l are not diffusive and are cut off
    (``theory.diffusive_cutoff``: l = 4 z0 / pi, l_c = (sqrt 3/2) l). At the sizes of a study the square has not
    reached its ln L regime: this, not -1/(pi g), is what the raw slopes should follow at one loop."""
    from . import theory

    sign = {"orthogonal": 1.0, "symplectic": -1.0}[c["fit"]["asymptote"]]
    periodic = c["system"]["boundary"] == "periodic"
    mean_log_g = np.asarray(mean_log_g, float)
    correction = np.zeros_like(mean_log_g)
    for i in range(mean_log_g.shape[0]):
        for j, (size, n) in enumerate(zip(lengths, channels)):
            z0 = float(np.exp(mean_log_g[i, j])) * size / (2 * n)
            correction[i, j] = sign * float(theory.lattice_wl_correction(
                size, size, periodic=periodic, extrapolation=z0, cutoff=theory.diffusive_cutoff(z0)))
    g_mid = np.exp(0.5 * (mean_log_g[:, 1:] + mean_log_g[:, :-1]))
    return np.diff(correction, axis=1) / np.diff(np.log(np.asarray(lengths, float))) / g_mid


def _zero_crossings(grid, beta, band):
    out = []
    for k in np.nonzero(np.sign(beta[1:]) != np.sign(beta[:-1]))[0]:
        x0 = grid[k] - beta[k] * (grid[k + 1] - grid[k]) / (beta[k + 1] - beta[k])
        slope = (beta[k + 1] - beta[k]) / (grid[k + 1] - grid[k])
        out.append({"log_g": float(x0), "g": float(np.exp(x0)), "stderr_log_g": float(band[k] / abs(slope)),
                    "slope": float(slope)})
    return out


def _plot_beta(c, lengths, strengths, mean, err, fit, grid, beta, band, raw, path, finite=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._scaling import beta_one_loop

    f = c["fit"]
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(strengths)))
    metal = np.isfinite(finite) if finite is not None else None
    zoom_panel = metal is not None and bool(np.any(metal))
    fig, axes = plt.subplots(1, 3 if zoom_panel else 2, figsize=(17 if zoom_panel else 12, 4.6),
                             layout="constrained")
    ax = axes[0]
    traj = np.asarray(fit.trajectories())
    for i, (w, col) in enumerate(zip(strengths, colors)):
        ax.errorbar(lengths, mean[i], yerr=err[i], fmt="o", ms=3.5, color=col, capsize=2, label=f"W = {w:g}")
        ax.plot(lengths, traj[i], color=col, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("L")
    ax.set_ylabel(r"$\langle \ln g\rangle$" + (" (contacts removed)" if c["ensemble"]["contact_correction"] else ""))
    ax.set_title(f"{c['study']['title']}: data and single-parameter-scaling fit", fontsize=9)
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1]
    xm, bm, sm = raw
    for i, col in enumerate(colors):
        ax.errorbar(xm[i], bm[i], yerr=sm[i], fmt=".", color=col, alpha=0.6, capsize=1.5)
    ax.fill_between(grid, beta - 2 * band, beta + 2 * band, color="C0", alpha=0.25, label=r"fit $\pm 2\sigma$")
    ax.plot(grid, beta, color="C0", lw=2, label=r"fitted $\beta(\ln g)$")
    if f["asymptote"] != "none":
        gg = np.exp(grid)
        sel = gg > 0.8
        ax.plot(grid[sel], np.asarray(beta_one_loop(gg[sel], f["asymptote"])), "k--", lw=1,
                label=f"one loop ({f['asymptote']})")
    lo = grid < min(np.log(0.3), grid[-1])
    if np.any(lo):
        x0 = grid[lo]
        ax.plot(x0, x0 - x0[-1] + beta[lo][-1], ":", color="0.4", lw=1, label=r"insulator: slope 1 in $\ln g$")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"$\ln g$  ($g$ in $e^2/h$, all channels)")
    ax.set_ylabel(r"$\beta = d\ln g / d\ln L$")
    bottom = max(-3.0, float(np.min(beta - 3 * band)) - 0.1)
    ax.set_ylim(bottom, float(np.max(beta + 3 * band)) + 0.1)
    visible = grid[beta >= bottom]  # deep-insulator points far below the window only stretch the axis
    if visible.size:
        ax.set_xlim(float(visible[0]) - 0.5, float(grid[-1]) + 0.3)
    ax.set_title(rf"$\chi^2$/dof = {float(fit.chi2):.1f}/{fit.dof}; points: raw slopes between successive L",
                 fontsize=9)
    ax.legend(fontsize=8)
    if zoom_panel:  # the one-loop domain, where the asymptote and the finite squares' one loop differ
        ax = axes[2]
        for i, col in enumerate(colors):
            m = metal[i]
            ax.errorbar(xm[i][m], bm[i][m], yerr=sm[i][m], fmt="o", ms=3.5, color=col, capsize=2,
                        label=f"W = {strengths[i]:g}" if np.any(m) else None)
            ax.plot(xm[i][m], finite[i][m], "x", ms=7, color=col)
        x0, x1 = float(np.min(xm[metal])) - 0.1, float(np.max(xm[metal])) + 0.1
        zoom = (grid >= x0) & (grid <= x1)
        ax.fill_between(grid[zoom], (beta - 2 * band)[zoom], (beta + 2 * band)[zoom], color="C0", alpha=0.25)
        ax.plot(grid[zoom], beta[zoom], color="C0", lw=2, label=r"fitted $\beta(\ln g)$")
        ax.plot(grid[zoom], np.asarray(beta_one_loop(np.exp(grid[zoom]), f["asymptote"])), "k--", lw=1,
                label=f"one loop ({f['asymptote']}), L → ∞")
        ax.plot([], [], "kx", ms=7, label="one loop of the finite squares")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel(r"$\ln g$")
        ax.set_ylabel(r"$\beta$")
        ax.set_title(rf"$g \geq {ONE_LOOP_MIN_G:g}$: raw slopes against one loop", fontsize=9)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# Entry points


def _stored_beta_data(config: dict, out: pathlib.Path, stem: str) -> dict:
    """The "data" of an earlier beta study in ``out``, if it ran the same ensembles; else ValueError."""
    if config["study"]["kind"] != "beta":
        raise ValueError("--refit applies to beta studies (study.kind = 'beta') only.")
    old_config, old_json = out / "config.toml", out / f"{stem}.json"
    if not (old_config.exists() and old_json.exists()):
        raise ValueError(f"--refit: no earlier run in {out} ({old_config.name} and {old_json.name} are needed).")
    old = tomllib.loads(old_config.read_text())  # only [system] and [ensemble] must match: not validated whole

    def old_value(section, key):
        value = old.get(section, {}).get(key)
        return None if value is None else _coerce(str(old_config), f"{section}.{key}", value, SCHEMAS["beta"][section][key][0])

    changed = [f"{section}.{key}: {old_value(section, key)!r} -> {config[section][key]!r}"
               for section in ("system", "ensemble") for key in config[section]
               if key != "workers" and old_value(section, key) != config[section][key]]
    if changed:
        raise ValueError(f"--refit: the ensembles in {out} were run with a different config ({'; '.join(changed)}); "
                         "rerun without --refit.")
    data = json.loads(old_json.read_text())["data"]
    data["seconds"] = json.loads(old_json.read_text()).get("seconds", 0.0)
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``difftransport scale``."""
    parser.add_argument("config", type=pathlib.Path, help="TOML config of the study (see configs/scaling_*.toml)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: out/<config name>)")
    parser.add_argument("--refit", action="store_true",
                        help="beta studies: reuse the <ln g> table of the earlier run in --out (same [system] and "
                             "[ensemble]) and redo only the fit and the figures")


def main(args: argparse.Namespace) -> int:
    """Run the study in ``args.config``; 0 on success, 2 on a bad config."""
    try:
        config = load_config(args.config)
    except ValueError as err:
        print(f"difftransport scale: error: {err}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else pathlib.Path("out") / args.config.stem
    stem = config["study"]["figure"]
    stored = None
    if args.refit:
        try:
            stored = _stored_beta_data(config, out, stem)
        except ValueError as err:
            print(f"difftransport scale: error: {err}", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.config, out / "config.toml")
    _log(f"difftransport scale: {config['study']['title']} ({config['study']['kind']}) -> {out}"
         + (" (refit of stored ensembles)" if stored is not None else ""))
    if config["study"]["kind"] == "fss":
        summary = run_fss(config, out, stem)
    else:
        summary = run_beta(config, out, stem, stored)
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    _log(f"wrote {out / (stem + '.png')} and {out / (stem + '.json')} ({summary['seconds']:.0f} s of computation)")
    return 0
