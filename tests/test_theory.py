"""Analytic theory (difftransport.theory): tabulated values from docs/theory.md, limits, gradients against finite
differences, vectorization and unit conversions. The independent references are scipy's digamma, direct
partial sums of the defining series in numpy, and analytic limits."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma as scipy_digamma

from conftest import central_difference
from difftransport import theory as th

# docs/theory.md#hln-function: table of f(x) = psi(1/2 + x) - ln x, quoted to 6 decimals.
F_TABLE = {10: 0.000416, 3: 0.004544, 1: 0.036490, 0.3: 0.238964, 0.1: 0.761966, 0.03: 1.683933, 0.01: 2.690183}
# docs/theory.md#wire: table of F(x) = coth(x)/x - 1/x^2, quoted to 4 decimals.
WIRE_TABLE = {0.5: 0.3279, 1: 0.3130, 2: 0.2687, 5: 0.1600, 10: 0.0900}


def test_hln_function_table():
    x = np.array(list(F_TABLE))
    np.testing.assert_allclose(th.hln_function(x), list(F_TABLE.values()), rtol=0, atol=5.1e-7)


def test_hln_function_matches_scipy_on_both_branches():
    """Digamma branch (x <= 15) and asymptotic series (x > 15) against scipy. Both sides of psi - ln x lose an
    absolute ~eps ln(x) < 1e-15 to cancellation (atol); above x ~ 30 that is ~1e-11 relative to f(x) ~ 1/(24 x^2)."""
    x = np.geomspace(1e-3, 15, 200)
    np.testing.assert_allclose(th.hln_function(x), scipy_digamma(0.5 + x) - np.log(x), rtol=1e-12, atol=4e-15)
    x = np.geomspace(15, 60, 50)
    np.testing.assert_allclose(th.hln_function(x), scipy_digamma(0.5 + x) - np.log(x), rtol=1e-14, atol=4e-15)
    # The switch at x = 15 is continuous to double precision, value and slope.
    lo, hi = th.hln_function(15 * (1 - 1e-12)), th.hln_function(15 * (1 + 1e-12))
    assert abs(lo / hi - 1) < 1e-10
    d = jax.grad(th.hln_function)
    assert abs(d(15 * (1 - 1e-12)) / d(15 * (1 + 1e-12)) - 1) < 1e-9


def test_hln_function_limits():
    assert th.hln_function(1e3) * 24e6 == pytest.approx(1.0, rel=1e-6)  # 1/(24 x^2)
    psi_half = -np.euler_gamma - 2 * np.log(2)  # -1.963510
    assert th.hln_function(1e-7) == pytest.approx(np.log(1e7) + psi_half, abs=1e-5)  # ln(1/x) + psi(1/2)
    assert th.hln_function(jnp.inf) == 0.0
    assert np.all(np.asarray(th.hln_function(np.geomspace(1e-4, 1e4, 50))) > 0)


def test_hln_signs_and_limits():
    """docs/theory.md#hln limits: WL (+f/pi), WAL (-f/(2 pi)), magnetic impurities (0)."""
    field = np.geomspace(1e-3, 10, 30)
    wl = th.hln(field, 0.05)
    # rtol 1e-11: the digamma branch carries an absolute error ~eps psi ~ 5e-16, up to 5e-12 relative to f(15)
    np.testing.assert_allclose(wl, th.hln_function(0.05 / field) / math.pi, rtol=1e-11)
    assert np.all(np.asarray(wl) > 0)  # WL: sigma rises with B
    np.testing.assert_allclose(th.hln(field, 0.05, b_so=1e9), -th.hln_function(0.05 / field) / (2 * math.pi),
                               rtol=1e-6)
    np.testing.assert_allclose(th.hln(field, 0.05, b_s=1e9), 0.0, atol=1e-9)
    np.testing.assert_allclose(th.hln_alpha(field, 0.05, 1.0), wl, rtol=1e-11)
    np.testing.assert_allclose(th.hln_alpha(field, 0.05, -0.5), -0.5 * wl, rtol=1e-11)
    # the cubic (split-triplet) form has the same two limits
    np.testing.assert_allclose(th.hln_cubic(field, 0.05, 0.0), wl, rtol=1e-11)
    np.testing.assert_allclose(th.hln_cubic(field, 0.05, 1e9), -0.5 * wl, rtol=1e-6)
    # the B1 (elastic) term: Delta sigma = (1/pi)[f(B_phi/B) - f(B_e/B)] without spin-orbit
    np.testing.assert_allclose(th.hln(field, 0.05, b_e=20.0),
                               (th.hln_function(0.05 / field) - th.hln_function(20.0 / field)) / math.pi, rtol=1e-11)


