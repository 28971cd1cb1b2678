"""``difftransport fit DATA.csv --model hln [--units e2h|siemens] [--out DIR]``: fit measured magnetoconductance.

Models (``--model``): ``hln`` (b_phi, b_so, b_s), ``alpha`` (alpha, b_phi), ``cubic`` (b_phi, b_so), ``kawabata``
(alpha, b_phi; 3D) and ``mccann`` (b_phi, b_i, b_star: graphene, McCann et al. 2006, with the published prefactor
e^2/(pi h), i.e. spin degeneracy 2; double the data of a spinless lattice model first). b_phi is per curve, the
other parameters are shared; ``--shared NAME`` and ``--per-curve NAME`` change that.

The CSV file has a header row; column names are case-insensitive:

=========== ========== =====================================================================================
column      required   meaning
=========== ========== =====================================================================================
``B``       yes        magnetic field in tesla (``field`` is accepted too); both signs allowed
``dsigma``  one of     Delta sigma(B) = sigma(B) - sigma(0), sheet conductance change (per square)
``sigma``   these      sigma(B) itself (sheet conductance); an offset sigma(0) per curve is fitted
``G``       three      two-terminal conductance G(B); sigma = G x ``--squares`` (L/W), offset fitted
``err``     no         standard uncertainty of the value column (same unit); without it the errors are scaled by
                       chi^2/dof (see ``difftransport._core.fit``)
``curve``   no         label of the curve (e.g. ``4.2K``): curves are fitted jointly, B_phi per curve, the other
                       parameters shared (``--shared``, ``--per-curve``)
=========== ========== =====================================================================================

Conductances are in e^2/h (``--units e2h``, default) or siemens (``--units siemens``; divided by
e^2/h = 3.874e-5 S). Sign convention: weak localization is a *positive* Delta sigma (docs/theory.md).

Writes ``DIR/fit.json`` (parameters, standard errors, the correlation matrix, chi^2/dof, and the lengths
L_x = sqrt(hbar/(4 e B_x)) of the fitted characteristic fields) and ``DIR/fit.png`` (data, fit, residuals). The JSON
is strict: a number that is not finite (a correlation with a zero standard error) is written as null. The console
lists the values, the lengths and the correlations of the pairs that involve a shared parameter or two parameters
of one curve (b_phi, b_i and b_star of ``mccann`` are strongly correlated).

Exit codes: 0 for a fit that determines every free parameter; 2, with one line ``error: ...`` on stderr and no
files written, for bad input (file, columns, options, ``--fix`` values: b_phi > 0, other fields >= 0, all finite)
and for a fit that cannot determine a parameter: a non-finite value or error, a singular Jacobian, a
characteristic field that ran off the data (above 100 x the largest |B| or below 1/100 of the smallest nonzero
|B|), or a field's error above 10 x its value (``difftransport._core.fit``). Fix such a parameter (``--fix``), share it
(``--shared``), or measure a wider field range. Unknown names in ``--shared`` or ``--per-curve``, or a name in both,
are bad input.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys
import tempfile
import warnings

import numpy as np

from .._core import theory as th
from .._core.fit import MODELS, UndeterminedWarning, _fixed_problem, fit_magnetoconductance, plot_fit
from .._core.stats import to_json

_VALUE_COLUMNS = ("dsigma", "sigma", "g")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``fit`` subcommand's arguments on ``parser``."""
    parser.add_argument("data", type=pathlib.Path, help="CSV file: columns B (tesla), dsigma|sigma|G, [err], [curve]")
    parser.add_argument("--model", choices=tuple(MODELS), default="hln",
                        help="theory: " + "; ".join(f"{k}: {v.description}" for k, v in MODELS.items()))
    parser.add_argument("--units", choices=("e2h", "siemens"), default="e2h",
                        help="unit of the conductance columns (default e2h = e^2/h)")
    parser.add_argument("--squares", type=float, default=1.0,
                        help="number of squares L/W, to convert a G column to sheet conductance (default 1)")
    parser.add_argument("--symmetrize", action="store_true", help="average each point with its partner at -B")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="hold a parameter fixed (repeatable), e.g. --fix b_so=0; replaces the model's defaults. "
                             "Fields in tesla: b_phi > 0, the other fields (b_so, b_s, b_i, b_star) >= 0. A "
                             "parameter that the data do not determine is an error (exit 2): fix it, share it, or "
                             "widen the field range")
    parser.add_argument("--shared", action="append", default=[], metavar="NAME",
                        help="share a parameter that is per curve by default (e.g. --shared b_phi)")
    parser.add_argument("--per-curve", action="append", default=[], metavar="NAME",
                        help="fit one value per curve of a parameter that is shared by default (repeatable), e.g. "
                             "--model mccann --per-curve b_i")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/fit"),
                        help="output folder for fit.json and fit.png (default out/fit)")


