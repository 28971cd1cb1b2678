"""Reading measurement files for ``difftransport fit`` (difftransport._runs.measurement, docs/measurements.md).

Every file is written here from a known Delta sigma(B) (theory.hln) and the read-back values are compared with the
conversion done by hand from SI constants typed in below (not from the reader's unit tables): field units through
their definitions in tesla, e^2/h = e^2/h with the exact 2019 SI values of e and h."""

import json
import math
import re

import numpy as np
import pytest
from conftest import run_fit_cli

from difftransport._core import theory as th
from difftransport._runs import measurement as ms

E = 1.602176634e-19  # C, exact
H = 6.62607015e-34  # J s, exact
G0 = E**2 / H  # e^2/h in siemens
OE = 4e-7 * math.pi * (1e3 / (4 * math.pi))  # 1 Oe = 1000/(4 pi) A/m; mu0 H = 1e-4 T
GAUSS = 1e-4  # T

FIELD = np.linspace(0.02, 1.0, 25)  # tesla
B_PHI = {"2": 0.01, "5": 0.03, "10": 0.08}
B_SO = 0.2


def num(x):
    """Shortest text that reads back as the same float64."""
    return repr(float(x))


def dsigma(b, b_phi):
    """The known magnetoconductance, e^2/h per square (evaluated on one padded shape: one compilation)."""
    b = np.asarray(b, float)
    padded = np.ones(64)
    padded[:b.size] = b
    return np.asarray(th.hln(padded, np.float64(b_phi), np.float64(B_SO)), float)[:b.size]


def sweep():
    """-1 ... 1 T with B = 0: 51 points."""
    return np.concatenate([-FIELD[::-1], [0.0], FIELD])




# ---------------------------------------------------------------------------------------------------------
# Formats and units


def test_csv_with_unit_suffixes_reads_back_exactly(tmp_path):
    """The header of the task, `T_K,B_T,dsigma_e2h`: the unit suffixes are read, dsigma is passed as is, and
    three temperatures are three curves."""
    rows = ["T_K,B_T,dsigma_e2h"]
    expect = []
    for label, b_phi in B_PHI.items():
        y = dsigma(FIELD, b_phi)
        rows += [f"{label},{num(b)},{num(v)}" for b, v in zip(FIELD, y)]
        expect.append(y)
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    m = ms.read_measurement(path, curve="T_K")
    np.testing.assert_array_equal(m.field, np.tile(FIELD, 3))
    np.testing.assert_allclose(m.value, np.concatenate(expect), rtol=1e-12, atol=0)
    assert m.curve == tuple(np.repeat(list(B_PHI), FIELD.size)) and m.sigma is None and not m.offset
    assert m.rows == {"read": 75, "used": 75, "skipped": {}}
    assert m.info["field_unit"] == "T" and m.info["value_unit"] == "e2h" and m.info["quantity"] == "dsigma"


def test_tab_separated_resistance_in_kohm_against_field_in_mt(tmp_path):
    """R(B) in kOhm of a Hall bar L = 30, W = 10 (um), field in mT: sigma = L/(W R), Delta sigma formed against the
    point at B = 0 (which is then dropped: it is 0 by construction)."""
    b = sweep()
    sigma0 = 50.0  # e^2/h per square
    r_kohm = 30.0 / (10.0 * (sigma0 + dsigma(b, 0.03)) * G0) / 1e3
    path = tmp_path / "data.txt"
    path.write_text("Field (mT)\tR (kOhm)\n" + "".join(f"{num(x * 1e3)}\t{num(r)}\n" for x, r in zip(b, r_kohm)))
    m = ms.read_measurement(path, length=30.0, width=10.0, offset=False)
    sig = 30.0 / (10.0 * r_kohm * 1e3) / G0
    expect = sig - sig[b == 0]
    keep = b != 0
    np.testing.assert_allclose(m.field, b[keep] * 1e3 * 1e-3, rtol=1e-15)
    np.testing.assert_allclose(m.value, expect[keep], rtol=1e-12, atol=1e-13 * np.max(sig))
    np.testing.assert_allclose(m.value, dsigma(b[keep], 0.03), rtol=1e-9)  # the known curve, through rounding
    assert m.info["format"] == "tab-separated" and m.info["quantity"] == "R" and m.info["value_unit"] == "kOhm"
    assert m.rows == {"read": 51, "used": 50,
                      "skipped": {"B = 0 reference point (Delta sigma = 0 by construction)": 1}}


