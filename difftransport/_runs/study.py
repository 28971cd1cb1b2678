"""Scaling-study configurations (``difftransport scale``; kinds ``"fss"``: [study], [system], [tmm], [fit] and
``"beta"``: [study], [system], [ensemble], [fit]) on the engine of ``config.py``: errors name the file, line, key,
value and what is allowed; the normalized config has every default written out. Energies and W in units of t."""

from __future__ import annotations

import math

from .config import DISORDER, SAMPLE, Field, Validator, _toml_value, digest, read


def _numbers(v, low=0.0, strict=True, whole=False):
    kinds = int if whole else (int, float)
    return len(v) > 0 and all(isinstance(x, kinds) and not isinstance(x, bool) and (x > low if strict else x >= low)
                              for x in v)


def _increasing(v):
    return all(b > a for a, b in zip(v, v[1:]))


_FINITE = Field((int, float), check=math.isfinite, doc="a finite number")
STUDY = {
    "kind": Field(str, allowed=("fss", "beta", "dephasing")),
    "title": Field(str, check=lambda v: len(v) > 0, doc="a non-empty string"),
    "figure": Field(str, check=lambda v: len(v) > 0 and all(c.isalnum() or c in "_-" for c in v),
                    doc="a file stem of letters, digits, '_' and '-'"),
}
SYSTEM = {
    "dimension": Field(int, allowed=(2, 3), doc="2: M-wide strips or L x L squares; 3: M x M bars or L^3 cubes"),
    "boundary": SAMPLE["boundary"],
    "spinful": SAMPLE["spinful"],
    "su2": DISORDER["su2"],
    "energy": _FINITE,
    "hopping": Field((int, float), 1.0, check=lambda v: math.isfinite(v) and v != 0, doc="a finite non-zero number"),
    "flux": Field((int, float), 0.0, check=math.isfinite, doc="a finite number (flux quanta per plaquette; 0: no field)"),
    "distribution": DISORDER["distribution"],
}
TMM = {
    "widths": Field(list, check=lambda v: _numbers(v, whole=True) and _increasing(v), doc="increasing positive integers"),
    "strengths": Field(list, check=lambda v: _numbers(v, strict=False) and _increasing(v),
                       doc="increasing numbers >= 0"),
    "rtol": Field(list, check=_numbers, doc="one positive relative error per width"),
    "stages": Field(list, [1.0], check=lambda v: _numbers(v) and all(b < a for a, b in zip(v, v[1:])) and v[-1] == 1,
                    doc="decreasing factors ending with 1 (stage k stops at rtol * stages[k])"),
    "max_slices": Field(list, check=lambda v: _numbers(v, whole=True), doc="one positive integer per width"),
    "chunk": Field(int, minimum=1, doc="slices per statistics batch"),
    "warmup": Field(int, minimum=0),
    "qr_every": Field(int, minimum=1),
    "min_batches": Field(int, minimum=2),
    "seed": Field(int, 0, minimum=0),
    "workers": Field(int, 0, minimum=0, doc="parallel transfer-matrix runs (threads); 0: one per core on a single "
                                             "CPU device, else 1 (docs/benchmarks.md#openblas-threads); changes no "
                                             "number"),
}
FSS_FIT = {
    "relevant_order": Field(int, minimum=1),
    "irrelevant_order": Field(int, minimum=0, doc="0: no correction to scaling"),
    "relevant_field_order": Field(int, minimum=1),
    "irrelevant_field_order": Field(int, minimum=0),
    "irrelevant_exponent": Field((str, int, float), "fit", check=lambda v: v == "fit" or (not isinstance(v, str) and v < 0),
                                 doc="'fit' or a fixed negative number"),
    "critical_guess": Field((int, float), minimum=0, exclusive_minimum=True),
    "exponent_guess": Field((int, float), minimum=0, exclusive_minimum=True),
    "irrelevant_guess": Field((int, float), -2.0, check=lambda v: v < 0, doc="a negative number"),
    "min_width": Field(int, minimum=1, doc="smallest width in the main fit"),
    "bootstrap": Field(int, 0, minimum=0, doc="parametric bootstrap refits (0: covariance intervals)"),
    "confidence": Field((int, float), 0.95, check=lambda v: 0 < v < 1, doc="a number in (0, 1)"),
    "max_steps": Field(int, 2000, minimum=1),
}
ENSEMBLE = {
    "lengths": Field(list, check=lambda v: _numbers(v, whole=True) and _increasing(v) and len(v) >= 2,
                     doc="at least two increasing positive integers (L: L x L or L x L x L samples)"),
    "strengths": Field(list, check=lambda v: _numbers(v, strict=False) and _increasing(v),
                       doc="increasing numbers >= 0"),
    "realizations": Field(int, minimum=2),
    "chunk": Field(int, 64, minimum=1, doc="realizations per stored chunk (and vmapped batch, but for "
                                           "cpu_vmap_width at a time on one CPU device)"),
    "seed": Field(int, 0, minimum=0),
    "contact_correction": Field(bool, True, doc="remove the leads' contact resistance: 1/g = 1/G - 1/N"),
    "workers": Field(int, 0, minimum=0, doc="chunks computed at once in threads; 0: one per core on a single CPU "
                                             "device, else 1 (docs/benchmarks.md#worker-threads); changes no number"),
    "method": Field(str, "rgf", allowed=("rgf", "transfer"),
                    doc="the conductance solver: 'rgf' or 'transfer' (the transfer sweep: the same numbers to "
                        "~1e-11, many times faster on large squares, docs/benchmarks.md)"),
}
BETA_FIT = {
    "knots": Field(int, minimum=2),
    "smoothing": Field((int, float), minimum=0),
    "substeps": Field(int, minimum=1),
    "asymptote": Field(str, allowed=("orthogonal", "symplectic", "unitary", "none")),
    "max_steps": Field(int, 2000, minimum=1),
    "min_strength": Field((int, float), 0.0, minimum=0, doc="weaker disorder is left out of the fit"),
    "min_length": Field(int, 1, minimum=1, doc="shorter samples are left out of the fit"),
}
DEPHASING = {
    "length": Field(int, minimum=3, doc="an integer >= 3 (L: L x L squares in 2D, L x L x L cubes in 3D)"),
    "strengths": ENSEMBLE["strengths"],
    "tau_phi": Field(list, check=lambda v: _numbers(v) and _increasing(v),
                     doc="increasing positive dephasing times tau_phi of the Buttiker probes (units of hbar/t)"),
    "fluxes": Field(list, check=lambda v: len(v) >= 1 and _numbers(v, strict=False) and v[0] == 0 and _increasing(v),
                    doc="0 first, then increasing positive fluxes per plaquette (h/e) at which the slope is "
                        "subtracted (2D: at least one; 3D: none, [0.0])"),
    "field_region": Field(str, "sample", allowed=("everywhere", "sample"),
                          doc="where the subtraction field acts: the sample only (the leads keep their channels) "
                              "or everywhere"),
    "realizations": Field(int, minimum=2),
    "chunk": Field(int, 16, minimum=1, doc="realizations per stored chunk and vmapped batch"),
    "seed": Field(int, 0, minimum=0),
    "contact_correction": ENSEMBLE["contact_correction"],
    "one_loop": Field(str, "orthogonal", allowed=("orthogonal", "symplectic", "unitary", "none"),
                      doc="the one-loop beta drawn and compared with"),
    "diffusion": Field((int, float), 0.0, minimum=0, doc="a number >= 0: the diffusion constant D (a^2 t/hbar) "
                       "of a stated rule, for L_phi = sqrt(D tau_phi) in the field-residual correction of beta_phi; "
                       "0: not corrected"),
    "density_of_states": Field((int, float), 0.0, minimum=0,
                               doc="a number >= 0: rho per site (1/t) for g = sigma L_phi in 3D, L_phi^2 = "
                                   "sigma tau_phi / (2 pi rho) (the Einstein rule); 0: g is not reported (beta "
                                   "needs no rho)"),
    "solver": Field(str, "auto", allowed=("auto", "dense", "gmres"),
                    doc="the probe equations' solver (buttiker_currents); the same numbers to ~1e-9"),
}
SCHEMAS = {
    "fss": {"study": STUDY, "system": SYSTEM, "tmm": TMM, "fit": FSS_FIT},
    "beta": {"study": STUDY, "system": SYSTEM, "ensemble": ENSEMBLE, "fit": BETA_FIT},
    "dephasing": {"study": STUDY, "system": SYSTEM, "dephasing": DEPHASING},
}
SECTIONS = {"fss": "tmm", "beta": "ensemble", "dephasing": "dephasing"}  # the section that determines the numbers


