"""Shared pieces of the experiment scripts: run a config through the ensemble runner, load its raw results,
statistics with standard errors, and a report that prints measured numbers next to theory."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import tempfile

import jax
import numpy as np

import difftransport as dt
from difftransport import runs, theory
from difftransport.stats import line_fit as _line_fit, mean_stderr
from difftransport.runs import make_sample

ROOT = pathlib.Path(__file__).resolve().parents[1]


def arguments(name: str, doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--config", type=pathlib.Path, default=ROOT / "configs" / f"{name}.toml")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out") / name)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args()


def run(config_path, out, quiet=False) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Run (or resume) the config; returns (normalized config, {ensemble: {observable or grid_x: array}})."""
    store = runs.run(config_path, out, quiet=quiet, log=lambda *_: None)
    data = {}
    for name in store.config["ensembles"]:
        with np.load(store.results_path(name)) as npz:
            data[name] = {k: npz[k] for k in npz.files if "__" not in k}
    return store.config, data


def main(name: str, doc: str, analyse) -> None:
    """Command line of a config-driven experiment: run (or resume) ``--config`` into ``--out``, then
    ``analyse(config, data, out)``."""
    args = arguments(name, doc)
    config, data = run(args.config, args.out, quiet=args.quiet)
    analyse(config, data, args.out)


def finish(fig, report, config, out: pathlib.Path, name: str, extra: dict | None = None):
    """Title the figure with the run's title, save it as ``out/<name>.png``, write report.json; returns ``report``."""
    fig.suptitle(config["run"]["title"], fontsize=10)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=140)
    report.write(out, extra)
    print(f"figure: {path}")
    return report


