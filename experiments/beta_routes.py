"""beta(g) in 2D by the two routes on one figure: the size route (<ln g> at L and 2L) and the derivative route
(dg/d ln tau_phi through the Buttiker probes), with the one-loop lines, from the summaries that
`difftransport scale` wrote for the studies below (run them first; docs/gallery.md#beta-routes).

    python experiments/beta_routes.py [--size out/scaling_beta_hardwall_2d] \
        [--confirm out/scaling_beta_hardwall_2d_confirm out/scaling_beta_hardwall_2d_confirm2] \
        [--derivative out/scaling_dephasing_2d] \
        [--symplectic out/scaling_dephasing_su2_2d] [--symplectic-size out/scaling_beta_su2_hardwall_2d] \
        [--out out/beta_routes]

Size route: beta between successive lengths (contacts removed) at g_mid = exp of the pair's mean <ln g>, with the
finite-square one loop of the study beside it; the confirmatory runs (fresh realizations of the same case, those
that have been run) are drawn beside the first and every pair is combined over all runs by inverse variance; the
symplectic size route on the SU(2) model (optional) beside the symplectic derivative route. Derivative route: beta_phi = 2 <slope(0) -
slope(B)> / <g> at every (tau_phi, subtraction field), against -1/(pi g) (orthogonal) and +1/(pi g) (symplectic,
total g). Every point is printed with its ratio to the one loop and its deviation in standard errors.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import numpy as np

import difftransport as dt
from common import pyplot, study_summary
from difftransport import theory


def size_points(s: dict, symmetry: str = "orthogonal") -> list[dict]:
    """Per disorder strength and successive pair of lengths: ln g_mid, beta, its error, the one loop of
    ``symmetry`` and the finite-square one loop (where the study computed it)."""
    d = s["data"]
    lengths = d["lengths"]
    mean, err = np.asarray(d["mean_log_g"]), np.asarray(d["stderr_log_g"])
    xm, bm, sm = (np.asarray(a) for a in dt.finite_difference_beta(lengths, mean, err))
    finite = s["fit"].get("finite_size_one_loop", {}).get("beta")
    rows = []
    for i, w in enumerate(d["strengths"]):
        for j in range(len(lengths) - 1):
            g = float(np.exp(xm[i, j]))
            rows.append({"strength": w, "pair": (lengths[j], lengths[j + 1]), "log_g": float(xm[i, j]),
                         "beta": float(bm[i, j]), "stderr": float(sm[i, j]),
                         "one_loop": float(dt.beta_one_loop(g, symmetry)),
                         "finite": float(np.asarray(finite)[i, j]) if finite is not None else None})
    return rows


def derivative_points(s: dict) -> list[dict]:
    d = s["data"]
    rows = []
    for row in d["table"]:
        for f in row["fields"]:
            rows.append({"strength": row["strength"], "tau_phi": row["tau_phi"], "flux": f["flux"],
                         "log_g": float(np.log(row["g"])), "beta": f["beta"], "stderr": f["beta_stderr"],
                         "one_loop": row["one_loop"], "length": d["length"]})
    return rows


def l_phi(g_per_spin, tau_phi):
    """L_phi = sqrt(D tau_phi) with D from the Einstein relation (theory.diffusion_constant), g per spin in e^2/h
    and the clean density of states per site and spin at |E| = 1, both studies' energy (0.1419; lattice units)."""
    rho = float(theory.square_lattice_dos(1.0))
    return float(theory.coherence_length(theory.diffusion_constant(g_per_spin, rho), tau_phi))


def ratio_panel(ax, rows, marker, color, label, *, scale):
    """beta / one loop against the scale at which it was measured, for the rows with g >= 3 (the one-loop domain)."""
    rows = [r for r in rows if math.exp(r["log_g"]) >= 3]
    x = [scale(r) for r in rows]
    y = [r["beta"] / r["one_loop"] for r in rows]
    e = [r["stderr"] / abs(r["one_loop"]) for r in rows]
    ax.errorbar(x, y, yerr=e, fmt=marker, color=color, mfc="none" if marker in "sD" else color, ms=6, capsize=2,
                label=label)


