"""Read measured magnetoconductance for ``difftransport fit``: instrument text files and run directories.

Two entry functions return one :class:`Measurement` (field in tesla, value in e^2/h per square, or per metre for
the 3D ``kawabata`` model, with the bookkeeping of every row):

* :func:`read_measurement` reads a text table: comma-, tab-, semicolon- or whitespace-separated with a header row
  (the delimiter is sniffed from the header), ``#`` comment lines, or a Quantum Design PPMS ``.dat`` file
  (``[Header]`` block, ``[Data]``, then a comma-separated header row such as ``Field (Oe)``). Columns are chosen
  by name, units read from the options or the header (``Field (Oe)``, ``B_T``), and the values converted to a sheet
  conductance with the sample's geometry; sigma(0) is left to the fit as an offset per curve (the default
  for absolute quantities) or subtracted, forming Delta sigma(B) = sigma(B) - sigma(0) (``offset=False``).
* :func:`read_run` reads a directory written by ``difftransport run``: the ensemble-mean conductance against flux,
  converted to field with the lattice constant and to sheet conductance with the sample's L/W.

The conventions, the unit tables and every error are listed in ``docs/measurements.md``. Bad input raises a
one-line ``ValueError`` naming the problem; rows that are skipped (an empty cell in a used column) are counted per
reason in ``Measurement.rows``, never dropped silently. Plain numpy: no JAX computation happens here.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from .._core import theory as th

ZERO_NEIGHBOURHOOD = 0.05
"""Without a point at B = 0, sigma(0) is interpolated between the nearest points on both sides of B = 0, which must
both lie within this fraction of the curve's largest |B|."""

QUANTITIES = ("dsigma", "sigma", "G", "R", "rho")

# Units: canonical spelling -> factor to SI (tesla for fields).
FIELD_UNITS = {"T": 1.0, "mT": 1e-3, "G": 1e-4, "kG": 1e-1, "Oe": 1e-4, "kOe": 1e-1}
# Value units: canonical spelling -> (dimension, factor to SI: S, Ohm, Ohm m, S/m).
VALUE_UNITS = {
    "e2h": ("conductance", th.CONDUCTANCE_QUANTUM), "S": ("conductance", 1.0), "mS": ("conductance", 1e-3),
    "uS": ("conductance", 1e-6), "nS": ("conductance", 1e-9),
    "Ohm": ("resistance", 1.0), "mOhm": ("resistance", 1e-3), "kOhm": ("resistance", 1e3),
    "MOhm": ("resistance", 1e6),
    "Ohm/sq": ("sheet resistance", 1.0), "kOhm/sq": ("sheet resistance", 1e3),
    "Ohm*m": ("resistivity", 1.0), "Ohm*cm": ("resistivity", 1e-2), "mOhm*cm": ("resistivity", 1e-5),
    "uOhm*cm": ("resistivity", 1e-8),
    "S/m": ("conductivity", 1.0), "S/cm": ("conductivity", 1e2), "e2h/m": ("conductivity", th.CONDUCTANCE_QUANTUM),
}
# Which value dimensions each quantity accepts.
_DIMENSIONS = {
    "dsigma": ("conductance", "conductivity"), "sigma": ("conductance", "conductivity"), "G": ("conductance",),
    "R": ("resistance",), "rho": ("resistance", "sheet resistance", "resistivity"),
}
_GUESS = {"resistance": "R", "sheet resistance": "rho", "resistivity": "rho", "conductance": "sigma",
          "conductivity": "sigma"}
