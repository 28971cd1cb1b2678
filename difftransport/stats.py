"""Statistics (public namespace): means, variances and jackknife errors of ensembles, the weighted straight-line
fit, Gauss-Newton covariances, p-values and Gaussian intervals, and :class:`Estimate`, the one shape of every fit
result. Conventions and formulas in the docstrings; implementation: ``_core/stats.py``."""

from ._core.stats import (
    Estimate,
    LineFit,
    chi2_pvalue,
    confidence_z,
    gauss_newton_covariance,
    jackknife,
    line_fit,
    mean_stderr,
    variance_stderr,
)

__all__ = ["Estimate", "LineFit", "chi2_pvalue", "confidence_z", "gauss_newton_covariance", "jackknife", "line_fit",
           "mean_stderr", "variance_stderr"]