def test_whitespace_separated_sheet_resistance_with_comments_and_oersted(tmp_path):
    """`B_Oe rho_mOhm`: rho is the sheet resistance per square, sigma = 1/rho; comment lines are ignored anywhere."""
    b = sweep()
    rho_mohm = 1.0 / ((80.0 + dsigma(b, 0.01)) * G0) * 1e3
    lines = ["# sample A, 2 K", "B_Oe   rho_mOhm"]
    for k, (x, r) in enumerate(zip(b, rho_mohm)):
        lines.append(f"  {num(x / OE)}    {num(r)}")
        if k == 10:
            lines.append("# the magnet paused here")
    path = tmp_path / "data.dat"
    path.write_text("\n".join(lines) + "\n")
    m = ms.read_measurement(path, offset=False)
    sig = 1.0 / (rho_mohm * 1e-3) / G0
    keep = b != 0
    np.testing.assert_allclose(m.field, b[keep], rtol=1e-14)
    np.testing.assert_allclose(m.value, (sig - sig[b == 0])[keep], rtol=1e-12, atol=1e-13 * np.max(sig))
    assert m.info["format"] == "whitespace-separated" and m.info["quantity"] == "rho" and m.rows["read"] == 51


PPMS_HEADER = """[Header]
; Quantum Design PPMS data file
TITLE,Hall bar 7
BYAPP,RESISTIVITY,1.2
INFO,Sample 1,SAMPLE1_NAME
FILEOPENTIME,3761283762.59,05/12/2019,1:42 PM
[Data]
Comment,Time Stamp (sec),Temperature (K),Field (Oe),Bridge 1 Resistance (Ohms),Bridge 1 Std. Dev. (Ohms),\
Bridge 2 Resistance (Ohms)
"""


def _ppms(tmp_path, *, squares=2.5, r0=400.0, noise=None, seed=0):
    """A PPMS .dat file: three temperatures (measured, +-5 mK), R of a bar with L/W = ``squares``; the 2 K sweep
    has no point at B = 0 but one at -7 Oe and one at +4 Oe. Blank cells: two rows without a field, three without
    R (skipped), Bridge 2 mostly empty and a comment in the first row (not used, not skipped).

    Returns (path, rows with their numbers) for the hand conversion."""
    rng = np.random.default_rng(seed)
    lines, table = [], []
    t = 0.0
    for label, b_phi in B_PHI.items():
        b = sweep() / OE  # Oe
        if label == "2":
            b = np.concatenate([b[b < 0], [-7.0, 4.0], b[b > 0]])
        sigma = 1.0 / (r0 * G0) * squares + dsigma(b * OE, b_phi)  # e^2/h per square
        r = squares / (sigma * G0)
        dr = np.full(b.size, 1e-5 * r0)
        if noise is not None:
            r = r + dr * rng.normal(size=b.size)
        for k, (x, y, e) in enumerate(zip(b, r, dr)):
            t += 1.3
            temp = float(label) + 0.005 * rng.uniform(-1, 1)
            cells = ["sweep start" if t == 1.3 else "", f"{t:.1f}", f"{temp:.4f}", num(x), num(y), num(e), ""]
            if label == "5" and k in (3, 30):
                cells[3] = ""  # no field reading
            elif label == "10" and k in (0, 17, 40):
                cells[4] = cells[5] = ""  # no resistance reading
            else:
                table.append((label, x, y, e))
            if k % 10 == 0:
                cells[6] = "123.4"
            lines.append(",".join(cells))
    path = tmp_path / "sweep.dat"
    path.write_text(PPMS_HEADER + "\n".join(lines) + "\n")
    return path, table


