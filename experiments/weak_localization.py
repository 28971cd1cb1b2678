"""Weak localization demo: negative magnetoresistance of a disordered strip.

    python experiments/weak_localization.py --config configs/weak_localization.toml --out out/weak_localization

Writes the config as run, the per-realization conductances (results.npz), a summary (summary.json) and the
figure weak_localization.png, and prints <g>(phi) - <g>(0) with standard errors. In the quasi-1D diffusive
regime the correction saturates near +1/3 (orthogonal -> unitary, PHYSICS.md 3), reduced by flux
cancellation in narrow strips (PHYSICS.md 1d).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import tomllib

import jax
import jax.numpy as jnp
import numpy as np

import difftransport as dt

SCHEMA = {
    "sample": {"width": int, "length": int},
    "model": {"energy": float, "disorder": float},
    "sweep": {"flux_max": float, "flux_points": int},
    "ensemble": {"realizations": int, "chunk": int, "seed": int},
}


def load_config(path: pathlib.Path) -> dict:
    """Read and validate the TOML config: every key required, no unknown keys, right types, sizes > 0."""
    with open(path, "rb") as fh:
        config = tomllib.load(fh)
    for section in config:
        if section not in SCHEMA:
            raise ValueError(f"{path}: unknown section [{section}]; allowed: {sorted(SCHEMA)}")
    for section, keys in SCHEMA.items():
        table = config.get(section)
        if table is None:
            raise ValueError(f"{path}: missing section [{section}]")
        for key in table:
            if key not in keys:
                raise ValueError(f"{path}: unknown key {section}.{key}; allowed: {sorted(keys)}")
        for key, kind in keys.items():
            if key not in table:
                raise ValueError(f"{path}: missing key {section}.{key}")
            value = table[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = table[key] = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{path}: {section}.{key} = {value!r} must be of type {kind.__name__}")
            if kind is int and key != "seed" and value < 1:
                raise ValueError(f"{path}: {section}.{key} = {value} must be >= 1")
    return config


def run(config: dict, out: pathlib.Path) -> pathlib.Path:
    c = config
    sample = dt.Sample(dt.strip(c["sample"]["width"]), c["sample"]["length"])
    fluxes = jnp.linspace(0.0, c["sweep"]["flux_max"], c["sweep"]["flux_points"])
    n, chunk = c["ensemble"]["realizations"], c["ensemble"]["chunk"]
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(c["ensemble"]["seed"]), i))(jnp.arange(n))

    def one(key):
        disorder = dt.draw_disorder(key, sample, strength=c["model"]["disorder"])
        return jax.vmap(lambda phi: dt.conductance(sample, dt.Model(energy=c["model"]["energy"], flux=phi), disorder))(fluxes)

    batch = jax.jit(jax.vmap(one))
    start = time.perf_counter()
    g = np.concatenate([np.asarray(batch(keys[i:i + chunk])) for i in range(0, n, chunk)])
    seconds = time.perf_counter() - start

    dg = g - g[:, :1]
    mean, err = dg.mean(0), dg.std(0, ddof=1) / np.sqrt(n)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "results.npz", flux=np.asarray(fluxes), conductance=g)
    summary = {
        "g0_mean": float(g[:, 0].mean()), "g0_var": float(g[:, 0].var(ddof=1)),
        "delta_g": mean.tolist(), "delta_g_stderr": err.tolist(), "flux": np.asarray(fluxes).tolist(),
        "realizations": n, "seconds": seconds,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    ax.errorbar(fluxes * 1e3, mean, yerr=err, fmt="o-", ms=4, capsize=2, label=r"$\langle g(\phi)\rangle - \langle g(0)\rangle$")
    ax.axhline(1 / 3, color="0.5", ls="--", lw=1, label="RMT: +1/3 (orthogonal → unitary)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(r"flux per plaquette $\phi$ ($10^{-3}\,h/e$)")
    ax.set_ylabel(r"$\delta g$ ($e^2/h$)")
    ax.set_title(f"Weak localization: strip {c['sample']['width']}×{c['sample']['length']}, "
                 f"W={c['model']['disorder']}, E={c['model']['energy']}, {n} samples, "
                 rf"$\langle g\rangle$={g[:, 0].mean():.2f}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    path = out / "weak_localization.png"
    fig.savefig(path, dpi=150)

    print(f"{n} realizations x {len(fluxes)} fluxes in {seconds:.1f} s; <g(0)> = {g[:, 0].mean():.3f}")
    for phi, m, e in zip(np.asarray(fluxes), mean, err):
        print(f"  phi = {phi:.4f}   <g(phi)> - <g(0)> = {m:+.4f} +- {e:.4f}")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, default=pathlib.Path("configs/weak_localization.toml"))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/weak_localization"))
    args = parser.parse_args(argv)
    config = load_config(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.toml").write_text(args.config.read_text())
    path = run(config, args.out)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