def validate(data: dict, source: str = "<config>", text: str = "") -> dict:
    """Validate a parsed study config and return its normalized form (every default written out)."""
    v = Validator(source, text)
    if not isinstance(data.get("study"), dict) or "kind" not in data["study"]:
        raise v.error(("study", "kind"), f"is missing (required: one of {list(SCHEMAS)})")
    kind = v.value(data["study"]["kind"], STUDY["kind"], ("study", "kind"))
    schema = SCHEMAS[kind]
    for section in data:
        if section not in schema:
            raise v.error((section,), f"is not a known section of a {kind!r} study; allowed: {list(schema)}")
    out = {section: v.table(data.get(section, {}), keys, (section,)) for section, keys in schema.items()}
    _cross_checks(v, out, kind)
    return out


def _cross_checks(v: Validator, c: dict, kind: str) -> None:
    system = c["system"]
    if system["su2"] and not system["spinful"]:
        raise v.error(("system", "su2"), "= true needs system.spinful = true")
    if kind == "dephasing":
        _dephasing_checks(v, c)
        return
    f = c["fit"]
    sizes = c["tmm"]["widths"] if kind == "fss" else c["ensemble"]["lengths"]
    name = ("tmm", "widths") if kind == "fss" else ("ensemble", "lengths")
    if system["boundary"] == "periodic" and sizes[0] < 3:
        raise v.error(name, f"= {sizes}: periodic boundaries need sizes >= 3")
    if kind == "fss":
        t = c["tmm"]
        for key in ("rtol", "max_slices"):
            if len(t[key]) != len(t["widths"]):
                raise v.error(("tmm", key), f"= {t[key]!r} needs one entry per width ({len(t['widths'])} widths)")
        if t["chunk"] % t["qr_every"] or t["warmup"] % t["qr_every"]:
            raise v.error(("tmm", "chunk"), f"= {t['chunk']} and tmm.warmup = {t['warmup']} must be multiples of "
                          f"tmm.qr_every = {t['qr_every']}")
        for w, m in zip(t["widths"], t["max_slices"]):
            if m < t["warmup"] + t["min_batches"] * t["chunk"]:
                raise v.error(("tmm", "max_slices"), f"= {m} (width {w}) is below warmup + min_batches * chunk = "
                              f"{t['warmup'] + t['min_batches'] * t['chunk']}")
        if f["min_width"] not in t["widths"]:
            raise v.error(("fit", "min_width"), f"= {f['min_width']} is not one of tmm.widths {t['widths']}")
        if len([w for w in t["widths"] if w >= f["min_width"]]) < 2:
            raise v.error(("fit", "min_width"), f"= {f['min_width']} leaves fewer than two widths to fit")
        return
    e = c["ensemble"]
    if not any(w >= f["min_strength"] for w in e["strengths"]):
        raise v.error(("fit", "min_strength"), f"= {f['min_strength']} leaves no disorder strength to fit")
    if len([L for L in e["lengths"] if L >= f["min_length"]]) < 2:
        raise v.error(("fit", "min_length"), f"= {f['min_length']} leaves fewer than two lengths to fit")
    bad = [L for L in e["lengths"] if abs(system["flux"] * L - round(system["flux"] * L)) > 1e-9]
    if system["boundary"] == "periodic" and bad:
        raise v.error(("system", "flux"), f"= {system['flux']} with periodic boundaries needs flux * L to be an "
                      f"integer; fails for L = {bad}")


