"""Temperature dependence of 2D weak localization: sigma(T, B) of a disordered square whose dephasing time follows
a power law in T, averaged over the Fermi window; the ln T rise of the zero-field conductance and the narrowing of
the magnetoconductance as T falls, fitted back from an instrument-like CSV file as an experimentalist would.

    python experiments/temperature.py [--config configs/temperature.toml] [--out DIR] [--quiet]

Model (docs/physics.md#temperature). Spinless L x W square (box disorder, Fermi energy mu), a Buttiker probe on
every site (local, current-conserving dephasing) with 1/tau_phi(T) = 1/tau_sat + a T^p (``dt.tau_phi_law``;
k_B = hbar = t = 1), and at each temperature the sheet conductance sigma(E) = (L/W)/(1/G(E) - 1/N(E)) (the ideal
leads' contact resistance removed, N the open channels at E and B) averaged over the Fermi window
(``dt.thermal_average``) with the 3-node Gauss rule of the window: exact through T^4 for the disorder average,
which is smooth in E on the scale t (a single sample's sigma(E) is not resolved by 3 nodes, but the quadrature
commutes with the disorder average, so the ensemble mean is unbiased). sigma(mu) at zero field, without the
window, is computed too: <sigma_T - sigma(mu)> measures how much the window matters.

Comparators, fixed before the run:

* **ln T.** One-loop WL in 2D, spinless (alpha = 1/2): delta sigma(0) = -(alpha/pi) ln(tau_phi/tau) =
  (alpha p / pi) ln T + const, slope 1/(2 pi) = 0.159 e^2/h for p = 1. The probes also relax momentum
  (1/tau -> 1/tau + 1/tau_phi), which lowers the Drude part by a relative tau/tau_phi ~ a T (more than the
  logarithm changes here), so sigma(0, T) itself is not the WL signal: the estimator is the part a field removes,
  Delta(T) = sigma(0, T) - sigma(B_b, T), paired realization by realization (the Drude part and its thermal
  smearing cancel). Delta has the ideal slope only for l << l_B(B_b) << L_phi << L; the square's own one loop
  (``theory.lattice_wl_correction`` of the L x W square at flux 0 and B_b, absorbing leads z0 = sigma_D W / 2N
  beyond the interfaces, L_phi = sqrt(D tau_phi(T)), D = sigma_D / (2 pi rho): no free parameter) is the second
  comparator, which includes the crossovers this sample lives in.
* **Magnetoconductance.** B_phi = hbar/(4 e D tau_phi) is linear in 1/tau_phi: B_phi(T) = B0 + A T^p with the
  input p (comparator) and A = a / (8 pi D) flux quanta per plaquette per t (converted to T/K^p).

Analysis: the mean sigma(T, B) go to ``curves.csv`` (columns ``T (K)``, ``B (T)``, ``sigma (S)``, ``err (S)``;
field from flux with the configured lattice constant, temperature with the configured hopping in kelvin). The
file is fitted back with the command an experimentalist would type (``fit_with_cli``)::

    difftransport fit curves.csv --field "B (T)" --value "sigma (S)" --err "err (S)" --curve "T (K)" \
        --model alpha --law power --scale-errors --b-tr B_TR --tr-fraction 0.25 --mask-above-tr --diffusion D

(alpha shared, an offset per curve since the file holds sigma(B), B_phi(T) = b0 + a T^p jointly and per curve with
a second stage, fields up to ``tr_fraction`` of the transport field B_tr = hbar/(2 e l^2), l = 4 z0 / pi), once
with p free and once with ``--fix p=<input>`` for A. Every curve shares the realizations, so the errors quoted are
delete-a-block jackknife errors over realizations of the same fits (``fit_magnetoconductance``, asserted equal to
the command's values), and the per-curve B_phi also go into a law fit by generalized least squares with their
jackknife covariance. Writes data.npz (raw per-realization values, reused when the simulation inputs are
unchanged), curves.csv, hln_fit.json, fit/ and fit_p_input/ (the command's fit.json, fit.png, law.png,
output.txt), report.json, temperature.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import subprocess
import sys
import textwrap
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from common import ROOT, Report, cached, pyplot
from difftransport import theory
from difftransport.runs import REQUIRED, ConfigError, Field, Validator, read as read_config
from difftransport.stats import mean_stderr

BOLTZMANN = 1.380649e-23  # J/K (exact, SI 2019)
_POSITIVE = dict(minimum=0, exclusive_minimum=True)
RUN = {
    "title": Field(str, "Temperature: ln T weak localization and B_phi(T) of a dephased 2D square"),
    "seed": Field(int, 0, minimum=0, doc="realization r uses fold_in(key(seed), r)"),
    "realizations": Field(int, REQUIRED, minimum=4),
    "batch": Field(int, 5, minimum=1, doc="(T, B) points per vmapped batch (memory); results do not depend on it"),
}
SAMPLE = {
    "width": Field(int, REQUIRED, minimum=2), "length": Field(int, REQUIRED, minimum=2),
    "energy": Field((int, float), REQUIRED, doc="Fermi energy mu (units of t)"),
    "strength": Field((int, float), REQUIRED, minimum=0, doc="box disorder W"),
}
THERMAL = {
    "temperatures": Field(list, REQUIRED, doc="k_B T in units of t, increasing, > 0"),
    "a": Field((int, float), REQUIRED, **_POSITIVE, doc="1/tau_phi = 1/tau_sat + a T^p"),
    "p": Field((int, float), REQUIRED, **_POSITIVE),
    "tau_sat": Field((int, float), math.inf, **_POSITIVE, doc="saturation time (hbar/t); inf: none"),
    "nodes": Field(int, 3, minimum=1, doc="nodes of the Fermi-window quadrature (odd)"),
    "rule": Field(str, "gauss", allowed=("gauss", "tanh-sinh")),
}
FIELD = {
    "flux": Field(list, REQUIRED, doc="flux per plaquette (h/e), increasing, starting at 0"),
    "tr_fraction": Field((int, float), 0.25, **_POSITIVE, doc="HLN fits up to this fraction of B_tr = hbar/(2 e l^2)"),
    "broken_flux": Field((int, float), REQUIRED, **_POSITIVE, doc="B_b of Delta = sigma(0) - sigma(B_b); on the grid"),
}
UNITS = {
    "lattice_constant_nm": Field((int, float), REQUIRED, **_POSITIVE),
    "hopping_kelvin": Field((int, float), REQUIRED, **_POSITIVE, doc="t / k_B"),
}
ANALYSIS = {
    "alpha": Field((int, float), 0.5, doc="HLN prefactor of the comparator (spinless: 1/2)"),
    "blocks": Field(int, 8, minimum=2, doc="jackknife blocks"),
    "dos_realizations": Field(int, 8, minimum=1, doc="closed samples for the DOS of the Einstein relation"),
}
SECTIONS = {"run": RUN, "sample": SAMPLE, "thermal": THERMAL, "field": FIELD, "units": UNITS, "analysis": ANALYSIS}


def load_config(path) -> dict:
    """Read and validate the TOML config (ConfigError naming the file, line and key)."""
    data, source, text = read_config(path)  # ConfigError naming the file if unreadable or not TOML
    v = Validator(source, text)
    for key in data:
        if key not in SECTIONS:
            raise v.error((key,), f"is not a known section; allowed: {sorted(SECTIONS)}")
    config = {name: v.table(data.get(name, {}), schema, (name,)) for name, schema in SECTIONS.items()}
    temps, flux = config["thermal"]["temperatures"], config["field"]["flux"]
    if len(temps) < 4 or any(not isinstance(t, (int, float)) or t <= 0 for t in temps) or sorted(temps) != temps:
        raise v.error(("thermal", "temperatures"), f"= {temps!r} must be >= 4 increasing numbers > 0 (4 for the law fit)")
    if len(flux) < 4 or flux[0] != 0 or sorted(flux) != flux or len(set(flux)) != len(flux):
        raise v.error(("field", "flux"), f"= {flux!r} must be >= 4 increasing fluxes starting at 0")
    if config["field"]["broken_flux"] not in flux:
        raise v.error(("field", "broken_flux"), f"= {config['field']['broken_flux']!r} must be one of field.flux")
    if not len(temps) < config["analysis"]["blocks"] <= config["run"]["realizations"]:
        raise v.error(("analysis", "blocks"), f"= {config['analysis']['blocks']} must exceed the number of temperatures "
                      "(a full-rank B_phi covariance) and not exceed run.realizations")
    if config["thermal"]["nodes"] % 2 == 0 or config["thermal"]["nodes"] < 3:
        raise v.error(("thermal", "nodes"), f"= {config['thermal']['nodes']} must be odd and >= 3")
    return config


# ---------------------------------------------------------------------------------------------------------
# Simulation


def make_sample(config) -> dt.Sample:
    s = config["sample"]
    return dt.Sample(dt.strip(s["width"]), s["length"])


def simulate(config, log=print) -> dict[str, np.ndarray]:
    """Per realization: the thermal sheet conductance sigma_T (realizations, T, flux) and the zero-field sigma(mu)
    without the window (realizations, T), in e^2/h per square."""
    s, th, run = config["sample"], config["thermal"], config["run"]
    sample = make_sample(config)
    aspect = s["length"] / s["width"]
    temps = jnp.asarray(th["temperatures"], float)
    taus = dt.tau_phi_law(temps, th["a"], th["p"], tau_sat=th["tau_sat"])
    fluxes = jnp.asarray(config["field"]["flux"], float)
    nodes = dt.fermi_quadrature(th["nodes"], rule=th["rule"])
    mu = jnp.asarray(s["energy"], float)

    def realization(key):
        disorder = dt.draw_disorder(key, sample, strength=s["strength"])

        def sheet(energy, tau, flux):
            model = dt.Model(energy=energy, flux=flux, tau_phi=tau)
            out = dt.observe(sample, model, disorder, observables=("conductance", "open_channels"), dephasing="buttiker")
            return aspect * theory.intrinsic_conductance(out["conductance"], out["open_channels"])

        def thermal(point):
            t, tau, flux = point
            return dt.thermal_average(lambda e: sheet(e, tau, flux), mu, t, nodes=nodes)

        tt, ff = (a.ravel() for a in jnp.meshgrid(jnp.arange(len(temps)), jnp.arange(len(fluxes)), indexing="ij"))
        sigma_t = jax.lax.map(thermal, (temps[tt], taus[tt], fluxes[ff]), batch_size=run["batch"])
        sigma_mu = jax.lax.map(lambda tau: sheet(mu, tau, 0.0), taus, batch_size=run["batch"])
        return sigma_t.reshape(len(temps), len(fluxes)), sigma_mu

    one = jax.jit(realization)
    start, out_t, out_mu = time.perf_counter(), [], []
    for r in range(run["realizations"]):
        sig_t, sig_mu = one(jax.random.fold_in(jax.random.key(run["seed"]), r))
        out_t.append(np.asarray(sig_t))
        out_mu.append(np.asarray(sig_mu))
        log(f"  realization {r + 1}/{run['realizations']}: {time.perf_counter() - start:.0f} s")
    return {"sigma_t": np.array(out_t), "sigma_mu": np.array(out_mu), "seconds": time.perf_counter() - start}


def simulation_inputs(config) -> dict:
    """What the simulation depends on (not the batch size, the analysis or the units)."""
    return {"seed": config["run"]["seed"], "realizations": config["run"]["realizations"],
            "sample": config["sample"], "thermal": config["thermal"], "flux": config["field"]["flux"]}


def load_or_simulate(config, out: pathlib.Path, log=print) -> dict[str, np.ndarray]:
    return cached(out / "data.npz", simulation_inputs(config), lambda: simulate(config, log), log)


# ---------------------------------------------------------------------------------------------------------
# The instrument-like file and the fits an experimentalist would run on it

COLUMNS = ("T (K)", "B (T)", "sigma (S)", "err (S)")


def kelvin(config, temperature):
    return np.asarray(temperature, float) * config["units"]["hopping_kelvin"]


def tesla(config, flux):
    return np.asarray(theory.field_from_flux(np.asarray(flux, float), config["units"]["lattice_constant_nm"] * 1e-9))


def write_csv(path: pathlib.Path, config, mean, err) -> pathlib.Path:
    """One row per (T, B): the mean sheet conductance and its standard error, in siemens per square."""
    temps, fields = kelvin(config, config["thermal"]["temperatures"]), tesla(config, config["field"]["flux"])
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for i, t in enumerate(temps):
            for j, b in enumerate(fields):
                out.writerow([f"{t:.6g}", f"{b:.6g}", f"{mean[i, j] * theory.CONDUCTANCE_QUANTUM:.10e}",
                              f"{err[i, j] * theory.CONDUCTANCE_QUANTUM:.6e}"])
    return path


def read_csv(path: pathlib.Path) -> dict[str, np.ndarray]:
    """The columns of ``write_csv`` as arrays; conductances converted to e^2/h."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: header {rows[0]}, expected {list(COLUMNS)}")
    values = np.array(rows[1:], float)
    return {"temperature": values[:, 0], "field": values[:, 1],
            "sigma": values[:, 2] / theory.CONDUCTANCE_QUANTUM, "err": values[:, 3] / theory.CONDUCTANCE_QUANTUM}


