"""The small version of experiments/weak_antilocalization.py: the prefactor of the magnetoconductance of a
coherent square at strong Rashba coupling, fitted with the one-loop magnetoconductance of the same square
(theory.lattice_wl_correction), against the symplectic alpha = -1/2."""

import numpy as np
import pytest

import difftransport as dt
from conftest import experiment, paired_ensemble
from difftransport import theory

linear_amplitude = experiment("common").linear_amplitude


@pytest.mark.slow
def test_strong_rashba_square_has_the_symplectic_prefactor():
    """Spinful 32 x 32, E = 1, box disorder 3.5, alpha_R = 0.577 (L_so of a few sites, below every l_B of the fit),
    300 realizations at flux 0 and five fluxes up to 0.004 (l_B >= 6.3), paired. Comparator: Delta sigma =
    2 alpha [dG(phi) - dG(0)] with dG the lattice Cooperon of the square, absorbing z0 = sigma W / 2N beyond the
    leads, and alpha = -1/2 (symplectic). alpha is a linear estimator, so its standard error is the spread of the
    per-realization estimates (the points of one realization are correlated). Measured: alpha = -0.462, SE 0.053
    (+0.7 SE; 0 at 8.8 SE, -1 at 10 SE).
    Pass: |alpha + 1/2| < 3 SE, with SE < 0.083 so that 3 SE < 0.25, half the distance to the nearest wrong answers
    0 (no WAL) and -1 (a factor-2 error); +1/2 and +1 (WL of one or two spin copies) are further. A factor-2 error
    the other way (-1/4) is not excluded: that needs SE < 0.042, about 1.6 times the realizations."""
    size, fluxes, model = 32, (0.0, 0.0004, 0.001, 0.002, 0.003, 0.004), dict(energy=1.0, rashba=0.577)
    sample = dt.Sample(dt.strip(size), size, spinful=True)
    g = paired_ensemble(sample, 300, 5, fluxes, 3.5, **model)
    channels = float(dt.open_channels(sample, dt.Model(**model)))
    sigma = 1 / (1 / g - 1 / channels)  # square: sheet conductance, Sharvin resistance removed
    z0 = sigma[:, 0].mean() * size / (2 * channels)
    shape = [float(theory.lattice_wl_correction(size, size, flux=f, extrapolation=z0)) for f in fluxes]
    alpha, se = linear_amplitude((sigma - sigma[:, :1])[:, 1:], 2 * (np.asarray(shape[1:]) - shape[0]))
    print(f"alpha = {alpha:.3f} +- {se:.3f} ({(alpha + 0.5) / se:+.2f} SE from -1/2; 0 at {-alpha / se:.1f} SE)")
    assert se < 0.083, se
    assert abs(alpha + 0.5) < 3 * se, (alpha, se)
