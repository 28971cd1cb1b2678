"""The physics core: lattices, model and disorder, the sliced Hamiltonian and its solvers (RGF, transfer
matrices, Büttiker probes, TMM, Chebyshev evolution), observables, analytic theory, fits, scaling, inference and
statistics. Pure functions of their arguments; no file or terminal I/O. The public API is re-exported by
``difftransport``."""