def fit_curves(temperature, field, sigma, err, b_tr, tr_fraction, *, law=None, fixed=None):
    """HLN fit (model "alpha": alpha shared, B_phi and an offset per curve) of sigma(B), the points above
    tr_fraction x B_tr left out (``fit_magnetoconductance(b_tr=..., mask_above_tr=True)``); with ``law="power"``
    B_phi(T) = b0 + a T^p jointly instead of per curve (``fixed``, e.g. {"p": 1.0}, holds law parameters). The
    errors are those of the levels, mostly common to a curve (one sample's fluctuation): relative weights only
    (absolute_sigma=False, ``--scale-errors`` on the command line)."""
    extra = {} if law is None else {"temperature": {t: float(t) for t in np.unique(temperature)}, "law": law}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dt.UndeterminedWarning)
        return dt.fit_magnetoconductance(field, sigma, model="alpha", sigma=err, curve=temperature, offset=True,
                                         absolute_sigma=False, b_tr=b_tr, tr_fraction=tr_fraction, mask_above_tr=True,
                                         fixed=fixed, **extra)


def fit_with_cli(csv_path: pathlib.Path, b_tr: float, tr_fraction: float, diffusion_si: float,
                 out: pathlib.Path, extra=()) -> dict:
    """``difftransport fit curves.csv`` as an experimentalist would type it: the columns by name, model alpha,
    the law B_phi(T) = b0 + a T^p jointly (and per curve with a second stage), the points above tr_fraction x B_tr
    left out, the err column as relative weights (``--scale-errors``: the level errors are mostly common to a
    curve). Runs the installed command in a subprocess, prints its report (the correlations are in OUT/output.txt)
    and returns its fit.json."""
    argv = [sys.executable, "-m", "difftransport", "fit", str(csv_path), "--field", COLUMNS[1], "--value", COLUMNS[2],
            "--err", COLUMNS[3], "--curve", COLUMNS[0], "--model", "alpha", "--law", "power", "--scale-errors",
            "--b-tr", f"{b_tr:.8g}", "--tr-fraction", f"{tr_fraction:g}", "--mask-above-tr",
            "--diffusion", f"{diffusion_si:.8g}", "--out", str(out), *extra]
    print("$ difftransport " + " ".join(f'"{a}"' if " " in a else a for a in argv[3:]))
    done = subprocess.run(argv, capture_output=True, text=True)
    text = (done.stdout + done.stderr).strip()
    out.mkdir(parents=True, exist_ok=True)
    (out / "output.txt").write_text(text + "\n")
    print(textwrap.indent("\n".join(line for line in text.splitlines() if not line.startswith("  corr(")), "  "))
    if done.returncode != 0:
        raise RuntimeError(f"difftransport fit exited with {done.returncode}")
    return json.loads((out / "fit.json").read_text())


