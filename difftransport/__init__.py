"""difftransport: differentiable quantum transport in disordered conductors, in JAX.

Importing the package switches JAX to 64-bit floats (``jax_enable_x64``); every result is float64/complex128.
On jaxlib 0.10 - 0.11.1 it also reroutes the batched CPU LAPACK calls that could deadlock in those versions, and it
runs the OpenBLAS under jaxlib's CPU LAPACK kernels on one thread (``DIFFTRANSPORT_BLAS_THREADS`` or a user's
``OPENBLAS_NUM_THREADS`` overrides), so that it does not contend with XLA's own threads (``_core/lapack_guard.py``).

Conventions: physics objects are positional, knobs keyword-only. A function that draws random numbers takes its PRNG
key (or keys) first, as ``jax.random`` does (``draw_disorder(key, sample, ...)``, ``lattice_ensemble(keys, sample,
...)``); an optional key of a fitting routine (bootstrap) is the keyword-only ``key=``. Runs: ``difftransport.runs``.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._core.lapack_guard import install as _install_lapack_guard, limit_blas_threads as _limit_blas_threads

_install_lapack_guard()
_limit_blas_threads()

from ._core.backscattering import (
    backscattering_contrast, BackscatteringContrast, band_energy, ensemble_momentum_distribution, ensemble_spreading,
    momentum_distribution, momentum_grid, nearest_grid_momentum, peak_pixels, peak_profile, PeakPixels, PeakProfile,
    plane_wave_packet, speckle_potential, symmetric_gauge_phase, width_law, WidthLaw
)
from ._core.build import build_hamiltonian
from ._core.hamiltonian import DenseHopping, Hopping, Lead, SiteBlockHopping, SlicedHamiltonian
from ._core.lattice import armchair_ribbon, bar, chain, Lattice, Sample, strip, zigzag_ribbon
from ._core.leads import HopFactor, lead_self_energies, LeadSelfEnergies, stein_solve
from ._core.model import (
    anderson_potential, correlated_potential, Disorder, draw_disorder, Model, random_moments,
    realization_twist, short_range_potential, su2_rotations
)
from ._core.observables import (
    buttiker_currents, conductance, dense_hamiltonian, ensemble_conductances, fano_factor, hamiltonian_transmission,
    OBSERVABLES, observe, open_channels, reflection, transmission, transmission_eigenvalues
)
from ._core.reflection import (
    cone_profile, ConeProfile, enhancement, Enhancement, Extinction, extinction_lengths, lead_modes, Modes,
    reflection_cone, ReflectionCone, reflection_matrix, Scattering, scattering_matrix, single_scattering
)
from ._core.rgf import sweep
from ._core.evolution import (
    classical_return_probability, cooperon_field_ratio, energy_filter, EnergyWindow, evolution_hamiltonian,
    EvolutionHamiltonian, evolve, return_probability, site_state, spreading
)
from ._core.fit import (
    dephasing_law, fit_dephasing_law, fit_magnetoconductance, FitResult, LawFit, plot_dephasing_law, plot_fit,
    TransportFieldWarning,
    UndeterminedWarning,
)
from ._core.inference import (
    curve_statistics, graphene_ensemble, GrapheneEnsemble, GrapheneParameters, infer_parameters, InferenceResult,
    lattice_ensemble, LatticeEnsemble, mean_conductance, MicroscopicParameters, probe_share, ProbeBypassWarning,
    realization_conductances
)
from ._core.scaling import (
    beta_one_loop, BetaFit, dephasing_slopes, DephasingSlopes, finite_difference_beta, fit_beta, fit_scaling,
    ScalingFit, ScalingModel
)
from ._core.tmm import localization_length, lyapunov_exponents, LyapunovSpectrum
from ._core.thermal import (
    fermi_quadrature, fermi_window, tau_phi_law, thermal_average, thermal_conductance
)
from . import runs, stats, theory

__version__ = "0.1.0"

# Every public name above, once: the imports are the export list.
__all__ = sorted(name for name in dir() if not name.startswith("_"))