def describe(r: dict, digits: int = 2) -> str:
    """One point as printed: g, beta with its error and its z from 0, the one loop with the ratio and z, and the
    finite-square one loop with its z where the study has it."""
    ratio, ratio_se = r["beta"] / r["one_loop"], r["stderr"] / abs(r["one_loop"])
    text = (f"g {np.exp(r['log_g']):.3f} beta {r['beta']:+.4f} +- {r['stderr']:.4f} (z from 0 "
            f"{r['beta'] / r['stderr']:+.1f}), one loop {r['one_loop']:+.4f} ratio {ratio:.{digits}f} +- "
            f"{ratio_se:.{digits}f} (z {(r['beta'] - r['one_loop']) / r['stderr']:+.1f})")
    if r.get("finite") is not None:
        text += f", finite square {r['finite']:+.4f} (z {(r['beta'] - r['finite']) / r['stderr']:+.1f})"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=pathlib.Path, default=pathlib.Path("out/scaling_beta_hardwall_2d"))
    parser.add_argument("--confirm", type=pathlib.Path, nargs="+",
                        default=[pathlib.Path("out/scaling_beta_hardwall_2d_confirm"),
                                 pathlib.Path("out/scaling_beta_hardwall_2d_confirm2")])
    parser.add_argument("--derivative", type=pathlib.Path, default=pathlib.Path("out/scaling_dephasing_2d"))
    parser.add_argument("--symplectic", type=pathlib.Path, default=pathlib.Path("out/scaling_dephasing_su2_2d"))
    parser.add_argument("--symplectic-size", type=pathlib.Path,
                        default=pathlib.Path("out/scaling_beta_su2_hardwall_2d"))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/beta_routes"))
    args = parser.parse_args()
    studies = {name: study_summary(getattr(args, name)) for name in ("size", "derivative", "symplectic")}
    missing = [name for name, s in studies.items() if s is None]
    if missing:
        raise SystemExit(f"error: no study summary for {missing} (run `difftransport scale` on its config first).")
    args.out.mkdir(parents=True, exist_ok=True)

    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    colors = plt.cm.plasma(np.linspace(0.1, 0.75, 4))
    print("size route (orthogonal)")
    size = size_points(studies["size"])
    for k, pair in enumerate(sorted({r["pair"] for r in size})):
        sel = [r for r in size if r["pair"] == pair]
        ax.errorbar([r["log_g"] for r in sel], [r["beta"] for r in sel], yerr=[r["stderr"] for r in sel], fmt="o",
                    color=colors[k % len(colors)], ms=5, capsize=2, label=f"size route L = {pair[0]} -> {pair[1]}")
        ax.plot([r["log_g"] for r in sel], [r["finite"] for r in sel], "_", color=colors[k % len(colors)], ms=14,
                mew=2)
    for r in size:
        print(f"  W {r['strength']:g} L {r['pair'][0]}->{r['pair'][1]}: {describe(r)}")
    confirms = [(folder, study_summary(folder)) for folder in args.confirm]
    confirms = [(folder, c) for folder, c in confirms if c is not None]
    runs = {(r["strength"], r["pair"]): [r] for r in size}
    for k, (folder, confirm) in enumerate(confirms):
        seed = json.loads((folder / "config.json").read_text())["config"]["ensemble"]["seed"]
        print(f"size route, confirmatory run {k + 1} ({folder.name}, seed {seed})")
        again = size_points(confirm)
        ax.errorbar([r["log_g"] for r in again], [r["beta"] for r in again], yerr=[r["stderr"] for r in again],
                    fmt="^>"[k % 2], color=("0.35", "tab:brown")[k % 2], ms=5, capsize=2,
                    label=f"size route, confirmatory run {k + 1} (fresh realizations, seed {seed})")
        for r in again:
            print(f"  W {r['strength']:g} L {r['pair'][0]}->{r['pair'][1]}: {describe(r, 3)}; above 0.79: "
                  f"{(r['beta'] / r['one_loop'] - 0.79) / (r['stderr'] / abs(r['one_loop'])):+.1f}")
            runs.setdefault((r["strength"], r["pair"]), []).append(r)
        ratio_panel(bx, again, "^>"[k % 2], ("0.35", "tab:brown")[k % 2],
                    f"size route, confirmatory run {k + 1} (seed {seed})", scale=lambda r: math.sqrt(2) * r["pair"][0])
    if confirms:
        print("size route, every run combined by inverse variance")
        combined = []
        for (w, pair), rows in sorted(runs.items()):
            if len(rows) < 2:
                continue
            weights = [r["stderr"] ** -2 for r in rows]
            b = sum(wt * r["beta"] for wt, r in zip(weights, rows)) / sum(weights)
            e = sum(weights) ** -0.5
            one = sum(wt * r["one_loop"] for wt, r in zip(weights, rows)) / sum(weights)
            print(f"  W {w:g} L {pair[0]}->{pair[1]} ({len(rows)} runs): {b:+.4f} +- {e:.4f}, ratio {b / one:.3f} +- "
                  f"{e / abs(one):.3f} (z {(b - one) / e:+.1f}; above 0.79: {(b / one - 0.79) / (e / abs(one)):+.1f})")
            log_g = sum(wt * r["log_g"] for wt, r in zip(weights, rows)) / sum(weights)
            combined.append({"pair": pair, "log_g": log_g, "beta": b, "stderr": e, "one_loop": one})
        ratio_panel(bx, combined, "*", "k", "size route, all runs combined (drawn 6% to the right)",
                    scale=lambda r: 1.06 * math.sqrt(2) * r["pair"][0])
    ratio_panel(bx, size, "o", "tab:purple", "size route (seed 6)", scale=lambda r: math.sqrt(2) * r["pair"][0])
    su2 = study_summary(args.symplectic_size)
    if su2 is not None:
        print("size route, symplectic (SU(2))")
        rows = size_points(su2, "symplectic")
        ax.errorbar([r["log_g"] for r in rows], [r["beta"] for r in rows], yerr=[r["stderr"] for r in rows],
                    fmt="v", color="tab:olive", ms=5, capsize=2, label="size route, symplectic (SU(2))")
        ax.plot([r["log_g"] for r in rows], [r["finite"] for r in rows], "_", color="tab:olive", ms=14, mew=2)
        ratio_panel(bx, rows, "v", "tab:olive", "size route, symplectic (SU(2))",
                    scale=lambda r: math.sqrt(2) * r["pair"][0])
        for r in rows:
            print(f"  L {r['pair'][0]}->{r['pair'][1]}: {describe(r)}")
    for name, marker, label in (("derivative", "s", "derivative route, orthogonal"),
                                ("symplectic", "D", "derivative route, symplectic (SU(2))")):
        print(label)
        rows = derivative_points(studies[name])
        spins = 2 if name == "symplectic" else 1
        ratio_panel(bx, rows, marker, "tab:blue" if name == "derivative" else "tab:green", label,
                    scale=lambda r, spins=spins: l_phi(math.exp(r["log_g"]) / spins, r["tau_phi"]))
        length = rows[0]["length"]
        ax.errorbar([r["log_g"] for r in rows], [r["beta"] for r in rows], yerr=[r["stderr"] for r in rows],
                    fmt=marker, mfc="none", color="tab:blue" if name == "derivative" else "tab:green", ms=6,
                    capsize=2, label=f"{label}, {length}$^2$")
        for r in rows:
            print(f"  tau_phi {r['tau_phi']:g} flux {r['flux']:g}: {describe(r)}")
    x = np.linspace(0.6, 2.2, 100)
    ax.plot(x, np.asarray(dt.beta_one_loop(np.exp(x), "orthogonal")), "k--", lw=1, label=r"$-1/\pi g$ (orthogonal)")
    ax.plot(x, np.asarray(dt.beta_one_loop(np.exp(x), "symplectic")), "k:", lw=1,
            label=r"$+1/\pi g$ (symplectic, total $g$)")
    ax.plot([], [], "_", color="0.3", ms=14, mew=2, label="finite-square one loop (size route)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"$\ln g$  ($e^2/h$, contacts removed)")
    ax.set_ylabel(r"$\beta$")
    ax.set_title("2D: beta from sizes and from dephasing derivatives", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    bx.axhspan(0.85, 1.15, color="0.85", zorder=0, label="within 15% of the one loop")
    bx.axhline(1, color="k", lw=0.8)
    bx.axhline(0.79, color="tab:red", lw=0.8, ls=":", label="0.79: the size route's earlier finite-size amplitude")
    bx.set_xscale("log")
    bx.set_xlabel(r"scale: $\sqrt{2}\,L$ of the pair $L \to 2L$ (size route), $L_\varphi = \sqrt{D\tau_\varphi}$ "
                  "(derivative route)")
    bx.set_ylabel(r"$\beta$ / one loop ($\mp 1/\pi g$)")
    bx.set_title("approach to the one loop (W = 2.5 and SU(2) only; g = 3.3-4.1)", fontsize=10)
    bx.legend(fontsize=7, loc="lower left")
    fig.savefig(args.out / "beta_routes.png", dpi=130)
    print(f"figure: {args.out / 'beta_routes.png'}")


if __name__ == "__main__":
    main()
