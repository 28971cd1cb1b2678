"""Ensemble run configurations: TOML in, validated and normalized (every default written out), hashed.

The format is documented in ``docs/ensembles.md``. Validation happens before any computation: an unknown
key, a wrong type or an out-of-range value raises :class:`ConfigError` naming the file, the line (when it
can be found), the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import pathlib
import re
import tomllib
from typing import Any, Callable

from .._core.observables import OBSERVABLES, TRANSFER_OBSERVABLES

LATTICES = ("chain", "strip", "bar", "zigzag_ribbon", "armchair_ribbon")
DEPHASING = ("probe", "absorb", "buttiker")
MODEL_PARAMETERS = ("energy", "hopping", "flux", "rashba", "exchange", "tau_phi", "mass", "twist")
GRID_PARAMETERS = MODEL_PARAMETERS + ("strength",)
REQUIRED = object()


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key, value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    allowed: tuple | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    doc: str = ""
    check: Callable[[Any], bool] | None = None  # a value it rejects is out of range; ``doc`` then says what is allowed

    def describe(self) -> str:
        if self.check is not None:
            return self.doc
        if self.allowed is not None:
            return f"one of {list(self.allowed)}"
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        text = " or ".join(names.get(k, k.__name__) for k in kinds)
        if self.minimum is not None:
            text += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        return text


RUN = {
    "seed": Field(int, 0, minimum=0, doc="PRNG seed; realization r uses fold_in(key(seed), r)"),
    "realizations": Field(int, minimum=1, doc="disorder realizations per ensemble"),
    "chunk": Field(int, 64, minimum=1, doc="realizations per call, stored as a unit (memory bound; vmapped "
                                           "runs.cpu_vmap_width at a time on a CPU); does not change results"),
    "title": Field(str, "", doc="figure title"),
}
ENSEMBLE = {
    "observables": Field(list, ["conductance"], doc=f"any of {list(OBSERVABLES)}"),
    "dephasing": Field(str, "probe", allowed=DEPHASING, doc="treatment of absorption from tau_phi"),
    "method": Field(str, "rgf", allowed=("rgf", "transfer", "auto"),
                    doc="sweep: 'transfer' is 4-7x faster for square strips and cubic bars (coherent or absorbing "
                        "conductance, transmission, Fano factor, eigenvalues) and agrees with 'rgf' to ~1e-11, so "
                        "it does not change stored results; 'auto' uses it wherever it applies"),
    "label": Field(str, "", doc="legend label (defaults to the ensemble name)"),
    "realizations": Field(int, None, minimum=1, doc="realizations of this ensemble (default: run.realizations)"),
    "grid_batch": Field(int, 0, minimum=0,
                        doc="grid points evaluated together (vmapped) per chunk, the batches in sequence; 0 (default) "
                            "vmaps the whole grid. Lower it when chunk x grid points is too wide for the caches "
                            "(large samples); does not change results"),
}
SAMPLE = {
    "lattice": Field(str, allowed=LATTICES),
    "length": Field(int, minimum=1, doc="slices along x"),
    "width": Field(int, None, minimum=1, doc="sites across (strip, bar)"),
    "height": Field(int, None, minimum=1, doc="sites across z (bar)"),
    "n": Field(int, None, minimum=1, doc="zigzag chains or armchair dimer lines (ribbons)"),
    "boundary": Field(str, "hardwall", allowed=("hardwall", "periodic")),
    "spinful": Field(bool, False),
    "field_region": Field(str, "everywhere", allowed=("everywhere", "sample"),
                          doc="where model.flux acts: everywhere (Landau gauge, leads too) or the sample only"),
}
MODEL = {
    "energy": Field((int, float), doc="Fermi energy (units of t)"),
    "hopping": Field((int, float), 1.0, doc="hopping t"),
    "flux": Field((int, float), None, doc="flux per plaquette (h/e); absent: no field"),
    "rashba": Field((int, float), None, doc="Rashba alpha (spinful); absent: no spin-orbit"),
    "exchange": Field((int, float), None, doc="exchange J of magnetic moments (needs disorder.moments)"),
    "tau_phi": Field((int, float), None, minimum=0, exclusive_minimum=True, doc="phase-coherence time; absent: coherent"),
    "mass": Field((int, float), None, doc="staggered sublattice mass (honeycomb)"),
    "twist": Field((int, float), None, doc="Aharonov-Bohm twist through a cylinder, in flux quanta (periodic "
                                           "boundary); absent: none"),
}
DISORDER = {
    "strength": Field((int, float), 0.0, minimum=0, doc="box width W or Gaussian standard deviation"),
    "distribution": Field(str, "box", allowed=("box", "gaussian")),
    "moments": Field(bool, False, doc="random magnetic moments (spinful)"),
    "su2": Field(bool, False, doc="SU(2) random hopping (spinful)"),
    "correlation_length": Field((int, float), 0.0, check=lambda v: math.isfinite(v) and v >= 0,
                                doc="a finite number >= 0: Gaussian correlation length xi of smooth disorder, in "
                                    "lattice constants (0: on-site Anderson disorder)"),
    "density": Field((int, float), 1.0, check=lambda v: 0 < v <= 1,
                     doc="a number in (0, 1]: fraction of the sites carrying an impurity of the main (strength) term"),
    "short_range_density": Field((int, float), 0.0, check=lambda v: 0 <= v <= 1,
                                 doc="a number in [0, 1]: fraction of the sites with a short-range scatterer"),
    "short_range_strength": Field((int, float), 0.0, check=lambda v: math.isfinite(v) and v >= 0,
                                  doc="a finite number >= 0: box width of the short-range scatterers' amplitudes "
                                      "(not scaled by strength)"),
    "random_twist": Field(bool, False, doc="an Aharonov-Bohm twist through the cylinder drawn uniformly in [0, 1) "
                                           "per realization (periodic boundary; averages over boundary conditions)"),
}
PLOT = {
    "x": Field(str, None, doc="grid axis on the horizontal axis (default: the first)"),
    "relative": Field(bool, False, doc="plot <O(x)> - <O(x_0)> from paired realizations"),
}
GRID_RANGE = {"start": Field((int, float)), "stop": Field((int, float)), "num": Field(int, minimum=1)}


class _Locator:
    """Best-effort line numbers for keys in the TOML text (headers [a.b] and 'key =' lines)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def line(self, path: tuple[str, ...]) -> int | None:
        table, key = path[:-1], path[-1]
        current: tuple[str, ...] = ()
        for number, raw in enumerate(self.lines, 1):
            stripped = raw.strip()
            header = re.match(r"^\[\s*([^\[\]]+?)\s*\]", stripped)
            if header:
                current = tuple(part.strip().strip('"') for part in header.group(1).split("."))
                if current == path:
                    return number
                continue
            if re.match(rf"^{re.escape(key)}\s*=", stripped):
                if current == table or (len(table) > len(current) and table[: len(current)] == current):
                    return number
        return None


