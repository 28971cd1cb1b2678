"""2D weak localization: the ln L correction against size and against L_phi, and the HLN fit of the
magnetoconductance that recovers L_phi = sqrt(D tau_phi).

    python experiments/weak_localization_2d.py [--config configs/weak_localization_2d.toml] [--out DIR] [--quiet]

Spinless square samples (W = L), so the one-loop correction is -(1/pi) ln(L_cut/l) in e^2/h per square
(docs/theory.md#wl-dimensions):

* **Size.** Coherent L x L squares: sigma(0, L) = sigma_D - (1/pi) ln(L/l) + ... for L >> l. At the sizes we
  reach the square is still crossing over into that regime (its Cooperon vanishes an extrapolation length z0 ~ l
  beyond each lead, so the modes below ~L/pi are not yet absorbed like a wide sample's), and a straight line in
  ln L underestimates the coefficient. sigma(0, L) is fitted with A times the one-loop correction of the same
  squares (``theory.lattice_wl_correction``: the lattice Cooperon with absorbing leads and hard walls) plus a
  free classical constant; A = 1 is the -(1/pi) ln L law. z0 = sigma W / (2N), the length that reproduces the
  Sharvin resistance 1/N, and the modes beyond q ~ 1/l, which are not diffusive, are cut off at
  l_c = (sqrt 3/2) l, l = 4 z0 / pi (Pauli-Villars; the lattice cutoff makes the crossover too slow where
  z0 ~ l >> a): no free parameter. One series per disorder strength shows how A depends on sigma.
  The paired difference sigma(0) - sigma(phi_B), in which the Drude part cancels realization by realization, is
  reported next to it: its one loop also needs the field-broken square, and at phi_B the magnetic length is
  only 1.5 - 2 mean free paths, outside the diffusive regime the Cooperon assumes.
* **HLN.** Buttiker probes on every site (local, current-conserving dephasing, tau_phi);
  sigma(phi) - sigma(0) at each tau_phi, fitted jointly with the simplified HLN form (alpha shared,
  B_phi per tau_phi; flux per plaquette as the field unit), gives alpha (theory +1/2) and
  L_phi = 1/sqrt(8 pi phi_phi), compared with sqrt(D tau_phi). D = sigma_D / (2 pi rho) (Einstein relation in
  lattice units, e^2/h per square, hbar = 1), with sigma_D from the field-broken squares and the DOS per site rho
  from exact eigenvalues of closed disordered samples. The fitted L_phi must grow as tau_phi^(1/2).

sigma(0) itself against ln L_phi is not used: the probes also relax momentum (1/tau -> 1/tau + 1/tau_phi), which
lowers the Drude conductance by a relative tau/tau_phi, more than the logarithm changes at short tau_phi.

Two-terminal conductances are converted to sheet conductances with the ideal-lead (Sharvin) contact resistance
1/N (N open channels of the leads at the same flux: the leads are in the field too):
sigma = (L/W) / (1/G - 1/N), realization by realization.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from common import Report, density_of_states, finish, line_fit, linear_amplitude, main, pyplot, sheet_conductance
from difftransport import theory
from difftransport.stats import jackknife, mean_stderr


def analyse(config, data, out):
    report = Report("2D weak localization (spinless, e^2/h per square)")
    an = config["analysis"]

    # --- size scaling of coherent squares, one series per disorder strength
    sigma_field = {}  # field-broken sheet conductance (mean, error) per ensemble
    series = {}
    for key, names in an["size_series"].items():
        entry = config["ensembles"][names[0]]
        flux_b = float(entry["grid"]["flux"][1])
        cols = {k: [] for k in ("sizes", "sigma0", "sigma0_err", "delta", "delta_err", "z0", "one_loop",
                                "crossover", "one_loop_bare")}
        for name in names:
            g = data[name]["conductance"]  # (N, flux): flux = [0, phi_B]
            sigma, channels = sheet_conductance(config, name, g)  # N at each flux: the leads are in the field
            sigma_field[name] = mean_stderr(sigma[:, 1])
            size = config["ensembles"][name]["sample"]["length"]
            # Extrapolation length of the absorbing boundary at each lead: the Cooperon (like the diffuson) vanishes
            # z0 beyond the interface, and the same z0 makes the Sharvin resistance 1/N = 2 z0 / (sigma W).
            z0 = float(sigma_field[name][0]) * size / (2 * channels[0])
            # the diffusive modes end at q ~ 1/l: l = 4 z0 / pi (2D Milne length), l_c = (sqrt 3 / 2) l
            zero = float(theory.lattice_wl_correction(size, size, extrapolation=z0, cutoff=theory.diffusive_cutoff(z0)))
            bare = float(theory.lattice_wl_correction(size, size, extrapolation=z0))
            for k, v in zip(cols, (size, *mean_stderr(sigma[:, 0]), *mean_stderr(sigma[:, 0] - sigma[:, 1]), z0, zero,
                                   bare - float(theory.lattice_wl_correction(size, size, flux=flux_b,
                                                                             extrapolation=z0)), bare)):
                cols[k].append(float(v))
        sr = {k: np.asarray(v) for k, v in cols.items()}
        # zero field: sigma(0, L) = A dG(L) + sigma_D', the one loop of the same square (its crossover into the
        # ln L regime included) with a free classical constant; the sizes are independent ensembles
        amp, amp_err, icpt, chi2 = line_fit(sr["one_loop"], sr["sigma0"], sr["sigma0_err"])
        bare_amp, bare_err, _, _ = line_fit(sr["one_loop_bare"], sr["sigma0"], sr["sigma0_err"])
        # paired against the field-broken square: the Drude part cancels, but at l_B ~ l the field is not in the
        # diffusive regime that the one loop of the field-broken square assumes
        pamp, pamp_err, picpt, pchi2 = line_fit(sr["crossover"], sr["delta"], sr["delta_err"])
        slope, slope_err, _, _ = line_fit(np.log(sr["sizes"]), sr["sigma0"], sr["sigma0_err"])
        strength = entry["disorder"]["strength"]
        series[key] = dict(strength=strength, flux=flux_b, amplitude=amp, amplitude_err=amp_err, intercept=icpt,
                           chi2=chi2, paired_amplitude=pamp, paired_amplitude_err=pamp_err, paired_intercept=picpt,
                           **{k: v for k, v in sr.items()})
        sizes = sr["sizes"].astype(int).tolist()
        tag = f"W = {strength:g}, sigma_B = {float(sigma_field[names[-1]][0]):.2f}"
        report.add(f"size ({tag}): A, sigma(0) against the one loop of the square", amp, amp_err, 1.0,
                   f"L = {sizes}, z0 = {np.mean(sr['z0']):.2f}, cutoff {theory.DIFFUSIVE_CUTOFF:.2f} l, "
                   f"chi2 = {chi2:.1f}/"
                   f"{len(sizes) - 2}; lattice cutoff instead: {bare_amp:.2f} +- {bare_err:.2f}")
        report.add(f"size ({tag}): -A/pi, the ln L coefficient", -amp / math.pi, amp_err / math.pi, -1 / math.pi,
                   "asymptotic slope of sigma(0) against ln L")
        report.add(f"size ({tag}): straight-line slope of sigma(0)", slope, slope_err, None,
                   "biased by the crossover into the ln L regime")
        report.add(f"size ({tag}): paired A, sigma(0) - sigma(phi_B)", pamp, pamp_err, None,
                   f"l_B = {1 / math.sqrt(2 * math.pi * flux_b):.1f}, chi2 = {pchi2:.1f}/{len(sizes) - 2}")
    def weighted_mean(key):
        value = np.array([sr[key] for sr in series.values()])
        w = 1 / np.array([sr[key + "_err"] for sr in series.values()]) ** 2
        return float(np.sum(w * value) / np.sum(w)), float(1 / math.sqrt(np.sum(w)))

    report.add("size: A of all series (weighted mean)", *weighted_mean("amplitude"), 1.0,
               "sigma(0) against the one loop of the square")
    report.add("size: paired A of all series (weighted mean)", *weighted_mean("paired_amplitude"), None,
               "field-broken reference at l_B ~ l")
    # --- Drude conductance and diffusion constant
    deph = config["ensembles"]["dephasing"]
    ref = an["drude_size"]
    sigma_d, sigma_d_err = (float(v) for v in sigma_field[ref])
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
    sigma, channels = sheet_conductance(config, "dephasing", g)
    dsig = sigma - sigma[..., :1]
    mean, err = mean_stderr(dsig)
    l_phi_theory = np.sqrt(diffusion * taus)

    fit_mask = (flux > 0) & (flux <= an["fit_max_flux"])
    x = np.tile(flux[fit_mask], len(taus))
    labels = np.repeat(np.arange(len(taus)), fit_mask.sum())

    def hln_fit(rows):
        m, e = mean_stderr(dsig[rows])
        return dt.fit_magnetoconductance(x, m[:, fit_mask].reshape(-1), model="alpha",
                                         sigma=e[:, fit_mask].reshape(-1), curve=labels)

    def estimates(f):
        """alpha, L_phi per tau_phi and the exponent of L_phi against tau_phi (unweighted line in logs)."""
        l_phi = np.array([float(theory.length_from_flux(f.value("b_phi", c))) for c in range(len(taus))])
        return np.concatenate([[f.value("alpha")], l_phi, [np.polyfit(np.log(taus), np.log(l_phi), 1)[0]]])

    # The points of all curves share realizations (paired in flux and tau_phi): errors by the jackknife.
    fit = hln_fit(np.arange(len(dsig)))
    values, errors = jackknife(lambda rows: estimates(hln_fit(rows)), np.arange(len(dsig)), blocks=10)
    alpha, alpha_err = values[0], errors[0]
    report.add("HLN alpha", alpha, alpha_err, 0.5, f"chi2/dof = {fit.chi2:.1f}/{fit.dof} (diagonal errors)")
    (out / "hln_fit.json").write_text(json.dumps(fit.to_dict(), indent=2) + "\n")
    l_fit, l_fit_err = values[1:-1].tolist(), errors[1:-1].tolist()
    for c in range(len(taus)):
        report.add(f"tau_phi = {taus[c]:g}: L_phi(HLN) / sqrt(D tau_phi)", l_fit[c] / l_phi_theory[c],
                   l_fit_err[c] / l_phi_theory[c], 1.0, f"sqrt(D tau) = {l_phi_theory[c]:.2f}")
    slope_t, slope_t_err = values[-1], errors[-1]
    report.add("d ln L_phi(HLN) / d ln tau_phi", slope_t, slope_t_err, 0.5, "L_phi = sqrt(D tau_phi)")

    # The same curves against the one-loop magnetoconductance of the dephased square itself, with
    # L_phi = sqrt(D tau_phi) from the Einstein relation: no cutoff parameter, alpha alone (a linear estimator; its
    # error from the spread of the per-realization estimates, whose points are correlated).
    size, width = deph["sample"]["length"], deph["sample"]["width"]
    z0 = sigma_d * width / (2 * channels[0, 0])

    def one_loop(l_phi, fluxes):
        shape = jax.vmap(lambda phi: theory.lattice_wl_correction(size, width, flux=phi, l_phi=l_phi,
                                                                  extrapolation=z0))
        zero = theory.lattice_wl_correction(size, width, l_phi=l_phi, extrapolation=z0)
        return 2 * size / width * np.asarray(shape(jnp.asarray(fluxes)) - zero)  # Delta sigma per unit alpha

    x_sq = np.stack([one_loop(lp, flux[fit_mask]) for lp in l_phi_theory])  # (tau, fit fluxes)
    alpha_sq, alpha_sq_err = linear_amplitude(dsig[:, :, fit_mask].reshape(len(dsig), -1), x_sq.reshape(-1))
    report.add("alpha, one loop of the dephased square", alpha_sq, alpha_sq_err, 0.5,
               f"L_phi = sqrt(D tau_phi) fixed, z0 = {z0:.2f}")
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    ax = axs[0]
    for key, sr in series.items():  # sigma(0) less its fitted classical constant: the WL correction
        line = ax.errorbar(sr["sizes"], sr["sigma0"] - sr["intercept"], yerr=sr["sigma0_err"], fmt="o", capsize=2,
                           label=fr"W = {sr['strength']:g}: A = {sr['amplitude']:.2f} ± {sr['amplitude_err']:.2f}")
        fine = np.unique(np.geomspace(sr["sizes"][0], sr["sizes"][-1], 12).round().astype(int))
        z0 = float(np.mean(sr["z0"]))
        loop = np.array([float(theory.lattice_wl_correction(n, n, extrapolation=z0, cutoff=theory.diffusive_cutoff(z0)))
                         for n in fine])
        ax.plot(fine, sr["amplitude"] * loop, color=line[0].get_color(), lw=1)
        w = 1 / sr["sigma0_err"] ** 2  # one-loop theory (A = 1), only its constant fitted
        c1 = np.sum(w * (sr["sigma0"] - sr["one_loop"])) / np.sum(w)
        ax.plot(fine, loop + c1 - sr["intercept"], ":", color=line[0].get_color(), lw=1)
    ax.plot([], [], "k:", lw=1, label="one loop (A = 1), crossover included")
    ax.set_xscale("log")
    ticks = sorted({int(n) for sr in series.values() for n in sr["sizes"]})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("L = W (sites)")
    ax.set_ylabel(r"$\sigma(0)-\sigma_D'$ ($e^2/h$ per square)")
    ax.set_title(r"size: $\sigma(0)=A\,\delta G_{1\mathrm{loop}}(L)+\sigma_D'$, $A$ = 1 is $-\ln L/\pi$", fontsize=9)
    ax.legend(fontsize=7)

    ax = axs[1]
    fine = np.linspace(1e-6, flux[fit_mask].max(), 200)
    for c, tau in enumerate(taus):
        line = ax.errorbar(flux, mean[c], yerr=err[c], fmt="o", ms=3, capsize=2,
                           label=fr"$\tau_\phi$={tau:g}: $L_\phi$ {l_fit[c]:.1f} (fit) / {l_phi_theory[c]:.1f}")
        model = theory.hln_alpha(fine, fit.value("b_phi", c), alpha)
        ax.plot(fine, np.asarray(model), color=line[0].get_color(), lw=1)
        ax.plot(fine[::10], alpha_sq * one_loop(l_phi_theory[c], fine[::10]), ":", color=line[0].get_color(), lw=1.5)
    ax.plot([], [], "k-", lw=1, label="HLN fit (free $B_\\phi$)")
    ax.plot([], [], "k:", lw=1.5, label=r"one loop of the square, $L_\phi=\sqrt{D\tau_\phi}$")
    ax.set_xlabel(r"flux per plaquette $\phi$ ($h/e$)")
    ax.set_ylabel(r"$\sigma(\phi)-\sigma(0)$ ($e^2/h$)")
    ax.set_title(fr"HLN: $\alpha$ = {alpha:.2f} ± {alpha_err:.2f}; one loop of the square: "
                 fr"$\alpha$ = {alpha_sq:.2f} ± {alpha_sq_err:.2f} (theory 1/2)", fontsize=9)
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
    return finish(fig, report, config, out, "weak_localization_2d",
                  {"diffusion": diffusion, "l_phi_fit": l_fit, "l_phi_theory": l_phi_theory.tolist()})


if __name__ == "__main__":
    main("weak_localization_2d", __doc__, analyse)