def test_hln_even_and_quadratic_at_zero_field():
    for f in (lambda b: th.hln(b, 0.3, 0.2, 0.05), lambda b: th.hln_alpha(b, 0.3, 0.5)):
        assert f(0.0) == 0.0
        assert f(0.7) == f(-0.7)
        assert jax.grad(f)(0.0) == 0.0
    # d^2/dB^2 of (alpha/pi) f(B_phi/B) at B = 0 is (alpha/pi) 2/(24 B_phi^2)
    curvature = jax.grad(jax.grad(lambda b: th.hln_alpha(b, 0.3, 0.5)))(0.0)
    assert curvature == pytest.approx(0.5 / math.pi / (12 * 0.3**2), rel=1e-12)


@pytest.mark.parametrize(
    "name, f, args",
    [
        ("hln", lambda b, p, s, m: th.hln(b, p, s, m), (0.37, 0.05, 0.21, 0.03)),
        ("hln (b_e)", lambda b, p, s, e: th.hln(b, p, s, b_e=e), (0.37, 0.05, 0.21, 8.0)),
        ("hln_alpha", th.hln_alpha, (0.37, 0.05, -0.4)),
        ("hln_cubic", th.hln_cubic, (0.37, 0.05, 0.12)),
        ("hln small field (series branch)", th.hln_alpha, (0.002, 0.05, 0.5)),
        ("kawabata", th.kawabata, (0.8, 0.1, 1.0)),
        ("kawabata small field", th.kawabata, (5e-5, 0.1, 1.0)),
        ("F", th.coherent_wire_function, (0.7,)),
        ("F series branch", th.coherent_wire_function, (0.06,)),
        ("f3", th.kawabata_function, (3.3,)),
        ("wire", lambda b, l, w, p: th.wire_magnetoconductance(b, l, w, p), (0.05, 2e-6, 1e-7, 4e-7)),
        ("wire spin-orbit", lambda b, l, p, s: th.wire_magnetoconductance(b, l, 1e-7, p, l_so=s, spin="spin-orbit"),
         (0.05, 2e-6, 4e-7, 1.5e-7)),
        ("wire specular", lambda b, w, l: th.wire_field_length(b, w, mean_free_path=l, boundary="specular"),
         (0.05, 1e-7, 2e-7)),
        ("diffusion", th.diffusion_constant, (2.3, 0.14)),
        ("dos", th.square_lattice_dos, (-1.3,)),
    ],
)
def test_gradients_match_finite_differences(name, f, args):
    """jax.grad against a 4th-order central difference with a relative step 1e-4 (truncation ~1e-16 relative
    for these smooth functions, roundoff ~eps/h ~ 1e-12): agreement to 1e-7 relative."""
    args = [jnp.asarray(a, float) for a in args]
    grads = jax.grad(lambda *a: f(*a), argnums=tuple(range(len(args))))(*args)
    for i, (a, g) in enumerate(zip(args, grads)):
        h = 1e-4 * abs(float(a))
        fd = central_difference(lambda x: f(*args[:i], x, *args[i + 1:]), a, h)
        assert abs(g - fd) <= 1e-7 * abs(fd) + 1e-300, f"{name}: argument {i}"


def test_vectorized_and_jit_consistent():
    field = jnp.linspace(-1.0, 1.0, 7)[:, None]
    b_phi = jnp.array([0.01, 0.1, 0.3])
    out = th.hln(field, b_phi, 0.05)
    assert out.shape == (7, 3)
    loop = np.array([[th.hln(b, p, 0.05) for p in b_phi] for b in field[:, 0]])
    np.testing.assert_allclose(out, loop, rtol=1e-14)
    np.testing.assert_allclose(jax.jit(th.hln)(field, b_phi, 0.05), out, rtol=1e-14)
    np.testing.assert_allclose(jax.vmap(lambda p: th.kawabata(field[:, 0], p))(b_phi).T,
                               th.kawabata(field, b_phi), rtol=1e-14)