def test_ppms_file_with_empty_cells_counts_every_skipped_row(tmp_path):
    squares = 2.5
    path, table = _ppms(tmp_path, squares=squares)
    m = ms.read_measurement(path, field="Field (Oe)", value="bridge 1 resistance (ohms)", curve="Temperature (K)",
                            err="Bridge 1 Std. Dev. (Ohms)", curve_step=0.1, length=5.0, width=2.0,
                            offset=False)
    assert m.info["format"] == "ppms" and m.info["field_unit"] == "Oe" and m.info["value_unit"] == "Ohm"
    assert m.rows == {"read": 52 + 51 + 51, "used": 154 - 5 - 2, "skipped": {
        "empty cell in 'Field (Oe)'": 2, "empty cell in 'Bridge 1 Resistance (Ohms)'": 3,
        "B = 0 reference point (Delta sigma = 0 by construction)": 2}}
    assert sorted(set(m.curve)) == ["10", "2", "5"]
    for label in B_PHI:
        rows = [(x, y, e) for lab, x, y, e in table if lab == label]
        b = np.array([x for x, _, _ in rows]) * 1e-4  # Oe -> T
        r = np.array([y for _, y, _ in rows])
        dr = np.array([e for _, _, e in rows])
        sig = 2.5 / r / G0  # L/W = 5/2
        err = 2.5 * dr / r**2 / G0
        if label == "2":  # sigma(0) between -7 Oe and +4 Oe: weight 7/11 on the +4 Oe point
            i, j = np.flatnonzero(np.isclose(b, -7e-4)), np.flatnonzero(np.isclose(b, 4e-4))
            s0 = sig[i] * 4 / 11 + sig[j] * 7 / 11
            keep = np.ones(b.size, bool)
        else:
            s0, keep = sig[b == 0], b != 0
        sel = np.array(m.curve) == label
        np.testing.assert_allclose(m.field[sel], b[keep], rtol=1e-14)
        np.testing.assert_allclose(m.value[sel], (sig - s0)[keep], rtol=1e-12, atol=1e-13 * np.max(sig))
        np.testing.assert_allclose(m.sigma[sel], err[keep], rtol=1e-12)


@pytest.mark.parametrize(
    "unit, si",
    [("T", 1.0), ("mT", 1e-3), ("Oe", OE), ("G", GAUSS), ("kG", 1e3 * GAUSS), ("Tesla", 1.0), ("kOe", 1e3 * OE)],
)
def test_field_units(tmp_path, unit, si):
    path = tmp_path / "d.csv"
    path.write_text("B,dsigma\n-3,0.5\n0,0\n7.5,0.25\n")
    m = ms.read_measurement(path, field_unit=unit)
    np.testing.assert_allclose(m.field, np.array([-3.0, 0.0, 7.5]) * si, rtol=1e-15)


@pytest.mark.parametrize(
    "header, quantity, k_si, reciprocal",
    [
        ("G (mS)", "G", 1e-3 * 4.0, False),  # sigma = G L/W, L/W = 4
        ("G (uS)", "G", 1e-6 * 4.0, False),
        ("G (\u00b5S)", "G", 1e-6 * 4.0, False),
        ("G (e^2/h)", "G", G0 * 4.0, False),
        ("sigma (S)", "sigma", 1.0, False),
        ("R (Ohms)", "R", 1.0 / 4.0, True),  # sigma = L/(W R)
        ("R (\u03a9)", "R", 1.0 / 4.0, True),
        ("R (mOhm)", "R", 1e-3 / 4.0, True),
        ("R (kOhm)", "R", 1e3 / 4.0, True),
        ("R (MOhm)", "R", 1e6 / 4.0, True),
        ("rho (Ohm/sq)", "rho", 1.0, True),
    ],
)
def test_value_units_and_geometry(tmp_path, header, quantity, k_si, reciprocal):
    """x in the header's unit -> sheet conductance in e^2/h: k x / G0 or 1/(k x G0); read with --offset so that the
    absolute values come back."""
    x = np.array([2.0, 3.0, 5.0])
    path = tmp_path / "d.csv"
    path.write_text(f"B,{header}\n" + "".join(f"{b},{v}\n" for b, v in zip([-1.0, 0.0, 1.0], x)))
    geometry = dict(length=8.0, width=2.0) if quantity in ("G", "R") else {}
    m = ms.read_measurement(path, value=header, offset=True, **geometry)
    expect = 1.0 / (k_si * x) / G0 if reciprocal else k_si * x / G0
    np.testing.assert_allclose(m.value, expect, rtol=1e-15)
    assert m.info["quantity"] == quantity and m.offset