def _dephasing_checks(v: Validator, c: dict) -> None:
    system, d = c["system"], c["dephasing"]
    if system["dimension"] == 2 and len(d["fluxes"]) < 2:
        raise v.error(("dephasing", "fluxes"), f"= {d['fluxes']}: in 2D the slope is subtracted at a field; give at "
                      "least one positive flux after 0")
    if system["dimension"] == 2 and d["density_of_states"] > 0:
        raise v.error(("dephasing", "density_of_states"), "is for the 3D estimator (g = sigma L_phi); in 2D "
                      "dephasing.diffusion gives L_phi")
    if system["dimension"] == 3:
        for key, ok, why in (("fluxes", d["fluxes"] == [0], "[0.0]: the 3D estimator uses the zero-field slope"),
                             ("one_loop", d["one_loop"] == "none", "'none': 3D has no universal one-loop beta"),
                             ("diffusion", d["diffusion"] == 0, "0: in 3D L_phi follows the Einstein rule "
                              "(dephasing.density_of_states)")):
            if not ok:
                raise v.error(("dephasing", key), f"= {d[key]!r} in 3D: set {why}")
    if system["flux"] != 0:
        raise v.error(("system", "flux"), f"= {system['flux']}: a dephasing study takes its fields from "
                      "dephasing.fluxes (set system.flux = 0)")
    if system["su2"] and d["one_loop"] == "orthogonal":
        raise v.error(("dephasing", "one_loop"), "= 'orthogonal' with system.su2 = true: the SU(2) model is "
                      "symplectic (set one_loop = 'symplectic', or 'none')")
    bad = [f for f in d["fluxes"] if abs(f * d["length"] - round(f * d["length"])) > 1e-9]
    if system["boundary"] == "periodic" and bad:
        raise v.error(("dephasing", "fluxes"), f"= {d['fluxes']} with periodic boundaries needs flux * L to be an "
                      f"integer (L = {d['length']}); fails for {bad}")