_QUANTITY_NAMES = {"dsigma": "dsigma", "delta_sigma": "dsigma", "sigma": "sigma", "g": "G", "r": "R", "rho": "rho"}
_DEFAULT_VALUES = ("dsigma", "sigma", "G", "R", "rho")  # default value columns (the original CSV: the first three)
_SPELLINGS = (  # regex -> replacement, applied in order before the table lookup
    (r"[\u03a9\u2126]", "Ohm"), (r"[\u00b5\u03bc]", "u"), (r"(?i)ohms?", "Ohm"), (r"(?i)siemens", "S"),
    (r"(?i)tesla", "T"), (r"(?i)gauss", "G"), (r"(?i)oersted", "Oe"), (r"e\^?[2\u00b2]\s*/\s*h", "e2h"),
    (r"(?i)\s*(?:/|\s+per\s+)\s*(?:sq(?:uare)?\.?|\u25a1)$", "/sq"),
    (r"\s*(?:\*|\u00b7|\u22c5|-|\.|\s)\s*(?=c?m$)", "*"),
)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Magnetoconductance data ready for ``fit_magnetoconductance``.

    Attributes:
        field: (n,) magnetic field in tesla.
        value: (n,) in e^2/h per square (sheet conductance), or in e^2/h per metre when ``per_metre``.
            Delta sigma(B) = sigma(B) - sigma(0) unless ``offset``; sigma(B) itself when ``offset``.
        sigma: (n,) standard uncertainties of ``value`` (same unit), or None when the data carry none.
        curve: (n,) curve labels, or None for a single unlabelled curve.
        offset: whether ``value`` is sigma(B) and the fit needs an offset sigma(0) per curve.
        per_metre: whether ``value`` is a 3D conductivity (e^2/h per metre) rather than a sheet conductance.
        rows: ``{"read": n, "used": m, "skipped": {reason: count}}`` with read = used + sum(skipped): every row
            read is either used (it contributes to a point of the fit) or counted under its reason.
        info: what was read and how it was converted (file, format, columns, units, quantity, conversion), for
            ``fit.json``.
    """

    field: np.ndarray
    value: np.ndarray
    sigma: np.ndarray | None
    curve: tuple[str, ...] | None
    offset: bool
    per_metre: bool
    rows: dict
    info: dict


# ---------------------------------------------------------------------------------------------------------
# Units


def parse_unit(text: str, kind: str) -> str:
    """Canonical spelling of a field (``kind="field"``) or value (``kind="value"``) unit.

    Accepts the spellings of ``docs/measurements.md#units``: ``Ohms``, ``ohm``, ``Ω``, ``µS``, ``e^2/h``,
    ``Ohm-cm``, ``Ohm/sq``, ``Tesla`` ...; the prefix case matters (``mOhm`` vs ``MOhm``), otherwise a
    case-insensitive match is used when it is unique. Raises ValueError for an unknown or ambiguous unit."""
    table = FIELD_UNITS if kind == "field" else VALUE_UNITS
    s = text.strip()
    for pattern, repl in _SPELLINGS:
        s = re.sub(pattern, repl, s)
    if s in table:
        return s
    matches = [u for u in table if u.lower() == s.lower()]
    if len(matches) == 1:
        return matches[0]
    what = "ambiguous" if matches else "unknown"
    raise ValueError(f"{what} {kind} unit {text!r}; known: {', '.join(table)}.")


def _split_name(name: str) -> tuple[str, str | None, bool]:
    """(base name, unit text or None, whether the unit was in brackets) of a column header: ``Field (Oe)`` ->
    ("Field", "Oe", True); ``B_T`` -> ("B", "T", False). A suffix after ``_`` counts only if it is a known unit."""
    m = re.fullmatch(r"\s*(.*?)\s*[(\[]\s*([^)\]]*?)\s*[)\]]\s*", name)
    if m:
        return m.group(1), m.group(2), True
    m = re.fullmatch(r"\s*(.+)_([^_]+?)\s*", name)
    if m:
        for kind in ("field", "value"):
            try:
                parse_unit(m.group(2), kind)
            except ValueError:
                continue
            return m.group(1), m.group(2), False
    return name.strip(), None, False


def _unit(option: str | None, header: str, kind: str, default: str | None, flag: str) -> tuple[str | None, str]:
    """(canonical unit, where it came from): the option wins, then the header's unit, then ``default``."""
    if option is not None:
        try:
            return parse_unit(option, kind), flag
        except ValueError as err:
            raise ValueError(f"{flag} {option!r}: {err}") from None
    _, text, bracketed = _split_name(header)
    if text is not None:
        try:
            return parse_unit(text, kind), f"header {header!r}"
        except ValueError as err:
            if bracketed:
                raise ValueError(f"column {header!r}: {err} Give the unit with {flag}.") from None
    return default, "default"


# ---------------------------------------------------------------------------------------------------------
# Tables


@dataclasses.dataclass
class _Table:
    format: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # 1-based line number of each row in the file


def _read_text(path: pathlib.Path) -> str:
    if not path.exists():
        raise ValueError(f"{path}: no such file.")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory without config.json, not a run directory of difftransport run.")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # instrument software often writes Windows-1252/latin-1 (Ω, °)


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]


def _read_table(path: pathlib.Path) -> _Table:
    """Header and rows (cells as text) of a delimited text file or a PPMS .dat file."""
    lines = _read_text(path).splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise ValueError(f"{path}: empty file; expected a header row (or a PPMS [Header] block).")
    if numbered[0][1].strip().lower() == "[header]":
        starts = [k for k, (_, line) in enumerate(numbered) if line.strip().lower() == "[data]"]
        if not starts or starts[0] + 1 >= len(numbered):
            raise ValueError(f"{path}: PPMS file without a [Data] section and its header row.")
        fmt, delimiter = "ppms", ","
        body = numbered[starts[0] + 1:]
    else:
        body = [(n, line) for n, line in numbered if not line.lstrip().startswith("#")]
        if not body:
            raise ValueError(f"{path}: empty file (only comments); expected a header row.")
        head = body[0][1]
        delimiter = next((d for d in (",", "\t", ";") if d in head), None)
        fmt = {",": "comma-separated", "\t": "tab-separated", ";": "semicolon-separated", None: "whitespace-separated"}[
            delimiter]
    header = _split(body[0][1], delimiter)
    while header and not header[-1]:  # a trailing delimiter
        header.pop()
    rows, numbers = [], []
    for n, line in body[1:]:
        if line.lstrip().startswith("#"):
            continue
        cells = _split(line, delimiter)
        if len(cells) > len(header) and not any(cells[len(header):]):
            cells = cells[:len(header)]
        if len(cells) < len(header) and fmt == "ppms":
            cells += [""] * (len(header) - len(cells))  # PPMS leaves trailing cells out
        if len(cells) != len(header):
            raise ValueError(f"{path}, line {n}: {len(cells)} fields, header has {len(header)}.")
        rows.append(cells)
        numbers.append(n)
    if not rows:
        raise ValueError(f"{path}: no data rows after the header {header}.")
    return _Table(fmt, header, rows, numbers)


