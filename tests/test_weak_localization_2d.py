"""The small version of experiments/weak_localization_2d.py: the zero-field conductance of coherent squares
against size follows the one-loop correction of the same squares with amplitude 1 (the -(1/pi) ln L law)."""

import numpy as np
import pytest

import difftransport as dt
from conftest import experiment, paired_ensemble
from difftransport import theory

line_fit = experiment("common").line_fit


@pytest.mark.slow
def test_square_conductance_follows_the_one_loop_ln_l_law():
    """Spinless L x L squares, L = 16, 32, 64, E = 1, box disorder 3.5 (l ~ 2 sites, sigma ~ 2 e^2/h), 1000, 200
    and 500 realizations (the end points carry the slope; allocated by cost and spread before the run).
    sigma = 1/(1/G - 1/N) per square; sigma(0, L) = A dG(L) + const. Comparator, by the rule of the experiment:
    A = 1 with dG the lattice Cooperon of the same square (absorbing z0 = sigma W / 2N beyond the leads, cut off at
    theory.diffusive_cutoff(z0)). The sizes are independent ensembles, so the weighted line fit's error is the
    standard error of A. The experiment (L = 16-128, z0 from the field-broken sigma) measured A = 0.99 +- 0.05;
    with 400 realizations per size this test gave A = 0.84, SE 0.09. Pass: |A - 1| < 3 SE, with SE < 0.083 so
    that 3 SE < 0.25, half the distance to the nearest wrong answer A = 1/2 (a factor-2 error); A = 0 (no size
    dependence) is then excluded by at least 12 SE. Measured: A = 0.881 +- 0.070 (-1.7 SE; 1/2 at 5.4 SE)."""
    sizes, sigma, err, loop = {16: 1000, 32: 200, 64: 500}, [], [], []
    for size, realizations in sizes.items():
        sample = dt.Sample(dt.strip(size), size)
        g = paired_ensemble(sample, realizations, 21, (0.0,), 3.5, energy=1.0)[:, 0]
        channels = float(dt.open_channels(sample, dt.Model(energy=1.0)))
        s = 1 / (1 / g - 1 / channels)
        z0 = s.mean() * size / (2 * channels)
        sigma.append(s.mean())
        err.append(s.std(ddof=1) / np.sqrt(len(s)))
        loop.append(float(theory.lattice_wl_correction(size, size, extrapolation=z0,
                                                       cutoff=theory.diffusive_cutoff(z0))))
    amp, se, _, _ = line_fit(loop, sigma, err)
    print(f"A = {amp:.3f} +- {se:.3f} ({(amp - 1) / se:+.2f} SE from 1; 1/2 at {(amp - 0.5) / se:.1f} SE)")
    assert se < 0.083, se
    assert abs(amp - 1) < 3 * se, (amp, se)