def test_three_dimensional_resistivity_as_sheet_value_and_per_metre(tmp_path):
    """rho in Ohm cm of a film d = 20 nm: sheet conductance d/rho (2D models), or conductivity 1/rho in e^2/h per
    metre (kawabata, per_metre=True, no thickness)."""
    rho = np.array([1.5e-3, 1.4e-3, 1.5e-3])  # Ohm cm
    path = tmp_path / "d.csv"
    path.write_text("Field (T),Resistivity (Ohm-cm)\n" + "".join(f"{b},{num(r)}\n" for b, r in zip([-1, 0, 1], rho)))
    sheet = ms.read_measurement(path, value="Resistivity (Ohm-cm)", thickness=20e-9, offset=True)
    np.testing.assert_allclose(sheet.value, 20e-9 / (rho * 1e-2) / G0, rtol=1e-15)
    bulk = ms.read_measurement(path, value="Resistivity (Ohm-cm)", per_metre=True, offset=True)
    np.testing.assert_allclose(bulk.value, 1.0 / (rho * 1e-2) / G0, rtol=1e-15)
    assert bulk.per_metre and "per metre" in bulk.info["conversion"] and "d/rho" in sheet.info["conversion"]
    # A 3D model with a two-terminal resistance needs the thickness: sigma_3D = L/(W R d).
    path.write_text("B,R (Ohm)\n-1,10\n0,9\n1,10\n")
    r3 = ms.read_measurement(path, per_metre=True, thickness=1e-6, length=3.0, width=1.0, offset=False)
    np.testing.assert_allclose(r3.value, 3.0 / (np.array([10.0, 10.0]) * 1e-6 * G0) - 3.0 / (9.0 * 1e-6 * G0),
                               rtol=1e-12)


def test_unit_spellings():
    for text, unit in [("Ohms", "Ohm"), ("ohm", "Ohm"), ("\u03a9", "Ohm"), ("k\u03a9", "kOhm"), ("MOhm", "MOhm"),
                       ("mOhm", "mOhm"), ("\u00b5S", "uS"), ("e2/h", "e2h"), ("Ohm-cm", "Ohm*cm"),
                       ("Ohm cm", "Ohm*cm"), ("Ohm per square", "Ohm/sq"), ("siemens", "S")]:
        assert ms.parse_unit(text, "value") == unit, text
    assert ms.parse_unit("oe", "field") == "Oe" and ms.parse_unit("gauss", "field") == "G"


# ---------------------------------------------------------------------------------------------------------
# sigma(0) and symmetrization


def test_zero_field_value_interpolates_inside_the_neighbourhood_only():
    b = np.array([-1.0, -0.02, 0.03, 1.0])
    y = np.array([5.0, 2.0, 7.0, 1.0])
    assert ms.zero_field_value(b, y) == pytest.approx(2.0 * 0.6 + 7.0 * 0.4, rel=1e-15)  # t = 0.02/0.05
    with pytest.raises(ValueError, match=r"curve '4.2': no B = 0 neighbourhood \(smallest \|B\| = 0.06 T"):
        ms.zero_field_value(np.array([-1.0, -0.06, 0.07, 1.0]), y, name="curve '4.2'")
    with pytest.raises(ValueError, match=r"no B = 0 neighbourhood \(smallest \|B\| = 0.01 T; no B < 0"):
        ms.zero_field_value(np.array([0.01, 0.5, 1.0]), y[:3])


