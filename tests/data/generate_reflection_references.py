"""Kwant 1.5 reference reflection matrices for tests/test_reflection_cone.py: writes reflection_kwant.npz here.

Run it with a Python that has Kwant 1.5 (Kwant is not a dependency of difftransport):

    .kwant-venv/bin/python tests/data/generate_reflection_references.py

The systems follow the conventions of generate_kwant_references.py (its docstring; docs/physics.md#conventions):
square strips of W x L sites, hopping -t = -1, box disorder V[x, y] uniform in [-Wd/2, Wd/2] from
numpy.random.default_rng(seed), clean leads carrying the flux phi (Landau gauge A = -B y x) and the Rashba alpha;
periodic strips bond y = W-1 to y = 0 (phi W an integer, here phi = 0). For each case, realization and energy the
file holds, under the prefix f"{case}_r{realization}_e{energy index}_":
- ``r2``: |r|^2 of ``kwant.smatrix(syst, E).submatrix(0, 0)`` (rows outgoing, columns incoming modes of lead 0);
- ``kx_out``, ``kx_in``: the modes' momenta along +x in difftransport's lead frame, k = -k_kwant (Kwant's lead 0 has
  translation vector -x), wrapped to (-pi, pi] (used to match modes; degenerate modes share k);
- ``rr``: the eigenvalues of r^+ r in ascending order (basis independent).
Together with ``V_{case}_r{realization}`` and a JSON ``meta`` listing the cases.
"""

import json
import pathlib

import kwant
import numpy as np

from generate_kwant_references import strip_system

HERE = pathlib.Path(__file__).parent
CASES = {  # name: (W, L, spinful, Wd, phi, alpha, periodic, energies, seed)
    "hardwall": (7, 9, False, 2.0, 0.0, 0.0, False, [-1.3, 0.7], 11),
    "hardwall_flux": (7, 9, False, 2.0, 0.05, 0.0, False, [-1.9, 0.3], 12),
    "hardwall_rashba": (5, 6, True, 1.5, 0.0, 0.3, False, [-1.1], 13),
    "periodic": (8, 10, False, 2.0, 0.0, 0.0, True, [-1.3, 0.45], 14),
    "periodic_rashba": (6, 6, True, 1.5, 0.0, 0.3, True, [-0.9], 15),
}
REALIZATIONS = 2


def main():
    out, meta = {}, {}
    for name, (W, L, spinful, Wd, phi, alpha, periodic, energies, seed) in CASES.items():
        meta[name] = dict(W=W, L=L, spinful=spinful, Wd=Wd, phi=phi, alpha=alpha,
                          boundary="periodic" if periodic else "hardwall", energies=energies)
        rng = np.random.default_rng(seed)
        for r in range(REALIZATIONS):
            V = rng.uniform(-Wd / 2, Wd / 2, size=(L, W))
            out[f"V_{name}_r{r}"] = V
            syst = strip_system(W, L, 2 if spinful else 1, phi, alpha, V, periodic=periodic)
            for i, e in enumerate(energies):
                sm = kwant.smatrix(syst, e)
                rmat = sm.submatrix(0, 0)
                k = sm.lead_info[0].momenta
                n = len(k) // 2
                ours = np.angle(np.exp(-1j * np.asarray(k)))
                prefix = f"{name}_r{r}_e{i}_"
                out[prefix + "r2"] = np.abs(rmat) ** 2
                out[prefix + "kx_in"], out[prefix + "kx_out"] = ours[:n], ours[n:]
                out[prefix + "rr"] = np.linalg.eigvalsh(rmat.conj().T @ rmat)
                unitarity = np.abs(rmat.conj().T @ rmat + sm.submatrix(1, 0).conj().T @ sm.submatrix(1, 0)
                                   - np.eye(n)).max()
                assert unitarity < 1e-10, (name, r, e, unitarity)
    np.savez(HERE / "reflection_kwant.npz", meta=json.dumps(dict(cases=meta, realizations=REALIZATIONS)), **out)


if __name__ == "__main__":
    main()
