"""The dephasing slope dg/d ln tau_phi through the Buttiker-probe solve (``dephasing_slopes``, issue: beta by
automatic differentiation) and its one-loop comparator (``theory.wl_dephasing_slope``)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difftransport as dt
from difftransport import theory


def test_slopes_are_the_finite_differences_and_contacts_are_removed_exactly():
    """Per realization and field, the forward-mode slope equals the central difference in ln tau_phi (step 1e-4)
    to 1e-6 relative; g_c = 1/(1/g - 1/N) and its slope (g_c/g)^2 dg follow from g exactly."""
    sample = dt.Sample(dt.strip(6), 6)
    model = dt.Model(energy=-1.0, tau_phi=8.0)
    keys = jax.random.split(jax.random.key(2), 2)
    s = dt.dephasing_slopes(keys, sample, model, 2.0, fluxes=[0.0, 0.02])
    assert s.g.shape == s.slope.shape == (2, 2)
    for r in range(2):
        disorder = dt.Disorder(potential=dt.anderson_potential(keys[r], sample, 2.0))
        for i, flux in enumerate([0.0, 0.02]):
            g = lambda lt: float(dt.conductance(sample, dt.Model(energy=-1.0, flux=flux, tau_phi=math.exp(lt)),
                                                disorder, dephasing="buttiker"))
            fd = (g(math.log(8.0) + 1e-4) - g(math.log(8.0) - 1e-4)) / 2e-4
            assert abs(float(s.slope[r, i]) - fd) <= 1e-6 * abs(fd)
            assert abs(float(s.g[r, i]) - g(math.log(8.0))) <= 1e-12
    n = np.asarray(s.channels)[None, :]
    gc = 1 / (1 / np.asarray(s.g) - 1 / n)
    np.testing.assert_allclose(np.asarray(s.g_contact), gc, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(s.slope_contact), (gc / np.asarray(s.g)) ** 2 * np.asarray(s.slope),
                               rtol=1e-12)
    mean, se = s.subtracted(1)
    d = np.asarray(s.slope_contact[:, 0] - s.slope_contact[:, 1])
    assert abs(mean - d.mean()) <= 1e-12 and abs(se - d.std(ddof=1) / math.sqrt(2)) <= 1e-12
    mean, se = s.magnetoconductance(1)
    dg = np.asarray(s.g_contact[:, 1] - s.g_contact[:, 0])
    assert abs(mean - dg.mean()) <= 1e-12 and abs(se - dg.std(ddof=1) / math.sqrt(2)) <= 1e-12
    raw = np.asarray(s.g[:, 1] - s.g[:, 0]).mean()
    assert abs(s.magnetoconductance(1, contact=False)[0] - raw) <= 1e-12
    with pytest.raises(ValueError, match="fluxes\\[0\\] = 0"):
        s.subtracted(0)
    with pytest.raises(ValueError, match="fluxes\\[0\\] = 0"):
        s.magnetoconductance(2)
    with pytest.raises(ValueError, match="needs model.tau_phi"):
        dt.dephasing_slopes(keys, sample, dt.Model(energy=-1.0), 2.0, fluxes=[0.0])


def test_one_loop_slope_has_its_bulk_limit():
    """theory.wl_dephasing_slope is the ln tau_phi derivative of lattice_wl_correction (finite difference, 1e-6),
    and in a sample much larger than L_phi (L = 160, L_phi = 12) its zero-field value is the bulk one loop
    -1/(2 pi) within 5%. In a field the lattice slope is 5.7% (flux 0.003, the Cooperon's magnetic length 5
    sites) and 8.8% (flux 0.01, 2.8 sites) above the continuum -(1/2 pi) x psi'(1/2 + x) (lattice discreteness);
    not asserted here: a first version asserted 5% and failed at both fluxes."""
    length, diffusion, tau = 160, 4.0, 36.0  # L_phi = 12
    zero = float(theory.wl_dephasing_slope(length, length, diffusion=diffusion, tau_phi=tau))
    assert abs(zero + 1 / (2 * math.pi)) <= 0.05 / (2 * math.pi)
    h, flux = 1e-4, 0.01
    dg = lambda t: float(theory.lattice_wl_correction(24, 24, flux=flux, l_phi=math.sqrt(diffusion * t)))
    fd = (dg(tau * math.exp(h)) - dg(tau * math.exp(-h))) / (2 * h)
    assert abs(float(theory.wl_dephasing_slope(24, 24, diffusion=diffusion, tau_phi=tau, flux=flux)) - fd) <= 1e-6


def test_symplectic_slope_antilocalizes():
    """The derivative route in the symplectic class (SU(2) random hopping, 24 x 24 spinful hard-wall squares,
    E = 1, W = 0, tau_phi = 25, subtracted at flux 0.02 in the sample; 96 realizations of key 7, not used
    elsewhere): beta_phi = 2 <slope(0) - slope(B)> / <g> must be positive, at least 4 standard errors above 0.

    Comparators fixed before the run: the finite square's one loop (theory.wl_dephasing_slope with the sign of the
    singlet, D from the Einstein relation, the rule of configs/scaling_dephasing_su2_2d.toml) gives +0.063, the
    asymptote +1/(pi g) ~ +0.093; the 32^2 study measured 1.0-1.25 of its finite square's one loop. The nearest
    wrong answers: 0 (no Cooperon left in the subtracted slope) and the orthogonal sign, -1/(pi g); with the
    expected s.e. ~0.012 (a pilot of 32 other realizations: 0.021) the 4-sigma window excludes both, and the
    subtraction is checked against the raw slope (Drude term included: larger)."""
    sample = dt.Sample(dt.strip(24), 24, spinful=True, field_region="sample")
    keys = jax.random.split(jax.random.key(7), 96)
    s = dt.dephasing_slopes(keys, sample, dt.Model(energy=1.0, tau_phi=25.0), 0.0, fluxes=[0.0, 0.02], su2=True)
    beta, se = s.beta(1)
    raw, _ = s.beta(None)
    g = float(np.asarray(s.g_contact)[:, 0].mean())
    print(f"beta_phi = {beta:.4f} +- {se:.4f} (z against 0: {beta / se:.1f}), raw {raw:.4f}, <g> = {g:.3f}, "
          f"1/(pi g) = {1 / (math.pi * g):.4f}")
    assert se < 0.02
    assert beta >= 4 * se
    assert raw > beta


def test_field_residual_fraction_is_the_hln_derivative():
    """theory.cooperon_slope_fraction(L_phi, flux) = 1 - x psi'(1/2 + x) is the share of the bulk Cooperon's ln
    tau_phi slope that the field removes: pi times minus the ln B_phi derivative of the HLN weak-localization
    magnetoconductance (spin-1/2, (1/pi) f(B_phi/B)) at B_phi = 1/(8 pi L_phi^2) flux quanta per plaquette, by
    autodiff through digamma (an independent route: no polygamma). To 1e-10; it tends to 1 when L_phi >> l_B and
    to 0 when L_phi << l_B (x psi'(1/2 + x) = 1 - 1/(12 x^2) + 7/(240 x^4) - ...), and bad input is refused."""
    for l_phi, flux in [(15.0, 0.005), (10.0, 0.01), (4.0, 0.05), (30.0, 0.001)]:
        b_phi = 1 / (8 * math.pi * l_phi**2)
        hln = jax.grad(lambda lb: theory.hln(flux, jnp.exp(lb)))(jnp.log(b_phi))
        assert abs(float(theory.cooperon_slope_fraction(l_phi, flux)) - (-math.pi * float(hln))) <= 1e-10
    assert float(theory.cooperon_slope_fraction(math.sqrt(5.61 * 40), 0.005)) == pytest.approx(0.8442, abs=1e-4)
    assert float(theory.cooperon_slope_fraction(1e4, 0.01)) > 1 - 1e-6
    x = 1 / (8 * math.pi * 0.5**2 * 0.01)  # x = 15.9: 1/(12 x^2) - 7/(240 x^4), next term 4e-6 of it
    assert float(theory.cooperon_slope_fraction(0.5, 0.01)) == pytest.approx(1 / (12 * x**2) - 7 / (240 * x**4),
                                                                             rel=2e-5)
    with pytest.raises(eqx.EquinoxRuntimeError, match="l_phi must be positive"):
        theory.cooperon_slope_fraction(0.0, 0.01)
    with pytest.raises(eqx.EquinoxRuntimeError, match="flux must be positive"):
        theory.cooperon_slope_fraction(10.0, -0.01)


def test_slopes_through_either_probe_solver_agree():
    """``solver="gmres"`` (Krylov) and the default (the direct solve on this small strip) give the same g and
    slopes to 1e-8 relative; an unknown solver is a one-line error."""
    sample, model = dt.Sample(dt.strip(5), 5), dt.Model(energy=-1.0, tau_phi=8.0)
    keys = jax.random.split(jax.random.key(5), 2)
    dense = dt.dephasing_slopes(keys, sample, model, 2.0, fluxes=[0.0, 0.05])
    gmres = dt.dephasing_slopes(keys, sample, model, 2.0, fluxes=[0.0, 0.05], solver="gmres")
    np.testing.assert_allclose(np.asarray(gmres.g), np.asarray(dense.g), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(gmres.slope), np.asarray(dense.slope), rtol=1e-8)
    with pytest.raises(ValueError, match="solver must be one of"):
        dt.dephasing_slopes(keys, sample, model, 2.0, fluxes=[0.0, 0.05], solver="lu")


def test_einstein_beta_is_the_finite_difference_of_its_definition():
    """3D: beta_einstein = (1 + 3s)/(1 + s) is 1 + d ln sigma / d ln L_phi with sigma = <g_c>/L and
    L_phi = sqrt(sigma tau_phi / (2 pi rho)) (the Einstein rule), checked by central differences in ln tau_phi
    (step 1e-4) through the ensemble's own conductances on a 4^3 cube, for any rho (it drops out), to 1e-6;
    s <= -1 (an L_phi that does not grow with tau_phi) is refused."""
    sample = dt.Sample(dt.bar(4, 4), 4)
    keys = jax.random.split(jax.random.key(5), 3)
    s = dt.dephasing_slopes(keys, sample, dt.Model(energy=0.0, tau_phi=20.0), 10.0, fluxes=[0.0])
    beta, se = s.beta_einstein(blocks=3)
    n = float(s.channels[0])

    def sigma(tau):
        g = [float(dt.conductance(sample, dt.Model(energy=0.0, tau_phi=tau),
                                  dt.Disorder(potential=dt.anderson_potential(k, sample, 10.0)), dephasing="buttiker"))
             for k in keys]
        return np.mean([1 / (1 / x - 1 / n) for x in g]) / 4

    taus = (20.0 * math.exp(-1e-4), 20.0 * math.exp(1e-4))
    sigmas = [sigma(t) for t in taus]
    for rho in (0.05, 0.2):
        l_phi = [math.sqrt(x * t / (2 * math.pi * rho)) for x, t in zip(sigmas, taus)]
        fd = 1 + math.log(sigmas[1] / sigmas[0]) / math.log(l_phi[1] / l_phi[0])
        assert abs(beta - fd) <= 1e-6
    assert se > 0
    bad = dt.DephasingSlopes.from_values([0.0], np.ones((3, 1)), -2 * np.ones((3, 1)), [10.0])
    with pytest.raises(ValueError, match="not above -1"):
        bad.beta_einstein(blocks=3)
