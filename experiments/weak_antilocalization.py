"""Weak localization and weak antilocalization of coherent 2D squares: the HLN prefactor alpha and the
crossover WL -> WAL as the Rashba spin-orbit coupling grows.

    python experiments/weak_antilocalization.py [--config configs/weak_antilocalization.toml] [--out DIR] [--quiet]

L x L squares between ideal leads; the sheet conductance sigma = 1/(1/G - 1/N) (Sharvin contact resistance 1/N
removed, realization by realization). The paired magnetoconductance sigma(phi) - sigma(0), flux phi per
plaquette as the field unit, is fitted with the simplified HLN form (docs/theory.md#hln-alpha)

    Delta sigma = (alpha/pi) [psi(1/2 + phi_phi/phi) - ln(phi_phi/phi)]   (e^2/h, total over spin)

for phi up to ``analysis.fit_max_flux`` (magnetic length a few mean free paths). The samples are coherent, so
the cutoff is the sample (L_phi ~ L) and phi_phi is a free parameter per curve; alpha is the slope
d Delta sigma / d ln phi = alpha/pi over l << l_B << L and does not depend on how the cutoff is modelled.

Theory: spinless alpha = +1/2; spinful without spin-orbit +1 (two spin copies); strong spin-orbit
(L_so << l_B) -1/2 (only the singlet Cooperon survives). In between, sigma(phi) turns from rising (WL) to
falling (WAL) at small field first: the effective alpha of the fit crosses over from +1 to -1/2.

HLN describes an infinite plane; in a square barely larger than the magnetic lengths of the fit, alpha and
phi_phi are strongly correlated. The second fit has no cutoff parameter: the one-loop magnetoconductance of the
same coherent square, Delta sigma = 2 alpha [dG(phi) - dG(0)] with dG = ``theory.lattice_wl_correction`` (the
lattice Cooperon of the L x L square, absorbing leads an extrapolation length z0 = sigma W / 2N beyond the
interfaces: the length that reproduces the Sharvin resistance), so alpha = +1/2 is the spinless one-loop value.
Its only parameter is alpha (a weighted linear fit through the origin; its error from the spread of the
per-realization fits, since one realization's magnetoconductances at neighbouring fluxes are correlated).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from common import Report, finish, linear_amplitude, main, pyplot, sheet_conductance
from difftransport import theory
from difftransport.stats import jackknife, mean_stderr


def magnetoconductance(config, name, g, **model):
    """Paired sigma(phi) - sigma(0) per realization, shape (N, flux), for g of shape (N, flux); with the mean
    sigma(0) and the lead channels N at zero flux."""
    sigma, channels = sheet_conductance(config, name, g, **model)
    return sigma - sigma[:, :1], float(np.mean(sigma[:, 0])), float(channels[0])


def fit_square(size, flux, delta, sigma0, channels, max_flux):
    """One-loop fit of a coherent size x size square: (alpha, its standard error, z0), with
    Delta sigma = 2 alpha [dG(phi) - dG(0)] over 0 < phi <= max_flux, ``delta`` of shape (N, flux).

    One realization's magnetoconductances at neighbouring fluxes are strongly correlated, so the error is the
    spread of the per-realization estimates (``linear_amplitude``), not the diagonal-error formula."""
    z0 = sigma0 * size / (2 * channels)
    mask = (flux > 0) & (flux <= max_flux)
    shape = jax.vmap(lambda phi: theory.lattice_wl_correction(size, size, flux=phi, extrapolation=z0))
    x = 2 * np.asarray(shape(jnp.asarray(flux[mask])) - theory.lattice_wl_correction(size, size, extrapolation=z0))
    alpha, err = linear_amplitude(delta[:, mask], x)
    return alpha, err, z0


def fit_alpha(flux, delta, max_flux):
    """Simplified-HLN fit (alpha, phi_phi) of one curve over 0 < phi <= max_flux, from ``delta`` (N, flux): the
    fit of the mean curve, and the jackknife error of alpha (the fit's own error treats the fluxes as independent,
    but one realization's points are correlated)."""
    mask = (flux > 0) & (flux <= max_flux)

    def fit(rows):
        mean, err = mean_stderr(delta[rows][:, mask])
        return dt.fit_magnetoconductance(flux[mask], mean, model="alpha", sigma=err)

    return fit(np.arange(len(delta))), float(jackknife(lambda rows: [fit(rows).value("alpha")], np.arange(len(delta)),
                                                       blocks=10)[1][0])


def analyse(config, data, out):
    report = Report("2D WL and WAL of coherent squares (sigma in e^2/h per square, total over spin)")
    max_flux = config["analysis"]["fit_max_flux"]
    curves = []  # (label, flux, mean, err, fit, jackknife error of alpha)

    entry = config["ensembles"]["spinless"]
    flux = np.asarray(entry["grid"]["flux"])
    delta, sigma0, channels = magnetoconductance(config, "spinless", data["spinless"]["conductance"])
    mean, err = mean_stderr(delta)
    fit, alpha_err = fit_alpha(flux, delta, max_flux)
    report.add("spinless: sigma(0)", sigma0, 0.0, None, f"{len(delta)} realizations, N = {channels:.0f}")
    report.add("spinless: HLN alpha", fit.value("alpha"), alpha_err, 0.5,
               f"chi2/dof = {fit.chi2:.1f}/{fit.dof} (diagonal), L_phi = "
               f"{float(theory.length_from_flux(fit.value('b_phi'))):.1f}")
    curves.append(("spinless", flux, mean, err, fit, alpha_err))
    a_sq, a_sq_err, z0 = fit_square(entry["sample"]["length"], flux, delta, sigma0, channels, max_flux)
    report.add("spinless: alpha, one loop of the square", a_sq, a_sq_err, 0.5, f"z0 = {z0:.2f}")
    square_alphas = {"spinless": (a_sq, a_sq_err)}

    entry = config["ensembles"]["rashba"]
    flux = np.asarray(entry["grid"]["flux"])
    rashba = np.asarray(entry["grid"]["rashba"])
    g = data["rashba"]["conductance"]  # (N, rashba, flux)
    alphas = []
    for i, a in enumerate(rashba):
        delta, sigma0, channels = magnetoconductance(config, "rashba", g[:, i], rashba=float(a) or None)
        mean, err = mean_stderr(delta)
        fit, alpha_err = fit_alpha(flux, delta, max_flux)
        expected = 1.0 if a == 0 else (-0.5 if i == len(rashba) - 1 else None)
        note = "two spin copies" if a == 0 else ("strong spin-orbit" if expected is not None else "crossover")
        report.add(f"Rashba {a:g}: HLN alpha", fit.value("alpha"), alpha_err, expected,
                   f"{note}; sigma(0) = {sigma0:.3f}, chi2/dof = {fit.chi2:.1f}/{fit.dof} (diagonal)")
        alphas.append((fit.value("alpha"), alpha_err))
        a_sq, a_sq_err, z0 = fit_square(entry["sample"]["length"], flux, delta, sigma0, channels, max_flux)
        report.add(f"Rashba {a:g}: alpha, one loop of the square", a_sq, a_sq_err, expected, f"z0 = {z0:.2f}")
        square_alphas[f"Rashba {a:g}"] = (a_sq, a_sq_err)
        curves.append((f"Rashba {a:g}", flux, mean, err, fit, alpha_err))
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax = axs[0]
    for label, flux, mean, err, fit, alpha_err in curves:
        line = ax.errorbar(flux * 1e3, mean, yerr=err, fmt="o", ms=3, capsize=2,
                           label=fr"{label}: $\alpha$ = {fit.value('alpha'):+.2f} ± {alpha_err:.2f}")
        fine = np.linspace(1e-7, max_flux, 200)
        ax.plot(fine * 1e3, np.asarray(theory.hln_alpha(fine, fit.value("b_phi"), fit.value("alpha"))),
                color=line[0].get_color(), lw=1)
    ax.axvline(max_flux * 1e3, color="0.7", ls=":", lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"flux per plaquette $\phi$ ($10^{-3}\,h/e$)")
    ax.set_ylabel(r"$\sigma(\phi)-\sigma(0)$ ($e^2/h$)")
    ax.set_title("magnetoconductance and HLN fits (dotted: fit range)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axs[1]
    ax.errorbar(rashba, [a for a, _ in alphas], yerr=[e for _, e in alphas], fmt="o-", capsize=2,
                label="spinful, HLN fit")
    ax.errorbar([0.0], [curves[0][4].value("alpha")], yerr=[curves[0][5]], fmt="s", capsize=2,
                label="spinless, HLN fit")
    sq = [square_alphas[f"Rashba {a:g}"] for a in rashba]
    ax.errorbar(rashba + 0.008, [a for a, _ in sq], yerr=[e for _, e in sq], fmt="D--", ms=4, capsize=2,
                color="C2", label="spinful, one loop of the square")
    ax.errorbar([0.008], [square_alphas["spinless"][0]], yerr=[square_alphas["spinless"][1]], fmt="D", ms=4,
                capsize=2, color="C3", label="spinless, one loop of the square")
    for value, text in ((1.0, "+1 (orthogonal, two spins)"), (0.5, "+1/2 (spinless)"), (-0.5, "-1/2 (symplectic)")):
        ax.axhline(value, color="0.6", ls="--", lw=1)
        right = value < 0  # the legend sits at the upper right
        ax.text(rashba[-1] if right else 0.13, value + (-0.1 if right else 0.03), text,
                ha="right" if right else "left", fontsize=7, color="0.4")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"Rashba $\alpha_R$ ($t$)")
    ax.set_ylabel(r"HLN prefactor $\alpha$")
    ax.set_title("crossover WL → WAL", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fits = {label: fit.to_dict() for label, *_, fit, _ in curves}
    return finish(fig, report, config, out, "weak_antilocalization", {"fits": fits, "square_alpha": square_alphas})


if __name__ == "__main__":
    main("weak_antilocalization", __doc__, analyse)
