"""Quasi-1D universal numbers: WL/WAL corrections, universal conductance fluctuations and the Fano factor.

    python experiments/universal_numbers.py [--config configs/universal_numbers.toml] [--out DIR] [--quiet]

Theory (docs/physics.md#dmpk, total g summed over spin): the field-induced change of <g> saturates at +1/3
(orthogonal -> unitary, WL) and -1/3 (symplectic -> unitary, WAL); var g = 2/15 (beta = 1), 1/15 (beta = 2),
2/15 (beta = 4 with Kramers pairs); Fano factor <sum T(1-T)>/<sum T> = 1/3 - (4/45)(1 - 2/beta)/g_0, where the
O(1/g) term is the weak-localization correction of shot noise (de Jong & Beenakker, PRB 46, 13400 (1992); from the
DMPK eigenvalue density with its 1/g term, Beenakker RMP 69, 731: delta <sum T(1-T)> = (1 - 2/beta)/45,
delta <sum T> = (1 - 2/beta)/3) and g_0 = <sum T> over distinct (Kramers-degenerate counted once) channels: with
the measured <sum T> the ratio of the two averages is this formula exactly to that order. In a wire of finite
length the field leaves a residual Cooperon, <g(phi)> - <g(0)> = s [1/3 - F(L/L_B)], F(x) = coth(x)/x - 1/x^2,
with the magnetic length L_B of flux cancellation in a clean specular channel (docs/theory.md#flux-cancellation);
the amplitude s [<g(phi)> - <g(0)>] + F(L/L_B) is compared with 1/3 at a flux below the onset of classical
(band-structure) magnetoresistance.
"""

from __future__ import annotations

import numpy as np

from common import Report, finish, main, pyplot, residual
from difftransport.stats import mean_stderr, variance_stderr


def fano_ratio(fano, g):
    """Ratio of ensemble means <sum T(1-T)>/<sum T> = sum_r F_r g_r / sum_r g_r (what the theory averages; the mean
    of the per-realization F differs at O(1/g_0^2)) and its standard error by the delta method."""
    r = float(np.sum(fano * g) / np.sum(g))
    return r, float(np.std(fano * g - r * g, ddof=1) / (np.sqrt(len(g)) * np.mean(g)))


def entry_orbitals(entry):
    """Orbitals per site of an ensemble's sample (2 spinful, 1 spinless)."""
    return 2 if entry["sample"]["spinful"] else 1


def analyse(config, data, out):
    report = Report("Quasi-1D universal numbers (total g, e^2/h)")
    figure = {}
    for name, sign, var0 in (("orthogonal", +1, 2 / 15), ("symplectic", -1, 2 / 15)):
        entry = config["ensembles"][name]
        g, fano = data[name]["conductance"], data[name]["fano_factor"]
        flux = np.asarray(entry["grid"]["flux"])
        n, length = g.shape[0], entry["sample"]["length"]
        dg_mean, dg_err = mean_stderr(g - g[:, :1])
        unitary = list(flux).index(config["analysis"]["unitary_flux"][name])
        at = list(flux).index(config["analysis"]["wl_flux"][name])
        res, l_tr, l_b, channels = residual(config, name, float(g[:, 0].mean()), flux[at])
        amplitude = sign * dg_mean[at] + res
        v0, e0 = variance_stderr(g[:, 0])
        v2, e2 = variance_stderr(g[:, unitary])
        f_ratio, f_ratio_err = fano_ratio(fano[:, 0], g[:, 0])
        f_mean, f_err = mean_stderr(fano[:, 0])
        report.add(f"{name}: <g(0)>", *map(float, mean_stderr(g[:, 0])), None, f"{n} realizations, L = {length}")
        report.add(f"{name}: <g(phi)> - <g(0)> at phi = {flux[at]:g}", float(dg_mean[at]), float(dg_err[at]), sign / 3,
                   "raw, before the residual")
        report.add(f"{name}: |WL| + residual F(L/L_B)", float(amplitude), float(dg_err[at]), 1 / 3,
                   f"{'WL' if sign > 0 else 'WAL'}; N = {channels:.0f}/spin, l_tr = {l_tr:.1f}, L_B = {float(l_b):.1f}, F = {float(res):.3f}")
        report.add(f"{name}: var g at phi = 0", v0, e0, var0, "beta = 1" if sign > 0 else "beta = 4 (Kramers)")
        report.add(f"{name}: var g at phi = {flux[unitary]:g}", v2, e2, 1 / 15, "beta = 2")
        beta, g_distinct = (1, g[:, 0].mean()) if sign > 0 else (4, g[:, 0].mean() / 2)
        # The comparators of tests/test_universal.py: finite length multiplies 1/3 by c = 1 - (1 + s)^-3, s from
        # N/(1 + s) = <g(phi)> in the field (N all open channels, g total: the Kramers factor cancels).
        c = 1 - (channels * entry_orbitals(entry) / g[:, unitary].mean()) ** -3
        fano_theory = c / 3 - (4 / 45) * (1 - 2 / beta) / g_distinct
        report.add(f"{name}: Fano factor <sum T(1-T)>/<sum T> at phi = 0", f_ratio, f_ratio_err, float(fano_theory),
                   f"c/3 -(4/45)(1-2/beta)/g0, c = {float(c):.4f}; per-realization <F> = {float(f_mean):.4f} +- "
                   f"{float(f_err):.4f}")
        fu, fue = fano_ratio(fano[:, unitary], g[:, unitary])
        report.add(f"{name}: Fano factor <sum T(1-T)>/<sum T> at phi = {flux[unitary]:g}", fu, fue, float(c / 3),
                   "beta = 2: no 1/g term")
        figure[name] = (flux, dg_mean, dg_err, sign, g, residual(config, name, float(g[:, 0].mean()), np.maximum(flux, 1e-12))[0])
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for name, (flux, dg, err, sign, g, res) in figure.items():
        ax = axs[0]
        bars = ax.errorbar(flux * 1e3, dg, yerr=err, fmt="o", ms=4, capsize=2, label=f"{name}: measured")
        corrected = np.where(flux > 0, dg + sign * res, 0.0)
        ax.plot(flux * 1e3, corrected, "--", lw=1, color=bars[0].get_color(), label=f"{name}: + residual F(L/L_B)")
    axs[0].axhline(1 / 3, color="0.5", ls="--", lw=1)
    axs[0].axhline(-1 / 3, color="0.5", ls="--", lw=1, label="±1/3")
    axs[0].axhline(0, color="k", lw=0.5)
    axs[0].set_xlabel(r"flux per plaquette $\phi$ ($10^{-3}\,h/e$)")
    axs[0].set_ylabel(r"$\langle g(\phi)\rangle - \langle g(0)\rangle$ ($e^2/h$)")
    axs[0].legend(fontsize=7)
    ax = axs[1]
    for name, (flux, *_rest) in figure.items():
        g = figure[name][4]
        variances = [variance_stderr(g[:, i]) for i in range(len(flux))]
        ax.errorbar(flux * 1e3, [v for v, _ in variances], yerr=[e for _, e in variances], fmt="o-", ms=4, capsize=2, label=name)
    ax.axhline(2 / 15, color="0.5", ls="--", lw=1, label="2/15")
    ax.axhline(1 / 15, color="0.5", ls=":", lw=1, label="1/15")
    ax.set_xlabel(r"flux per plaquette $\phi$ ($10^{-3}\,h/e$)")
    ax.set_ylabel(r"var $g$")
    ax.legend(fontsize=7)
    return finish(fig, report, config, out, "universal_numbers")


if __name__ == "__main__":
    main("universal_numbers", __doc__, analyse)
