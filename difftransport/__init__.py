"""difftransport: differentiable quantum transport in disordered conductors, in JAX.

Importing the package switches JAX to 64-bit floats (``jax_enable_x64``); every result is float64/complex128.
On jaxlib 0.9 - 0.11.1 it also reroutes batched CPU LAPACK calls around a deadlock in those versions
(``_core/lapack_guard.py``).

Conventions: physics objects are positional, knobs keyword-only. A function that draws random numbers takes its PRNG
key (or keys) first, as ``jax.random`` does (``draw_disorder(key, sample, ...)``, ``lattice_ensemble(keys, sample,
...)``); an optional key of a fitting routine (bootstrap) is the keyword-only ``key=``. Runs: ``difftransport.runs``.
"""

import jax

jax.config.update("jax_enable_x64", True)

from ._core.lapack_guard import install as _install_lapack_guard

_install_lapack_guard()

from ._core.build import build_hamiltonian
from ._core.hamiltonian import DenseHopping, Hopping, Lead, SiteBlockHopping, SlicedHamiltonian
from ._core.lattice import Lattice, Sample, armchair_ribbon, bar, chain, strip, zigzag_ribbon
from ._core.leads import HopFactor, LeadSelfEnergies, lead_self_energies, stein_solve
from ._core.model import (
    Disorder,
    Model,
    anderson_potential,
    draw_disorder,
    random_moments,
    su2_rotations,
)
from ._core.observables import (
    buttiker_currents,
    conductance,
    dense_hamiltonian,
    ensemble_conductances,
    fano_factor,
    hamiltonian_transmission,
    OBSERVABLES,
    observe,
    open_channels,
    reflection,
    transmission,
    transmission_eigenvalues,
)
from ._core.rgf import sweep
from ._core.evolution import (
    EnergyWindow,
    EvolutionHamiltonian,
    classical_return_probability,
    cooperon_field_ratio,
    energy_filter,
    evolution_hamiltonian,
    evolve,
    return_probability,
    site_state,
    spreading,
)
from ._core.fit import FitResult, UndeterminedWarning, fit_magnetoconductance, plot_fit
from ._core.inference import (
    InferenceResult,
    LatticeEnsemble,
    MicroscopicParameters,
    curve_statistics,
    infer_parameters,
    lattice_ensemble,
    mean_conductance,
    realization_conductances,
)
from ._core.scaling import BetaFit, ScalingFit, ScalingModel, beta_one_loop, finite_difference_beta, fit_beta, fit_scaling
from ._core.tmm import LyapunovSpectrum, localization_length, lyapunov_exponents
from . import runs, stats, theory

__version__ = "0.1.0"

__all__ = [
    "anderson_potential",
    "armchair_ribbon",
    "bar",
    "beta_one_loop",
    "BetaFit",
    "build_hamiltonian",
    "buttiker_currents",
    "chain",
    "classical_return_probability",
    "conductance",
    "cooperon_field_ratio",
    "curve_statistics",
    "dense_hamiltonian",
    "DenseHopping",
    "Disorder",
    "draw_disorder",
    "energy_filter",
    "EnergyWindow",
    "ensemble_conductances",
    "evolution_hamiltonian",
    "EvolutionHamiltonian",
    "evolve",
    "fano_factor",
    "finite_difference_beta",
    "fit_beta",
    "fit_magnetoconductance",
    "fit_scaling",
    "FitResult",
    "UndeterminedWarning",
    "hamiltonian_transmission",
    "HopFactor",
    "Hopping",
    "infer_parameters",
    "InferenceResult",
    "Lattice",
    "lattice_ensemble",
    "LatticeEnsemble",
    "Lead",
    "lead_self_energies",
    "LeadSelfEnergies",
    "localization_length",
    "lyapunov_exponents",
    "LyapunovSpectrum",
    "mean_conductance",
    "MicroscopicParameters",
    "Model",
    "OBSERVABLES",
    "observe",
    "open_channels",
    "plot_fit",
    "random_moments",
    "realization_conductances",
    "reflection",
    "return_probability",
    "runs",
    "Sample",
    "ScalingFit",
    "ScalingModel",
    "site_state",
    "SiteBlockHopping",
    "SlicedHamiltonian",
    "spreading",
    "stein_solve",
    "strip",
    "su2_rotations",
    "stats",
    "sweep",
    "theory",
    "transmission",
    "transmission_eigenvalues",
    "zigzag_ribbon",
]