def read_csv(path: pathlib.Path, *, units: str = "e2h", squares: float = 1.0) -> dict:
    """Read a magnetoconductance CSV (see the module docstring) into arrays in e^2/h per square.

    Returns a dict with ``field``, ``value``, ``sigma`` (None without ``err``), ``curve`` (None without a curve
    column), ``kind`` (the value column used) and ``offset`` (whether the value is absolute)."""
    if units not in ("e2h", "siemens"):
        raise ValueError(f"units must be 'e2h' or 'siemens', got {units!r}.")
    if not squares > 0:
        raise ValueError(f"squares must be positive, got {squares}.")
    with open(path, newline="") as fh:
        rows = list(csv.reader(line for line in fh if line.strip() and not line.lstrip().startswith("#")))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header row with B and one of dsigma, sigma, G.")
    header = [h.strip().lower() for h in rows[0]]
    body = rows[1:]
    col = {name: i for i, name in enumerate(header)}
    if "field" in col and "b" not in col:
        col["b"] = col["field"]
    if "b" not in col:
        raise ValueError(f"{path}: no field column 'B' in header {rows[0]}.")
    kinds = [k for k in _VALUE_COLUMNS if k in col]
    if len(kinds) != 1:
        raise ValueError(f"{path}: need exactly one value column of dsigma, sigma, G; header has {rows[0]}.")
    kind = kinds[0]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {n}: {len(row)} fields, header has {len(header)}.")

    def numbers(name):
        out = []
        for n, row in enumerate(body, start=2):
            text = row[col[name]].strip()
            try:
                out.append(float(text))
            except ValueError:
                raise ValueError(f"{path}, line {n}: column {name!r} is not a number: {text!r}.") from None
        return np.array(out)

    scale = 1.0 / th.CONDUCTANCE_QUANTUM if units == "siemens" else 1.0
    if kind == "g":
        scale *= squares
    value = numbers(kind) * scale
    sigma = numbers("err") * scale if "err" in col else None
    curve = [row[col["curve"]].strip() for row in body] if "curve" in col else None
    return {"field": numbers("b"), "value": value, "sigma": sigma, "curve": curve, "kind": kind,
            "offset": kind != "dsigma"}


def _parse_fixed(items, model: str, offset: bool):
    """{name: value} from ``--fix NAME=VALUE`` items, checked against ``model``'s parameters."""
    allowed = MODELS[model].params + (("offset",) if offset else ())
    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--fix expects NAME=VALUE, got {item!r}.")
        if name not in allowed:
            raise ValueError(f"--fix {item!r}: model {model!r} has no parameter {name!r}; allowed: {allowed}.")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--fix {item!r}: {value!r} is not a number.") from None
        problem = _fixed_problem(name, number)
        if problem:
            raise ValueError(f"--fix {item!r}: {problem}.")
        fixed[name] = number
    return fixed


