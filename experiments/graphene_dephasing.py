"""Graphene with Buttiker dephasing: the dephasing length read off the magnetoconductance against sqrt(D tau_phi).

    python experiments/graphene_dephasing.py [--config configs/graphene_dephasing.toml] [--out DIR] [--quiet]

The honeycomb counterpart of the square-lattice bridge (experiments/weak_localization_2d.py). Spinless zigzag
cylinders with short-range (Anderson) disorder, so the valleys are mixed and the correction is weak localization;
Buttiker probes on every site (local, current-conserving dephasing) at several tau_phi; the field in the sample
only and one Aharonov-Bohm twist per realization (``random_twist``).

Per realization: the sheet conductance sigma = (L/C) / (1/G - 1/N), N the open channels of the (field-free) left
lead at the realization's twist (the ``open_channels`` observable), C = n sqrt(3)/2 the circumference; paired
differences Delta sigma(phi) = sigma(phi) - sigma(0), phi the flux per a^2. The McCann formula in its published
form (docs/theory.md#mccann; the lattice is spinless, so it is fitted to 2 Delta sigma) with B_phi per tau_phi and
B_i, B_* shared gives L_phi = 1/sqrt(8 pi B_phi), compared with sqrt(D tau_phi): D = sigma_D / (2 pi rho) (the
Einstein relation, e^2/h per square, hbar = 1), sigma_D the sheet conductance of the coherent field-broken
cylinders (ensemble ``broken``, its second flux), rho the DOS per area from exact eigenvalues of closed disordered
cylinders (``density_of_states``, per site) over the area per site sqrt(3)/4 a^2. The points of all curves share
realizations, so every error is a delete-a-block jackknife over realizations; chi2 (diagonal errors) is a
diagnostic.
"""

from __future__ import annotations

import math

import numpy as np

import difftransport as dt
from common import Report, density_of_states, finish, main, pyplot
from difftransport import theory
from difftransport.stats import jackknife, mean_stderr

BLOCKS = 16  # jackknife blocks
AREA_PER_SITE = math.sqrt(3) / 4  # honeycomb, lattice constant a = 1


def sheet(config, name, data):
    """Per-realization sheet conductance (R, *grid) and its mean channel count, from G and the left lead's N."""
    entry = config["ensembles"][name]
    aspect = entry["sample"]["length"] / (entry["sample"]["n"] * math.sqrt(3) / 2)
    g, channels = np.asarray(data[name]["conductance"]), np.asarray(data[name]["open_channels"])
    return aspect * np.asarray(theory.intrinsic_conductance(g, channels)), float(channels.mean())


def mccann_fit(flux, delta):
    """Joint McCann fit of the mean curves 2 Delta sigma (tau_phi, flux > 0): B_phi per tau_phi, B_i and B_* shared."""
    mask = flux > 0
    mean, err = mean_stderr(2 * delta[:, :, mask])
    curves = np.repeat(np.arange(delta.shape[1]), mask.sum())
    return dt.fit_magnetoconductance(np.tile(flux[mask], delta.shape[1]), mean.reshape(-1), model="mccann",
                                     sigma=err.reshape(-1), curve=curves)


