"""``difftransport fit DATA --model hln [--field NAME --value NAME ...] [--out DIR]``: fit measured magnetoconductance.

Models (``--model``): ``hln`` (b_phi, b_so, b_s), ``alpha`` (alpha, b_phi), ``cubic`` (b_phi, b_so), ``kawabata``
(alpha, b_phi; 3D) and ``mccann`` (b_phi, b_i, b_star: graphene, McCann et al. 2006, with the published prefactor
e^2/(pi h), i.e. spin degeneracy 2; double the data of a spinless lattice model first) and ``ilp`` (b_phi, b_r, b_d1,
b_d3: Iordanskii-Lyanda-Geller-Pikus with linear Rashba and Dresselhaus and cubic Dresselhaus; symmetric in
b_r <-> b_d1, reported with b_r >= b_d1; docs/theory.md#ilp). b_phi is per curve, the
other parameters are shared; ``--shared NAME`` and ``--per-curve NAME`` change that.

DATA is the file an instrument wrote (comma-, tab- or whitespace-separated text with a header row, or a Quantum
Design PPMS ``.dat`` file), or a run directory of ``difftransport run`` (with ``--lattice-constant``). The reading
(``difftransport._runs.measurement``, docs/measurements.md) picks the columns by name (``--field``, ``--value``,
``--err``, ``--curve``), reads the units from the options or the header (``Field (Oe)``, ``B_T``), converts the
value (``--quantity`` dsigma, sigma, G, R or rho) to a sheet conductance in e^2/h with the geometry (``--length``,
``--width``, ``--thickness``) and fits sigma(0) as an offset per curve (``--offset``, the default for absolute
quantities) or forms Delta sigma(B) = sigma(B) - sigma(0) per curve (``--no-offset``). Rows with an empty cell in a used column are skipped and counted (stderr and fit.json
``"rows"``).

The original CSV format still works unchanged: without ``--field``/``--value`` the columns are (names
case-insensitive)

=========== ========== =====================================================================================
column      required   meaning
=========== ========== =====================================================================================
``B``       yes        magnetic field in tesla (``field`` is accepted too); both signs allowed
``dsigma``  one of     Delta sigma(B) = sigma(B) - sigma(0), sheet conductance change (per square)
``sigma``   these      sigma(B) itself (sheet conductance); an offset sigma(0) per curve is fitted
``G``       three      two-terminal conductance G(B); sigma = G x ``--squares`` (L/W, default 1), offset fitted
``err``     no         standard uncertainty of the value column (same unit); without it the errors are scaled by
                       chi^2/dof (see ``difftransport._core.fit``)
``curve``   no         label of the curve (e.g. ``4.2K``): curves are fitted jointly, B_phi per curve, the other
                       parameters shared (``--shared``, ``--per-curve``)
=========== ========== =====================================================================================

Careful fits (docs/theory.md#temperature-law): ``--background quadratic|linear`` adds a c2 B^2 (classical
magnetoresistance) or c1 B term per curve; ``--law power`` fits B_phi(T) = b0 + a T^p jointly over curves labelled by
temperature (and writes ``law.png``: B_phi, L_phi and, with ``--diffusion``, tau_phi against T); ``--b-tr`` or
``--mobility``/``--density`` give the transport field, and points above ``--tr-fraction`` x B_tr are warned about
or, with ``--mask-above-tr``, left out and counted. ``--scale-errors`` takes the ``err`` column as relative weights
and scales the parameter errors by chi^2/dof (errors mostly common to a curve, such as one sample's level).

Conductances are in e^2/h (``--units e2h``, default) or siemens (``--units siemens``; divided by
e^2/h = 3.874e-5 S). Sign convention: weak localization is a *positive* Delta sigma (docs/theory.md).

Writes ``DIR/fit.json`` (parameters, standard errors, the correlation matrix, chi^2/dof, the lengths
L_x = sqrt(hbar/(4 e B_x)) of the fitted characteristic fields, ``"rows"`` read/used/skipped and ``"input"``: what
was read and how it was converted) and ``DIR/fit.png`` (data, fit, residuals). The JSON
is strict: a number that is not finite (a correlation with a zero standard error) is written as null. The console
lists the values, the lengths and the correlations of the pairs that involve a shared parameter or two parameters
of one curve (b_phi, b_i and b_star of ``mccann`` are strongly correlated).

Exit codes: 0 for a fit that determines every free parameter; 2, with one line ``error: ...`` on stderr and no
files written, for bad input (file, columns, units, geometry, options, ``--fix`` values: b_phi > 0, other fields
>= 0, all finite) and for a fit that cannot determine a parameter: a non-finite value or error, a singular
Jacobian, a characteristic field that ran off the data (above 100 x the largest |B| or below 1/100 of the smallest
nonzero |B|), or a field's error above 10 x its value (``difftransport._core.fit``). Fix such a parameter
(``--fix``), share it (``--shared``), or measure a wider field range. Unknown names in ``--shared`` or
``--per-curve``, or a name in both, are bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import warnings

import numpy as np

from .._core import theory as th
from .._core.fit import (
    MODELS, TR_FRACTION, TransportFieldWarning, UndeterminedWarning, _fixed_problem, fit_dephasing_law,
    fit_magnetoconductance, plot_dephasing_law, plot_fit,
)
from .._core.stats import to_json
from .._runs.measurement import QUANTITIES, Measurement, read_measurement, read_run

_UNITS = {"e2h": "e2h", "siemens": "S"}  # the original --units choices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``fit`` subcommand's arguments on ``parser``: the data options (:func:`read_data`), then the
    fit options."""
    parser.add_argument("data", type=pathlib.Path,
                        help="measurement file (CSV, tab/whitespace text, PPMS .dat) or a difftransport run directory")
    data = parser.add_argument_group("data", "which columns, units and geometry (docs/measurements.md)")
    data.add_argument("--field", metavar="NAME", help="field column (default B or field, also B_T, 'Field (Oe)')")
    data.add_argument("--value", metavar="NAME", help="value column (default the one of dsigma, sigma, G)")
    data.add_argument("--err", metavar="NAME", help="uncertainty column of the value (default err, if present)")
    data.add_argument("--curve", metavar="NAME", help="curve label column, e.g. temperature (default curve)")
    data.add_argument("--curve-step", type=float, metavar="STEP",
                      help="group a numeric curve column (a measured temperature) by rounding it to STEP")
    data.add_argument("--field-unit", metavar="UNIT", help="T, mT, G, kG, Oe, kOe (default: header, else T)")
    data.add_argument("--value-unit", metavar="UNIT",
                      help="e2h, S, mS, uS, nS, Ohm, mOhm, kOhm, MOhm, Ohm/sq, Ohm*m, Ohm*cm, uOhm*cm, S/m, S/cm "
                           "(default: header, else e2h)")
    data.add_argument("--units", choices=tuple(_UNITS), default=None,
                      help="the original option: unit of a conductance column, e2h (default) or siemens")
    data.add_argument("--quantity", choices=QUANTITIES,
                      help="what the value column is: dsigma, sigma (sheet), G, R (two-terminal), rho (per square, "
                           "or 3D with --thickness); default from the column name or unit")
    data.add_argument("--length", type=float, help="sample length L (same unit as --width); G and R need L/W")
    data.add_argument("--width", type=float, help="sample width W")
    data.add_argument("--squares", type=float, default=None,
                      help="number of squares L/W instead of --length/--width (the original CSV's G column: "
                           "default 1)")
    data.add_argument("--thickness", type=float, metavar="METRES",
                      help="film thickness d: a 3D resistivity rho gives the sheet conductance d/rho; with "
                           "--model kawabata sheet values become conductivities sigma/d per metre")
    data.add_argument("--offset", action=argparse.BooleanOptionalAction, default=None,
                      help="fit sigma(0) as an offset per curve (--offset, the default for sigma, G, R and rho) or "
                           "subtract the measured sigma(0) per curve (--no-offset)")
    data.add_argument("--symmetrize", action="store_true",
                      help="average each +B point with the -B branch interpolated onto it")
    data.add_argument("--lattice-constant", type=float, metavar="METRES",
                      help="run directories: lattice constant a, to convert flux per plaquette to field")
    data.add_argument("--ensemble", action="append", default=[], metavar="NAME",
                      help="run directories: fit only this ensemble (repeatable; default every one with a flux grid)")
    parser.add_argument("--model", choices=tuple(MODELS), default="hln",
                        help="theory: " + "; ".join(f"{k}: {v.description}" for k, v in MODELS.items()))
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="hold a parameter fixed (repeatable), e.g. --fix b_so=0; replaces the model's defaults. "
                             "Fields in tesla: b_phi > 0, the other fields (b_so, b_s, b_i, b_star) >= 0. A "
                             "parameter that the data do not determine is an error (exit 2): fix it, share it, or "
                             "widen the field range")
    parser.add_argument("--scale-errors", action="store_true",
                        help="treat the err column as relative weights and scale the parameter errors by chi2/dof "
                             "(for errors that are mostly common to a curve, e.g. one sample's level; without an err "
                             "column the errors are always scaled)")
    parser.add_argument("--shared", action="append", default=[], metavar="NAME",
                        help="share a parameter that is per curve by default (e.g. --shared b_phi)")
    parser.add_argument("--per-curve", action="append", default=[], metavar="NAME",
                        help="fit one value per curve of a parameter that is shared by default (repeatable), e.g. "
                             "--model mccann --per-curve b_i")
    careful = parser.add_argument_group("backgrounds, temperature law, transport field (docs/theory.md#temperature-law)")
    careful.add_argument("--background", action="append", default=[], choices=("quadratic", "linear"),
                         help="add a background term per curve (repeatable): quadratic c2 B^2 (classical "
                              "magnetoresistance), linear c1 B (odd admixture)")
    careful.add_argument("--law", choices=("power",),
                         help="fit B_phi(T) = b0 + a T^p jointly over the curves (the curve labels are the "
                              "temperatures in K); also writes law.png and the second-stage law of the per-curve "
                              "B_phi")
    careful.add_argument("--diffusion", type=float, metavar="M2_PER_S",
                         help="diffusion constant D: law.png then shows tau_phi = L_phi^2/D")
    careful.add_argument("--b-tr", type=float, metavar="TESLA", help="transport field B_tr = hbar/(2 e l^2)")
    careful.add_argument("--mobility", type=float, metavar="M2_PER_VS",
                         help="mobility, with --density: B_tr from theory.transport_field")
    careful.add_argument("--density", type=float, metavar="PER_M2", help="sheet density (m^-2), with --mobility")
    careful.add_argument("--degeneracy", type=int, default=2,
                         help="Fermi-surface degeneracy for B_tr from --mobility/--density (2; graphene 4)")
    careful.add_argument("--tr-fraction", type=float, default=TR_FRACTION,
                         help=f"trust the diffusive theory up to this fraction of B_tr (default {TR_FRACTION:g})")
    careful.add_argument("--mask-above-tr", action="store_true",
                         help="leave out (and count) the points above --tr-fraction x B_tr instead of warning")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/fit"),
                        help="output folder for fit.json and fit.png (default out/fit)")