class Validator:
    """Checks parsed TOML tables against schemas ``{key: Field}``; errors name the source and line."""

    def __init__(self, source: str, text: str):
        self.source = source
        self.locator = _Locator(text)

    def error(self, path: tuple[str, ...], message: str) -> ConfigError:
        line = self.locator.line(path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {'.'.join(path)} {message}")

    def table(self, data: Any, schema: dict[str, Field], path: tuple[str, ...]) -> dict:
        if not isinstance(data, dict):
            raise self.error(path, f"must be a table, got {data!r}")
        for key in data:
            if key not in schema:
                raise self.error(path + (key,), f"is not a known key; allowed keys here: {sorted(schema)}")
        out = {}
        for key, field in schema.items():
            value = data.get(key, field.default)
            if value is REQUIRED:
                raise self.error(path + (key,), f"is missing (required: {field.describe()})")
            if value is not None and key in data:
                value = self.value(value, field, path + (key,))
            out[key] = copy.deepcopy(value)
        return out

    def value(self, value: Any, field: Field, path: tuple[str, ...]) -> Any:
        kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise self.error(path, f"= {value!r} has the wrong type: must be {field.describe()}")
        if isinstance(value, float) and math.isnan(value):
            raise self.error(path, f"= {value!r} is not a number: must be {field.describe()}")
        if field.allowed is not None and value not in field.allowed:
            raise self.error(path, f"= {value!r} is not allowed: must be {field.describe()}")
        if field.minimum is not None:
            bad = value <= field.minimum if field.exclusive_minimum else value < field.minimum
            if bad:
                raise self.error(path, f"= {value!r} is out of range: must be {field.describe()}")
        if field.check is not None and not field.check(value):
            raise self.error(path, f"= {value!r} is out of range: must be {field.describe()}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        return value


def _grid_axis(v: Validator, value: Any, path: tuple[str, ...]) -> list[float]:
    if isinstance(value, dict):
        spec = v.table(value, GRID_RANGE, path)
        num = spec["num"]
        start, stop = float(spec["start"]), float(spec["stop"])
        return [start] if num == 1 else [start + (stop - start) * i / (num - 1) for i in range(num)]
    if isinstance(value, list) and value:
        return [v.value(x, Field((int, float)), path) for x in value]
    raise v.error(path, f"= {value!r} must be a non-empty list of numbers or a table {{start, stop, num}}")


def _ensemble(v: Validator, name: str, data: Any) -> dict:
    path = ("ensembles", name)
    if not isinstance(data, dict):
        raise v.error(path, "must be a table")
    sections = {"sample": SAMPLE, "model": MODEL, "disorder": DISORDER, "plot": PLOT}
    top = {k: x for k, x in data.items() if k not in sections and k != "grid"}
    out = v.table(top, ENSEMBLE, path)
    for section, schema in sections.items():
        needed = {"model": "at least energy", "sample": "lattice and length"}.get(section)
        if needed and section not in data:
            raise v.error(path + (section,), f"is missing (a [{section}] table with {needed})")
        out[section] = v.table(data.get(section, {}), schema, path + (section,))
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise v.error(path + ("grid",), "must be a table of parameter = list or {start, stop, num}")
    out["grid"] = {}
    for key, value in grid.items():
        if key not in GRID_PARAMETERS:
            raise v.error(path + ("grid", key), f"is not a grid parameter; allowed: {list(GRID_PARAMETERS)}")
        axis = _grid_axis(v, value, path + ("grid", key))
        if key == "tau_phi" and any(x <= 0 for x in axis):
            raise v.error(path + ("grid", key), f"= {value!r} is out of range: tau_phi must be > 0")
        if key == "strength" and any(x < 0 for x in axis):
            raise v.error(path + ("grid", key), f"= {value!r} is out of range: strength must be >= 0")
        out["grid"][key] = axis
    for obs in out["observables"]:
        if obs not in OBSERVABLES:
            raise v.error(path + ("observables",), f"contains {obs!r}: allowed observables are {list(OBSERVABLES)}")
    if not out["observables"]:
        raise v.error(path + ("observables",), "is empty: name at least one observable")
    _cross_checks(v, path, out)
    return out


def _cross_checks(v: Validator, path, e: dict) -> None:
    sample, model, disorder = e["sample"], e["model"], e["disorder"]
    need = {"strip": ("width",), "bar": ("width", "height"), "zigzag_ribbon": ("n",), "armchair_ribbon": ("n",), "chain": ()}
    for key in ("width", "height", "n"):
        wanted = key in need[sample["lattice"]]
        if wanted and sample[key] is None:
            raise v.error(path + ("sample", key), f"is missing: lattice {sample['lattice']!r} needs {list(need[sample['lattice']])}")
        if not wanted and sample[key] is not None:
            raise v.error(path + ("sample", key), f"= {sample[key]} does not apply to lattice {sample['lattice']!r}")
    if sample["boundary"] == "periodic" and sample["lattice"].endswith("_ribbon") and sample["n"] % 2:
        raise v.error(path + ("sample", "n"), f"= {sample['n']} is odd: a periodic {sample['lattice']} needs an even n "
                      "(line n must fall on line 0)")
    terms = {k for k in MODEL_PARAMETERS if model[k] is not None} | set(e["grid"])
    spin_terms = sorted(terms & {"rashba", "exchange"}) + [k for k in ("moments", "su2") if disorder[k]]
    if spin_terms and not sample["spinful"]:
        raise v.error(path + ("sample", "spinful"), f"= false, but {spin_terms} act on spin: set spinful = true")
    if ("exchange" in terms) != disorder["moments"]:
        raise v.error(path + ("disorder", "moments"),
                      f"= {str(disorder['moments']).lower()}: magnetic impurities need both model.exchange and disorder.moments = true")
    if "mass" in terms and sample["lattice"] not in ("zigzag_ribbon", "armchair_ribbon"):
        raise v.error(path + ("model", "mass"), f"needs a honeycomb lattice, not {sample['lattice']!r}")
    if disorder["random_twist"] and sample["boundary"] != "periodic":
        raise v.error(path + ("disorder", "random_twist"), "= true needs sample.boundary = 'periodic' (a cylinder)")
    if "twist" in terms and sample["boundary"] != "periodic":
        raise v.error(path + ("model" if model["twist"] is not None else "grid", "twist"),
                      "needs sample.boundary = 'periodic' (a cylinder)")
    if "twist" in terms and disorder["random_twist"]:
        raise v.error(path + ("disorder", "random_twist"), "= true draws the twist: drop model.twist / grid.twist")
    if e["dephasing"] == "buttiker" and "tau_phi" not in terms:
        raise v.error(path + ("dephasing",), "= 'buttiker' needs model.tau_phi (or a tau_phi grid)")
    if e["method"] == "transfer":
        other = [o for o in e["observables"] if o not in TRANSFER_OBSERVABLES]
        if other:
            raise v.error(path + ("method",), f"= 'transfer' gives G_N1 only; {other} need method = 'rgf'")
        if "tau_phi" in terms and e["dephasing"] != "absorb":
            raise v.error(path + ("method",), f"= 'transfer' gives the coherent conductance only; dephasing = "
                          f"{e['dephasing']!r} with tau_phi needs method = 'rgf'")
    if (disorder["short_range_density"] > 0) != (disorder["short_range_strength"] > 0):
        key = "short_range_density" if disorder["short_range_density"] > 0 else "short_range_strength"
        other = "short_range_strength" if key == "short_range_density" else "short_range_density"
        raise v.error(path + ("disorder", key), f"= {disorder[key]!r} needs disorder.{other} > 0 as well")
    x = e["plot"]["x"]
    if x is not None and x not in e["grid"]:
        raise v.error(path + ("plot", "x"), f"= {x!r} is not a grid axis; grid axes: {list(e['grid'])}")


def validate(data: dict, source: str = "<config>", text: str = "") -> dict:
    """Validate a parsed config and return its normalized form (all defaults filled in, grids expanded)."""
    v = Validator(source, text)
    for key in data:
        if key not in ("run", "ensembles", "analysis"):
            raise v.error((key,), "is not a known section; allowed: ['analysis', 'ensembles', 'run']")
    if "run" not in data:
        raise v.error(("run",), "is missing (a [run] table with realizations)")
    run = v.table(data["run"], RUN, ("run",))
    ensembles = data.get("ensembles")
    if not isinstance(ensembles, dict) or not ensembles:
        raise v.error(("ensembles",), "is missing: define at least one [ensembles.NAME] table")
    out = {"run": run, "ensembles": {}}
    for name, entry in ensembles.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise v.error(("ensembles", name), "is not a valid name: use letters, digits, '_' and '-'")
        out["ensembles"][name] = _ensemble(v, name, entry)
        if out["ensembles"][name]["realizations"] is None:  # written out: the stored config is complete
            out["ensembles"][name]["realizations"] = run["realizations"]
    analysis = data.get("analysis", {})
    if not isinstance(analysis, dict):
        raise v.error(("analysis",), "must be a table (it is validated by the experiment that reads it)")
    out["analysis"] = copy.deepcopy(analysis)
    return out


def load(path: str | pathlib.Path) -> dict:
    """Read, validate and normalize a TOML config file."""
    return validate(*read(path))


def read(path: str | pathlib.Path) -> tuple[dict, str, str]:
    """(parsed TOML, file name, text) of a config file; ConfigError naming the file (and line) if it cannot be
    read, is not UTF-8 or is not TOML."""
    path = pathlib.Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}); TOML configs must be UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return data, str(path), text


