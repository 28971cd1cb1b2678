"""Microscopic inference: recover tau_phi and the model's shared parameters -- the Rashba strength of a spinful
strip, or the short-range scatterer density of a graphene cylinder -- from magnetoconductance curves, by
optimizing through the ensemble-averaged RGF conductance.

    python experiments/microscopic_inference.py [--config configs/microscopic_inference.toml] [--out DIR]
    python experiments/microscopic_inference.py --config configs/graphene_inference.toml --out out/graphene_inference

The config's ``[sample] model`` picks the model: ``"spinful_strip"`` (default; ``difftransport.lattice_ensemble``,
parameters tau_phi per curve, rashba, field_scale) or ``"graphene"`` (``difftransport.graphene_ensemble``: a
spinless zigzag cylinder with smooth disorder and short-range scatterers; parameters tau_phi per curve,
short_range_density, field_scale); ``[sample] dephasing`` is that of ``difftransport.conductance`` (default
"probe", the single global probe, a model of dephasing only while L_phi >~ L; "buttiker" for L_phi < L,
docs/physics.md#dephasing). The target curves <G(B)> (one per tau_phi, e.g. per temperature) are simulated
with one set of disorder realizations; the fit (``difftransport.infer_parameters``: L-BFGS on log parameters,
common random numbers) uses another, so the fit sees the target only through its noisy means, as it would see a
measurement. Each start is off by a factor 2 in every fitted parameter; ``fixed`` in the config holds parameters
at the truth (the field scale, known from the lattice constant in an experiment, by default: see the degeneracy
note in ``difftransport.infer_parameters``). Reported: recovered values against the truth, their sandwich
standard errors (target noise plus the fit ensemble's own disorder sample), the deviation in standard errors,
chi^2/dof and steps.
"""

from __future__ import annotations

import time
import tomllib

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt
from common import Report, arguments, pyplot

MODELS = {"spinful_strip": dt.MicroscopicParameters, "graphene": dt.GrapheneParameters}


def model_of(s):
    """(parameter class, ensemble(seed, n)) of the config's [sample] table."""
    kind = s.get("model", "spinful_strip")
    if kind not in MODELS:
        raise ValueError(f"[sample] model must be one of {sorted(MODELS)}, got {kind!r}.")
    dephasing = s.get("dephasing", "probe")  # difftransport.conductance's; "buttiker" is local (L_phi < L)
    if dephasing not in ("probe", "absorb", "buttiker"):
        raise ValueError(f"[sample] dephasing must be 'probe', 'absorb' or 'buttiker', got {dephasing!r}.")
    keys = lambda seed, n: jax.vmap(lambda r: jax.random.fold_in(jax.random.key(seed), r))(jnp.arange(n))
    if kind == "graphene":
        sample = dt.Sample(dt.zigzag_ribbon(s["n"], boundary="periodic"), s["length"], field_region="sample")
        draw = {k: s[k] for k in ("energy", "strength", "correlation_length", "density", "short_range_strength",
                                  "reference_density")}
        return MODELS[kind], lambda seed, n: dt.graphene_ensemble(keys(seed, n), sample, dephasing=dephasing, **draw)
    sample = dt.Sample(dt.strip(s["width"]), s["length"], spinful=True)
    return MODELS[kind], lambda seed, n: dt.lattice_ensemble(keys(seed, n), sample, energy=s["energy"],
                                                             strength=s["strength"], dephasing=dephasing)


def flat(p):
    """(tau_phi..., shared...) of parameters p as one numpy vector, in the order of ``InferenceResult.names``."""
    return np.concatenate([np.asarray(p.tau_phi)] + [[float(getattr(p, n))] for n in p.SHARED])


def correlation(log_covariance, mask):
    """Correlation matrix of the fitted (unmasked) parameters from their log covariance."""
    c = np.asarray(log_covariance)[np.ix_(mask, mask)]
    return c / np.sqrt(np.outer(np.diag(c), np.diag(c)))