def _find(header: list[str], name: str, path, option: str) -> int:
    """Index of column ``name``: exact match first, then case-insensitive with surrounding whitespace ignored."""
    if name in header:
        return header.index(name)
    hits = [i for i, h in enumerate(header) if h.strip().lower() == name.strip().lower()]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ValueError(f"{path}: column {name!r} ({option}) matches several columns of the header {header}.")
    raise ValueError(f"{path}: no column {name!r} ({option}); the header has {header}.")


def _default(header: list[str], names: Sequence[str]) -> list[int]:
    """Columns whose name, or whose name without its unit (``B_T``, ``Field (Oe)``), is one of ``names``
    (case-insensitive)."""
    wanted = [n.lower() for n in names]
    full = [i for w in wanted for i, h in enumerate(header) if h.strip().lower() == w]
    return full or [i for w in wanted for i, h in enumerate(header) if _split_name(h)[0].lower() == w]


def _numbers(table: _Table, col: int, path) -> tuple[np.ndarray, np.ndarray]:
    """(values, empty) of a column: empty cells are NaN and flagged; text that is not a number, NaN or inf is an
    error naming the line and the column."""
    name = table.header[col]
    out = np.empty(len(table.rows))
    empty = np.zeros(len(table.rows), bool)
    for k, (row, n) in enumerate(zip(table.rows, table.lines)):
        text = row[col].strip()
        if not text:
            empty[k], out[k] = True, np.nan
            continue
        try:
            x = float(text)
        except ValueError:
            raise ValueError(f"{path}, line {n}: column {name!r} is not a number: {text!r}.") from None
        if not math.isfinite(x):
            raise ValueError(f"{path}, line {n}: column {name!r} is {text!r}; a used column must be finite.")
        out[k] = x
    return out, empty


# ---------------------------------------------------------------------------------------------------------
# Conversion to sheet conductance (or conductivity per metre)


def _positive(name, x):
    if x is None:
        return None
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be positive and finite, got {x}.")
    return x


def conversion(quantity: str, unit: str, *, squares: float | None = None, thickness: float | None = None,
               per_metre: bool = False, legacy: bool = False) -> tuple[str, float, str]:
    """How a value x in ``unit`` becomes a sheet conductance (e^2/h per square) or, with ``per_metre``, a 3D
    conductivity (e^2/h per metre): ``("linear", k, text)`` for y = k x or ``("reciprocal", k, text)`` for
    y = k / x, with ``text`` the formula in words.

    ``squares`` is L/W (two-terminal G and R), ``thickness`` d in metres (3D resistivity or conductivity to a
    sheet value, or sheet values to per metre). ``legacy``: a dsigma/sigma column in a conductance unit under
    ``per_metre`` without a thickness is taken as already per metre (the original CSV format). Raises
    ValueError for a unit that does not fit the quantity, or missing or unused geometry."""
    dim, factor = VALUE_UNITS[unit]
    if dim not in _DIMENSIONS[quantity]:
        units = [u for u, (d, _) in VALUE_UNITS.items() if d in _DIMENSIONS[quantity]]
        raise ValueError(f"quantity {quantity!r} needs a unit of {' or '.join(_DIMENSIONS[quantity])} "
                         f"({', '.join(units)}), got {unit!r}.")
    g0 = th.CONDUCTANCE_QUANTUM
    two_terminal = quantity in ("G", "R")
    if two_terminal and squares is None:
        raise ValueError(f"{quantity} needs --length and --width (or --squares): the number of squares L/W turns a "
                         "two-terminal value into a sheet conductance.")
    if not two_terminal and squares is not None:
        raise ValueError(f"--length/--width/--squares apply to G and R only, not to {quantity!r} in {unit!r}.")
    per = "e^2/h per metre" if per_metre else "e^2/h per square"
    # The 2D (sheet) value s in SI, as (kind, k) with s = k x or k/x, and whether thickness was used.
    if quantity in ("dsigma", "sigma") and dim == "conductance":
        if per_metre and thickness is None and legacy:
            return "linear", factor / g0, f"{quantity} in {unit} taken as per metre (no --thickness): x [{unit}/m]"
        kind, k, text = "linear", factor, f"sheet conductance x [{unit}]"
    elif quantity in ("dsigma", "sigma"):  # conductivity
        if per_metre:
            if thickness is not None:
                raise ValueError(f"--thickness is not used for a conductivity in {unit!r} with a 3D model; remove it.")
            return "linear", factor / g0, f"conductivity x [{unit}] in {per}"
        if thickness is None:
            raise ValueError(f"a conductivity in {unit!r} needs --thickness (metres) for a sheet conductance.")
        return "linear", factor * thickness / g0, f"sheet conductance d x, d = {thickness:g} m, x [{unit}]"
    elif quantity == "G":
        kind, k, text = "linear", factor * squares, f"sheet conductance G L/W, L/W = {squares:g}, G [{unit}]"
    elif quantity == "R":
        kind, k, text = "reciprocal", squares / factor, f"sheet conductance L/(W R), L/W = {squares:g}, R [{unit}]"
    elif dim in ("resistance", "sheet resistance"):
        kind, k, text = "reciprocal", 1.0 / factor, f"sheet conductance 1/rho, rho [{unit}] per square"
    else:  # 3D resistivity
        if per_metre:
            if thickness is not None:
                raise ValueError(f"--thickness is not used for a resistivity in {unit!r} with a 3D model; remove it.")
            return "reciprocal", 1.0 / (factor * g0), f"conductivity 1/rho in {per}, rho [{unit}]"
        if thickness is None:
            raise ValueError(f"a resistivity in {unit!r} needs --thickness (metres) for a sheet conductance "
                             "(or a 3D model for a conductivity per metre).")
        return ("reciprocal", thickness / (factor * g0),
                f"sheet conductance d/rho, d = {thickness:g} m, rho [{unit}]")
    if per_metre:
        if thickness is None:
            raise ValueError(f"a 3D model needs --thickness (metres) to turn {quantity!r} in {unit!r} into a "
                             "conductivity per metre.")
        return kind, k / (thickness * g0), f"{text} / d, d = {thickness:g} m, in {per}"
    if thickness is not None:
        raise ValueError(f"--thickness is not used for {quantity!r} in {unit!r} with a 2D model; remove it.")
    return kind, k / g0, f"{text} in {per}"