def b_phi_of(fit) -> np.ndarray:
    return np.array([fit.value("b_phi", c) for c in fit.curves])


# ---------------------------------------------------------------------------------------------------------
# Analysis


def jackknife_replicates(statistic, count, blocks):
    """Delete-a-block jackknife over realization indices (as ``difftransport.stats.jackknife``): the full-sample
    value, its standard error and the (blocks, ...) replicates, from which covariances follow."""
    parts = np.array_split(np.arange(count), min(blocks, count))
    replicates = np.array([np.asarray(statistic(np.delete(np.arange(count), part)), float) for part in parts])
    b = len(parts)
    error = np.sqrt((b - 1) / b * np.sum((replicates - replicates.mean(0)) ** 2, axis=0))
    return np.asarray(statistic(np.arange(count)), float), error, replicates


def slope_per_realization(x, y):
    """Least-squares slope of y (realizations, points) against x, per realization: (mean, standard error); the
    estimator is linear, so the mean of the slopes is the slope of the mean curve."""
    x = np.asarray(x, float)
    slopes = (y - y.mean(1, keepdims=True)) @ (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    m, e = mean_stderr(slopes)
    return float(m), float(e)


def density_of_states(config, realizations, seed=123):
    """DOS per site at mu from exact eigenvalues of closed disordered samples (Gaussian broadening 0.1)."""
    s = config["sample"]
    sample = make_sample(config)
    model = dt.Model(energy=s["energy"])
    values = []
    for k in jax.random.split(jax.random.key(seed), realizations):
        disorder = dt.draw_disorder(k, sample, strength=s["strength"])
        values.append(np.linalg.eigvalsh(np.asarray(dt.dense_hamiltonian(dt.build_hamiltonian(sample, model, disorder)))))
    sites = realizations * s["length"] * s["width"]
    return float(theory.density_of_states(np.concatenate(values), s["energy"], broadening=0.1, sites=sites))


def own_one_loop(config, l_phi, z0):
    """Delta = sigma(0) - sigma(B_b) of the square's one-loop Cooperon at each L_phi (e^2/h per square, alpha = 1/2;
    a field difference, free of the ultraviolet cutoff)."""
    s, b = config["sample"], config["field"]["broken_flux"]
    out = []
    for lp in np.atleast_1d(l_phi):
        pair = [float(theory.lattice_wl_correction(s["length"], s["width"], flux=f, l_phi=float(lp), extrapolation=z0))
                for f in (0.0, b)]
        out.append(s["length"] / s["width"] * (pair[0] - pair[1]))
    return np.array(out)


def analyse(config, data, out: pathlib.Path):
    s, th, fl, an = config["sample"], config["thermal"], config["field"], config["analysis"]
    temps = np.asarray(th["temperatures"], float)
    flux = np.asarray(fl["flux"], float)
    sigma_t, sigma_mu = data["sigma_t"], data["sigma_mu"]
    n_real = len(sigma_t)
    report = Report(f"Temperature: {s['length']}x{s['width']} square, W = {s['strength']:g}, mu = {s['energy']:g}, "
                    f"1/tau_phi = a T^p (a = {th['a']:g}, p = {th['p']:g}), {n_real} realizations, "
                    f"{th['nodes']}-node {th['rule']} Fermi window")
    ideal = an["alpha"] * th["p"] / math.pi
    b_index = int(np.flatnonzero(flux == fl["broken_flux"])[0])
    log_t = np.log(temps)

    # --- where the Fermi window matters: paired sigma_T - sigma(mu) at zero field
    shift, shift_err = mean_stderr(sigma_t[:, :, 0] - sigma_mu)
    for i, t in enumerate(temps):
        report.add(f"T = {t:g}: <sigma_T - sigma(mu)>, zero field", float(shift[i]), float(shift_err[i]), None,
                   "Sommerfeld (pi^2/6) T^2 <sigma>''")

    # --- Drude part and diffusion constant (field-broken, lowest T), one-loop comparator
    sigma_d, sigma_d_err = (float(v) for v in mean_stderr(sigma_t[:, 0, b_index]))
    rho = density_of_states(config, an["dos_realizations"])
    diffusion = sigma_d / (2 * math.pi * rho)
    channels = float(dt.open_channels(make_sample(config), dt.Model(energy=s["energy"])))
    z0 = sigma_d * s["width"] / (2 * channels)
    taus = np.asarray(dt.tau_phi_law(temps, th["a"], th["p"], tau_sat=th["tau_sat"]))
    l_phi = np.sqrt(diffusion * taus)
    report.add("sigma_D (field-broken, lowest T)", sigma_d, sigma_d_err, None, f"B_b = {fl['broken_flux']:g} h/e")
    report.add("DOS rho(mu) per site", rho, 0.0, float(theory.square_lattice_dos(s["energy"])), "theory: clean lattice")
    report.add("D = sigma_D / (2 pi rho)", diffusion, diffusion * sigma_d_err / sigma_d, None,
               f"L_phi = sqrt(D tau_phi) = {', '.join(f'{v:.1f}' for v in l_phi)}; z0 = {z0:.2f}")

    # --- ln T: the raw zero-field conductance and the field-removable part
    raw, raw_err = slope_per_realization(log_t, sigma_t[:, :, 0])
    delta_r = sigma_t[:, :, 0] - sigma_t[:, :, b_index]
    slope, slope_err = slope_per_realization(log_t, delta_r)
    loop = own_one_loop(config, l_phi, z0)
    loop_slope = float(np.polyfit(log_t, loop, 1)[0])
    report.add("d sigma(0, T) / d ln T (raw)", raw, raw_err, None,
               "includes the probes' momentum relaxation, -sigma_D tau a T")
    report.add("d Delta / d ln T, Delta = sigma(0) - sigma(B_b)", slope, slope_err, ideal,
               f"comparator alpha p / pi = {ideal:.4f} (alpha = {an['alpha']:g}, p = {th['p']:g})")
    report.add("d Delta / d ln T against the square's one loop", slope, slope_err, loop_slope,
               f"one loop of the {s['length']}x{s['width']} square at B = 0 and B_b")

    # --- the instrument-like file, read back and fitted per curve, then the law
    mean, err = mean_stderr(sigma_t)
    csv_path = write_csv(out / "curves.csv", config, mean, err)
    table = read_csv(csv_path)
    # the diffusive range: B_tr = hbar/(2 e l^2), l = 4 z0 / pi (2D Milne length), the library's default fraction
    mean_free_path = 4 * z0 / math.pi
    b_tr = 2 * float(theory.field_from_length(mean_free_path * config["units"]["lattice_constant_nm"] * 1e-9))
    max_field = fl["tr_fraction"] * b_tr
    fit = fit_curves(table["temperature"], table["field"], table["sigma"], table["err"], b_tr, fl["tr_fraction"])
    (out / "hln_fit.json").write_text(json.dumps(fit.to_dict(), indent=2) + "\n")
    # the file's own temperatures and fields (as written, rounded to 6 digits) in the jackknife fits too
    temps_k = np.unique(table["temperature"])
    fields_k = table["field"][table["temperature"] == temps_k[0]]
    mask = fields_k <= max_field
    if mask.sum() < 4:
        raise ValueError(f"only {mask.sum()} fields below {fl['tr_fraction']:g} B_tr = {max_field:.3g} T per curve; "
                         "the HLN fit needs 4 (add smaller fluxes)")
    fields_k = fields_k[mask]
    weights = np.array([fit.error("b_phi", c) for c in fit.curves])  # fixed law-fit weights inside the jackknife

    n_t = len(temps)

    def estimates(rows):
        """alpha, B_phi per curve, p of the law fitted to them (second stage), and the joint law fits of the
        command line: p and A free, A with p at its input value."""
        m, e = mean_stderr(sigma_t[rows][:, :, mask])
        args = (np.repeat(temps_k, mask.sum()), np.tile(fields_k, n_t), m.ravel(), e.ravel(), b_tr, fl["tr_fraction"])
        f = fit_curves(*args)
        b = b_phi_of(f)
        joint, joint_p = fit_curves(*args, law="power"), fit_curves(*args, law="power", fixed={"p": th["p"]})
        return np.concatenate([[f.value("alpha")], b, [float(dt.fit_dephasing_law(temps_k, b, weights).value("p")),
                                                      joint.value("p"), joint.value("a"), joint_p.value("a")]])

    values, errors, replicates = jackknife_replicates(estimates, n_real, an["blocks"])
    b_phi = b_phi_of(fit)
    # the file holds the same curves (its errors, the fit weights, are written to 6 digits)
    np.testing.assert_allclose(values[1:1 + n_t], b_phi, rtol=1e-4)
    # B_phi of all temperatures share the realizations: their jackknife covariance goes into the law fit
    count = len(replicates)
    dev = replicates[:, 1:1 + n_t] - replicates[:, 1:1 + n_t].mean(0)
    b_phi_cov = (count - 1) / count * dev.T @ dev
    b_phi_err = np.sqrt(np.diag(b_phi_cov))
    corr = (b_phi_cov / np.outer(b_phi_err, b_phi_err))[np.triu_indices(len(temps), 1)]
    report.add("HLN alpha (shared)", float(fit.value("alpha")), float(errors[0]), an["alpha"],
               f"chi2/dof {fit.reduced_chi2:.3f} with the level errors (mostly common to a curve)")
    for i, t in enumerate(temps_k):
        report.add(f"T = {t:.2f} K: B_phi (mT)", 1e3 * b_phi[i], 1e3 * b_phi_err[i],
                   1e3 * float(tesla(config, 1 / (8 * math.pi * diffusion * taus[i]))), "hbar / (4 e D tau_phi)")
    law = dt.fit_dephasing_law(temps_k, b_phi, covariance=b_phi_cov)
    law_diag = dt.fit_dephasing_law(temps_k, b_phi, b_phi_err)
    law_b0 = dt.fit_dephasing_law(temps_k, b_phi, covariance=b_phi_cov, fixed={"b0": 0.0})
    law_p = dt.fit_dephasing_law(temps_k, b_phi, covariance=b_phi_cov, fixed={"p": th["p"]})
    law_values = {name: float(law.value(name)) for name in ("b0", "a", "p")}
    law_errors = {name: float(law.error(name)) for name in ("b0", "a", "p")}
    p_jack = float(errors[1 + n_t])
    a_expected = float(tesla(config, th["a"] / (8 * math.pi * diffusion))) / config["units"]["hopping_kelvin"] ** th["p"]
    report.add("law B0 + A T^p: p", law_values["p"], law_errors["p"], th["p"],
               f"GLS with the jackknife B_phi covariance (correlations {corr.min():.2f}..{corr.max():.2f}), chi2/dof "
               f"{law.reduced_chi2:.2f}; jackknife error of p "
               f"{p_jack:.3f}; with independent errors p = {float(law_diag.value('p')):.2f} +- "
               f"{float(law_diag.error('p')):.2f}")
    report.add("law A T^p (B0 = 0): p", float(law_b0.value("p")), float(law_b0.error("p")), th["p"],
               f"chi2/dof {law_b0.reduced_chi2:.2f}")
    report.add("law B0 + A T^p (p = input): A (mT/K^p)", 1e3 * float(law_p.value("a")), 1e3 * float(law_p.error("a")),
               1e3 * a_expected, f"a / (8 pi D) converted; chi2/dof {law_p.reduced_chi2:.2f}")
    report.add("law B0 + A T^p (p = input): B0 (mT)", 1e3 * float(law_p.value("b0")), 1e3 * float(law_p.error("b0")),
               0.0, "tau_sat = inf")
    # --- the same file through the command line, as an experimentalist would fit it: the values are the command's,
    # the errors the jackknife of the same fits (the command's own errors treat the curves as independent, and the
    # level errors in the file as relative weights; the curves share realizations here)
    a_m = config["units"]["lattice_constant_nm"] * 1e-9
    hopping_joule = config["units"]["hopping_kelvin"] * BOLTZMANN
    diffusion_si = diffusion * a_m**2 * hopping_joule / theory.HBAR  # D in a^2 t / hbar -> m^2/s
    cli = fit_with_cli(csv_path, b_tr, fl["tr_fraction"], diffusion_si, out / "fit")
    cli_p = fit_with_cli(csv_path, b_tr, fl["tr_fraction"], diffusion_si, out / "fit_p_input", ["--fix", f"p={th['p']:g}"])
    cli_b_phi = np.array([cli["per_curve_b_phi"][c]["value"] for c in cli["curves"]])
    joint = {name: cli["parameters"][name]["value"] for name in ("a", "p", "b0")}
    # the command ran the fits of the jackknife on the file: same values
    np.testing.assert_allclose(cli_b_phi, b_phi, rtol=1e-4)
    np.testing.assert_allclose([joint["p"], joint["a"], cli_p["parameters"]["a"]["value"]], values[2 + n_t:], rtol=1e-3)
    report.add("difftransport fit --law power: p (joint)", joint["p"], float(errors[2 + n_t]), th["p"],
               f"jackknife error; the command's own +- {cli['parameters']['p']['stderr']:.2g} treats the curves as "
               "independent")
    report.add("difftransport fit --law power --fix p=1: A (mT/K)", 1e3 * cli_p["parameters"]["a"]["value"],
               1e3 * float(errors[-1]), 1e3 * a_expected, "jackknife error; a / (8 pi D) converted")
    report.print()

    # --- figure
    plt = pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    ax = axs[0]  # each realization relative to its own mean over T: the errors are those of the T dependence
    for y, fmt, colour, label in ((delta_r, "o", None, fr"$\Delta=\sigma(0)-\sigma(B_b)$: slope {slope:.3f} ± {slope_err:.3f}"),
                                  (sigma_t[:, :, 0], "s", "0.5", fr"raw $\sigma(0)$: slope {raw:.3f} ± {raw_err:.3f}")):
        m, e = mean_stderr(y - y.mean(1, keepdims=True))
        ax.errorbar(temps_k, m, yerr=e, fmt=fmt, ms=4, capsize=2, color=colour, label=label)
    centre = log_t - log_t.mean()
    ax.plot(temps_k, ideal * centre, "k--", lw=1, label=fr"$(\alpha p/\pi)\ln T$ = {ideal:.3f} ln T")
    ax.plot(temps_k, loop - loop.mean(), "k:", lw=1.5, label=f"one loop of the square: {loop_slope:.3f} ln T")
    ax.set_xscale("log")
    ax.set_xlabel("T (K)")
    ax.set_ylabel(r"$\sigma(T)$ less its mean over T ($e^2/h$)")
    ax.set_title(fr"zero field, $1/\tau_\phi = aT^p$ (a = {th['a']:g}, p = {th['p']:g}), {n_real} realizations",
                 fontsize=9)
    ax.legend(fontsize=7)

    ax = axs[1]  # sigma(B) - sigma(0) with paired errors; the curves fitted to the file, less their value at 0
    fine = np.linspace(0, max_field, 200)
    d_mean, d_err = mean_stderr(sigma_t - sigma_t[:, :, :1])
    fields = tesla(config, flux)
    for i, t in enumerate(temps_k):
        line = ax.errorbar(fields, d_mean[i], yerr=d_err[i], fmt="o", ms=3, capsize=2,
                           label=fr"{t:.2f} K: $B_\phi$ = {1e3 * b_phi[i]:.0f} ± {1e3 * b_phi_err[i]:.0f} mT")
        model = fit.predict(fine, fit.curves[i])
        ax.plot(fine, model - model[0], color=line[0].get_color(), lw=1)
    ax.axvline(max_field, color="0.7", lw=0.8)
    ax.set_xlabel("B (T)")
    ax.set_ylabel(r"$\sigma(B)-\sigma(0)$ ($e^2/h$)")
    ax.set_title(fr"curves.csv fitted back (HLN, $\alpha$ = {fit.value('alpha'):.2f} ± {errors[0]:.2f}; "
                 "fit range left of the grey line)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axs[2]
    ax.errorbar(temps_k, 1e3 * b_phi, yerr=1e3 * b_phi_err, fmt="o", capsize=2, label="HLN fits")
    fine_t = np.geomspace(temps_k[0] * 0.9, temps_k[-1] * 1.1, 100)
    ax.plot(fine_t, 1e3 * law.predict(fine_t), "-",
            label=fr"$B_0 + A T^p$: p = {law_values['p']:.2f} ± {law_errors['p']:.2f}")
    ax.plot(fine_t, 1e3 * a_expected * fine_t ** th["p"], "k--", lw=1, label=r"$\hbar/(4eD\tau_\phi)$, input law")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("T (K)")
    ax.set_ylabel(r"$B_\phi$ (mT)")
    ax.set_title(f"dephasing law (input p = {th['p']:g})", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(config["run"]["title"], fontsize=10)
    path = out / "temperature.png"
    fig.savefig(path, dpi=140)
    report.write(out, {"seconds": float(data["seconds"]), "law": law.to_dict(), "law_b0_zero": law_b0.to_dict(),
                       "law_p_input": law_p.to_dict(), "b_tr_tesla": b_tr, "slope": slope,
                       "slope_err": slope_err, "one_loop_slope": loop_slope, "ideal_slope": ideal,
                       "cli_fit": str(out / "fit" / "fit.json")})
    print(f"figure: {path}")
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, default=ROOT / "configs" / "temperature.toml")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out") / "temperature")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    config = load_config(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_or_simulate(config, args.out, log=(lambda *_: None) if args.quiet else print)
    analyse(config, data, args.out)


if __name__ == "__main__":
    main()
