"""``difftransport scale`` with ``kind = "dephasing"`` (issue: beta by automatic differentiation): the slopes
dg/d ln tau_phi it stores are the library's ``dephasing_slopes`` on the study's realizations, the table's beta_phi
is ``DephasingSlopes.beta`` of them, a rerun after losing a chunk reproduces the JSON bit for bit, and configs the
study cannot honour are one-line errors."""

import json
import math
import re

import numpy as np
import pytest

import difftransport as dt
from difftransport._core.scaling import DephasingSlopes, study_keys
from difftransport._runs import study as _study
from test_scale_resume import _main, _write

SEED, LENGTH, TAU, FLUXES, REALIZATIONS, DIFFUSION = 3, 5, 8.0, [0.0, 0.05], 4, 2.0


def _config(**dephasing):
    config = {
        "study": {"kind": "dephasing", "title": "tiny", "figure": "tiny_dephasing"},
        "system": {"dimension": 2, "boundary": "hardwall", "spinful": False, "su2": False, "energy": -1.0,
                   "hopping": 1.0, "flux": 0.0, "distribution": "box"},
        "dephasing": {"length": LENGTH, "strengths": [2.0], "tau_phi": [TAU], "fluxes": FLUXES,
                      "realizations": REALIZATIONS, "chunk": 2, "seed": SEED},
    }
    config["dephasing"].update(dephasing)
    return config


def test_dephasing_study_stores_the_library_slopes_and_resumes_bit_identically(tmp_path):
    path, out = _write(tmp_path / "study.toml", _config(diffusion=DIFFUSION)), tmp_path / "out"
    assert _main(path, out, "--quiet") == 0
    summary = json.loads((out / "tiny_dephasing.json").read_text())
    store = out / "data" / _study.config_hash(_study.validate(_config()))[:16]
    chunks = sorted(store.glob("W*.npz"))
    assert [c.name for c in chunks] == ["W000-T000-r0000000-0000002.npz", "W000-T000-r0000002-0000004.npz"]
    g = np.concatenate([np.load(c)["g"] for c in chunks])
    slope = np.concatenate([np.load(c)["slope"] for c in chunks])

    # The same realizations through the library's own estimator (its own jit and batching).
    sample = dt.Sample(dt.strip(LENGTH), LENGTH, field_region="sample")
    keys = study_keys(SEED, LENGTH, 0, np.arange(REALIZATIONS))
    ref = dt.dephasing_slopes(keys, sample, dt.Model(energy=-1.0, tau_phi=TAU), 2.0, fluxes=FLUXES, batch=4)
    np.testing.assert_allclose(g, np.asarray(ref.g), rtol=1e-12)
    np.testing.assert_allclose(slope, np.asarray(ref.slope), rtol=1e-10)

    (row,) = summary["data"]["table"]
    s = DephasingSlopes.from_values(FLUXES, g, slope, summary["data"]["open_channels"])
    assert row["beta_raw"] == list(s.beta(None))
    beta, se = s.beta(1)
    assert (row["fields"][0]["beta"], row["fields"][0]["beta_stderr"]) == (beta, se)
    assert tuple(row["fields"][0]["magnetoconductance"]) == s.magnetoconductance(1)
    gc = np.asarray(s.g_contact)[:, 0]
    d = np.asarray(s.slope_contact[:, 0] - s.slope_contact[:, 1])
    assert abs(beta - 2 * d.mean() / gc.mean()) <= 1e-12 * abs(beta)
    one_loop = -1 / (math.pi * gc.mean())
    assert row["one_loop"] == pytest.approx(one_loop, rel=1e-12)
    assert row["fields"][0]["z"] == pytest.approx((beta - one_loop) / se, rel=1e-12)
    # The field-residual correction at L_phi = sqrt(D tau_phi) = 4: beta and its error over the fraction.
    corrected, fraction = row["fields"][0]["corrected"], float(dt.theory.cooperon_slope_fraction(4.0, FLUXES[1]))
    assert row["l_phi"] == pytest.approx(4.0, rel=1e-15) and corrected["field_fraction"] == fraction
    assert 0 < fraction < 1
    assert corrected["beta"] == pytest.approx(beta / fraction, rel=1e-12)
    assert corrected["beta_stderr"] == pytest.approx(se / fraction, rel=1e-12)
    assert corrected["z"] == pytest.approx((beta / fraction - one_loop) / (se / fraction), rel=1e-12)
    assert (corrected["beta"], corrected["beta_stderr"]) == s.beta(1, l_phi=4.0)
    with pytest.raises(ValueError, match="with field=None there is nothing to correct"):
        s.beta(None, l_phi=4.0)

    chunks[1].unlink()
    assert _main(path, out, "--quiet") == 0
    again = json.loads((out / "tiny_dephasing.json").read_text())
    assert again["data"] == summary["data"]


