"""Dimension dependence of the weak-localization correction against L_phi: proportional to L_phi in a quasi-1D
wire, to ln L_phi in 2D and to const - 1/L_phi in 3D (docs/theory.md#wl-dimensions).

    python experiments/wl_dimensions.py [--config configs/wl_dimensions.toml] [--out DIR] [--quiet]

Spinless samples with Buttiker probes on every site (local, current-conserving dephasing; tau_phi = hbar/2 eta).
Each realization is evaluated at flux 0 and at a flux phi_B whose magnetic length is below every L_phi, so the
field-removable part Delta = X(0) - X(phi_B) is the zero-field correction up to a constant (the correction left
in the field, which does not depend on L_phi while l_B << L_phi). With two fields the classical (quadratic in
the field) magnetoresistance is extrapolated away (``field_broken``). The probes also relax momentum, which moves the
Drude conductance by a relative tau/tau_phi; that part is the same at both fluxes and drops out of Delta.

One-loop prediction, spinless, e^2/h, no free parameter but the constant: Delta = a x(L_phi) + c with a = 1 and x
the one loop of the dephased sample itself (``own_one_loop``: theory.lattice_wl_correction of the L x W strip or
L x W x H bar, absorbing leads, at the grid's fluxes, combined like the data), which tends to

* quasi-1D wire, X = sigma A = L / (1/G - 1/N):  -L F(L/L_phi) (F(x) = coth x / x - 1/x^2) -> -L_phi for
  W << L_phi << L
* 2D square, X = sigma per square:               -(1/pi) ln L_phi when l_B << L_phi << L
* 3D bar, X = sigma per lattice constant:        +1/(2 pi L_phi) when l_B << L_phi << W, H, L (the
  mass-regularized Cooperon of exponential dephasing, Kawabata's L_phi term; the sharp-cutoff
  entry 1/pi^2 of docs/theory.md#wl-dimensions is pi/2 smaller)

and catches the crossovers between these limits (L_phi ~ W, l_B ~ L_phi) that samples of a 2-core budget live in.
L_phi = sqrt(D tau_phi) with D = sigma_D / (2 pi rho) (Einstein relation, hbar = 1, lattice units): sigma_D
from the field-broken point at the longest tau_phi, rho the DOS per site from exact eigenvalues of closed samples.
The script also fits each ideal form (the three limits above) and prints the amplitude for the sample's own
dimension and the chi^2 of the other two.
"""

from __future__ import annotations

import math

import numpy as np

from common import Report, density_of_states, finish, line_fit, main, pyplot, sheet_conductance
from difftransport import theory
from difftransport.stats import jackknife, mean_stderr

DIMENSIONS = {"wire": 1, "square": 2, "bar": 3}


def shapes(length):
    """The three candidate forms x(L_phi) (e^2/h units, spinless), keyed by dimension."""
    return {
        1: lambda l_phi: -length * np.asarray(theory.coherent_wire_function(length / np.asarray(l_phi))),
        2: lambda l_phi: -np.log(l_phi) / math.pi,
        3: lambda l_phi: 1.0 / (2 * math.pi * np.asarray(l_phi)),
    }


def own_one_loop(entry, l_phi, z0):
    """One-loop Delta = X(0) - X(phi_B) of the dephased sample itself (L x W square or L x W x H bar) at each
    L_phi, per square or per lattice constant: the lattice Cooperon (``theory.lattice_wl_correction``, absorbing
    leads z0 beyond the interfaces, the sample's walls) at every flux of the grid, combined exactly as the data are
    (``field_broken``). A field difference is free of the ultraviolet cutoff, so this predicts the absolute Delta,
    not only its L_phi dependence."""
    sample, flux = entry["sample"], entry["grid"]["flux"]
    length, width, height = sample["length"], sample["width"], sample.get("height")
    out = []
    for lp in np.atleast_1d(l_phi):
        dg = np.array([float(theory.lattice_wl_correction(length, width, height=height, flux=f, l_phi=float(lp),
                                                          extrapolation=z0)) for f in flux])
        out.append(length / width / (height or 1) * (dg[0] - field_broken(dg[None, :], flux)[0]))
    return np.asarray(out)


def field_broken(x, flux):
    """X with time reversal broken, per realization and tau_phi, from x (..., flux). One field: X(phi_B). Two
    fields phi_1 < phi_2: the classical magnetoresistance (quadratic in phi) is extrapolated away,
    X = (phi_2^2 X(phi_1) - phi_1^2 X(phi_2)) / (phi_2^2 - phi_1^2); what the field leaves of the WL correction
    does not depend on L_phi while l_B << L_phi, so it only shifts the constant."""
    flux = [float(f) for f in flux]
    if flux[0] != 0.0 or len(flux) not in (2, 3):
        raise ValueError(f"flux grid must be [0, phi_B] or [0, phi_1, phi_2], got {flux}")
    if len(flux) == 2:
        return x[..., 1]
    f1, f2 = flux[1] ** 2, flux[2] ** 2
    return (f2 * x[..., 1] - f1 * x[..., 2]) / (f2 - f1)