def test_coherent_wire_function_table_and_limits():
    x = np.array(list(WIRE_TABLE))
    np.testing.assert_allclose(th.coherent_wire_function(x), list(WIRE_TABLE.values()), atol=5.1e-5)
    assert th.coherent_wire_function(0.0) == pytest.approx(1 / 3, rel=1e-15)
    big = 200.0
    assert th.coherent_wire_function(big) == pytest.approx(1 / big - 1 / big**2, rel=1e-12)
    # the defining series sum_n 2/(n^2 pi^2 + x^2), summed directly (tail ~ 2/(pi^2 N))
    n = np.arange(1, 2_000_001)
    for xi in (0.05, 0.1, 0.7, 3.0):
        direct = np.sum(2 / (n**2 * np.pi**2 + xi**2)) + 2 / (np.pi**2 * n[-1])
        assert th.coherent_wire_function(xi) == pytest.approx(direct, rel=1e-10)


def test_wire_limits():
    # RMT limits L_e -> inf: -1/3 (spinless), -2/3 (spin-degenerate), +1/3 (strong spin-orbit)
    assert th.wire_correction(1.0, jnp.inf) == pytest.approx(-1 / 3)
    assert th.wire_correction(1.0, jnp.inf, spin="spin-orbit") == pytest.approx(-2 / 3)
    assert th.wire_correction(1.0, jnp.inf, l_so=1e-9, spin="spin-orbit") == pytest.approx(1 / 3)
    # long wire: -L_e/L (Altshuler-Aronov), with 1/L_e^2 = 1/L_phi^2 + 1/L_B^2
    le = 1 / math.sqrt(1 / 3.0**2 + 1 / 5.0**2)
    assert th.wire_correction(1e4, 3.0, l_field=5.0) == pytest.approx(-le / 1e4, rel=1e-3)
    # dirty-limit magnetic length sqrt(3) l_m^2 / W, and the magnetoconductance is positive (WL), zero at B = 0
    assert th.wire_field_length(0.1, 2e-7) == pytest.approx(math.sqrt(3) * th.HBAR / th.ELEMENTARY_CHARGE / 0.1 / 2e-7)
    dg = th.wire_magnetoconductance(jnp.array([0.0, 0.01, 0.1, 1.0]), 5e-6, 2e-7, 1e-6)
    assert dg[0] == 0.0 and np.all(np.diff(np.asarray(dg)) > 0)
    wal = th.wire_magnetoconductance(jnp.array([0.01, 0.1]), 5e-6, 2e-7, 1e-6, l_so=1e-7, spin="spin-orbit")
    assert np.all(np.asarray(wal) < 0)


def test_kawabata_constant_and_series():
    """f3(0) = 0.605 (docs/theory.md#kawabata: partial sum to 2e6 terms 0.60490); the closed form is
    (1 - sqrt 2) zeta(1/2) = 0.6048986434. Against direct partial sums with 2e6 terms, whose tail is
    ~(3/16 ... ) N^(-3/2) < 1e-9."""
    assert th.kawabata_function(0.0) == pytest.approx(0.60490, abs=5e-6)
    n = np.arange(2_000_000, dtype=float)
    for d in (0.0, 0.5, 3.0, 40.0):
        direct = np.sum(2 * (np.sqrt(n + 1 + d) - np.sqrt(n + d)) - 1 / np.sqrt(n + 0.5 + d))
        assert th.kawabata_function(d) == pytest.approx(direct, abs=2e-9)
    # large delta: delta^(-3/2)/48; continuity of the switch to the series at delta = 1000
    assert th.kawabata_function(1e6) * 48e9 == pytest.approx(1.0, rel=1e-10)
    lo, hi = th.kawabata_function(1000 * (1 - 1e-12)), th.kawabata_function(1000 * (1 + 1e-12))
    assert abs(lo / hi - 1) < 1e-9
    # the field form: quadratic at B -> 0 with curvature (alpha/pi) sqrt(e B_phi/hbar) 2/(48 B_phi^2)
    b_phi = 0.1
    curv = jax.grad(jax.grad(lambda b: th.kawabata(b, b_phi)))(0.0)
    expected = math.sqrt(th.ELEMENTARY_CHARGE * b_phi / th.HBAR) / math.pi * 2 / (48 * b_phi**2)
    assert curv == pytest.approx(expected, rel=1e-12)
    b = np.array([1e-4 * (1 - 1e-9), 1e-4 * (1 + 1e-9)])  # B/B_phi = 1e-3 switch
    v = np.asarray(th.kawabata(b, b_phi))
    assert abs(v[0] / v[1] - 1) < 1e-7
    assert th.kawabata(2.0, 0.1, -0.5) < 0 < th.kawabata(2.0, 0.1)