@pytest.mark.parametrize(
    "edit, match",
    [
        ({"system": {"dimension": 3}}, "dephasing.fluxes = .* in 3D: set \\[0.0\\]"),
        ({"system": {"dimension": 3}, "dephasing": {"fluxes": [0.0]}}, "dephasing.one_loop = 'orthogonal' in 3D"),
        ({"system": {"dimension": 3}, "dephasing": {"fluxes": [0.0], "one_loop": "none", "diffusion": 2.0}},
         "dephasing.diffusion = 2.0 in 3D"),
        ({"dephasing": {"density_of_states": 0.1}}, "dephasing.density_of_states is for the 3D estimator"),
        ({"system": {"flux": 0.1}}, "takes its fields from dephasing.fluxes"),
        ({"dephasing": {"fluxes": [0.01, 0.05]}}, "dephasing.fluxes"),
        ({"dephasing": {"fluxes": [0.0]}}, "dephasing.fluxes"),
        ({"dephasing": {"tau_phi": [8.0, 4.0]}}, "dephasing.tau_phi"),
        ({"dephasing": {"fluxes": [False, 0.05]}}, "dephasing.fluxes"),
        ({"system": {"spinful": True, "su2": True}}, "the SU\\(2\\) model is symplectic"),
        ({"system": {"boundary": "periodic"}, "dephasing": {"fluxes": [0.0, 0.05]}}, "flux \\* L to be an integer"),
        ({"dephasing": {"diffusion": -1.0}}, "dephasing.diffusion = -1.0 .*>= 0"),
        ({"dephasing": {"solver": "lu"}}, "dephasing.solver = 'lu' .*one of"),
    ],
)
def test_dephasing_config_errors(tmp_path, capsys, edit, match):
    config = _config()
    for section, values in edit.items():
        config[section].update(values)
    assert _main(_write(tmp_path / "bad.toml", config), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(match, err), err


def test_dephasing_hash_ignores_the_comparator_only():
    """The comparator, the analysis's D and the probe solver (the same numbers to ~1e-9) leave the stored data
    where they are; what draws or defines the realizations moves them."""
    base = _study.config_hash(_study.validate(_config()))
    assert _study.config_hash(_study.validate(_config(one_loop="symplectic"))) == base
    assert _study.config_hash(_study.validate(_config(diffusion=5.6, solver="gmres"))) == base
    three = {**_config(fluxes=[0.0], one_loop="none"), "system": {**_config()["system"], "dimension": 3}}
    cube = _study.config_hash(_study.validate(three))
    three["dephasing"]["density_of_states"] = 0.1
    assert _study.config_hash(_study.validate(three)) == cube != base
    assert _study.config_hash(_study.validate(_config(seed=4))) != base
    assert _study.config_hash(_study.validate(_config(field_region="everywhere"))) != base


def test_cube_study_reports_the_einstein_beta_of_the_library(tmp_path):
    """3D: L^3 cubes at zero field; the stored slopes are the library's dephasing_slopes on the study's
    realizations, beta_einstein is DephasingSlopes.beta_einstein of them, and with rho given sigma = <g_c>/L,
    L_phi = sqrt(sigma tau_phi / (2 pi rho)) and g_phi = sigma L_phi."""
    config = _config(length=4, fluxes=[0.0], one_loop="none", density_of_states=0.1, strengths=[10.0])
    config["system"].update(dimension=3, energy=0.0)
    path, out = _write(tmp_path / "cube.toml", config), tmp_path / "out"
    assert _main(path, out, "--quiet") == 0
    summary = json.loads((out / "tiny_dephasing.json").read_text())
    assert summary["data"]["dimension"] == 3
    store = out / "data" / _study.config_hash(_study.validate(config))[:16]
    chunks = sorted(store.glob("W*.npz"))
    g = np.concatenate([np.load(c)["g"] for c in chunks])
    slope = np.concatenate([np.load(c)["slope"] for c in chunks])
    sample = dt.Sample(dt.bar(4, 4), 4, field_region="sample")
    ref = dt.dephasing_slopes(study_keys(SEED, 4, 0, np.arange(REALIZATIONS)), sample,
                              dt.Model(energy=0.0, tau_phi=TAU), 10.0, fluxes=[0.0])
    np.testing.assert_allclose(g, np.asarray(ref.g), rtol=1e-12)
    np.testing.assert_allclose(slope, np.asarray(ref.slope), rtol=1e-10)
    (row,) = summary["data"]["table"]
    s = DephasingSlopes.from_values([0.0], g, slope, summary["data"]["open_channels"])
    assert tuple(row["beta_einstein"]) == s.beta_einstein()
    gc = np.asarray(s.g_contact)[:, 0]
    assert row["s"] == pytest.approx(np.asarray(s.slope_contact)[:, 0].mean() / gc.mean(), rel=1e-12)
    sigma = gc.mean() / 4
    l_phi = math.sqrt(sigma * TAU / (2 * math.pi * 0.1))
    assert row["sigma"] == pytest.approx(sigma, rel=1e-12) and row["l_phi"] == pytest.approx(l_phi, rel=1e-12)
    assert row["g_phi"] == pytest.approx(sigma * l_phi, rel=1e-12) and row["fields"] == []