def _convert(kind, k, x, s, lines, path, column):
    if kind == "linear":
        return k * x, None if s is None else abs(k) * s
    bad = np.flatnonzero(~(x > 0))
    if bad.size:
        raise ValueError(f"{path}, line {lines[bad[0]]}: column {column!r} is {x[bad[0]]:g}; a resistance or "
                         "resistivity must be positive.")
    return k / x, None if s is None else abs(k) * s / x**2  # first-order propagation


# ---------------------------------------------------------------------------------------------------------
# Per curve: sigma(0), Delta sigma, symmetrization


def _zero_weights(field: np.ndarray, name: str) -> tuple[int, int, float]:
    """(i, j, t) with sigma(0) = (1 - t) y[i] + t y[j]: the point at B = 0, or the linear interpolation between
    the nearest points on both sides, both within ZERO_NEIGHBOURHOOD of the curve's max |B|."""
    zero = np.flatnonzero(field == 0)
    if zero.size:
        return int(zero[0]), int(zero[0]), 0.0
    limit = ZERO_NEIGHBOURHOOD * np.max(np.abs(field))
    neg, pos = np.flatnonzero(field < 0), np.flatnonzero(field > 0)
    i = neg[np.argmax(field[neg])] if neg.size else None
    j = pos[np.argmin(field[pos])] if pos.size else None
    if i is None or j is None or -field[i] > limit or field[j] > limit:
        sides = ", ".join(f"nearest B {'< 0' if m is i else '> 0'}: {field[m]:g} T" if m is not None
                          else f"no B {'< 0' if m is i else '> 0'}" for m in (i, j))
        raise ValueError(f"{name}: no B = 0 neighbourhood (smallest |B| = {np.min(np.abs(field)):g} T; {sides}); "
                         f"sigma(0) needs a point at B = 0 or one on each side within {ZERO_NEIGHBOURHOOD:g} x max|B| "
                         f"= {limit:g} T. Fit an offset instead (--offset).")
    t = -field[i] / (field[j] - field[i])
    return int(i), int(j), float(t)


def zero_field_value(field, value, *, name: str = "the data"):
    """sigma(0) of one curve: ``value`` at B = 0, or linearly interpolated between the nearest points on both
    sides of B = 0 when both lie within ``ZERO_NEIGHBOURHOOD`` (5%) of the largest |B|; else ValueError
    ``"{name}: no B = 0 neighbourhood (...)"``. ``value`` has shape (..., n) (leading axes, e.g. realizations,
    are kept); ``field`` (n,)."""
    field, value = np.asarray(field, float), np.asarray(value, float)
    i, j, t = _zero_weights(field, name)
    return (1 - t) * value[..., i] + t * value[..., j]