def analyse(config, data, out):
    report = Report("WL correction against L_phi by dimension (spinless, e^2/h)")
    an = config["analysis"]
    results = {}
    for name, d in DIMENSIONS.items():
        if name not in config["ensembles"]:  # a config may run a subset (a quick check of one dimension)
            continue
        entry = config["ensembles"][name]
        taus = np.asarray(entry["grid"]["tau_phi"], float)
        length = entry["sample"]["length"]
        sigma, channels = sheet_conductance(config, name, data[name]["conductance"])  # (N, tau, flux)
        scale = entry["sample"]["width"] if d == 1 else 1.0  # wire: sigma A = sheet x W
        x_of = sigma * scale
        per_realization = x_of[:, :, 0] - field_broken(x_of, entry["grid"]["flux"])  # (N, tau)
        delta, delta_err = mean_stderr(per_realization)
        sigma_d, sigma_d_err = (float(v) for v in mean_stderr(field_broken(sigma, entry["grid"]["flux"])[:, -1]))
        rho = density_of_states(entry, realizations=an["dos_realizations"])
        diffusion = sigma_d / (2 * math.pi * rho)
        l_phi = np.sqrt(diffusion * taus)
        # the sample's own one loop: finite size, cross-over to lower dimension and field included (the leads absorb
        # the Cooperon z0 = sigma_D A / 2N beyond the interfaces, which reproduces the Sharvin 1/N)
        area = entry["sample"]["width"] * (entry["sample"].get("height") or 1)
        z0 = sigma_d * area / (2 * channels[0, 0])
        own = scale * own_one_loop(entry, l_phi, z0)
        ideal = {k: np.asarray(f(l_phi)) for k, f in shapes(length).items()}
        fits = {k: line_fit(x, delta, delta_err) for k, x in ideal.items()}
        a, _, c, chi2 = line_fit(own, delta, delta_err)
        # every tau_phi point comes from the same realizations: errors of the amplitudes by the jackknife
        a_err, ideal_err = (float(e) for e in jackknife(
            lambda p: [line_fit(x, *mean_stderr(p))[0] for x in (own, ideal[d])], per_realization, blocks=10)[1])
        dof = len(taus) - 2
        report.add(f"{name} (d = {d}): D = sigma_D / (2 pi rho)", diffusion, diffusion * sigma_d_err / sigma_d, None,
                   f"sigma_D = {sigma_d:.3f}, rho = {rho:.4f}, L_phi = {np.round(l_phi, 1).tolist()}, z0 = {z0:.2f}")
        report.add(f"{name} (d = {d}): amplitude a, own one loop", a, a_err, 1.0, f"chi2/dof = {chi2:.1f}/{dof}")
        others = ", ".join(f"d={k}: {v[3]:.1f}" for k, v in fits.items() if k != d)
        report.add(f"{name} (d = {d}): amplitude, ideal d = {d} form", fits[d][0], ideal_err, 1.0,
                   f"chi2/dof = {fits[d][3]:.1f}/{dof}; other ideal forms' chi2: {others}")
        results[name] = {"dimension": d, "x": own.tolist(), "a": a, "a_err_jackknife": a_err, "c": c, "chi2": chi2,
                         "z0": z0, "tau_phi": taus.tolist(), "l_phi": l_phi.tolist(), "delta": delta.tolist(),
                         "delta_err": delta_err.tolist(), "diffusion": diffusion, "sigma_drude": sigma_d, "rho": rho,
                         "ideal_forms": {str(k): dict(zip(("a", "a_err", "c", "chi2"), v)) for k, v in fits.items()},
                         "ideal_a_err_jackknife": ideal_err}
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, len(results), figsize=(14 * len(results) / 3, 4), layout="constrained",
                            squeeze=False)
    xlabels = {1: r"one loop of the wire ($\to -L_\phi$)", 2: r"one loop of the square ($\to -\ln(L_\phi)/\pi$)",
               3: r"one loop of the bar ($\to 1/(2\pi L_\phi)$)"}
    ylabels = {1: r"$\Delta(\sigma A)$ ($e^2/h$ · site)", 2: r"$\Delta\sigma$ ($e^2/h$)",
               3: r"$\Delta\sigma$ ($e^2/h$ per site)"}
    for ax, (name, r) in zip(axs[0], results.items()):
        d = r["dimension"]
        entry = config["ensembles"][name]
        x = np.asarray(r["x"])
        a, c, chi2, a_err = (r[k] for k in ("a", "c", "chi2", "a_err_jackknife"))
        ax.errorbar(x, r["delta"], yerr=r["delta_err"], fmt="o", capsize=2, label="X(0) − X(φ_B)")
        fine = np.linspace(min(x), max(x), 50)
        ax.plot(fine, fine + np.average(np.asarray(r["delta"]) - x, weights=1 / np.asarray(r["delta_err"]) ** 2),
                "k--", lw=1, label="one loop (slope 1)")
        ax.plot(fine, a * fine + c, "C1-", lw=1, label=f"fit: a = {a:.2f} ± {a_err:.2f}")
        for xv, yv, lv in zip(x, r["delta"], r["l_phi"]):
            ax.annotate(f"{lv:.1f}", (xv, yv), textcoords="offset points", xytext=(4, -10), fontsize=7, color="0.4")
        ax.set_xlabel(xlabels[d])
        ax.set_ylabel(ylabels[d])
        ax.set_title(f"{entry['label']}\nd = {d}: χ²/dof = {chi2:.1f}/{len(x) - 2} (labels: L_φ)", fontsize=9)
        ax.legend(fontsize=8)
    return finish(fig, report, config, out, "wl_dimensions", {"results": results})


if __name__ == "__main__":
    main("wl_dimensions", __doc__, analyse)