def _write_atomic(path: pathlib.Path, write) -> None:
    """Call ``write(temporary path)`` and move the file onto ``path``: an interrupted run leaves the old file or
    none, never a truncated one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(pathlib.Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _lengths(result):
    """L_x = sqrt(hbar/(4 e B_x)) (metres) for every fitted characteristic field b_x, with propagated errors."""
    out = {}
    for name, values in result.params.items():
        if not name.startswith("b_"):
            continue
        for k, curve in enumerate(result.curves):
            b = float(values[k])
            if b <= 0:
                continue
            length = float(th.length_from_field(b))
            err = result.error(name, curve) * length / (2 * b)  # L ~ B^(-1/2)
            key = "l_" + name[2:] + (f"[{curve}]" if len(result.curves) > 1 else "")
            out[key] = {"value_m": to_json(length), "stderr_m": to_json(err)}
    return out


def _correlated_pairs(result):
    """(label, label, correlation) for the pairs of free parameters that involve a shared parameter or two
    parameters of the same curve (values of different curves are tied only through the shared ones)."""
    spec = result._spec
    curve_of = [k if pc else None for pc, free, size in zip(spec.per_curve, spec.free, spec.sizes()) if free
                for k in range(size)]
    n = len(result.labels)
    return [(result.labels[i], result.labels[j], float(result.correlation[i, j]))
            for i in range(n) for j in range(i + 1, n)
            if curve_of[i] is None or curve_of[j] is None or curve_of[i] == curve_of[j]]


def main(args: argparse.Namespace) -> int:
    """Run the fit; 0 on success, 2 on bad input (the message goes to stderr)."""
    try:
        data = read_csv(args.data, units=args.units, squares=args.squares)
        params = MODELS[args.model].params
        for option, names in (("--shared", args.shared), ("--per-curve", args.per_curve)):
            unknown = set(names) - set(params)
            if unknown:
                raise ValueError(f"{option} names unknown parameters {sorted(unknown)}; model {args.model!r} has "
                                 f"{params}.")
        both = set(args.shared) & set(args.per_curve)
        if both:
            raise ValueError(f"{sorted(both)} named in both --shared and --per-curve.")
        per_curve = [p for p in params if (p in MODELS[args.model].per_curve or p in args.per_curve)
                     and p not in args.shared]
        fixed = _parse_fixed(args.fix, args.model, data["offset"]) if args.fix else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndeterminedWarning)  # reported below as the error
            result = fit_magnetoconductance(
                data["field"], data["value"], model=args.model, sigma=data["sigma"], curve=data["curve"],
                per_curve=per_curve, fixed=fixed, offset=data["offset"], symmetrize=args.symmetrize,
            )
        result.require_determined()
    except (ValueError, OSError) as err:
        print(f"difftransport fit: error: {err}", file=sys.stderr)
        return 2

    summary = result.to_dict()
    summary["lengths"] = _lengths(result)
    summary["input"] = {"file": str(args.data), "column": data["kind"], "units": args.units,
                        "squares": args.squares, "symmetrize": args.symmetrize}
    text = json.dumps(summary, indent=2, allow_nan=False)  # strict JSON: non-finite numbers are null above
    ylabel = r"$\Delta\sigma$ ($e^2/h$)" if data["kind"] == "dsigma" else r"$\sigma$ ($e^2/h$)"
    fig = plot_fit(result, data["field"], data["value"], sigma=data["sigma"], curve=data["curve"], ylabel=ylabel,
                   title=f"{args.data.name}: {args.model}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        # The figure first: fit.json, the result, appears last and whole.
        _write_atomic(args.out / "fit.png", lambda tmp: fig.savefig(tmp, dpi=150, format="png"))
        _write_atomic(args.out / "fit.json", lambda tmp: tmp.write_text(text))
    except OSError as err:
        print(f"difftransport fit: error: cannot write to --out {args.out}: {err}", file=sys.stderr)
        return 2

    if not result.converged:
        print("difftransport fit: warning: Levenberg-Marquardt did not converge; the values below are the last "
              "iterate.", file=sys.stderr)
    print(f"{args.model} fit of {args.data} ({len(result.curves)} curve(s)), chi2/dof = {result.reduced_chi2:.3g} "
          f"(dof {result.dof}; errors {'as given' if result.absolute_sigma else 'scaled by chi2/dof'})")
    for label, v, e in zip(result.labels, result.values, result.stderr):
        print(f"  {label:>16s} = {v:.6g} +- {e:.2g}")
    for key, item in summary["lengths"].items():
        print(f"  {key:>16s} = {item['value_m'] * 1e9:.4g} +- {item['stderr_m'] * 1e9:.2g} nm")
    pairs = _correlated_pairs(result)
    if pairs:
        print("correlations:")
        for a, b, r in pairs:
            print(f"  corr({a}, {b}) = {r:+.3f}")
    print(f"wrote {args.out / 'fit.json'} and {args.out / 'fit.png'}")
    return 0


if __name__ == "__main__":  # python -m difftransport._cli.fit DATA.csv ...
    _parser = argparse.ArgumentParser(prog="difftransport fit", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