def test_unit_conversions():
    a = 3e-9
    phi = jnp.array([1e-4, 2e-3, 0.05])
    np.testing.assert_allclose(th.flux_from_field(th.field_from_flux(phi, a), a), phi, rtol=1e-14)
    assert th.field_from_flux(1.0, 1.0) == pytest.approx(th.FLUX_QUANTUM)
    assert th.CONDUCTANCE_QUANTUM == pytest.approx(3.874045864e-5, rel=1e-9)
    # B_phi/B = a^2/(8 pi phi L_phi^2) (docs/theory.md#lattice-units): SI and lattice routes agree
    l_phi = 17.0  # lattice constants
    ratio_si = th.field_from_length(l_phi * a) / th.field_from_flux(phi, a)
    np.testing.assert_allclose(ratio_si, th.flux_from_length(l_phi) / phi, rtol=1e-13)
    np.testing.assert_allclose(ratio_si, 1 / (8 * math.pi * phi * l_phi**2), rtol=1e-13)
    assert th.length_from_field(th.field_from_length(2.5e-7)) == pytest.approx(2.5e-7, rel=1e-14)
    assert th.length_from_flux(th.flux_from_length(9.0)) == pytest.approx(9.0, rel=1e-14)
    # l_m = a / sqrt(2 pi phi)
    np.testing.assert_allclose(th.magnetic_length(th.field_from_flux(phi, a)), a / np.sqrt(2 * np.pi * phi), rtol=1e-13)
    assert th.coherence_length(2.0, 8.0) == pytest.approx(4.0)


def test_einstein_relation_and_drude():
    # 2D free electrons (hbar = 1): rho = m/(2 pi), D = v l/2 with v = k/m; sigma = k l/2 in e^2/h
    m, k, ell = 0.7, 1.3, 4.0
    d = th.diffusion_constant(th.drude_conductivity(k, ell), m / (2 * math.pi))
    assert d == pytest.approx((k / m) * ell / 2, rel=1e-14)
    assert th.mean_free_path(d, k / m) == pytest.approx(ell, rel=1e-14)
    # Ohm's law fit recovers sigma and the contact resistance exactly from exact data
    lengths = jnp.array([10.0, 20.0, 40.0, 80.0])
    g = 1 / (0.05 + lengths / (2.5 * 32))
    sigma, rc = th.ohmic_fit(lengths, g, 32)
    assert sigma == pytest.approx(2.5, rel=1e-12) and rc == pytest.approx(0.05, rel=1e-10)
    with pytest.raises(ValueError, match="same length >= 2"):
        th.ohmic_fit(lengths, g[:3], 32)


def test_square_lattice_dos():
    """Against the eigenvalues -2 cos kx - 2 cos ky of a clean 600 x 600 torus (Gaussian broadening 0.05, whose
    bias ~ s^2 rho''/2 is < 1e-3 away from E = 0), and normalization over the band."""
    k = 2 * np.pi * np.arange(600) / 600
    ev = (-2 * np.cos(k)[:, None] - 2 * np.cos(k)[None, :]).ravel()
    energies = jnp.array([-3.0, -1.0, 0.7, 2.2])
    hist = np.array([th.density_of_states(ev, e, broadening=0.05, sites=ev.size) for e in energies])
    np.testing.assert_allclose(th.square_lattice_dos(energies), hist, rtol=2e-3)
    h = 8 / 400_000  # midpoint rule; the log singularity at E = 0 costs O(h ln h) ~ 2e-4
    e = -4 + h * (np.arange(400_000) + 0.5)
    norm = np.sum(np.asarray(th.square_lattice_dos(e))) * h
    assert norm == pytest.approx(1.0, abs=5e-4)
    assert th.square_lattice_dos(4.5) == 0.0
    assert th.square_lattice_dos(0.0) == jnp.inf


