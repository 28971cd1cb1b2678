"""difftransport: differentiable quantum transport in disordered conductors, in JAX.

Importing the package switches JAX to 64-bit floats (``jax_enable_x64``); every result is float64/complex128.
On jaxlib 0.9 - 0.11.1 it also reroutes batched CPU LAPACK calls around a deadlock in those versions
(``_lapack_guard.py``).
"""

import jax

jax.config.update("jax_enable_x64", True)

from ._lapack_guard import install as _install_lapack_guard

_install_lapack_guard()

from ._build import build_hamiltonian
from ._hamiltonian import DenseHopping, Hopping, Lead, SiteBlockHopping, SlicedHamiltonian
from ._lattice import Lattice, Sample, armchair_ribbon, bar, chain, strip, zigzag_ribbon
from ._leads import LeadSelfEnergies, lead_self_energies, stein_solve
from ._model import (
    Disorder,
    Model,
    anderson_potential,
    draw_disorder,
    random_moments,
    su2_rotations,
)
from ._observables import (
    buttiker_currents,
    conductance,
    dense_hamiltonian,
    fano_factor,
    hamiltonian_transmission,
    OBSERVABLES,
    observe,
    open_channels,
    reflection,
    transmission,
    transmission_eigenvalues,
)
from ._rgf import sweep

__version__ = "0.1.0"

__all__ = [
    "Disorder",
    "DenseHopping",
    "Hopping",
    "Lattice",
    "Lead",
    "LeadSelfEnergies",
    "Model",
    "Sample",
    "SiteBlockHopping",
    "SlicedHamiltonian",
    "anderson_potential",
    "armchair_ribbon",
    "bar",
    "build_hamiltonian",
    "buttiker_currents",
    "chain",
    "conductance",
    "dense_hamiltonian",
    "draw_disorder",
    "fano_factor",
    "hamiltonian_transmission",
    "lead_self_energies",
    "OBSERVABLES",
    "observe",
    "open_channels",
    "random_moments",
    "reflection",
    "stein_solve",
    "strip",
    "su2_rotations",
    "sweep",
    "transmission",
    "transmission_eigenvalues",
    "zigzag_ribbon",
]