def read_csv(path: pathlib.Path, *, units: str = "e2h", squares: float = 1.0) -> dict:
    """Read a magnetoconductance CSV in the original format (see the module docstring) into arrays in e^2/h per
    square; a thin wrapper of :func:`difftransport._runs.measurement.read_measurement`.

    Returns a dict with ``field``, ``value``, ``sigma`` (None without ``err``), ``curve`` (None without a curve
    column), ``kind`` (the value column used: dsigma, sigma or g) and ``offset`` (whether the value is absolute)."""
    if units not in _UNITS:
        raise ValueError(f"units must be 'e2h' or 'siemens', got {units!r}.")
    if not squares > 0:
        raise ValueError(f"squares must be positive, got {squares}.")
    data = read_measurement(path, value_unit=_UNITS[units])
    scale = squares if data.info["quantity"] == "G" else 1.0  # read with the format's default of one square
    return {"field": data.field, "value": data.value * scale,
            "sigma": None if data.sigma is None else data.sigma * scale,
            "curve": None if data.curve is None else list(data.curve), "kind": data.info["quantity"].lower(),
            "offset": data.offset}


def read_data(args: argparse.Namespace) -> Measurement:
    """The one parse step of ``difftransport fit``: the data argument and the data options -> a Measurement
    (field in tesla, value in e^2/h per square, or per metre for ``--model kawabata``)."""
    per_metre = args.model == "kawabata"
    if args.units is not None and args.value_unit is not None:
        raise ValueError("--units and --value-unit both given; use --value-unit.")
    if args.data.is_dir():
        unused = [f"--{k.replace('_', '-')}" for k in ("field", "value", "err", "curve", "curve_step", "field_unit",
                                                      "value_unit", "units", "quantity", "length", "width",
                                                      "squares", "thickness")
                  if getattr(args, k) is not None]
        if unused:
            raise ValueError(f"{args.data} is a run directory; {', '.join(unused)} apply to measurement files only.")
        return read_run(args.data, lattice_constant=args.lattice_constant, ensembles=args.ensemble or None,
                        per_metre=per_metre, offset=bool(args.offset), symmetrize=args.symmetrize)
    if args.lattice_constant is not None or args.ensemble:
        raise ValueError("--lattice-constant and --ensemble apply to run directories only.")
    return read_measurement(
        args.data, field=args.field, value=args.value, err=args.err, curve=args.curve, curve_step=args.curve_step,
        field_unit=args.field_unit, value_unit=args.value_unit or (_UNITS[args.units] if args.units else None),
        quantity=args.quantity, length=args.length, width=args.width, squares=args.squares,
        thickness=args.thickness, per_metre=per_metre, offset=args.offset, symmetrize=args.symmetrize)


