"""The subtraction field of the derivative route against the finite square's one loop, from the summaries that
`difftransport scale` wrote for the dephasing studies below (run them first; docs/gallery.md#dephasing-fields).

    python experiments/dephasing_fields.py [--out out/dephasing_fields]

For every study and field, two measured numbers of the same realizations (paired, contacts removed): the
magnetoconductance <g(B) - g(0)> and the field-residual corrected beta_phi = 2 <slope(0) - slope(B)> / <g> / f
(f = theory.cooperon_slope_fraction). Each is divided by its one loop for the finite square (a difference of
theory.lattice_wl_correction, and theory.wl_dephasing_slope through the same estimator), with the study's stated
L_phi = sqrt(D tau_phi), z0 = pi l / 4 and the diffusive cutoff (l = 2 D / v: the rule each config states), and
drawn against l_B / l, l_B = 1/sqrt(2 pi flux) the magnetic length. Every ratio is printed with its standard
error and its deviation from 1 in standard errors. The symplectic (SU(2)) study enters with the singlet sign.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

from common import pyplot, study_summary
from difftransport import theory

# name: (folder, L, D, Fermi velocity v (l = 2 D / v), sign of the Cooperon (+1 orthogonal, -1 singlet), marker)
# D and v are the values each config states before its run (configs/scaling_dephasing_*.toml).
STUDIES = {
    "orthogonal 48² (seed 41)": ("out/scaling_dephasing_2d_48_corrected", 48, 5.61, 2 * 5.61 / 4.99, 1.0, "o"),
    "orthogonal 64² (seed 40)": ("out/scaling_dephasing_2d_64", 64, 5.61, 2 * 5.61 / 4.99, 1.0, "s"),
    "orthogonal 48² (seed 42)": ("out/scaling_dephasing_2d_48_fields", 48, 5.61, 2 * 5.61 / 4.99, 1.0, "D"),
    "symplectic 32² (seed 50)": ("out/scaling_dephasing_su2_2d_corrected", 32, 1.94, 2.24, -1.0, "^"),
}


def one_loop(size, diffusion, velocity, tau_phi, flux, g, sign):
    """The finite square's one loop of (magnetoconductance, corrected beta_phi) at ``flux``."""
    mfp = 2 * diffusion / velocity
    z0 = math.pi * mfp / 4
    kw = dict(extrapolation=z0, cutoff=theory.diffusive_cutoff(z0))
    l_phi = math.sqrt(diffusion * tau_phi)
    mc = sign * (float(theory.lattice_wl_correction(size, size, flux=flux, l_phi=l_phi, **kw))
                 - float(theory.lattice_wl_correction(size, size, flux=0.0, l_phi=l_phi, **kw)))
    slope = [float(theory.wl_dephasing_slope(size, size, diffusion=diffusion, tau_phi=tau_phi, flux=b, **kw))
             for b in (0.0, flux)]
    beta = sign * 2 * (slope[0] - slope[1]) / g / float(theory.cooperon_slope_fraction(l_phi, flux))
    return mc, beta, mfp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/dephasing_fields"))
    args = parser.parse_args()
    found = {name: (spec, study_summary(pathlib.Path(spec[0]))) for name, spec in STUDIES.items()}
    missing = [spec[0] for spec, s in found.values() if s is None]
    if len(missing) == len(found):
        raise SystemExit(f"error: no study summary in {missing} (run `difftransport scale` on their configs first).")
    args.out.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    rows = []
    for name, ((_, size, diffusion, velocity, sign, marker), s) in found.items():
        if s is None:
            print(f"{name}: not run, skipped")
            continue
        (row,) = s["data"]["table"]
        points = []
        for entry in row["fields"]:
            if "magnetoconductance" not in entry:
                raise SystemExit(f"error: {name}: the summary has no magnetoconductance (rerun `difftransport scale` "
                                 "on its config: the report is rebuilt from the stored chunks).")
            mc_theory, beta_theory, mfp = one_loop(size, diffusion, velocity, row["tau_phi"], entry["flux"],
                                                   row["g"], sign)
            (mc, mc_se), corrected = entry["magnetoconductance"], entry["corrected"]
            magnetic_length = 1 / math.sqrt(2 * math.pi * entry["flux"])
            point = {"study": name, "flux": entry["flux"], "lB_over_l": magnetic_length / mfp,
                     "mc": mc, "mc_stderr": mc_se, "mc_one_loop": mc_theory, "mc_ratio": mc / mc_theory,
                     "mc_ratio_stderr": mc_se / abs(mc_theory), "beta": corrected["beta"],
                     "beta_stderr": corrected["beta_stderr"], "beta_one_loop": beta_theory,
                     "beta_ratio": corrected["beta"] / beta_theory,
                     "beta_ratio_stderr": corrected["beta_stderr"] / abs(beta_theory)}
            points.append(point)
            z_mc = (point["mc_ratio"] - 1) / point["mc_ratio_stderr"]
            print(f"{name}, flux {entry['flux']:g} (l_B/l = {point['lB_over_l']:.2f}): "
                  f"<g(B) - g(0)> = {mc:+.4f} +- {mc_se:.4f}, one loop {mc_theory:+.4f}, ratio "
                  f"{point['mc_ratio']:.3f} +- {point['mc_ratio_stderr']:.3f} (z {z_mc:+.1f}); "
                  f"corrected beta_phi {corrected['beta']:+.4f} +- {corrected['beta_stderr']:.4f}, one loop "
                  f"{beta_theory:+.4f}, ratio {point['beta_ratio']:.3f} +- {point['beta_ratio_stderr']:.3f} "
                  f"(z {(point['beta_ratio'] - 1) / point['beta_ratio_stderr']:+.1f})")
        rows += points
        x = [p["lB_over_l"] for p in points]
        ax.errorbar(x, [p["mc_ratio"] for p in points], yerr=[p["mc_ratio_stderr"] for p in points], fmt=marker + "-",
                    ms=5, capsize=2, label=name)
        bx.errorbar(x, [p["beta_ratio"] for p in points], yerr=[p["beta_ratio_stderr"] for p in points],
                    fmt=marker + "-", ms=5, capsize=2, label=name)
    for axis, what in ((ax, "magnetoconductance ⟨g(B) − g(0)⟩"), (bx, "corrected β_φ")):
        axis.axhline(1.0, color="k", lw=0.8)
        axis.set_xlabel("l_B / l  (magnetic length over mean free path)")
        axis.set_ylabel(f"{what} / finite square's one loop")
        axis.set_ylim(0, 1.5)
        axis.legend(fontsize=8)
    ax.set_title("the field response of the Cooperon")
    bx.set_title("the derivative route, subtracted at that field")
    fig.savefig(args.out / "dephasing_fields.png", dpi=130)
    (args.out / "dephasing_fields.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out / 'dephasing_fields.png'} and dephasing_fields.json")


if __name__ == "__main__":
    main()