def test_symmetrize_interpolates_the_negative_branch():
    """y = a|B| + c B: the -B branch is linear in |B|, so its interpolation is exact and the even part a|B| comes
    back to rounding. Errors: sigma_s = sqrt(s+^2 + (1-t)^2 s_a^2 + t^2 s_b^2)/2."""
    plus = np.array([0.1, 0.25, 0.4, 0.7, 0.95])
    minus = -np.array([0.0, 0.12, 0.3, 0.55, 0.8])  # B = 0 included; 0.95 is beyond the -B range
    b = np.concatenate([minus, plus])
    y = 3.0 * np.abs(b) + 0.7 * b
    s = np.linspace(0.01, 0.02, b.size)
    fb, fy, fs, used = ms.symmetrize(b, y, s)
    np.testing.assert_allclose(fb, [0.0, 0.1, 0.25, 0.4, 0.7])
    np.testing.assert_allclose(fy, 3.0 * fb, rtol=1e-14, atol=1e-15)
    t = (0.25 - 0.12) / (0.3 - 0.12)  # B = 0.25 between -0.12 (index 1) and -0.3 (index 2)
    assert fs[2] == pytest.approx(0.5 * math.sqrt(s[6] ** 2 + (1 - t) ** 2 * s[1] ** 2 + t**2 * s[2] ** 2), rel=1e-14)
    assert used.tolist() == [True] * 5 + [True] * 4 + [False]


def test_symmetrize_with_exact_partners_equals_the_fit_core():
    """The fit core's own symmetrization (exact partners only) gives the same points."""
    from difftransport._core.fit import _symmetrize

    b = sweep()
    rng = np.random.default_rng(1)
    y, s = rng.normal(size=b.size), rng.uniform(0.01, 0.02, b.size)
    fb, fy, fs, used = ms.symmetrize(b, y, s)
    cb, cy, cs = _symmetrize(b, y, s, 1e-9)
    order = np.argsort(cb)
    np.testing.assert_allclose(fb, cb[order], rtol=1e-15)
    np.testing.assert_allclose(fy, cy[order], rtol=1e-14)
    np.testing.assert_allclose(fs, cs[order], rtol=1e-14)
    assert used.all()


def test_symmetrized_reading_counts_the_unpaired_points(tmp_path):
    b = np.array([-0.9, -0.6, -0.3, -0.04, 0.03, 0.2, 0.5, 0.85])
    path = tmp_path / "d.csv"
    path.write_text("B,sigma\n" + "".join(f"{x},{10 + 2 * abs(x) + x}\n" for x in b))
    m = ms.read_measurement(path, quantity="sigma", symmetrize=True, offset=False)
    # sigma(0): 10 + 2|B| + B interpolated between -0.04 (10.04) and 0.03 (10.09), weight 4/7 on the latter
    s0 = 10.04 + 0.05 * 4 / 7
    np.testing.assert_allclose(m.field, [0.2, 0.5, 0.85])
    np.testing.assert_allclose(m.value, 10 + 2 * m.field - s0, rtol=1e-13)
    assert m.rows == {"read": 8, "used": 7, "skipped": {"+B point beyond the -B range (symmetrize)": 1}}


def test_symmetrize_after_subtracting_uses_the_zero_point_as_start_of_the_negative_branch(tmp_path):
    """Delta sigma(0) = 0 exactly starts the -B branch, so +0.1 T (below the smallest -B, 0.2 T) is paired; the
    B = 0 point itself is counted as the reference and not fitted."""
    b = np.array([-0.9, -0.5, -0.2, 0.0, 0.1, 0.3, 0.6, 0.9])
    path = tmp_path / "d.csv"
    path.write_text("B,sigma\n" + "".join(f"{x},{10 + 2 * abs(x) + x}\n" for x in b))
    m = ms.read_measurement(path, quantity="sigma", symmetrize=True, offset=False)
    np.testing.assert_allclose(m.field, [0.1, 0.3, 0.6, 0.9])
    np.testing.assert_allclose(m.value, 2 * m.field, rtol=1e-13)
    assert m.rows == {"read": 8, "used": 7, "skipped": {"B = 0 reference point (Delta sigma = 0 by construction)": 1}}


# ---------------------------------------------------------------------------------------------------------
# Named errors