def analyse(config, data, out):
    report = Report("Graphene, Buttiker dephasing: L_phi(McCann) against sqrt(D tau_phi)")
    deph = config["ensembles"]["dephasing"]
    taus = np.asarray(deph["grid"]["tau_phi"], float)
    flux = np.asarray(deph["grid"]["flux"], float)

    broken, _ = sheet(config, "broken", data)  # (R, flux): coherent, [0, phi_B]
    sigma_d, sigma_d_err = (float(v) for v in mean_stderr(broken[:, 1]))
    rho_site = density_of_states(deph)
    rho = rho_site / AREA_PER_SITE
    energy = deph["model"]["energy"]
    velocity = math.sqrt(3) / 2
    diffusion = sigma_d / (2 * math.pi * rho)
    report.add("sigma(0), coherent (e^2/h per square)", *(float(v) for v in mean_stderr(broken[:, 0])), None,
               f"{len(broken)} realizations")
    report.add("sigma_D: coherent, field-broken", sigma_d, sigma_d_err, None,
               f"flux {config['ensembles']['broken']['grid']['flux'][1]:g} per a^2")
    report.add("DOS per area rho(E_F)", rho, 0.0, abs(energy) / (math.pi * velocity**2),
               "exact eigenvalues of closed disordered cylinders; theory: clean Dirac |E| / (pi v^2)")
    report.add("D = sigma_D / (2 pi rho)", diffusion, diffusion * sigma_d_err / sigma_d, None,
               f"l = 2 D / v = {2 * diffusion / velocity:.1f} a")

    sigma, channels = sheet(config, "dephasing", data)  # (R, tau, flux)
    delta = sigma - sigma[:, :, :1]
    l_theory = np.sqrt(diffusion * taus)

    def estimates(rows):
        f = mccann_fit(flux, delta[rows])
        l_phi = np.array([float(theory.length_from_flux(f.value("b_phi", c))) for c in range(len(taus))])
        return np.concatenate([l_phi, [np.polyfit(np.log(taus), np.log(l_phi), 1)[0], f.value("b_i"),
                                       f.value("b_star")]])

    fit = mccann_fit(flux, delta)
    values = estimates(np.arange(len(delta)))
    _, errors = jackknife(estimates, np.arange(len(delta)), blocks=BLOCKS)
    for c, tau in enumerate(taus):
        s0, s0_err = mean_stderr(sigma[:, c, 0])
        report.add(f"tau_phi = {tau:g}: L_phi(McCann) / sqrt(D tau_phi)", values[c] / l_theory[c],
                   errors[c] / l_theory[c], 1.0,
                   f"L_phi = {values[c]:.1f} +- {errors[c]:.1f} a, sqrt(D tau_phi) = {l_theory[c]:.1f} a; "
                   f"sigma(0) = {s0:.2f} +- {s0_err:.2f}")
    k = len(taus)
    report.add("d ln L_phi / d ln tau_phi", values[k], errors[k], 0.5, "L_phi = sqrt(D tau_phi)")
    b_tr = 1 / (4 * math.pi * (2 * diffusion / velocity) ** 2)
    report.add("B_i (flux per a^2)", values[k + 1], errors[k + 1], None, f"transport field 1/(4 pi l^2) = {b_tr:.1e}")
    report.add("B_* (flux per a^2)", values[k + 2], errors[k + 2], None,
               f"joint chi2 = {fit.chi2:.1f} / {fit.dof} (diagonal errors; points of a realization are correlated)")
    # Post hoc (chosen after the data, not a pre-registered comparison): with B_i and B_* at or above the largest
    # field, the McCann fit cannot fix them and its jackknife replicas trade B_phi against them. In the limit of
    # strong intervalley scattering (B_i, B_* -> infinity) the spinless correction is the orthogonal one,
    # Delta sigma = alpha (e^2/(pi h)) F(B/B_phi) with alpha = 1/2 (docs/theory.md#mccann): fitted with alpha fixed
    # at 1/2 and with alpha free (shared), as in the square-lattice bridge.
    mask = flux > 0
    labels = np.repeat(np.arange(len(taus)), mask.sum())

    def orthogonal(rows, fixed):
        mean, err = mean_stderr(delta[rows][:, :, mask])
        return dt.fit_magnetoconductance(np.tile(flux[mask], len(taus)), mean.reshape(-1), model="alpha",
                                         sigma=err.reshape(-1), curve=labels, fixed=fixed)

    for tag, fixed in (("alpha = 1/2 fixed", {"alpha": 0.5}), ("alpha free", {})):
        def post_hoc(rows):
            f = orthogonal(rows, fixed)
            return np.array([float(theory.length_from_flux(f.value("b_phi", c))) for c in range(len(taus))]
                            + [f.value("alpha")])
        post = orthogonal(np.arange(len(delta)), fixed)
        p_values = post_hoc(np.arange(len(delta)))
        _, p_errors = jackknife(post_hoc, np.arange(len(delta)), blocks=BLOCKS)
        for c, tau in enumerate(taus):
            report.add(f"post hoc, orthogonal limit ({tag}): tau_phi = {tau:g}, L_phi / sqrt(D tau_phi)",
                       p_values[c] / l_theory[c], p_errors[c] / l_theory[c], 1.0, f"L_phi = {p_values[c]:.1f} a")
        if not fixed:
            report.add("post hoc, orthogonal limit: alpha", p_values[-1], p_errors[-1], 0.5,
                       f"chi2 = {post.chi2:.1f} / {post.dof}")
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ax = axs[0]
    fine = np.linspace(1e-7, flux.max(), 200)
    for c, tau in enumerate(taus):
        mean, err = mean_stderr(2 * delta[:, c])
        line = ax.errorbar(flux * 1e4, mean, yerr=err, fmt="o", ms=3, capsize=2,
                           label=fr"$\tau_\phi$ = {tau:g}: $L_\phi$ = {values[c]:.1f} a")
        ax.plot(fine * 1e4, np.asarray(theory.mccann(fine, fit.value("b_phi", c), fit.value("b_i"),
                                                       fit.value("b_star"))), color=line[0].get_color(), lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"flux per $a^2$ ($10^{-4}\,h/e$)")
    ax.set_ylabel(r"$2\Delta\sigma$ ($e^2/h$ per square; McCann's published form)")
    ax.set_title(f"McCann fit: $B_\\phi$ per $\\tau_\\phi$; $B_i$ = {fit.value('b_i'):.1e}, "
                 f"$B_*$ = {fit.value('b_star'):.1e} shared", fontsize=9)
    ax.legend(fontsize=7)
    ax = axs[1]
    ax.errorbar(taus, values[:k], yerr=errors[:k], fmt="o", capsize=3, label=r"$L_\phi$ from the McCann fit")
    line = np.geomspace(taus[0] / 1.5, taus[-1] * 1.5, 50)
    ax.plot(line, np.sqrt(diffusion * line), "k-", lw=1,
            label=fr"$\sqrt{{D\tau_\phi}}$, D = {diffusion:.2f} (Einstein relation)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\tau_\phi$ ($\hbar/t$)")
    ax.set_ylabel(r"$L_\phi$ ($a$)")
    ax.legend(fontsize=7)
    rows = {f"tau_phi={tau:g}": {"l_phi": values[c], "l_phi_err": errors[c], "sqrt_d_tau": l_theory[c]}
            for c, tau in enumerate(taus)}
    return finish(fig, report, config, out, "graphene_dephasing",
                  {"fit": fit.to_dict(), "l_phi": rows, "diffusion": diffusion, "sigma_d": sigma_d, "rho": rho,
                   "channels": channels, "exponent": [values[k], errors[k]]})


if __name__ == "__main__":
    main("graphene_dephasing", __doc__, analyse)