def test_value_errors():
    with pytest.raises(ValueError, match="boundary must be one of"):
        th.wire_field_length(0.1, 1e-7, boundary="rough")
    with pytest.raises(ValueError, match="needs mean_free_path"):
        th.wire_field_length(0.1, 1e-7, boundary="specular")
    with pytest.raises(ValueError, match="spin must be one of"):
        th.wire_correction(1.0, 1.0, spin="up")
    with pytest.raises(ValueError, match="real arrays"):
        th.hln(1j, 0.1)
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_phi must be positive"):
        th.hln(0.1, -0.1)
    with pytest.raises(eqx.EquinoxRuntimeError, match="b_so must be >= 0"):
        eqx.filter_jit(th.hln)(0.1, 0.1, -1.0)


def test_lattice_wl_correction_exact_limits():
    """Zero field: the block recursion equals the closed-form mode sum of the lattice Laplacian (Dirichlet at the
    leads, Neumann or periodic across), and a width-1 wire gives exactly -(1 + 2/L)/3 (the -1/3 of
    docs/physics.md#dmpk with its 1/L lattice term: sum_n 1/(2 - 2 cos(n pi/(L+1))) = L(L+2)/6)."""
    length, width, l_phi = 30, 17, 7.0
    n = np.arange(1, length + 1)[:, None]
    m = np.arange(width)[None, :]
    for periodic, k in ((False, 1), (True, 2)):
        modes = 2 - 2 * np.cos(n * np.pi / (length + 1)) + 2 - 2 * np.cos(k * np.pi * m / width) + 1 / l_phi**2
        exact = -2 * np.sum(1 / modes) / length**2
        got = th.lattice_wl_correction(length, width, l_phi=l_phi, periodic=periodic)
        np.testing.assert_allclose(got, exact, rtol=1e-12)
    for length in (5, 50):
        np.testing.assert_allclose(th.lattice_wl_correction(length, 1), -(1 + 2 / length) / 3, rtol=1e-12)


def test_lattice_wl_correction_of_a_bar():
    """3D bars (``height``): at zero field the closed-form mode sum of the cubic lattice (Dirichlet along, Neumann
    or periodic across); in a field along z the hard-wall z modes decouple, so the bar is the sum over them of 2D
    strips whose mass carries 2 - 2 cos(p pi/H); height 1 is the strip."""
    length, width, height, l_phi = 12, 5, 4, 3.0
    n = np.arange(1, length + 1)[:, None, None]
    y = np.arange(width)[None, :, None]
    z = np.arange(height)[None, None, :]
    for periodic, k in ((False, 1), (True, 2)):
        modes = (2 - 2 * np.cos(n * np.pi / (length + 1)) + 2 - 2 * np.cos(k * np.pi * y / width)
                 + 2 - 2 * np.cos(k * np.pi * z / height) + 1 / l_phi**2)
        got = th.lattice_wl_correction(length, width, height=height, l_phi=l_phi, periodic=periodic)
        np.testing.assert_allclose(got, -2 * np.sum(1 / modes) / length**2, rtol=1e-12)
    flux = 0.03
    strips = sum(th.lattice_wl_correction(length, width, flux=flux, extrapolation=1.3,
                                          l_phi=(l_phi**-2 + 2 - 2 * math.cos(p * math.pi / height)) ** -0.5)
                 for p in range(height))
    bar = th.lattice_wl_correction(length, width, height=height, flux=flux, l_phi=l_phi, extrapolation=1.3)
    np.testing.assert_allclose(bar, strips, rtol=1e-12)
    np.testing.assert_allclose(th.lattice_wl_correction(length, width, height=1, flux=flux),
                               th.lattice_wl_correction(length, width, flux=flux), rtol=1e-14)
    with pytest.raises(ValueError, match="periodic cross-section"):
        th.lattice_wl_correction(length, width, height=2, periodic=True)


