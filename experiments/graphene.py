"""Graphene: weak antilocalization from smooth disorder, and weak localization once short-range scatterers mix
the valleys, fitted with the McCann formula.

    python experiments/graphene.py [--config configs/graphene.toml] [--out DIR] [--quiet]
    python experiments/graphene.py --config configs/graphene_crossover.toml --out out/graphene_crossover

Spinless honeycomb zigzag cylinders (no edges; both valleys), the field in the sample only, solved in column
slices by the transfer sweep (docs/physics.md#column-slices); the config states the sample, disorder, fields and
the comparisons fixed before the run, and its [analysis] table the pre-registered sign of each ensemble's
extremum (expect = {name = "WAL" | "WL" | "none"}) and the |z| it needs (z_min, default 5). Per realization the
conductances at the grid's twists are averaged (the right lead's Aharonov-Bohm flux B (X1 - X0) C then does not
sit at one subband pattern; two twists t and 1 - t are time-reversal partners, so their average is also the
average of G(B) and G(-B)), and paired: Delta G(phi) = G(phi) - G(0), phi the flux per a^2. The average needs
eight or more equally spaced twists: the two of configs/graphene.toml left a contact artefact of -0.05 below one
flux quantum through the sample (docs/gallery.md#graphene-first-run).

Sheet conductance: sigma = (L/C) / (1/G - 1/N), N the open channels of the (field-free) left lead at the
realization's twist, L = length (a = 1), C = N_rows sqrt(3)/2 the circumference; the twist average is taken on
sigma. The McCann formula (docs/theory.md#mccann) in the published form (spin degeneracy 2) is fitted to
2 Delta sigma (the spinless lattice has half the published prefactor): B_i per curve, B_phi and B_* shared, all
in flux per a^2 (L_x = 1/sqrt(8 pi phi_x)). The samples are coherent, so B_phi stands for their size (the
Cooperon escapes through the leads), one geometry for all curves; a curve with B_i -> 0 alone would determine only
B_phi + B_* (its first two terms cancel). The errors of the points are the standard errors over realizations;
the fit treats them as independent (one realization's points are correlated, so chi2/dof is a diagnostic and the
parameter errors come from a delete-block jackknife over realizations). Next to the fitted L_* the report gives
the trigonal-warping estimate ``theory.warping_length`` with l = sigma(0)/k_F of the least disordered curve.
"""

from __future__ import annotations

import numpy as np

import difftransport as dt
from common import Report, finish, main, pyplot
from difftransport import theory
from difftransport.runs import make_sample
from difftransport.stats import jackknife, mean_stderr

BLOCKS = 12  # jackknife blocks


def sheet(config, name, g):
    """Twist-averaged sheet conductance sigma (R, flux) and the mean channel count, from g (R, twist, flux)."""
    entry = config["ensembles"][name]
    sample = make_sample(entry["sample"])
    twists = entry["grid"]["twist"]
    channels = np.array([float(dt.open_channels(sample, dt.Model(energy=entry["model"]["energy"], twist=t)))
                         for t in twists])
    circumference = entry["sample"]["n"] * np.sqrt(3) / 2
    aspect = entry["sample"]["length"] / circumference
    sigma = aspect * np.asarray(theory.intrinsic_conductance(g, channels[None, :, None]))
    return sigma.mean(axis=1), float(channels.mean())


def expectations(config):
    """The pre-registered sign of each ensemble's extremum ({name: "WAL" | "WL" | "none"}) and the |z| it needs,
    from the config's [analysis] table (expect, z_min; ensembles not named there have no requirement)."""
    analysis = config.get("analysis", {})
    unknown = set(analysis) - {"expect", "z_min"}
    if unknown:
        raise ValueError(f"[analysis] has unknown keys {sorted(unknown)}; the graphene experiment reads expect, z_min.")
    expect = dict(analysis.get("expect", {}))
    for name, value in expect.items():
        if name not in config["ensembles"]:
            raise ValueError(f"[analysis] expect names {name!r}, which is not an ensemble: "
                             f"{list(config['ensembles'])}.")
        if value not in ("WAL", "WL", "none"):
            raise ValueError(f"[analysis] expect.{name} = {value!r}: must be 'WAL', 'WL' or 'none'.")
    z_min = analysis.get("z_min", 5.0)
    if isinstance(z_min, bool) or not isinstance(z_min, (int, float)) or not z_min > 0:
        raise ValueError(f"[analysis] z_min = {z_min!r}: must be a positive number.")
    return expect, float(z_min)


