"""The small version of experiments/wl_dimensions.py: the weak-localization correction of a dephased quasi-1D
wire (Buttiker probes on every site) against L_phi follows the one loop of the same wire, with L_phi from the
Einstein relation and no free parameter but a constant."""

from conftest import experiment

wl_dimensions = experiment("wl_dimensions")

CONFIG = """
[run]
title = "small wl_dimensions: quasi-1D wire"
seed = 7
realizations = {realizations}
chunk = 16

[ensembles.wire]
label = "wire {width}x{length}, W=2, E=1"
observables = ["conductance"]
dephasing = "buttiker"
[ensembles.wire.sample]
lattice = "strip"
width = {width}
length = {length}
[ensembles.wire.model]
energy = 1.0
[ensembles.wire.disorder]
strength = 2.0
[ensembles.wire.grid]
tau_phi = {taus}
flux = [0.0, 0.03]

[analysis]
dos_realizations = 2
"""


def test_dephased_wire_follows_its_own_one_loop(tmp_path):
    """Spinless 8 x 60 wire, E = 1, box disorder 2 (l ~ 8 sites, ~5 channels, localization length ~ 50), probes
    with tau_phi = 12, 50 (L_phi = 9.3, 18.9 from D = sigma_D / 2 pi rho = 7.1: between the width and the
    localization length), each of 64 realizations at flux 0 and 0.03 (dirty-wire field length ~1 site).
    Delta(sigma A) = X(0) - X(phi_B) against the one loop of the dephased wire (theory.lattice_wl_correction of
    the 8 x 60 strip, leads absorbing z0 = sigma W / 2N beyond the interfaces): amplitude a, jackknife SE (both
    L_phi points come from the same realizations). Measured a = 0.98, SE 0.16 (the ideal quasi-1D form
    -L F(L/L_phi) gives 1.27: L_phi is close to W). Asserted within 3 SE of 1, with the SE below 0.3 so that the
    test can tell the correction from none."""
    path = tmp_path / "wire.toml"
    path.write_text(CONFIG.format(realizations=64, width=8, length=60, taus=[12.0, 50.0]))
    config, data = experiment("common").run(path, tmp_path / "out", quiet=True)
    report = wl_dimensions.analyse(config, data, tmp_path / "out")
    row = next(r for r in report.rows if r["quantity"].startswith("wire (d = 1): amplitude a"))
    a, se = row["measured"], row["stderr"]
    assert se < 0.3
    assert abs(a - 1) < 3 * se, (a, se)
