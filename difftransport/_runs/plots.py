"""Figures of a run directory, drawn from its stored results only (``difftransport plot RUN_DIR``)."""

from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np

_LABELS = {
    "conductance": r"$\langle g\rangle$ ($e^2/h$)",
    "transmission": r"$\langle T\rangle$",
    "reflection": r"$\langle R\rangle$",
    "fano_factor": r"Fano factor $F$",
    "transmission_eigenvalues": r"$T_n$",
}
_SYMBOLS = {"flux": r"\phi", "energy": "E", "tau_phi": r"\tau_\phi", "rashba": r"\alpha", "strength": "W",
            "exchange": "J", "hopping": "t", "mass": "m"}
_AXES = {
    "flux": r"flux per plaquette $\phi$ ($h/e$)",
    "energy": "energy $E$ ($t$)",
    "tau_phi": r"$\tau_\phi$ ($\hbar/t$)",
    "rashba": r"Rashba $\alpha$ ($t$)",
    "strength": "disorder strength $W$ ($t$)",
    "exchange": "exchange $J$ ($t$)",
    "hopping": "hopping $t$",
    "mass": "mass $m$ ($t$)",
}


def _panel(ax, name: str, entry: dict, data) -> None:
    obs = entry["observables"][0]
    values = data[obs]
    grid = entry["grid"]
    label = entry["label"] or name
    n = values.shape[0]
    if not grid or values.ndim > 1 + len(grid):  # no grid, or a vector observable: histogram
        counts, edges = data[f"{obs}__hist_counts"], data[f"{obs}__hist_edges"]
        counts, edges = counts.reshape(-1, counts.shape[-1])[0], edges.reshape(-1, edges.shape[-1])[0]
        ax.stairs(counts / counts.sum() / np.diff(edges), edges, fill=True, alpha=0.6, label=label)
        ax.set_xlabel(_LABELS.get(obs, obs))
        ax.set_ylabel("probability density")
        ax.set_title(f"{label}: {n} realizations" + ("" if values.ndim > 1 + len(grid) else
                     f", mean {values.mean():.4g} ± {values.std(ddof=1) / np.sqrt(n):.2g}"), fontsize=9)
        return
    axes = list(grid)
    x_axis = entry["plot"]["x"] or axes[0]
    xi = axes.index(x_axis)
    x = np.asarray(grid[x_axis])
    moved = np.moveaxis(values, 1 + xi, -1)  # (N, *other axes, X)
    others = [a for a in axes if a != x_axis]
    relative = entry["plot"]["relative"]
    for combo in itertools.product(*[range(len(grid[a])) for a in others]):
        series = moved[(slice(None),) + combo]
        if relative:
            series = series - series[:, :1]
        mean = series.mean(0)
        err = series.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
        tag = ", ".join(f"{a}={grid[a][i]:g}" for a, i in zip(others, combo))
        ax.errorbar(x, mean, yerr=err, fmt="o-", ms=3, capsize=2, label=f"{label}" + (f" ({tag})" if tag else ""))
    ylabel = _LABELS.get(obs, obs)
    if relative:
        o = {"conductance": "g", "transmission": "T", "reflection": "R", "fano_factor": "F"}.get(obs, "O")
        sym = _SYMBOLS.get(x_axis, "x")
        ylabel = rf"$\langle {o}({sym})\rangle - \langle {o}({sym}_0)\rangle$"
        ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(_AXES.get(x_axis, x_axis))
    ax.set_ylabel(ylabel + (r" ($e^2/h$)" if relative and obs == "conductance" else ""))
    ax.set_title(f"{label}: {n} realizations", fontsize=9)
    ax.legend(fontsize=7)


def plot_run(run_dir) -> list[pathlib.Path]:
    """Draw one figure per ensemble and an overview with all of them; returns the paths (overview last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = pathlib.Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())["config"]
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    ensembles = config["ensembles"]
    data = {}
    for name in ensembles:
        path = run_dir / "results" / f"{name}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run is not complete (rerun it to finish).")
        data[name] = np.load(path)
    paths = []

    def save(fig, stem: str) -> None:
        paths.append(figures / f"{stem}.png")
        fig.savefig(paths[-1], dpi=130)
        plt.close(fig)

    for name, entry in ensembles.items():
        fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
        _panel(ax, name, entry, data[name])
        save(fig, name)
    k = len(ensembles)
    fig, axs = plt.subplots(1, k, figsize=(4.6 * k, 3.6), layout="constrained", squeeze=False)
    for ax, (name, entry) in zip(axs[0], ensembles.items()):
        _panel(ax, name, entry, data[name])
    if config["run"]["title"]:
        fig.suptitle(config["run"]["title"], fontsize=10)
    save(fig, "overview")
    return paths