def symmetrize(field, value, sigma=None, *, name: str = "the data"):
    """Even part in B of one curve: each point at +B averaged with the -B branch interpolated onto it.

    The -B branch (its points mirrored to |B|, and the point at B = 0 if there is one) is interpolated linearly
    onto every +B point inside its range: y_s(B) = (y(B) + y_-(B))/2 with y_- = (1 - t) y(-B_a) + t y(-B_b),
    sigma_s = sqrt(sigma(B)^2 + (1 - t)^2 sigma(-B_a)^2 + t^2 sigma(-B_b)^2)/2. Exact partners (|B + B'| below
    1e-9 max|B|) are averaged as they are, as in ``fit_magnetoconductance(symmetrize=True)``. The point at B = 0
    is kept as it is.

    Returns (field (m,) >= 0, value (m,), sigma (m,) or None, used (n,) bool): ``used`` marks the input points
    that contribute. +B points beyond the -B range, and -B points next to no +B point, are not used."""
    field, value = np.asarray(field, float), np.asarray(value, float)
    sig = None if sigma is None else np.asarray(sigma, float)
    if not (np.any(field > 0) and np.any(field < 0)):
        raise ValueError(f"symmetrize needs fields of both signs, but {name} has B of one sign only.")
    tol = 1e-9 * np.max(np.abs(field))
    minus = np.flatnonzero(field <= 0)
    minus = minus[np.argsort(-field[minus], kind="stable")]  # by |B| ascending (B = 0 first if present)
    m = -field[minus]
    used = np.zeros(field.size, bool)
    out_b, out_y, out_s = [], [], []
    zero = np.flatnonzero(field == 0)
    if zero.size:
        used[zero[0]] = True
        out_b.append(0.0), out_y.append(value[zero[0]]), out_s.append(0.0 if sig is None else sig[zero[0]])
    for p in np.flatnonzero(field > 0):
        b = field[p]
        j = int(np.searchsorted(m, b))
        if j < m.size and abs(m[j] - b) <= tol:
            lo = hi = j
            t = 0.0
        elif j > 0 and abs(m[j - 1] - b) <= tol:
            lo = hi = j - 1
            t = 0.0
        elif 0 < j < m.size:
            lo, hi = j - 1, j
            t = (b - m[lo]) / (m[hi] - m[lo])
        else:
            continue
        used[p] = True
        used[minus[lo]] = True
        if t > 0:
            used[minus[hi]] = True
        y_minus = (1 - t) * value[minus[lo]] + t * value[minus[hi]]
        out_b.append(b), out_y.append(0.5 * (value[p] + y_minus))
        if sig is not None:
            s2 = sig[p] ** 2 + (1 - t) ** 2 * sig[minus[lo]] ** 2 + t**2 * sig[minus[hi]] ** 2
            out_s.append(0.5 * math.sqrt(s2))
    if not any(b > 0 for b in out_b):
        raise ValueError(f"symmetrize: no +B point of {name} lies inside its -B range.")
    return np.array(out_b), np.array(out_y), (None if sig is None else np.array(out_s)), used


def _skip(skipped: dict, reason: str, count: int) -> None:
    if count:
        skipped[reason] = skipped.get(reason, 0) + int(count)


def _per_curve(field, value, sigma, labels, lines, *, subtract, symmetrized, skipped, where):
    """Delta sigma and symmetrization per curve. ``value`` may carry a leading realization axis (n_r, n) when
    ``sigma`` is None and realizations are reduced by the caller. Returns (field, value, sigma, curve, used)."""
    order = list(dict.fromkeys(labels))
    used = np.zeros(field.size, bool)
    out = ([], [], [], [])
    for lab in order:
        sel = np.array([i for i, x in enumerate(labels) if x == lab])
        name = where if lab is None else f"curve {lab!r}"
        if sel.size < 2:
            at = f" (line {lines[sel[0]]})" if lines is not None else ""
            raise ValueError(f"{name} has only one point{at}; a curve needs at least two fields.")
        b, y = field[sel], value[..., sel]
        s = None if sigma is None else sigma[sel]
        uniq, counts = np.unique(b, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"duplicate field values in {name}: B = {uniq[counts > 1][:5].tolist()} T; average "
                             "repeated sweeps first, or give each sweep its own curve label.")
        if subtract:
            y = y - zero_field_value(b, y, name=name)[..., None]
        contributes = sel  # rows that enter some point of the fit
        if symmetrized:
            b2, y2, s2, u = symmetrize(b, y if y.ndim == 1 else y.T, s, name=name)  # realizations: (n, n_r) rows
            y2 = y2 if y.ndim == 1 else y2.T
            _skip(skipped, "+B point beyond the -B range (symmetrize)", np.sum(~u & (b > 0)))
            _skip(skipped, "-B point next to no +B point (symmetrize)", np.sum(~u & (b < 0)))
            contributes = sel[u]
            sel = np.concatenate([sel[b == 0], sel[u & (b > 0)]])  # the order of symmetrize's output points
            b, y, s = b2, y2, s2
        if subtract:  # Delta sigma = 0 at B = 0 by construction: no information of its own
            keep = b != 0
            _skip(skipped, "B = 0 reference point (Delta sigma = 0 by construction)", np.sum(~keep))
            contributes = np.setdiff1d(contributes, sel[~keep])
            b, y, s = b[keep], y[..., keep], None if s is None else s[keep]
        used[contributes] = True
        out[0].append(b), out[1].append(y), out[2].append(s), out[3].append([lab] * b.size)
    field = np.concatenate(out[0])
    value = np.concatenate(out[1], axis=-1)
    sigma = None if sigma is None else np.concatenate(out[2])
    curve = [c for part in out[3] for c in part]
    return field, value, sigma, curve, used


# ---------------------------------------------------------------------------------------------------------
# Entry functions


