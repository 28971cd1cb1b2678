"""2D weak localization: the ln L correction against size and against L_phi, and the HLN fit of the
magnetoconductance that recovers L_phi = sqrt(D tau_phi).

    python experiments/weak_localization_2d.py [--config configs/weak_localization_2d.toml] [--out DIR] [--quiet]

Spinless square samples (W = L), so the one-loop correction is -(1/pi) ln(L_cut/l) in e^2/h per square
(PHYSICS.md 1-2):

* **Size.** Coherent L x L squares at phi = 0 and at a flux phi_B whose magnetic length is below every L:
  sigma(0) - sigma(phi_B) = -(1/pi) ln(L / l_B) + const, slope -1/pi against ln L.
* **HLN.** Buttiker probes on every site (local, current-conserving dephasing, tau_phi);
  sigma(phi) - sigma(0) at each tau_phi, fitted jointly with the simplified HLN form (alpha shared,
  B_phi per tau_phi; flux per plaquette as the field unit), gives alpha (theory +1/2) and
  L_phi = 1/sqrt(8 pi phi_phi), compared with sqrt(D tau_phi). D = sigma_D / (2 pi rho) (Einstein relation in
  lattice units, e^2/h per square, hbar = 1), with sigma_D from the field-broken squares and the DOS per site rho
  from exact eigenvalues of closed disordered samples. The fitted L_phi must grow as tau_phi^(1/2).

sigma(0) itself against ln L_phi is not used: the probes also relax momentum (1/tau -> 1/tau + 1/tau_phi), which
lowers the Drude conductance by a relative tau/tau_phi, more than the logarithm changes at short tau_phi.

Two-terminal conductances are converted to sheet conductances with the ideal-lead (Sharvin) contact resistance
1/N (N open channels): sigma = (L/W) / (1/G - 1/N), realization by realization.
"""

from __future__ import annotations

import json
import math

import numpy as np

import difftransport as dt
from common import Report, arguments, density_of_states, line_fit, mean_err, pyplot, run, sheet_conductance
from difftransport import theory