BAD = [
    (None, {}, r"missing\.csv: no such file"),
    ("", {}, r"empty file"),
    ("# only a comment\n\n", {}, r"empty file \(only comments\)"),
    ("B,dsigma\n", {}, r"no data rows after the header"),
    ("T (K),Field (Oe),R (Ohm)\n2,0,1\n", {"field": "B (T)"},
     r"no column 'B \(T\)' \(--field\); the header has \['T \(K\)', 'Field \(Oe\)', 'R \(Ohm\)'\]"),
    ("B,dsigma,curve\n0.1,1,a\n0.2,x1,a\n", {}, r"line 3: column 'dsigma' is not a number: 'x1'"),
    ("B,dsigma,curve\n0.1,1,a\n0.2,2,a\n0.3,3,b\n", {}, r"curve 'b' has only one point \(line 4\)"),
    ("B,dsigma\n0.1,1\n0.2,nan\n", {}, r"line 3: column 'dsigma' is 'nan'; a used column must be finite"),
    ("B,dsigma\n0.1,1\n-inf,2\n", {}, r"line 3: column 'B' is '-inf'"),
    ("Field (furlong),dsigma\n0.1,1\n0.2,2\n", {}, r"column 'Field \(furlong\)': unknown field unit 'furlong'"),
    ("B,dsigma\n0.1,1\n0.2,2\n", {"value_unit": "parsec"}, r"--value-unit 'parsec': unknown value unit"),
    ("B,R (Ohm)\n-0.1,1\n0.2,2\n", {}, r"R needs --length and --width"),
    ("B,R (Ohm)\n-0.1,1\n0.2,2\n", {"length": 2.0, "width": 0.0}, r"--width must be positive and finite, got 0.0"),
    ("B,R (Ohm)\n-0.1,1\n0.2,2\n", {"length": 2.0}, r"--length and --width go together"),
    ("B,rho (Ohm*cm)\n-0.1,1\n0.2,2\n", {}, r"resistivity in 'Ohm\*cm' needs --thickness"),
    ("B,rho (Ohm*cm)\n-0.1,1\n0.2,2\n", {"thickness": -1e-9}, r"--thickness must be positive"),
    ("B,R (S)\n-0.1,1\n0.2,2\n", {"length": 1.0, "width": 1.0}, r"quantity 'R' needs a unit of resistance"),
    ("B,dsigma\n-0.1,1\n0.2,2\n", {"length": 1.0, "width": 1.0}, r"apply to G and R only"),
    ("B,R (Ohm),curve\n0.1,1,4.2\n0.5,2,4.2\n1,3,4.2\n", {"squares": 1.0, "offset": False},
     r"curve '4.2': no B = 0 neighbourhood \(smallest \|B\| = 0.1 T"),
    ("B,R (Ohm)\n-0.1,0\n0.1,2\n", {"squares": 1.0}, r"line 2: column 'R \(Ohm\)' is 0; a resistance .* positive"),
    ("B,dsigma\n0.1,1\n0.1,2\n", {}, r"duplicate field values in the data: B = \[0.1\]"),
    ("[Header]\nTITLE,x\n", {}, r"PPMS file without a \[Data\] section"),
]


@pytest.mark.parametrize("content, options, match", BAD)
def test_malformed_input_is_a_named_error(tmp_path, content, options, match):
    path = tmp_path / "missing.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        ms.read_measurement(path, **options)
    assert "\n" not in str(info.value)


_FLAGS = {"field": "--field", "value_unit": "--value-unit", "length": "--length", "width": "--width",
          "thickness": "--thickness", "squares": "--squares"}