def read_measurement(path, *, field: str | None = None, value: str | None = None, err: str | None = None,
                     curve: str | None = None, curve_step: float | None = None, field_unit: str | None = None,
                     value_unit: str | None = None, quantity: str | None = None, length: float | None = None,
                     width: float | None = None, squares: float | None = None, thickness: float | None = None,
                     per_metre: bool = False, offset: bool | None = None, symmetrize: bool = False) -> Measurement:
    """Read a magnetoconductance table (comma/tab/semicolon/whitespace text or PPMS .dat) into a Measurement.

    Args:
        path: the file.
        field, value, err, curve: column names (exact, then case-insensitive). Without ``field`` the column ``B``
            or ``field`` (also ``B_T``, ``Field (Oe)``); without ``value`` exactly one of ``dsigma``, ``sigma``,
            ``G`` (with or without a unit); without ``err``/``curve`` the columns ``err``/``curve`` if present.
        curve_step: group a numeric curve column (a measured temperature) by rounding it to this step; the label is
            the rounded number.
        field_unit: T, mT, G, kG, Oe, kOe; default from the header (``(Oe)``, ``_T``), else tesla.
        value_unit: e2h, S, mS, uS, nS, Ohm, mOhm, kOhm, MOhm, Ohm/sq, Ohm*m, Ohm*cm, uOhm*cm, S/m, S/cm
            (``docs/measurements.md#units``); default from the header, else e^2/h for dsigma, sigma and G.
        quantity: dsigma (sheet conductance change), sigma (sheet conductance or 3D conductivity), G (two-terminal
            conductance), R (two-terminal resistance), rho (sheet resistance, or 3D resistivity). Default: from the
            column name (dsigma, sigma, G, R, rho), else from the unit (resistance -> R, Ohm/sq or Ohm*m -> rho,
            conductance -> sigma).
        length, width: the sample's length and width (same unit; squares = L/W), or ``squares`` directly; needed
            by G and R only.
        thickness: d in metres: a 3D resistivity (conductivity) gives the sheet conductance d/rho (d sigma_3D);
            with ``per_metre`` a sheet value gives sigma_3D = sigma/d.
        per_metre: return a 3D conductivity in e^2/h per metre (the ``kawabata`` model) instead of a sheet value.
        offset: True: return sigma(B) and let the fit find sigma(0) per curve. False: subtract sigma(0) per curve
            (``zero_field_value``). None (default): True for every absolute quantity (sigma, G, R, rho): the noise
            of a subtracted sigma(0) shifts its whole curve and biases B_phi (docs/measurements.md#reference). A
            ``dsigma`` column is never subtracted from.
        symmetrize: average +B and the interpolated -B branch per curve (:func:`symmetrize`), after Delta sigma.

    Errors on the sigma(0) reference are not propagated: they shift a whole curve together (fit an offset if
    that matters). Rows with an empty cell in a used column are skipped and counted in ``rows``."""
    path = pathlib.Path(path)
    table = _read_table(path)
    header = table.header
    legacy = value is None and quantity is None

    if field is None:
        hits = _default(header, ("B", "field"))
        if not hits:
            raise ValueError(f"{path}: no field column 'B' (or 'field', 'B_T', 'Field (Oe)') in header {header}; "
                             "name it with --field.")
        f_col = hits[0]
    else:
        f_col = _find(header, field, path, "--field")
    if value is None:
        hits = _default(header, _DEFAULT_VALUES)
        if len(hits) != 1:
            raise ValueError(f"{path}: need exactly one value column of dsigma, sigma, G, R, rho; header has "
                             f"{header}. Name it with --value.")
        v_col = hits[0]
    else:
        v_col = _find(header, value, path, "--value")
    e_col = _find(header, err, path, "--err") if err is not None else next(iter(_default(header, ("err",))), None)
    c_col = (_find(header, curve, path, "--curve") if curve is not None
             else next((i for i, h in enumerate(header) if h.strip().lower() == "curve"), None))

    f_unit, f_from = _unit(field_unit, header[f_col], "field", "T", "--field-unit")
    v_unit, v_from = _unit(value_unit, header[v_col], "value", None, "--value-unit")
    base = _split_name(header[v_col])[0].lower()
    if quantity is None:
        quantity = _QUANTITY_NAMES.get(base) or _QUANTITY_NAMES.get(header[v_col].strip().lower())
        if quantity is None and v_unit is not None:
            quantity = _GUESS[VALUE_UNITS[v_unit][0]]
        if quantity is None:
            raise ValueError(f"{path}: cannot tell what column {header[v_col]!r} holds; give --quantity (one of "
                             f"{', '.join(QUANTITIES)}) and --value-unit.")
    elif quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}.")
    if v_unit is None:
        if quantity in ("R", "rho"):
            raise ValueError(f"no unit for {quantity} in column {header[v_col]!r}; give --value-unit (e.g. Ohm).")
        v_unit = "e2h"
    legacy_offset = legacy and quantity in ("sigma", "G")
    if legacy_offset and squares is None and length is None and width is None and quantity == "G":
        squares = 1.0  # the original CSV format's default --squares 1
    squares = _geometry(squares, length, width)
    thickness = _positive("--thickness", thickness)
    kind, k, text = conversion(quantity, v_unit, squares=squares, thickness=thickness, per_metre=per_metre,
                               legacy=legacy)
    if offset is None:  # fit sigma(0): subtracting one noisy point would shift its whole curve (biased B_phi)
        offset = quantity != "dsigma"
    subtract = quantity != "dsigma" and not offset

    b, b_empty = _numbers(table, f_col, path)
    y, y_empty = _numbers(table, v_col, path)
    s, s_empty = _numbers(table, e_col, path) if e_col is not None else (None, np.zeros(y.size, bool))
    if c_col is None:
        labels, c_empty = [None] * y.size, np.zeros(y.size, bool)
    elif curve_step is not None:
        step = _positive("--curve-step", curve_step)
        c, c_empty = _numbers(table, c_col, path)
        labels = [None if e else format(float(np.round(x / step) * step), ".12g") for x, e in zip(c, c_empty)]
    else:
        labels = [row[c_col].strip() for row in table.rows]
        c_empty = np.array([not lab for lab in labels])
    skipped: dict[str, int] = {}
    keep = np.ones(y.size, bool)
    for col, empty in ((f_col, b_empty), (v_col, y_empty), (e_col, s_empty), (c_col, c_empty)):
        if col is not None:
            _skip(skipped, f"empty cell in {header[col]!r}", np.sum(empty & keep))
            keep &= ~empty
    if not keep.any():
        raise ValueError(f"{path}: every row has an empty cell in a used column ({', '.join(skipped)}).")
    rows = np.flatnonzero(keep)
    lines = [table.lines[i] for i in rows]
    b = b[rows] * FIELD_UNITS[f_unit]
    e_unit = None
    if e_col is not None:
        e_unit, _ = _unit(None, header[e_col], "value", v_unit, "--value-unit")
        if VALUE_UNITS[e_unit][0] != VALUE_UNITS[v_unit][0]:
            raise ValueError(f"column {header[e_col]!r} is in {e_unit!r}, the values in {v_unit!r}.")
        s = s[rows] * (VALUE_UNITS[e_unit][1] / VALUE_UNITS[v_unit][1])
        if np.any(s <= 0):
            raise ValueError(f"{path}, line {lines[int(np.argmax(s <= 0))]}: column {header[e_col]!r} must be "
                             "positive (a standard uncertainty).")
    y, s = _convert(kind, k, y[rows], s, lines, path, header[v_col])
    labels = [labels[i] for i in rows]
    field_out, value_out, sigma_out, curve_out, used = _per_curve(
        b, y, s, labels, lines, subtract=subtract, symmetrized=symmetrize, skipped=skipped, where="the data")
    n_read = len(table.rows)
    info = {
        "file": str(path), "format": table.format,
        "columns": {"field": header[f_col], "value": header[v_col],
                    "err": None if e_col is None else header[e_col], "curve": None if c_col is None else header[c_col]},
        "field_unit": f_unit, "field_unit_from": f_from, "value_unit": v_unit, "value_unit_from": v_from,
        "quantity": quantity, "conversion": text, "squares": squares, "thickness_m": thickness,
        "sigma0": "fitted offset per curve" if offset else ("subtracted per curve" if subtract else "none (dsigma)"),
        "symmetrize": bool(symmetrize), "curve_step": curve_step,
    }
    return Measurement(field_out, value_out, sigma_out, None if c_col is None else tuple(curve_out), bool(offset),
                       bool(per_metre), {"read": n_read, "used": int(used.sum()), "skipped": skipped}, info)