def test_lattice_wl_correction_3d_bulk_is_one_over_two_pi_l_phi():
    """The bulk of a periodic bar (difference of two lengths) equals the lattice integral
    -(2/WH) sum_k (a^2 - 4)^(-1/2), a = 2 + sum (2 - 2 cos k) + L_phi^-2; on the infinite lattice its L_phi
    dependence is +1/(2 pi L_phi) (the mass-regularized 3D Cooperon, Kawabata's L_phi term; the sharp
    cutoff of docs/theory.md#wl-dimensions gives 1/pi^2). The slope between L_phi = 8 and 16 is 2.5% above it,
    between 16 and 32 1.3%: a lattice correction ~ 1/L_phi, which the Richardson extrapolation of the two removes
    to 0.2%."""
    side, l_phi = 6, 2.5
    trace = lambda n: -0.5 * n**2 * float(th.lattice_wl_correction(n, side, height=side, l_phi=l_phi, periodic=True))
    bulk = -2 * (trace(48) - trace(24)) / (24 * side**2)
    k = 2 * np.pi * np.arange(side) / side
    a = 2 + (2 - 2 * np.cos(k))[:, None] + (2 - 2 * np.cos(k))[None, :] + l_phi**-2
    np.testing.assert_allclose(bulk, -2 / side**2 * np.sum((a**2 - 4) ** -0.5), rtol=1e-8)

    def infinite(lp, points=2048):  # midpoint rule over the Brillouin zone (periodic integrand, peak width 1/L_phi)
        q = 2 * np.pi * (np.arange(points) + 0.5) / points
        a = 2 + (2 - 2 * np.cos(q))[:, None] + (2 - 2 * np.cos(q))[None, :] + lp**-2
        return -2 * np.mean((a**2 - 4) ** -0.5)

    slope = lambda l1: (infinite(l1) - infinite(2 * l1)) / (1 / l1 - 1 / (2 * l1)) * 2 * math.pi
    coarse, fine = slope(8.0), slope(16.0)
    assert 1.02 < coarse < 1.03 and 1.01 < fine < 1.02
    np.testing.assert_allclose(2 * fine - coarse, 1.0, atol=0.003)


def test_lattice_wl_correction_reproduces_hln_in_the_bulk():
    """A periodic strip much longer and wider than L_phi = 6: (L/W)[dG(B) - dG(0)], extrapolated in 1/L from
    L = 128 and 256 (the absorbing ends remove a boundary layer ~L_phi), against HLN with alpha = 1/2. This pins
    the Cooperon charge 2e (charge e would double B_phi/B). Measured agreement 1.5% at l_B = 6.3, 0.7% at
    l_B = L_phi = 8 (W = 96, L = 512, 1024): the residual is the lattice's own correction at a few sites, so the
    tolerance is 2.5%. The winding Cooperon around the circumference is e^(-W/L_phi) ~ 2e-5 of dG."""
    l_phi, width, flux = 6.0, 64, 0.004

    def delta(length):
        d = th.lattice_wl_correction(length, width, flux=flux, l_phi=l_phi, periodic=True)
        return length / width * float(d - th.lattice_wl_correction(length, width, l_phi=l_phi, periodic=True))

    bulk = 2 * delta(256) - delta(128)
    hln = float(th.hln_alpha(flux, th.flux_from_length(l_phi), 0.5))
    assert hln > 0.04
    np.testing.assert_allclose(bulk, hln, rtol=0.025)