def _temperatures(curves) -> dict:
    """{label: T in K} from curve labels such as ``4.2``, ``4.2K`` or ``4.2 K`` (for ``--law``)."""
    out = {}
    for label in curves:
        text = str(label).strip()
        text = text[:-1].strip() if text[-1:] in ("K", "k") else text
        try:
            out[label] = float(text)
        except ValueError:
            raise ValueError(f"--law: curve label {label!r} is not a temperature (e.g. 4.2 or 4.2K).") from None
    return out


def _transport(args) -> float | None:
    """B_tr in tesla from --b-tr or --mobility/--density, or None."""
    by_mobility = args.mobility is not None or args.density is not None
    if args.b_tr is not None and by_mobility:
        raise ValueError("give --b-tr or --mobility with --density, not both.")
    if by_mobility:
        if args.mobility is None or args.density is None:
            raise ValueError("--mobility and --density go together (B_tr from both).")
        if not (args.mobility > 0 and args.density > 0 and args.degeneracy >= 1):
            raise ValueError("--mobility and --density must be positive, --degeneracy >= 1.")
        return float(th.transport_field(args.mobility, args.density, degeneracy=args.degeneracy))
    return args.b_tr


def _skipped_note(data: Measurement | None) -> str:
    """'read n rows, used m; skipped k: reason (count), ...' or '' when nothing was skipped."""
    if data is None or not data.rows["skipped"]:
        return ""
    rows = data.rows
    reasons = ", ".join(f"{reason} ({count})" for reason, count in rows["skipped"].items())
    return f"read {rows['read']} rows, used {rows['used']}; skipped {sum(rows['skipped'].values())}: {reasons}"


