"""Magnetic impurities against dephasing: symmetry class versus coherence.

    python experiments/magnetic_impurities.py [--config configs/magnetic_impurities.toml] [--out DIR] [--quiet]

Spinful wire without spin-orbit coupling (total g summed over spin, docs/physics.md#dmpk):
  J = 0: two identical, independent spin copies, beta = 1: WL +2/3 (2 x 1/3), var g = 8/15.
  strong static J m.sigma: one mixed species, beta = 2: WL 0, var g = 1/15 (finite: static spins do not dephase).
  dephasing (absorption on every site plus one current-restoring probe, L_phi << L): WL -> 0 and var g -> 0.
"""

from __future__ import annotations

import numpy as np

from common import Report, finish, main, pyplot, residual
from difftransport.stats import mean_stderr, variance_stderr


def analyse(config, data, out):
    report = Report("Magnetic impurities vs dephasing (spinful wire, total g)")
    series = {}
    for name, axis in (("exchange", "exchange"), ("dephasing", "tau_phi")):
        wl_index = list(config["ensembles"][name]["grid"]["flux"]).index(config["analysis"]["wl_flux"])
        g = data[name]["conductance"]  # (N, axis, flux)
        values = np.asarray(config["ensembles"][name]["grid"][axis])
        wl = [mean_stderr(g[:, i, wl_index] - g[:, i, 0]) for i in range(len(values))]
        var0 = [variance_stderr(g[:, i, 0]) for i in range(len(values))]
        var_b = [variance_stderr(g[:, i, wl_index]) for i in range(len(values))]
        series[name] = (values, wl, var0, var_b, g)
    values, wl, var0, var_b, g = series["exchange"]
    n = g.shape[0]
    wl_flux = config["analysis"]["wl_flux"]
    res, l_tr, l_b, channels = residual(config, "exchange", float(g[:, 0, 0].mean()), wl_flux)
    res = float(res)
    report.add("J = 0: <g(0)>", *map(float, mean_stderr(g[:, 0, 0])), None, f"{n} realizations")
    report.add(f"J = 0: WL <g(phi)> - <g(0)> at phi = {wl_flux:g}", *map(float, wl[0]), 2 / 3 - 2 * res,
               f"2 x [1/3 - F(L/L_B)]: N = {channels:.0f}/spin, l_tr = {l_tr:.1f}, L_B = {float(l_b):.1f}, F = {res:.3f}")
    report.add("J = 0: var g at phi = 0", *var0[0], 8 / 15, "beta = 1, two independent spin copies")
    report.add(f"J = 0: var g at phi = {wl_flux:g}", *var_b[0], 4 / 15, "beta = 2, two copies")
    report.add(f"J = {values[-1]:g}: WL <g(phi)> - <g(0)>", *map(float, wl[-1]), 0.0, "unitary: no WL")
    report.add(f"J = {values[-1]:g}: var g at phi = 0", *var0[-1], 1 / 15, "beta = 2, one mixed species")
    report.add(f"J = {values[-1]:g}: var g at phi = {wl_flux:g}", *var_b[-1], 1 / 15, "the field changes nothing more")
    taus, wl_t, var_t, _, g_t = series["dephasing"]
    for i, tau in enumerate(taus):
        report.add(f"tau_phi = {tau:g}: WL", *map(float, wl_t[i]), None, "absorbing probe")
        report.add(f"tau_phi = {tau:g}: var g at phi = 0", *var_t[i], 8 / 15 if np.isinf(tau) else None,
                   "coherent" if np.isinf(tau) else "dephasing suppresses the fluctuations")
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, (name, (vals, wl, var0, var_b, _)) in zip(axs, series.items()):
        x = vals if name == "exchange" else np.where(np.isinf(vals), 0.0, 1 / vals)
        ax.errorbar(x, [m for m, _ in wl], yerr=[e for _, e in wl], fmt="o-", capsize=2, label=r"WL: $\langle g(\phi)\rangle-\langle g(0)\rangle$")
        ax.errorbar(x, [v for v, _ in var0], yerr=[e for _, e in var0], fmt="s-", capsize=2, label=r"var $g$ ($\phi=0$)")
        ax.axhline(8 / 15, color="0.6", ls="--", lw=1, label="8/15")
        ax.axhline(2 / 3, color="0.6", ls="-.", lw=1, label="2/3")
        ax.axhline(1 / 15, color="0.6", ls=":", lw=1, label="1/15")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("exchange $J$ ($t$)" if name == "exchange" else r"$1/\tau_\phi$ ($t/\hbar$)")
        ax.set_title("static magnetic moments" if name == "exchange" else "dephasing (absorbing probe)", fontsize=9)
        ax.legend(fontsize=7)
    axs[0].set_ylabel("$e^2/h$, $(e^2/h)^2$")
    return finish(fig, report, config, out, "magnetic_impurities")


if __name__ == "__main__":
    main("magnetic_impurities", __doc__, analyse)