def _geometry(squares, length, width):
    if squares is not None and (length is not None or width is not None):
        raise ValueError("give --squares or --length and --width, not both.")
    if squares is not None:
        return _positive("--squares", squares)
    if (length is None) != (width is None):
        raise ValueError("--length and --width go together (the number of squares is L/W).")
    if length is None:
        return None
    return _positive("--length", length) / _positive("--width", width)


def read_run(run_dir, *, lattice_constant: float | None, ensembles: Sequence[str] | None = None,
             per_metre: bool = False, offset: bool = False, symmetrize: bool = False) -> Measurement:
    """Read the ensemble-mean conductance against flux of a ``difftransport run`` directory.

    Every ensemble with a ``flux`` grid axis and the ``conductance`` observable is a curve (labelled with its name;
    with other grid axes, one curve per combination, e.g. ``wl[energy=0.5]``). Flux per plaquette becomes field
    with ``theory.field_from_flux(flux, lattice_constant)`` (a in metres). The conductance G (e^2/h, summed over
    spin) becomes a sheet conductance G L/W (:func:`squares`: L, W in sites for a ``strip``; for the honeycomb
    ribbons W from the area per site), or with ``per_metre`` a conductivity G L/(W H a) in e^2/h per metre for a
    ``bar`` (height H). Delta sigma is formed per realization,
    G_r(B) - G_r(0) (``zero_field_value``), and the error of each point is the standard error of the mean of
    these differences (common random numbers make it much smaller than that of G itself); with ``offset`` the
    means of G and their standard errors are returned instead. Points of one curve share realizations, so they
    are correlated; the fit treats them as independent.

    Not covered (an error when named in ``ensembles``, else counted as skipped points): ensembles without a flux
    grid or without conductance, and the chain (no sheet conductance)."""
    run_dir = pathlib.Path(run_dir)
    from .store import RunDirectoryError, stored_config

    try:
        record = stored_config(run_dir)
    except RunDirectoryError as err:
        raise ValueError(str(err)) from None
    if record is None:
        raise ValueError(f"{run_dir}: is a directory without config.json, not a run directory of difftransport run.")
    if lattice_constant is None:
        raise ValueError(f"{run_dir} is a run directory: give --lattice-constant (metres) to turn flux per plaquette "
                         "into field.")
    a = _positive("--lattice-constant", lattice_constant)
    config = record["config"]["ensembles"]
    names = list(config) if not ensembles else list(ensembles)
    unknown = [n for n in names if n not in config]
    if unknown:
        raise ValueError(f"{run_dir}: no ensemble {unknown[0]!r}; the run has {list(config)}.")
    want = ("bar",) if per_metre else _SHEET_LATTICES
    skipped: dict[str, int] = {}
    fields, values, sigmas, curves = [], [], [], []
    n_read = n_used = 0
    for name in names:
        entry = config[name]
        grid = entry["grid"]
        lattice = entry["sample"]["lattice"]
        points = int(np.prod([len(v) for v in grid.values()], dtype=int))
        problem = None
        if "flux" not in grid:
            problem = "no flux grid"
        elif "conductance" not in entry["observables"]:
            problem = "no conductance observable"
        elif lattice not in want:
            problem = (f"lattice {lattice!r} (the {'3D kawabata model' if per_metre else '2D models'} read "
                       f"{' and '.join(want)} ensembles)")
        if problem:
            if ensembles:
                raise ValueError(f"{run_dir}: ensemble {name!r} cannot be fitted: {problem}.")
            _skip(skipped, f"ensemble {name!r}: {problem}", points)
            n_read += points
            continue
        path = run_dir / "results" / f"{name}.npz"
        if not path.exists():
            raise ValueError(f"{path}: missing; the run is not finished (rerun difftransport run on {run_dir}).")
        with np.load(path) as data:
            raw = np.asarray(data["conductance"], float)
        axes = list(grid)
        if raw.ndim != 1 + len(axes):
            raise ValueError(f"{path}: conductance has shape {raw.shape}, expected (realizations, *grid).")
        if raw.shape[0] < 2:
            raise ValueError(f"{path}: {raw.shape[0]} realization; standard errors need at least 2.")
        k = squares(entry["sample"])
        if per_metre:
            k /= entry["sample"]["height"] * a
        f_axis = axes.index("flux")
        raw = np.moveaxis(raw, 1 + f_axis, -1) * k  # (N, *other, flux)
        others = [ax for ax in axes if ax != "flux"]
        b = np.asarray(th.field_from_flux(np.asarray(grid["flux"], float), a), float)
        for idx in np.ndindex(*raw.shape[1:-1]):
            tag = ",".join(f"{ax}={grid[ax][i]:g}" for ax, i in zip(others, idx) if len(grid[ax]) > 1)
            label = f"{name}[{tag}]" if tag else name
            g = raw[(slice(None), *idx)]  # (N, n_flux)
            fb, mean, err, used = _reduce(b, g, label, subtract=not offset, symmetrized=symmetrize, skipped=skipped)
            fields.append(fb), values.append(mean), sigmas.append(err)
            curves += [label] * fb.size
            n_read += b.size
            n_used += used
    if not fields:
        raise ValueError(f"{run_dir}: no ensemble with a flux grid and conductance on a {want} lattice "
                         f"({'; '.join(skipped) or 'none'}).")
    unit = "e^2/h per metre" if per_metre else "e^2/h per square"
    info = {"file": str(run_dir), "format": "run directory", "lattice_constant_m": a,
            "conversion": (f"B = flux h/(e a^2); {'G L/(W H a)' if per_metre else 'G L/W'} in {unit}, L, W, H in "
                           "units of a (W = sites per slice x area per site / slice length)"),
            "quantity": "G", "sigma0": "fitted offset per curve" if offset else "subtracted per realization",
            "errors": "standard error of the mean over realizations", "symmetrize": bool(symmetrize)}
    return Measurement(np.concatenate(fields), np.concatenate(values), np.concatenate(sigmas), tuple(curves),
                       bool(offset), bool(per_metre), {"read": n_read, "used": n_used, "skipped": skipped}, info)