@pytest.mark.parametrize("content, options, match", BAD)
def test_cli_gives_one_error_line_and_exit_2(tmp_path, capsys, content, options, match):
    path = tmp_path / "missing.csv"
    if content is not None:
        path.write_text(content)
    extra = [("--offset" if v else "--no-offset") if k == "offset" else f"{_FLAGS[k]}={v}" for k, v in options.items()]
    assert run_fit_cli([path, "--out", tmp_path / "o", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("difftransport fit: error:") and err.count("\n") == 1 and re.search(match, err), err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------------
# Run directories


RUN = """
[run]
seed = 1
realizations = 5
chunk = 5

[ensembles.wl]
[ensembles.wl.sample]
lattice = "strip"
width = 4
length = 12
[ensembles.wl.model]
energy = 0.5
[ensembles.wl.grid]
flux = [0.0, 0.001, 0.002, 0.004]
energy = [0.3, 0.5]

[ensembles.clean]
[ensembles.clean.sample]
lattice = "strip"
width = 4
length = 12
[ensembles.clean.model]
energy = 0.5
"""


def _run_dir(tmp_path, conductance):
    """A run directory written with the store's own writers (config.json, results/NAME.npz) holding the given
    realizations of conductance, shape (5, 4 fluxes, 2 energies), for ensemble 'wl'; 'clean' has no flux grid."""
    from difftransport._runs import config as _config
    from difftransport._runs import store as _store

    (tmp_path / "run.toml").write_text(RUN)
    config = _config.load(tmp_path / "run.toml")
    store = _store.RunDirectory(tmp_path / "run", config, log=lambda *_: None)
    store.prepare()
    flux = np.array(config["ensembles"]["wl"]["grid"]["flux"])
    _store.atomic_savez(store.results_path("wl"), index=np.arange(5), grid_flux=flux,
                        grid_energy=np.array([0.3, 0.5]), conductance=conductance)
    _store.atomic_savez(store.results_path("clean"), index=np.arange(5), conductance=np.ones(5))
    return store.path, flux


def test_run_directory_gives_sheet_conductance_against_field(tmp_path):
    rng = np.random.default_rng(2)
    g = 2.0 + rng.normal(size=(5, 4, 2))
    run, flux = _run_dir(tmp_path, g)
    a = 5e-9
    m = ms.read_run(run, lattice_constant=a)
    b = flux * H / E / a**2  # T
    assert m.curve == ("wl[energy=0.3]",) * 3 + ("wl[energy=0.5]",) * 3
    for k in range(2):
        d = (g[:, 1:, k] - g[:, :1, k]) * 12 / 4  # per realization, L/W = 3
        np.testing.assert_allclose(m.field[3 * k:3 * k + 3], b[1:], rtol=1e-14)
        np.testing.assert_allclose(m.value[3 * k:3 * k + 3], d.mean(0), rtol=1e-13)
        np.testing.assert_allclose(m.sigma[3 * k:3 * k + 3], d.std(0, ddof=1) / math.sqrt(5), rtol=1e-13)
    assert m.rows == {"read": 9, "used": 6, "skipped": {
        "B = 0 reference point (Delta sigma = 0 by construction)": 2, "ensemble 'clean': no flux grid": 1}}
    off = ms.read_run(run, lattice_constant=a, offset=True)
    np.testing.assert_allclose(off.value[:4], g[:, :, 0].mean(0) * 3, rtol=1e-14)
    np.testing.assert_allclose(off.sigma[:4], g[:, :, 0].std(0, ddof=1) * 3 / math.sqrt(5), rtol=1e-13)
    with pytest.raises(ValueError, match=r"run directory: give --lattice-constant"):
        ms.read_run(run, lattice_constant=None)
    with pytest.raises(ValueError, match=r"ensemble 'clean' cannot be fitted: no flux grid"):
        ms.read_run(run, lattice_constant=a, ensembles=["clean"])
    with pytest.raises(ValueError, match=r"the 3D kawabata model read bar ensembles"):
        ms.read_run(run, lattice_constant=a, ensembles=["wl"], per_metre=True)


@pytest.mark.parametrize(
    "extra, match",
    [
        ([], r"is a run directory: give --lattice-constant"),
        (["--lattice-constant", "5e-9", "--field", "B"], r"run directory; --field apply to measurement files only"),
        (["--lattice-constant", "5e-9", "--ensemble", "clean"], r"ensemble 'clean' cannot be fitted: no flux grid"),
        (["--lattice-constant", "0"], r"--lattice-constant must be positive"),
    ],
)
def test_cli_run_directory_errors(tmp_path, capsys, extra, match):
    run, _ = _run_dir(tmp_path, np.ones((5, 4, 2)))
    assert run_fit_cli([run, "--out", tmp_path / "o", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("difftransport fit: error:") and err.count("\n") == 1 and re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_read_csv_keeps_its_original_behaviour(tmp_path):
    """The original reader's contract: a G column is G x squares with an offset to fit, siemens divided by e^2/h."""
    from difftransport._cli.fit import read_csv

    path = tmp_path / "g.csv"
    path.write_text("field,G,err,curve\n-0.5,2e-3,1e-6,a\n0.5,2e-3,1e-6,a\n0.7,3e-3,1e-6,a\n")
    out = read_csv(path, units="siemens", squares=2.5)
    np.testing.assert_allclose(out["value"], np.array([2e-3, 2e-3, 3e-3]) * 2.5 / G0, rtol=1e-15)
    np.testing.assert_allclose(out["sigma"], np.full(3, 1e-6 * 2.5 / G0), rtol=1e-15)
    assert out["kind"] == "g" and out["offset"] and out["curve"] == ["a", "a", "a"]
    np.testing.assert_array_equal(out["field"], [-0.5, 0.5, 0.7])


# ---------------------------------------------------------------------------------------------------------
# End to end


def test_cli_fits_an_instrument_file(tmp_path, capsys):
    """R (Ohm) against Field (Oe) of three temperatures in a PPMS file with noise 1e-5 R and the skipped rows of
    _ppms; hln with B_phi per curve and B_so shared, sigma(0) fitted per curve (--offset: the noise of a single
    reference point at B = 0 would shift a whole curve, docs/measurements.md#reference). Each B_phi must lie
    within 2 standard errors of the truth (the nearest wrong answer, the neighbouring temperature's B_phi, is
    more than 10 standard errors away)."""
    path, _ = _ppms(tmp_path, noise=True, seed=3)
    args = [path, "--field", "Field (Oe)", "--value", "Bridge 1 Resistance (Ohms)", "--err",
            "Bridge 1 Std. Dev. (Ohms)", "--curve", "Temperature (K)", "--curve-step", "0.1", "--length", "5",
            "--width", "2", "--offset", "--symmetrize", "--out", tmp_path / "o"]
    assert run_fit_cli(args) == 0
    captured = capsys.readouterr()
    # Skipped: the 5 blank cells of _ppms; on symmetrizing, the +4 Oe point of 2 K (below its smallest -B, 7 Oe)
    # and +1 T of 10 K (its -1 T is blank), and the -B points whose +B partner is blank or absent (-7 Oe at 2 K,
    # one at 5 K, one at 10 K).
    rows = {"read": 154, "used": 144, "skipped": {
        "empty cell in 'Field (Oe)'": 2, "empty cell in 'Bridge 1 Resistance (Ohms)'": 3,
        "+B point beyond the -B range (symmetrize)": 2, "-B point next to no +B point (symmetrize)": 3}}
    assert "note: read 154 rows, used 144; skipped 10: empty cell in 'Field (Oe)' (2)" in captured.err
    out = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert out["rows"] == rows
    assert out["input"]["quantity"] == "R" and out["input"]["sigma0"] == "fitted offset per curve"
    z = {}
    for label, b_phi in B_PHI.items():
        p = out["parameters"][f"b_phi[{label}]"]
        z[label] = (p["value"] - b_phi) / p["stderr"]
        assert p["stderr"] < b_phi / 10
    assert all(abs(v) < 2 for v in z.values()), z


@pytest.mark.parametrize("lattice, n", [("zigzag_ribbon", 8), ("armchair_ribbon", 12)])
def test_honeycomb_run_squares_from_the_area_per_site(lattice, n):
    """L/W of a honeycomb run: for a periodic ribbon W must equal the lattice's own transverse period (an
    independent number), and the hard-wall ribbon of the same n has the same W (n rows of hexagons); the strip
    gives length/width in sites."""
    from difftransport._runs.ensemble import make_sample

    spec = {"lattice": lattice, "n": n, "length": 10, "boundary": "periodic", "spinful": False}
    lat = make_sample(spec).lattice
    width = 10 * lat.period / ms.squares(spec)
    assert width == pytest.approx(lat.transverse_period, rel=1e-14)
    assert ms.squares({**spec, "boundary": "hardwall"}) == pytest.approx(ms.squares(spec), rel=1e-14)
    assert ms.squares({"lattice": "strip", "width": 4, "length": 12, "boundary": "hardwall", "spinful": False}) == 3.0
