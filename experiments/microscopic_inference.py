"""Microscopic inference: recover tau_phi, the Rashba strength and the field scale of a lattice model from
magnetoconductance curves, by optimizing through the ensemble-averaged RGF conductance.

    python experiments/microscopic_inference.py [--config configs/microscopic_inference.toml] [--out DIR]

The target curves <G(B)> (one per tau_phi, e.g. per temperature) are simulated with one set of disorder
realizations; the fit (``difftransport.infer_parameters``: L-BFGS on log parameters, common random numbers)
uses another, so the fit sees the target only through its noisy means, as it would see a measurement. Each
start is off by a factor 2 in every fitted parameter; ``fixed`` in the config holds parameters at the truth
(the field scale, known from the lattice constant in an experiment, by default: see the degeneracy note in
``difftransport.infer_parameters``). Reported: recovered values against the truth, their sandwich
standard errors (target noise plus the fit ensemble's own disorder sample), chi^2/dof and steps.
"""

from __future__ import annotations

import time
import tomllib

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from common import Report, arguments, pyplot


def main(config, out):
    out.mkdir(parents=True, exist_ok=True)
    s, truth_cfg, d = config["sample"], config["truth"], config["data"]
    sample = dt.Sample(dt.strip(s["width"]), s["length"], spinful=True)
    field = jnp.asarray(d["field"], float)
    truth = dt.MicroscopicParameters(tau_phi=jnp.asarray(truth_cfg["tau_phi"], float),
                                     rashba=jnp.asarray(truth_cfg["rashba"], float),
                                     field_scale=jnp.asarray(truth_cfg["field_scale"], float))

    def ensemble(seed, n):
        keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(seed), r))(jnp.arange(n))
        return dt.lattice_ensemble(keys, sample, energy=s["energy"], strength=s["strength"])

    start = time.perf_counter()
    g = np.asarray(dt.realization_conductances(ensemble(d["target_seed"], d["target_realizations"]), truth, field))
    target, target_cov = dt.curve_statistics(g)
    fit_ensemble = ensemble(d["fit_seed"], d["fit_realizations"])
    report = Report(f"Microscopic inference: spinful {s['width']}x{s['length']} strip, "
                    f"{d['target_realizations']} target / {d['fit_realizations']} fit realizations (disjoint)")
    results = []
    names = np.array([f"tau_phi[{i}]" for i in range(len(truth_cfg["tau_phi"]))] + ["rashba", "field_scale"])
    true_values = np.concatenate([np.asarray(truth.tau_phi), [truth_cfg["rashba"], truth_cfg["field_scale"]]])
    flat = lambda p: np.concatenate([np.asarray(p.tau_phi), [float(p.rashba), float(p.field_scale)]])
    fixed = tuple(d.get("fixed", ()))
    search = {k: d[k] for k in ("search", "search_points", "refine") if k in d}  # else the library's defaults
    fitted_mask = np.array([not any(n.startswith(f) for f in fixed) for n in names])
    for factors in d["starts"]:
        initial = dt.MicroscopicParameters(tau_phi=truth.tau_phi * factors[0], rashba=truth.rashba * factors[1],
                                           field_scale=truth.field_scale * factors[2])
        t0 = time.perf_counter()
        res = dt.infer_parameters(field, target, fit_ensemble, initial, fixed=fixed, target_covariance=target_cov,
                                  steps=d["steps"], **search)
        seconds = time.perf_counter() - t0
        values, errors, begin = flat(res.params), flat(res.stderr), flat(res.start)
        for name, v, e, t in zip(names[fitted_mask], values[fitted_mask], errors[fitted_mask],
                                 true_values[fitted_mask]):
            report.add(f"start x{factors}: {name}", float(v), float(e), float(t),
                       f"{100 * (v / t - 1):+.1f}% of the truth")
        report.add(f"start x{factors}: chi2/dof", res.chi2 / res.dof, 0.0, None,
                   f"{res.steps} L-BFGS steps from the grid point x{np.round(begin / true_values, 2).tolist()}, "
                   f"converged {res.converged}, {seconds:.0f} s")
        for p, c in res.local_fits:
            print(f"  start x{factors}: local fit chi2 {c:.2f} at x{np.round(flat(p) / true_values, 3).tolist()}")
        results.append({"start_factors": factors, "values": values.tolist(), "stderr": errors.tolist(),
                        "relative_error": (values / true_values - 1).tolist(), "chi2": res.chi2, "dof": res.dof,
                        "steps": res.steps, "converged": res.converged, "grid_start": begin.tolist(),
                        "history": list(res.history), "seconds": seconds,
                        "local_fits": [{"values": flat(p).tolist(), "chi2": c} for p, c in res.local_fits]})
    report.print()
    worst = max(np.max(np.abs(np.asarray(r["relative_error"])[fitted_mask])) for r in results)
    held = f" ({', '.join(fixed)} held at the truth)" if fixed else ""
    print(f"  largest relative deviation from the truth over all starts and fitted parameters{held}: "
          f"{100 * worst:.1f}%")

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    best = min(results, key=lambda r: r["chi2"])
    fitted = dt.MicroscopicParameters(tau_phi=jnp.asarray(best["values"][:-2]), rashba=jnp.asarray(best["values"][-2]),
                                      field_scale=jnp.asarray(best["values"][-1]))
    model = np.asarray(dt.mean_conductance(fit_ensemble, fitted, field))
    # Standard errors of the target's differences G(B_k) - G(B_0) (far smaller than those of the levels).
    nf = target.shape[1]
    block = lambda c: target_cov[c * nf:(c + 1) * nf, c * nf:(c + 1) * nf]
    err = np.array([np.sqrt(np.maximum(np.diag(block(c)) + block(c)[0, 0] - 2 * block(c)[:, 0], 0))
                    for c in range(target.shape[0])])
    for c in range(target.shape[0]):
        line = axs[0].errorbar(np.asarray(field), target[c] - target[c, 0], yerr=err[c], fmt="o", capsize=2,
                               label=fr"target, $\tau_\phi$ = {truth_cfg['tau_phi'][c]:g}")
        axs[0].plot(np.asarray(field), model[c] - model[c, 0], "-", color=line[0].get_color(),
                    label=fr"fit, $\tau_\phi$ = {best['values'][c]:.2f}")
    axs[0].set_xlabel("field (target units)")
    axs[0].set_ylabel(r"$\langle G(B)\rangle - \langle G(0)\rangle$ ($e^2/h$)")
    axs[0].legend(fontsize=7)
    for r in results:
        axs[1].semilogy(r["history"], "o-", ms=3, label=f"start x{r['start_factors']}")
    axs[1].set_xlabel("L-BFGS step")
    axs[1].set_ylabel(r"$\chi^2$")
    axs[1].legend(fontsize=7)
    fig.suptitle(f"Microscopic inference: worst deviation {100 * worst:.1f}% over {len(results)} starts", fontsize=10)
    path = out / "microscopic_inference.png"
    fig.savefig(path, dpi=140)
    report.write(out, {"results": results, "names": names.tolist(), "fixed": list(fixed), "truth": true_values.tolist(),
                       "seconds": time.perf_counter() - start})
    print(f"figure: {path}")
    return results


if __name__ == "__main__":
    args = arguments("microscopic_inference", __doc__)
    main(tomllib.loads(args.config.read_text()), args.out)