def mccann_fit(flux, curves, names):
    """Joint McCann fit of the mean curves {name: delta (R, flux)} (2 Delta sigma: the published form): B_i per
    curve, B_phi and B_* shared."""
    mask = flux > 0
    field, value, sigma, label = [], [], [], []
    for name in names:
        mean, err = mean_stderr(2 * curves[name][:, mask])
        field.append(flux[mask])
        value.append(mean)
        sigma.append(err)
        label += [name] * int(mask.sum())
    return dt.fit_magnetoconductance(np.concatenate(field), np.concatenate(value), model="mccann",
                                     sigma=np.concatenate(sigma), curve=label, per_curve=("b_i",))


def analyse(config, data, out):
    report = Report("Graphene (spinless zigzag cylinders): Delta G and the McCann fit")
    names = list(config["ensembles"])
    expect, z_min = expectations(config)
    flux = np.asarray(config["ensembles"][names[0]]["grid"]["flux"])
    deltas, sheets, summary = {}, {}, {}
    for name in names:
        entry = config["ensembles"][name]
        g = np.asarray(data[name]["conductance"])  # (R, twist, flux)
        g_avg = g.mean(axis=1)
        delta = g_avg - g_avg[:, :1]
        mean, err = mean_stderr(delta)
        k = 1 + int(np.argmax(np.abs(mean[1:])))
        z = mean[k] / err[k]
        sigma, channels = sheet(config, name, g)
        deltas[name] = delta
        sheets[name] = sigma - sigma[:, :1]
        density = entry["disorder"].get("short_range_density", 0.0)
        summary[name] = dict(density=density, g0=float(g_avg[:, 0].mean()), sigma0=float(sigma[:, 0].mean()),
                             channels=channels, extremum_flux=float(flux[k]), extremum=float(mean[k]),
                             extremum_err=float(err[k]), z=float(z))
        report.add(f"{entry['label']}: G(0)", float(g_avg[:, 0].mean()), float(mean_stderr(g_avg[:, 0])[1]), None,
                   f"{len(g)} realizations; sigma(0) = {sigma[:, 0].mean():.3f} per square, N = {channels:.1f}")
        expected = expect.get(name, "none")
        met = {"WAL": z <= -z_min, "WL": z >= z_min, "none": True}[expected]
        report.add(f"{entry['label']}: Delta G at its extremum (phi = {flux[k]:.1e})", float(mean[k]), float(err[k]),
                   0.0, f"z = {z:+.1f}; pre-registered: " + {
                       "WAL": f"negative, |z| >= {z_min:g} (WAL)", "WL": f"positive, z >= {z_min:g} (WL)",
                       "none": "no requirement"}[expected] + ("" if expected == "none" else
                                                              (": met" if met else ": NOT met")))

    fit = mccann_fit(flux, sheets, names)

    def jack(rows_by_name):
        f = mccann_fit(flux, rows_by_name, names)
        return [f.value("b_i", c) for c in names] + [f.value("b_phi"), f.value("b_star")]

    count = min(len(d) for d in sheets.values())
    _, jerr = jackknife(lambda rows: jack({n: sheets[n][rows] for n in names}), np.arange(count), blocks=BLOCKS)
    chi2_by_curve = {}
    mask = flux > 0
    for name in names:
        mean, err = mean_stderr(2 * sheets[name][:, mask])
        model = np.asarray(theory.mccann(flux[mask], fit.value("b_phi", name), fit.value("b_i", name),
                                         fit.value("b_star")))
        chi2_by_curve[name] = float(np.sum(((mean - model) / err) ** 2))
    dof_per_curve = int(mask.sum()) - 1 - 2 / len(names)
    for i, name in enumerate(names):
        label = config["ensembles"][name]["label"]
        b_i = fit.value("b_i", name)
        report.add(f"{label}: B_i (flux per a^2)", b_i, float(jerr[i]), None,
                   f"L_i = {float(theory.length_from_flux(b_i)) if b_i > 0 else np.inf:.0f} a; chi2 of the curve = "
                   f"{chi2_by_curve[name]:.1f} over {mask.sum()} points (~{dof_per_curve:.1f} dof; "
                   "pre-registered chi2/dof <= 2)")
    report.add("B_phi shared (flux per a^2)", fit.value("b_phi"), float(jerr[-2]), None,
               f"L_phi = {float(theory.length_from_flux(fit.value('b_phi'))):.0f} a (the samples: L = "
               f"{config['ensembles'][names[0]]['sample']['length']} a)")
    report.add("B_* shared (flux per a^2)", fit.value("b_star"), float(jerr[-1]), None,
               f"L_* = {float(theory.length_from_flux(fit.value('b_star'))):.0f} a; joint chi2 = {fit.chi2:.1f} / "
               f"{fit.dof} (diagonal errors)")
    smooth = min(names, key=lambda n: summary[n]["density"])
    energy = config["ensembles"][smooth]["model"]["energy"]
    k_f = 2 * abs(energy) / np.sqrt(3)
    ell = summary[smooth]["sigma0"] / k_f  # sigma = k_F l e^2/h (spinless, two valleys)
    l_star = float(theory.warping_length(energy, ell))
    report.add("L_* from trigonal warping (estimate, not a criterion)", l_star, 0.0, None,
               f"sqrt(12) l / (k_F l k_F a) with l = sigma(0) / k_F = {ell:.1f} a of the least disordered curve, "
               f"k_F a = {k_f:.3f} (docs/physics.md#graphene-warping); fitted L_* = "
               f"{float(theory.length_from_flux(fit.value('b_star'))):.0f} a")
    warping = dict(mean_free_path=ell, l_star=l_star)
    b_i = [fit.value("b_i", n) for n in names]
    densities = [summary[n]["density"] for n in names]
    order = np.argsort(densities)
    monotonic = bool(np.all(np.diff(np.asarray(b_i)[order]) > 0))
    report.add("B_i increasing with the short-range density", float(monotonic), 0.0, 1.0,
               "pre-registered; B_i = " + ", ".join(f"{b_i[j]:.2e} (n_s = {densities[j]:g})" for j in order))
    report.print()

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ax = axs[0]
    for name in names:
        mean, err = mean_stderr(deltas[name])
        ax.errorbar(flux * 1e5, mean, yerr=err, fmt="o-", ms=3, capsize=2,
                    label=f"{config['ensembles'][name]['label']} (z = {summary[name]['z']:+.1f} at the extremum)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"flux per $a^2$ ($10^{-5}\,h/e$)")
    ax.set_ylabel(r"$G(\phi)-G(0)$ ($e^2/h$)")
    ax.set_title("two-terminal magnetoconductance, paired by realization", fontsize=9)
    ax.legend(fontsize=7)
    ax = axs[1]
    fine = np.linspace(1e-8, flux.max(), 200)
    for name in names:
        mean, err = mean_stderr(2 * sheets[name])
        line = ax.errorbar(flux * 1e5, mean, yerr=err, fmt="o", ms=3, capsize=2,
                           label=f"{config['ensembles'][name]['label']}: $B_i$ = {fit.value('b_i', name):.1e}")
        ax.plot(fine * 1e5, np.asarray(theory.mccann(fine, fit.value("b_phi", name), fit.value("b_i", name),
                                                       fit.value("b_star"))), color=line[0].get_color(), lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"flux per $a^2$ ($10^{-5}\,h/e$)")
    ax.set_ylabel(r"$2\Delta\sigma$ ($e^2/h$ per square; McCann's published form)")
    ax.set_title(f"McCann fit: $B_i$ per curve; $B_\\phi$ = {fit.value('b_phi'):.1e}, $B_*$ = "
                 f"{fit.value('b_star'):.1e} shared", fontsize=9)
    ax.legend(fontsize=7)
    return finish(fig, report, config, out, "graphene", {"fit": fit.to_dict(), "summary": summary, "warping": warping,
                                                           "chi2_by_curve": chi2_by_curve})


if __name__ == "__main__":
    main("graphene", __doc__, analyse)
