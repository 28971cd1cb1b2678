"""experiments/coherent_backscattering.py end to end on a tiny config, its config errors, and the width law of the
momentum-space CBS peak (a small version of the experiment's claim)."""

import json
import math

import jax
import numpy as np
import pytest

import difftransport as dt
from conftest import experiment
from difftransport.runs import ConfigError

TINY = """
[run]
title = "tiny"
seed = 1
batch = 8
chunk = 16

[diffusive]
box = 48
strengths = [3.0]
realizations = 32
radius = 4
t_stop = 24
t_step = 4

[field]
box = 32
strength = 3.0
fluxes = [0.0, 0.0064]
realizations = 8
late = 12
t_stop = 16
t_step = 4

[symplectic]
box = 32
strength = 3.0
realizations = 16
radius = 3
late = 8
t_stop = 16
t_step = 4

[speckle]
box = 32
strength = 0.8
correlation_length = 1.0
realizations = 16
radius = 3
late = 8
t_stop = 16
t_step = 4

[forward]
width = 8
length = 128
strength = 3.0
realizations = 8
times = [20.0, 100.0]

[cone]
width = 16
length = 8
strength = 2.0
realizations = 16
slab_flux = 0.0625
symplectic_realizations = 16

[cone_width]
width = 32
mean_free_paths = [3.0, 6.0]
thickness_per_l = 2.0
realizations = [16, 16]
min_ky = 0.9
max_ky = 1.6

[cone_check]
width = 16
strengths = [2.0]
lengths = [8]
realizations = [16]
extinction_realizations = 32
"""


@pytest.mark.slow
def test_experiment_end_to_end_and_resumes_from_its_parts(tmp_path):
    """Every part runs on a tiny config; the report holds a finite value and error for every claim, the four
    figures exist, and a second run reuses every part's file (the same numbers, nothing simulated)."""
    module = experiment("coherent_backscattering")
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    config = module.load_config(path)
    out = tmp_path / "out"
    data = module.simulate(config, out, log=lambda *_: None)
    report = module.analyse(config, data, out)
    for name in ("momentum.png", "contrast.png", "width.png", "cone.png", "report.json"):
        assert (out / name).exists(), name
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert len(rows) == len(report.rows) > 20
    for row in rows:
        assert math.isfinite(row["measured"]) and math.isfinite(row["stderr"]) and row["stderr"] > 0, row
    said = []
    again = module.simulate(config, out, log=said.append)
    assert len(said) == 8 and all(line.startswith("reusing") for line in said), said
    np.testing.assert_array_equal(again["diffusive_3"]["peak"], data["diffusive_3"]["peak"])


@pytest.mark.parametrize("edit, message", [
    (("box = 48", "box = 44"), "must be a multiple of 8"),
    (("strengths = [3.0]", "strengths = []"), "must be a non-empty list"),
    (("fluxes = [0.0, 0.0064]", "fluxes = [0.0064]"), "starting at 0"),
    (("mean_free_paths = [3.0, 6.0]", "mean_free_paths = [6.0, 3.0]"), "increasing lengths"),
    (("max_ky = 1.6", "max_ky = 0.5"), "must exceed cone_width.min_ky"),
    (("realizations = [16, 16]", "realizations = [16]"), "one integer >= 16 per mean free path"),
    (("slab_flux = 0.0625", "slab_flux = 0.05"), "must be an integer"),
    (("lengths = [8]", "lengths = [8, 16]"), "one integer >= 5 per strength"),
    (("strengths = [2.0]", "strengths = [-2.0]"), "non-empty list of numbers > 0"),
    (("times = [20.0, 100.0]", "times = [100.0, 20.0]"), "increasing times"),
    (("times = [20.0, 100.0]", 'times = [20.0, "late"]'), "increasing times"),
    (("[forward]", "[forwards]"), "is not a known section"),
])
def test_config_errors_name_the_key(tmp_path, edit, message):
    module = experiment("coherent_backscattering")
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace(*edit, 1))
    with pytest.raises(ConfigError, match=message):
        module.load_config(path)


@pytest.mark.slow
def test_cbs_width_shrinks_as_the_cooperon_of_the_measured_spreading():
    """Comparator, fixed before this test (from the experiment's 128^2 runs,
    docs/physics.md#momentum-backscattering): s^2 = 1 / (2 X), X = Delta<r^2> / 4 - l_B^2 from the spreading of a packet in the same
    realizations (``ensemble_spreading``), l_B = 4.52 the Born mean free path at W = 3: exponent of s against X
    -1/2 and s sqrt(2 X) = 1; contrast 1. Small version: 96^2 box, 256 realizations, t = 16 ... 40 (7 - 18 tau).
    Windows: exponent in [-0.7, -0.3] (excludes 0, no shrinking, and -1, a ballistic 1/t, by > 3 SE at the SE
    asserted), s sqrt(2X) within 0.15 of 1 (the bare Delta<r^2>/4, which the first 128^2 run put at 1.13, is
    checked to lie further off than the offset one)."""
    sample = dt.Sample(dt.strip(96, boundary="periodic"), 96, periodic=True)
    k0 = dt.nearest_grid_momentum(sample, [math.pi / 4, math.pi / 4])
    keys = jax.random.split(jax.random.key(1985), 256)
    times = np.arange(0.0, 41.0, 4.0)

    def potential(key):
        return dt.anderson_potential(key, sample, 3.0)

    n = np.asarray(dt.ensemble_momentum_distribution(keys, sample, dt.Model(energy=0.0), potential, k0, times,
                                                     energy_width=0.3, batch=16))
    pixels = dt.peak_pixels(n, sample, k0, radius=5)
    spread = np.asarray(dt.ensemble_spreading(keys, sample, dt.Model(energy=0.0), potential, k0, times, width=4.0,
                                              energy_width=0.3, batch=16))
    law = dt.width_law(pixels, spread, times, tmin=16, offset=4.518**2, blocks=32)
    bare = dt.width_law(pixels, spread, times, tmin=16, blocks=32)
    print(f"exponent {law.exponent:.3f} +- {law.exponent_se:.3f}, s sqrt(2X) {law.amplitude:.3f} +- "
          f"{law.amplitude_se:.3f}; bare {bare.exponent:.3f}, {bare.amplitude:.3f}")
    assert law.exponent_se < 0.1
    assert -0.7 < law.exponent < -0.3
    assert abs(law.amplitude - 1) < 0.15
    assert abs(bare.amplitude - 1) > abs(law.amplitude - 1)