def load(path) -> dict:
    """Read, :func:`validate` and normalize a study config file; ConfigError naming the file and the line."""
    return validate(*read(path))


def dumps(config: dict) -> str:
    """A normalized study config as TOML (every default written out)."""
    lines = ["# Normalized by difftransport scale: every default is written out."]
    for section, table in config.items():
        lines += ["", f"[{section}]"] + [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def result_relevant(config: dict) -> dict:
    """The part of a normalized study config that determines its numbers: its kind, [system] and [ensemble]
    (beta), [tmm] (fss) or [dephasing], without ``workers`` (how many runs go in parallel changes no number),
    the beta study's ``method`` (the two solvers give the same conductances to ~1e-11, tests/test_transfer.py, so
    chunks stored by one are reused by the other) and the dephasing study's ``one_loop`` and ``diffusion`` (what
    it is compared with and how it is analysed), ``density_of_states`` (3D: only g's scale) and ``solver``
    (the probe solves agree to ~1e-9)."""
    kind = config["study"]["kind"]
    section = SECTIONS[kind]
    skip = ("workers", "method", "one_loop", "diffusion", "density_of_states", "solver")
    return {"kind": kind, "system": dict(config["system"]),
            section: {k: v for k, v in config[section].items() if k not in skip}}


def config_hash(config: dict) -> str:
    """SHA-256 (hex) of :func:`result_relevant`: equal hashes mean stored data can be reused."""
    return digest(result_relevant(config))