def result_relevant(config: dict) -> dict:
    """The part of a normalized config that determines the results: all but chunk size, grid batch, titles,
    plots and the sweep method."""
    relevant = copy.deepcopy(config)
    relevant.pop("analysis", None)
    relevant["run"].pop("chunk", None)
    relevant["run"].pop("title", None)
    for entry in relevant["ensembles"].values():
        entry.pop("plot", None)
        entry.pop("label", None)
        entry.pop("method", None)  # the sweeps agree to ~1e-11
        entry.pop("grid_batch", None)  # how the grid is batched changes no number
        # Disorder terms at their defaults change no number: dropping them keeps the hash of runs stored before
        # the terms existed, so those runs still resume.
        for key in ("correlation_length", "density", "short_range_density", "short_range_strength", "random_twist"):
            if key in entry.get("disorder", {}) and entry["disorder"][key] == DISORDER[key].default:
                entry["disorder"].pop(key)
        if entry.get("sample", {}).get("field_region") == SAMPLE["field_region"].default:
            entry["sample"].pop("field_region")  # likewise for the field region
        if entry.get("model", {}).get("twist", 0) is None:
            entry["model"].pop("twist")  # and for a model without a twist
    return relevant


def digest(relevant: dict) -> str:
    """SHA-256 (hex) of a JSON-serializable dict, independent of key order: the one hash of stored results."""
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def config_hash(config: dict) -> str:
    """SHA-256 of :func:`result_relevant`: equal hashes mean the stored results can be reused."""
    return digest(result_relevant(config))


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable list of the keys whose values differ between two normalized configs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if value == math.inf else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(x) for x in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def dumps(config: dict) -> str:
    """Write a normalized config as TOML (absent optional terms are omitted: absent means switched off)."""
    lines = ["# Normalized by difftransport: every default is written out; absent model terms are switched off.", ""]

    def table(header: str, data: dict):
        lines.append(f"[{header}]")
        for key, value in data.items():
            if value is not None and not isinstance(value, dict):
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")

    table("run", config["run"])
    for name, entry in config["ensembles"].items():
        table(f"ensembles.{name}", entry)
        for section in ("sample", "model", "disorder", "grid", "plot"):
            table(f"ensembles.{name}.{section}", entry[section])

    def nested(header: str, data: dict):
        table(header, data)
        for key, value in data.items():
            if isinstance(value, dict):
                nested(f"{header}.{key}", value)

    if config.get("analysis"):
        nested("analysis", config["analysis"])
    return "\n".join(lines)
