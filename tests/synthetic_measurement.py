"""Writes a synthetic magnetoresistance measurement as an instrument would (the held-out data set of
tests/test_fit_temperature.py): a Hall bar's resistance R(B) at several temperatures, in ohm against the field in
oersted, with noise, a classical B^2 background and a power-law B_phi(T).

Truth (sheet conductance in e^2/h, fields in tesla):

    sigma(B, T) = SIGMA0[T] + hln(B, B_phi(T), B_SO) + C2 B^2,    B_phi(T) = B0 + A T^P

and R = (L/W) / (sigma e^2/h) with L/W = 100 um / 20 um; the noise is Gaussian on R with standard deviation
DR (the file's ``dR (Ohm)`` column), about 0.002 e^2/h on sigma. Run as a script to write one file:
``python tests/synthetic_measurement.py OUT.csv [SEED]``.
"""

from __future__ import annotations

import sys

import numpy as np

from difftransport import theory as th

TEMPERATURES = (1.5, 3.0, 6.0, 12.0)  # K
TRUTH = {"b0": 0.002, "a": 0.004, "p": 1.0, "b_so": 0.05, "c2": -0.3}  # tesla, tesla/K^p, -, tesla, e^2/h / T^2
SIGMA0 = {1.5: 20.0, 3.0: 20.4, 6.0: 20.8, 12.0: 21.3}  # zero-field sheet conductance, e^2/h
LENGTH_UM, WIDTH_UM = 100.0, 20.0
FIELD_OE = np.linspace(-5000.0, 5000.0, 41)  # 1 T = 1e4 Oe
DR = 0.65  # ohm


def sheet_conductance(field_t, temperature):
    """The true sigma(B, T) in e^2/h per square."""
    b_phi = TRUTH["b0"] + TRUTH["a"] * temperature ** TRUTH["p"]
    return (SIGMA0[temperature] + np.asarray(th.hln(field_t, b_phi, TRUTH["b_so"], 0.0))
            + TRUTH["c2"] * field_t**2)


def write(path, seed: int) -> None:
    """Write the file for noise draw ``seed``: columns ``T (K)``, ``Field (Oe)``, ``R (Ohm)``, ``dR (Ohm)``."""
    rng = np.random.default_rng(seed)
    lines = ["# synthetic Hall-bar magnetoresistance, L = 100 um, W = 20 um", "T (K),Field (Oe),R (Ohm),dR (Ohm)"]
    for t in TEMPERATURES:
        sigma_siemens = sheet_conductance(FIELD_OE * 1e-4, t) * th.CONDUCTANCE_QUANTUM
        resistance = (LENGTH_UM / WIDTH_UM) / sigma_siemens + DR * rng.standard_normal(FIELD_OE.size)
        lines += [f"{t},{b:.1f},{r:.6f},{DR}" for b, r in zip(FIELD_OE, resistance)]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