def test_lattice_wl_correction_square_log_and_errors():
    """Squares at zero field: the correction per doubling tends to -(1/pi) ln 2 from above (the discrete mode sum
    of the square converges as 1/L: -0.185, -0.200, -0.208 for L = 16 -> 32 -> 64 -> 128), and the flux
    derivative matches a finite difference."""
    d = [float(th.lattice_wl_correction(n, n)) for n in (16, 32, 64, 128)]
    steps = np.diff(d) / math.log(2)
    assert np.all(np.diff(steps) < 0) and np.all(steps > -1 / math.pi)
    np.testing.assert_allclose(steps[-1], -1 / math.pi, rtol=0.07)
    f = lambda phi: th.lattice_wl_correction(12, 9, flux=phi, l_phi=20.0)
    np.testing.assert_allclose(jax.grad(f)(0.003), central_difference(f, 0.003, 1e-4), rtol=1e-7)
    with pytest.raises(ValueError, match="positive integers"):
        th.lattice_wl_correction(10.5, 4)
    with pytest.raises(ValueError, match="must be scalars"):
        th.lattice_wl_correction(10, 4, flux=np.array([0.0, 0.1]))


def test_lattice_wl_correction_extrapolation_is_an_extended_sample():
    """Robin ends with z0 = k + 1/2 equal a Dirichlet chain k sites longer at each end, traced over the central L
    sites (1D at zero field and mass the Cooperon is harmonic outside, so the condition is exact):
    C_ii = i (M + 1 - i)/(M + 1) for a Dirichlet chain of M sites."""
    length, k = 20, 3
    m = length + 2 * k
    i = np.arange(k + 1, k + length + 1)
    exact = -2 * np.sum(i * (m + 1 - i) / (m + 1)) / length**2
    np.testing.assert_allclose(th.lattice_wl_correction(length, 1, extrapolation=k + 0.5), exact, rtol=1e-12)
    np.testing.assert_allclose(th.lattice_wl_correction(length, 1, extrapolation=0.5),
                               th.lattice_wl_correction(length, 1), rtol=1e-14)
    with pytest.raises(eqx.EquinoxRuntimeError, match="extrapolation must be positive"):
        th.lattice_wl_correction(length, 1, extrapolation=-1.0)


def test_lattice_wl_correction_cutoff_is_the_regularized_bulk_logarithm():
    """With the Pauli-Villars cutoff l_c the bulk correction per square of a periodic strip is exactly
    -(2/W) sum_ky [(a1^2 - 4)^(-1/2) - (a2^2 - 4)^(-1/2)], a_i = 4 - 2 cos ky + m_i (the longitudinal integral
    of the lattice Cooperon, m1 = L_phi^-2, m2 = m1 + l_c^-2), and in the continuum -(1/2pi) ln(1 + L_phi^2/l_c^2),
    free of the lattice constant (the lattice Laplacian differs from q^2 by q^4/12: 3.4% at l_c = 3). The bulk is
    the difference of two lengths (the lead ends, L_phi away, cancel to e^-20). A cutoff far below the lattice
    constant removes nothing."""
    width, l_phi, l_c = 48, 6.0, 3.0
    trace = lambda n, **kw: -0.5 * n**2 * float(th.lattice_wl_correction(n, width, l_phi=l_phi, periodic=True,
                                                                        **kw))
    bulk = lambda **kw: -2 * (trace(240, **kw) - trace(120, **kw)) / (120 * width)
    ky = 2 * np.pi * np.arange(width) / width
    a1 = 4 - 2 * np.cos(ky) + l_phi**-2
    a2 = a1 + l_c**-2
    lattice = -2 / width * np.sum((a1**2 - 4) ** -0.5 - (a2**2 - 4) ** -0.5)
    np.testing.assert_allclose(bulk(cutoff=l_c), lattice, rtol=1e-8)
    np.testing.assert_allclose(bulk(cutoff=l_c), -math.log(1 + l_phi**2 / l_c**2) / (2 * math.pi), rtol=0.05)
    np.testing.assert_allclose(bulk(), -2 / width * np.sum((a1**2 - 4) ** -0.5), rtol=1e-8)  # no cutoff: lattice
    np.testing.assert_allclose(th.lattice_wl_correction(16, 16, cutoff=1e-4, extrapolation=2.0),
                               th.lattice_wl_correction(16, 16, extrapolation=2.0), rtol=1e-6)
    with pytest.raises(eqx.EquinoxRuntimeError, match="cutoff must be positive"):
        th.lattice_wl_correction(16, 16, cutoff=0.0)