def _parse_fixed(items, model: str, extra: tuple[str, ...]):
    """{name: value} from ``--fix NAME=VALUE`` items, checked against ``model``'s parameters and the ``extra``
    ones of this fit (offset, backgrounds, the law's b0, a, p)."""
    allowed = MODELS[model].params + extra
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
        spec = result._spec
        shared = name in spec.names and not spec.per_curve[spec.names.index(name)]
        for k, curve in enumerate(result.curves[:1] if shared else result.curves):
            b = float(values[k])
            if b <= 0:
                continue
            length = float(th.length_from_field(b))
            err = result.error(name, curve) * length / (2 * b)  # L ~ B^(-1/2)
            key = "l_" + name[2:] + (f"[{curve}]" if len(result.curves) > 1 and not shared else "")
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
    data = None
    try:
        data = read_data(args)
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
        extra = ("offset",) * data.offset + tuple(f"bg_{b}" for b in args.background)
        if args.law:
            extra += ("b0", "a", "p")
        fixed = _parse_fixed(args.fix, args.model, extra) if args.fix else None
        if args.law and (data.curve is None or len(set(data.curve)) < 2):
            raise ValueError("--law needs two or more curves labelled by temperature (--curve).")
        if args.diffusion is not None and not (args.diffusion > 0 and args.law):
            raise ValueError("--diffusion must be positive and goes with --law.")
        b_tr = _transport(args)
        options = dict(model=args.model, sigma=data.sigma, curve=data.curve, offset=data.offset,
                       background=tuple(args.background), symmetrize=False,  # symmetrized on reading
                       b_tr=b_tr, tr_fraction=args.tr_fraction, mask_above_tr=args.mask_above_tr,
                       absolute_sigma=False if args.scale_errors else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", UndeterminedWarning)  # reported below as the error
            warnings.simplefilter("always", TransportFieldWarning)
            if args.law:
                temperatures = _temperatures(dict.fromkeys(data.curve))
                if fixed is not None and "b_phi" in fixed:
                    raise ValueError("--law: b_phi follows the law; fix b0, a or p instead (--fix b0=0).")
                law_fixed = fixed
                per_curve_fit = fit_magnetoconductance(data.field, data.value, per_curve=per_curve, fixed=(
                    None if fixed is None else {k: v for k, v in fixed.items() if k not in ("b0", "a", "p")}),
                    **options)
                per_curve_fit.require_determined()
                result = fit_magnetoconductance(
                    data.field, data.value, per_curve=[p for p in per_curve if p != "b_phi"], fixed=law_fixed,
                    temperature=temperatures, law=args.law, **options)
            else:
                result = fit_magnetoconductance(data.field, data.value, per_curve=per_curve, fixed=fixed, **options)
        result.require_determined()
        second = None
        if args.law:
            t = [temperatures[c] for c in per_curve_fit.curves]
            idx = [per_curve_fit.labels.index(f"b_phi[{c}]") for c in per_curve_fit.curves]
            second = fit_dephasing_law(t, per_curve_fit.params["b_phi"],
                                       covariance=per_curve_fit.covariance[np.ix_(idx, idx)],
                                       fixed={k: v for k, v in (fixed or {}).items() if k in ("b0", "a", "p")})
    except (ValueError, OSError) as err:
        note = _skipped_note(data)
        print(f"difftransport fit: error: {err}" + (f" (note: {note})" if note else ""), file=sys.stderr)
        return 2

    summary = result.to_dict()
    summary["lengths"] = _lengths(result)
    if b_tr is not None:
        summary["transport_field"] = {"b_tr_T": b_tr, "fraction": args.tr_fraction, "masked": result.masked}
    if second is not None:
        summary["second_stage_law"] = second.to_dict()
        summary["per_curve_b_phi"] = {str(c): {"value": float(v), "stderr": per_curve_fit.error("b_phi", c)}
                                      for c, v in zip(per_curve_fit.curves, per_curve_fit.params["b_phi"])}
    summary["rows"] = data.rows
    summary["input"] = {"column": data.info.get("columns", {}).get("value"), "units": data.info.get("value_unit"),
                        **data.info}
    text = json.dumps(summary, indent=2, allow_nan=False)  # strict JSON: non-finite numbers are null above
    unit = r"$e^2/h$ per m" if data.per_metre else r"$e^2/h$"
    ylabel = (r"$\sigma$ " if data.offset else r"$\Delta\sigma$ ") + f"({unit})"
    fig = plot_fit(result, data.field, data.value, sigma=data.sigma, curve=data.curve, ylabel=ylabel,
                   title=f"{args.data.name}: {args.model}")
    law_fig = None
    if second is not None:
        law_fig = plot_dephasing_law(t, per_curve_fit.params["b_phi"], [per_curve_fit.error("b_phi", c) for c in
                                                                          per_curve_fit.curves],
                                     {k: result.value(k) for k in ("b0", "a", "p")}, diffusion=args.diffusion,
                                     title=f"{args.data.name}: joint law (line), per-curve fits (points)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        # The figures first: fit.json, the result, appears last and whole.
        _write_atomic(args.out / "fit.png", lambda tmp: fig.savefig(tmp, dpi=150, format="png"))
        if law_fig is not None:
            _write_atomic(args.out / "law.png", lambda tmp: law_fig.savefig(tmp, dpi=150, format="png"))
        _write_atomic(args.out / "fit.json", lambda tmp: tmp.write_text(text))
    except OSError as err:
        print(f"difftransport fit: error: cannot write to --out {args.out}: {err}", file=sys.stderr)
        return 2

    if not result.converged:
        print("difftransport fit: warning: Levenberg-Marquardt did not converge; the values below are the last "
              "iterate.", file=sys.stderr)
    note = _skipped_note(data)
    if note:
        print(f"difftransport fit: note: {note}", file=sys.stderr)
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, TransportFieldWarning)):
        print(f"difftransport fit: warning: {message}", file=sys.stderr)
    if result.masked:
        print(f"difftransport fit: note: left out {result.masked} points above {args.tr_fraction:g} B_tr = "
              f"{args.tr_fraction * b_tr:.3g} T", file=sys.stderr)
    if data.info.get("sigma0") == "subtracted per curve" and data.sigma is not None:
        print("difftransport fit: note: sigma(0) was subtracted per curve; its noise shifts a whole curve and is not "
              "in the errors (--offset fits it instead; docs/measurements.md#reference).", file=sys.stderr)
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
    if second is not None:
        print("second stage (per-curve B_phi, law fitted with their covariance): "
              + ", ".join(f"{n} = {v:.6g} +- {e:.2g}" for n, v, e in zip(second.names, second.values, second.stderr))
              + f", chi2/dof = {second.reduced_chi2:.3g}")
    print(f"wrote {args.out / 'fit.json'} and {args.out / 'fit.png'}" + (" and law.png" if law_fig else ""))
    return 0


if __name__ == "__main__":  # python -m difftransport._cli.fit DATA.csv ...
    _parser = argparse.ArgumentParser(prog="difftransport fit", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