def linear_amplitude(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Amplitude a of y = a x (a line through the origin) for per-realization curves y (N, points) and a theory
    shape x (points,), weighted by the per-point spread; with its standard error from the spread of the
    per-realization estimates, which is right when one realization's points are correlated (paired fluxes)."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    w = 1.0 / y.var(axis=0, ddof=1)
    a, err = mean_stderr(y @ (w * x) / np.sum(w * x**2))
    return float(a), float(err)


def residual(config, name, g0, flux):
    """Cooperon left at flux phi in a finite wire: F(L/L_B), L_B from flux cancellation in a clean, specular
    channel (docs/theory.md#flux-cancellation), l_tr = (2/pi) l with the DMPK mean free path l from
    <g> = N l/(L + l)."""
    entry = config["ensembles"][name]
    sample = make_sample(entry["sample"])
    model = {k: v for k, v in entry["model"].items() if v is not None and k in ("energy", "hopping", "rashba")}
    channels = float(dt.open_channels(sample, dt.Model(**model))) / sample.orbitals  # per spin
    g_spin = g0 / sample.orbitals
    length, width = entry["sample"]["length"], entry["sample"]["width"]
    l_dmpk = length * g_spin / (channels - g_spin)
    l_tr = 2 / np.pi * l_dmpk
    field = theory.field_from_flux(flux, 1.0)  # lattice constant a = 1 m: lengths in lattice units
    l_b = np.asarray(theory.wire_field_length(field, width, mean_free_path=l_tr, boundary="specular"))
    return np.asarray(theory.coherent_wire_function(length / l_b)), l_tr, l_b, channels



LEAD_PARAMETERS = ("energy", "hopping", "flux", "rashba")  # the model terms the clean leads carry


def sheet_conductance(config, name, g, **model):
    """Per-realization sheet conductance sigma = (L/W) / (1/G - 1/N) from two-terminal G (e^2/h) (for a 3D bar the
    conductivity (L/(W H)) / (1/G - 1/N), e^2/h per lattice constant), removing the
    ideal-lead (Sharvin) contact resistance 1/N (``theory.intrinsic_conductance``, NaN where G >= N), N the open
    channels of the leads (all spin projections).

    The leads carry the sample's field and spin-orbit coupling, so N is evaluated at every point of the grid:
    a lead wider than the cyclotron diameter has fewer channels in a field (at E = 1, flux 0.01 per plaquette a
    128-wide lead has 31 instead of 86), and the zero-field N would leave a size-dependent error in sigma(phi).
    The axes of ``g`` after the realization axis are the ensemble's grid axes in config order, less those fixed
    by ``model`` (which overrides lead parameters, e.g. one value of a rashba grid axis: ``rashba=0.3``).
    Returns (sigma, N) with N of shape ``g.shape[1:]``."""
    entry = config["ensembles"][name]
    sample = make_sample(entry["sample"])
    g = np.asarray(g, float)
    base = {k: v for k, v in {**entry["model"], **model}.items() if v is not None and k in LEAD_PARAMETERS}
    axes = [k for k in entry["grid"] if k not in model]
    if g.ndim != 1 + len(axes):
        raise ValueError(f"conductance of ensemble {name!r} has shape {g.shape}; expected (realizations, "
                         f"{', '.join(axes) or 'no grid axes'})")
    channels = np.empty(g.shape[1:])
    for index in np.ndindex(*g.shape[1:]):
        point = {k: entry["grid"][k][i] for k, i in zip(axes, index) if k in LEAD_PARAMETERS}
        channels[index] = float(dt.open_channels(sample, dt.Model(**{**base, **point})))
    aspect = entry["sample"]["length"] / entry["sample"]["width"] / (entry["sample"].get("height") or 1)
    return aspect * np.asarray(theory.intrinsic_conductance(g, channels)), channels


def line_fit(x, y, err):
    """Weighted straight line y = slope x + intercept (``difftransport.stats.line_fit``, weights 1/err^2) as floats
    for reports: (slope, its standard error, intercept, chi^2)."""
    fit = _line_fit(x, y, 1.0 / np.asarray(err, float) ** 2)
    return float(fit.slope), float(fit.error("slope")), float(fit.intercept), float(fit.chi2)


def density_of_states(entry, realizations=8, seed=123):
    """DOS per site (per spin orbital) at the ensemble's Fermi energy, from exact eigenvalues of closed disordered
    samples of the ensemble's size (Gaussian broadening 0.1; theory.density_of_states)."""
    sample = make_sample(entry["sample"])
    model = dt.Model(energy=entry["model"]["energy"])
    values = []
    for k in jax.random.split(jax.random.key(seed), realizations):
        disorder = dt.draw_disorder(k, sample, strength=entry["disorder"]["strength"])
        h = dt.dense_hamiltonian(dt.build_hamiltonian(sample, model, disorder))
        values.append(np.linalg.eigvalsh(np.asarray(h)))
    sites = realizations * sample.length * sample.lattice.sites * sample.orbitals
    return float(theory.density_of_states(np.concatenate(values), model.energy, broadening=0.1, sites=sites))


def cached(path: pathlib.Path, inputs: dict, simulate, log=print) -> dict[str, np.ndarray]:
    """``simulate()`` (a dict of arrays), or the arrays saved at ``path`` when they were made from the same
    ``inputs`` (a JSON-able dict of everything the numbers depend on; its hash is stored with them). The file is
    written to a temporary name and renamed, so an interrupted run leaves either the old file or the new one."""
    path = pathlib.Path(path)
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if path.exists():
        with np.load(path) as npz:
            if "inputs_hash" in npz.files and str(npz["inputs_hash"]) == digest:
                log(f"reusing {path} (same inputs)")
                return {k: npz[k] for k in npz.files if k != "inputs_hash"}
    data = simulate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, inputs_hash=digest, **data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return data


class Report:
    """Collects measured-vs-theory lines; prints them and writes report.json."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[dict] = []

    def add(self, quantity: str, measured: float, error: float, theory: float | None, note: str = "") -> dict:
        row = {"quantity": quantity, "measured": measured, "stderr": error, "theory": theory, "note": note}
        if theory is not None and error > 0:
            row["sigma"] = (measured - theory) / error
        self.rows.append(row)
        return row

    def print(self) -> None:
        print(f"\n{self.title}")
        def number(x, sign="+"):  # four decimals, or three significant digits for values below 1e-3
            return f"{x:{sign}.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:{sign}.3e}"

        for r in self.rows:
            theory = "" if r["theory"] is None else f"   theory {number(r['theory'])}"
            sigma = f"  ({r['sigma']:+.1f} sigma)" if "sigma" in r else ""
            print(f"  {r['quantity']:42s} {number(r['measured'])} +- {number(r['stderr'], '')}{theory}{sigma}  "
                  f"{r['note']}")

    def write(self, out: pathlib.Path, extra: dict | None = None) -> pathlib.Path:
        path = out / "report.json"
        partial = path.with_name(path.name + ".partial")  # written whole, then renamed: never a truncated report
        partial.write_text(json.dumps({"title": self.title, "rows": self.rows, **(extra or {})}, indent=2) + "\n")
        partial.replace(path)
        return path


def study_summary(folder: pathlib.Path) -> dict | None:
    """The summary JSON that `difftransport scale` wrote in ``folder`` (None if the study has not been run)."""
    found = [p for p in sorted(folder.glob("*.json")) if p.name != "config.json"] if folder.is_dir() else []
    return json.loads(found[0].read_text()) if found else None


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