def analyse(config, data, out):
    report = Report("2D weak localization (spinless, e^2/h per square)")
    an = config["analysis"]

    # --- size scaling of coherent squares
    sizes, delta, delta_err, sigma_field = [], [], [], []
    for name in an["sizes"]:
        g = data[name]["conductance"]  # (N, flux)
        sigma, _ = sheet_conductance(config, name, g)
        d = sigma[:, 0] - sigma[:, 1]
        m, e = mean_err(d)
        sizes.append(config["ensembles"][name]["sample"]["length"])
        delta.append(float(m))
        delta_err.append(float(e))
        sigma_field.append(mean_err(sigma[:, 1]))
    sizes = np.asarray(sizes, float)
    slope_l, slope_l_err, _, _ = line_fit(np.log(sizes), np.asarray(delta), np.asarray(delta_err))
    report.add("size: d[sigma(0) - sigma(phi_B)] / d ln L", slope_l, slope_l_err, -1 / math.pi,
               f"L = {sizes.astype(int).tolist()}")

    # --- Drude conductance and diffusion constant
    deph = config["ensembles"]["dephasing"]
    ref = an["drude_size"]
    sigma_d, sigma_d_err = (float(v) for v in sigma_field[an["sizes"].index(ref)])
    rho = density_of_states(deph)
    diffusion = sigma_d / (2 * math.pi * rho)
    report.add("Drude sigma_D (field-broken square)", sigma_d, sigma_d_err, None, ref)
    report.add("DOS per site rho(E_F)", rho, 0.0, float(theory.square_lattice_dos(deph["model"]["energy"])),
               "theory: clean lattice")
    report.add("D = sigma_D / (2 pi rho)", diffusion, diffusion * sigma_d_err / sigma_d, None, "lattice units")

    # --- dephasing: magnetoconductance per tau_phi, HLN fit, ln L_phi slope
    g = data["dephasing"]["conductance"]  # (N, tau, flux)
    taus = np.asarray(deph["grid"]["tau_phi"], float)
    flux = np.asarray(deph["grid"]["flux"], float)
    sigma, _ = sheet_conductance(config, "dephasing", g)
    dsig = sigma - sigma[..., :1]
    mean, err = mean_err(dsig)
    l_phi_theory = np.sqrt(diffusion * taus)

    fit_mask = (flux > 0) & (flux <= an["fit_max_flux"])
    x = np.tile(flux[fit_mask], len(taus))
    y = mean[:, fit_mask].reshape(-1)
    s = err[:, fit_mask].reshape(-1)
    labels = np.repeat(np.arange(len(taus)), fit_mask.sum())
    fit = dt.fit_magnetoconductance(x, y, model="alpha", sigma=s, curve=labels)
    alpha, alpha_err = fit.value("alpha"), fit.error("alpha")
    report.add("HLN alpha", alpha, alpha_err, 0.5, f"chi2/dof = {fit.chi2:.1f}/{fit.dof}")
    (out / "hln_fit.json").write_text(json.dumps(fit.to_dict(), indent=2) + "\n")
    l_fit, l_fit_err = [], []
    for c in range(len(taus)):
        b, be = fit.value("b_phi", c), fit.error("b_phi", c)
        lf = float(theory.length_from_flux(b))
        l_fit.append(lf)
        l_fit_err.append(0.5 * lf * be / b)
        report.add(f"tau_phi = {taus[c]:g}: L_phi(HLN) / sqrt(D tau_phi)", lf / l_phi_theory[c],
                   0.5 * lf * be / b / l_phi_theory[c], 1.0, f"sqrt(D tau) = {l_phi_theory[c]:.2f}")
    slope_t, slope_t_err, _, _ = line_fit(np.log(taus), np.log(l_fit), np.asarray(l_fit_err) / np.asarray(l_fit))
    report.add("d ln L_phi(HLN) / d ln tau_phi", slope_t, slope_t_err, 0.5, "L_phi = sqrt(D tau_phi)")
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    ax = axs[0]
    ax.errorbar(sizes, delta, yerr=delta_err, fmt="o", capsize=2, label=r"$\sigma(0)-\sigma(\phi_B)$")
    xs = np.linspace(np.log(sizes[0]), np.log(sizes[-1]), 20)
    c0 = np.average(np.asarray(delta) + np.log(sizes) / math.pi, weights=1 / np.asarray(delta_err) ** 2)
    ax.plot(np.exp(xs), c0 - xs / math.pi, "k--", lw=1, label=r"slope $-1/\pi$")
    ax.set_xscale("log")
    ax.set_xlabel("L = W (sites)")
    ax.set_ylabel(r"$e^2/h$ per square")
    ax.set_title(f"size: slope {slope_l:+.3f} ± {slope_l_err:.3f} (theory {-1 / math.pi:+.3f})", fontsize=9)
    ax.legend(fontsize=8)

    ax = axs[1]
    fine = np.linspace(1e-6, flux[fit_mask].max(), 200)
    for c, tau in enumerate(taus):
        line = ax.errorbar(flux, mean[c], yerr=err[c], fmt="o", ms=3, capsize=2,
                           label=fr"$\tau_\phi$={tau:g}: $L_\phi$ {l_fit[c]:.1f} (fit) / {l_phi_theory[c]:.1f}")
        model = theory.hln_alpha(fine, fit.value("b_phi", c), alpha)
        ax.plot(fine, np.asarray(model), color=line[0].get_color(), lw=1)
    ax.set_xlabel(r"flux per plaquette $\phi$ ($h/e$)")
    ax.set_ylabel(r"$\sigma(\phi)-\sigma(0)$ ($e^2/h$)")
    ax.set_title(fr"HLN: $\alpha$ = {alpha:.3f} ± {alpha_err:.3f} (theory 1/2)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axs[2]
    ax.errorbar(l_phi_theory, l_fit, yerr=l_fit_err, fmt="o", capsize=2, label="HLN fit")
    lim = [0.8 * min(l_phi_theory.min(), min(l_fit)), 1.2 * max(l_phi_theory.max(), max(l_fit))]
    ax.plot(lim, lim, "k--", lw=1, label=r"$L_\phi=\sqrt{D\tau_\phi}$")
    ax.fill_between(lim, [0.8 * v for v in lim], [1.2 * v for v in lim], color="0.9", label="±20%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sqrt{D\tau_\phi}$ (sites)")
    ax.set_ylabel(r"$L_\phi$ from HLN (sites)")
    ax.set_title(fr"$L_\phi\propto\tau_\phi^{{{slope_t:.2f}\pm{slope_t_err:.2f}}}$ (theory 1/2)", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(config["run"]["title"], fontsize=10)
    path = out / "weak_localization_2d.png"
    fig.savefig(path, dpi=140)
    report.write(out, {"diffusion": diffusion, "l_phi_fit": l_fit, "l_phi_theory": l_phi_theory.tolist()})
    print(f"figure: {path}")
    return report


if __name__ == "__main__":
    args = arguments("weak_localization_2d", __doc__)
    config, data = run(args.config, args.out, quiet=args.quiet)
    analyse(config, data, args.out)
