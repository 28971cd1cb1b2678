"""The small version of experiments/weak_localization_2d.py: the zero-field conductance of coherent squares
against size follows the one-loop correction of the same squares with amplitude 1 (the -(1/pi) ln L law)."""

import numpy as np

import difftransport as dt
from conftest import experiment, paired_ensemble
from difftransport import theory

line_fit = experiment("common").line_fit


def test_square_conductance_follows_the_one_loop_ln_l_law():
    """Spinless L x L squares, L = 16, 32, 64, E = 1, box disorder 3.5 (l ~ 2 sites, sigma ~ 2 e^2/h), 400
    realizations each. sigma = 1/(1/G - 1/N) per square; sigma(0, L) = A dG(L) + const with dG the lattice
    Cooperon of the square (absorbing z0 = sigma W / 2N beyond the leads, cut off at theory.diffusive_cutoff(z0)).
    The sizes are independent ensembles, so the weighted line fit's error is the standard error of A. The
    experiment (L = 16-128, z0 from the field-broken sigma) measured A = 0.99 +- 0.05; here A = 0.84, SE 0.09.
    Asserted within 3 SE of 1, with the SE below 0.15 so that the test can tell A = 1 from no size dependence."""
    sizes, sigma, err, loop = (16, 32, 64), [], [], []
    for size in sizes:
        sample = dt.Sample(dt.strip(size), size)
        g = paired_ensemble(sample, 400, 21, (0.0,), 3.5, energy=1.0)[:, 0]
        channels = float(dt.open_channels(sample, dt.Model(energy=1.0)))
        s = 1 / (1 / g - 1 / channels)
        z0 = s.mean() * size / (2 * channels)
        sigma.append(s.mean())
        err.append(s.std(ddof=1) / np.sqrt(len(s)))
        loop.append(float(theory.lattice_wl_correction(size, size, extrapolation=z0,
                                                       cutoff=theory.diffusive_cutoff(z0))))
    amp, se, _, _ = line_fit(loop, sigma, err)
    assert se < 0.15
    assert abs(amp - 1) < 3 * se, (amp, se)