_SHEET_LATTICES = ("strip", "zigzag_ribbon", "armchair_ribbon")
# Area per site in units of a^2 (lattice constant a = 1): square and cubic 1; honeycomb: a hexagon of side
# 1/sqrt(3) (the C-C distance) has area sqrt(3)/2 and holds two sites.
_AREA_PER_SITE = {"strip": 1.0, "bar": 1.0, "zigzag_ribbon": math.sqrt(3) / 4, "armchair_ribbon": math.sqrt(3) / 4}


def squares(spec: dict) -> float:
    """L/W, the number of squares of a run's sample (a normalized ``[sample]`` table): L = slices x slice length,
    W = sites per slice x area per site / slice length (both in units of a), so that L W is the sample's area.
    For a strip this is length/width in sites; for a zigzag ribbon of n chains W = n sqrt(3)/2 and for an armchair
    ribbon of n dimer lines W = n/2, the widths of n rows of hexagons."""
    from .ensemble import make_sample

    lattice = make_sample(spec).lattice
    length = spec["length"] * lattice.period
    width = lattice.sites * _AREA_PER_SITE[spec["lattice"]] / lattice.period
    return length / width


def _reduce(field, g, label, *, subtract, symmetrized, skipped):
    """Per-realization Delta sigma (or sigma) of one curve, reduced to mean and standard error of the mean."""
    b, y, _, _, used = _per_curve(field, g, None, [label] * field.size, None, subtract=subtract,
                                  symmetrized=symmetrized, skipped=skipped, where=f"curve {label!r}")
    n = y.shape[0]
    return b, y.mean(0), y.std(0, ddof=1) / math.sqrt(n), int(used.sum())