def main(config, out):
    out.mkdir(parents=True, exist_ok=True)
    s, truth_cfg, d = config["sample"], config["truth"], config["data"]
    cls, ensemble = model_of(s)
    field = jnp.asarray(d["field"], float)
    truth = cls(tau_phi=jnp.asarray(truth_cfg["tau_phi"], float),
                **{n: jnp.asarray(truth_cfg[n], float) for n in cls.SHARED})

    start = time.perf_counter()
    g = np.asarray(dt.realization_conductances(ensemble(d["target_seed"], d["target_realizations"]), truth, field))
    target, target_cov = dt.curve_statistics(g)
    fit_ensemble = ensemble(d["fit_seed"], d["fit_realizations"])
    geometry = (f"graphene {s['n']}-row zigzag cylinder x {s['length']}" if cls is dt.GrapheneParameters
                else f"spinful {s['width']}x{s['length']} strip")
    report = Report(f"Microscopic inference: {geometry}, "
                    f"{d['target_realizations']} target / {d['fit_realizations']} fit realizations (disjoint)")
    print(f"target: {time.perf_counter() - start:.0f} s", flush=True)
    results = []
    names = np.array([f"tau_phi[{i}]" for i in range(len(truth_cfg["tau_phi"]))] + list(cls.SHARED))
    true_values = flat(truth)
    fixed = tuple(d.get("fixed", ()))
    search = {k: d[k] for k in ("search", "search_points", "refine") if k in d}  # else the library's defaults
    fitted_mask = np.array([not any(n.startswith(f) for f in fixed) for n in names])
    for factors in d["starts"]:
        initial = cls(tau_phi=truth.tau_phi * factors[0],
                      **{n: getattr(truth, n) * f for n, f in zip(cls.SHARED, factors[1:])})
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
        corr = correlation(res.log_covariance, fitted_mask)
        print(f"  start x{factors}: correlations of the fitted {names[fitted_mask].tolist()}:\n    "
              + np.array2string(corr, precision=2, prefix="    "))
        for p, c in res.local_fits:
            print(f"  start x{factors}: local fit chi2 {c:.2f} at x{np.round(flat(p) / true_values, 3).tolist()}")
        results.append({"start_factors": factors, "values": values.tolist(), "stderr": errors.tolist(),
                        "relative_error": (values / true_values - 1).tolist(), "chi2": res.chi2, "dof": res.dof,
                        "steps": res.steps, "converged": res.converged, "grid_start": begin.tolist(),
                        "history": list(res.history), "seconds": seconds,
                        "correlation": correlation(res.log_covariance, fitted_mask).tolist(),
                        "local_fits": [{"values": flat(p).tolist(), "chi2": c} for p, c in res.local_fits]})
        # Each start's result is kept as it comes (a long run stopped between starts loses nothing).
        print(f"  start x{factors}: " + ", ".join(f"{n} {v:.4g} +- {e:.2g} ({100 * (v / t - 1):+.1f}%)" for n, v, e, t
              in zip(names[fitted_mask], values[fitted_mask], errors[fitted_mask], true_values[fitted_mask]))
              + f", chi2 {res.chi2:.2f}/{res.dof}, {seconds:.0f} s", flush=True)
        report.write(out, {"results": results, "names": names.tolist(), "fixed": list(fixed),
                           "truth": true_values.tolist(), "complete": False})
    report.print()
    worst = max(np.max(np.abs(np.asarray(r["relative_error"])[fitted_mask])) for r in results)
    held = f" ({', '.join(fixed)} held at the truth)" if fixed else ""
    print(f"  largest relative deviation from the truth over all starts and fitted parameters{held}: "
          f"{100 * worst:.1f}%")

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    best = min(results, key=lambda r: r["chi2"])
    curves = len(truth_cfg["tau_phi"])
    fitted = cls(tau_phi=jnp.asarray(best["values"][:curves]),
                 **{n: jnp.asarray(best["values"][curves + i]) for i, n in enumerate(cls.SHARED)})
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
                       "seconds": time.perf_counter() - start, "complete": True})
    print(f"figure: {path}")
    return results


if __name__ == "__main__":
    args = arguments("microscopic_inference", __doc__)
    main(tomllib.loads(args.config.read_text()), args.out)
