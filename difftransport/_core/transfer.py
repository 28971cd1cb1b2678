"""Transfer-matrix sweep for G_N1, renormalized every few slices: the fast path for lattices whose inter-slice
hopping is site-diagonal (square strips, cubic bars; any field, spin-orbit coupling, exchange or absorption).

Row s of (E - H) psi = 0 reads V_{s-1} psi_{s-1} = (E - H_s) psi_s - V_s^+ psi_{s+1} (V_s = H[s+1, s]). The
outgoing-wave solutions of the sample and right lead form an n-dimensional space; with Y_{s+1} = V_s^+ X_{s+1}
its basis (X_s, Y_{s+1}) starts at the last slice as (1, Sigma_R) and steps to the left as

    X_{s-1} = V_{s-1}^-1 [(E - H_s) X_s - Y_{s+1}],      Y_s = V_{s-1}^+ X_s,

which costs O(n^2) per slice when V is site-diagonal (per-site s x s blocks, inverted in closed form) and the
clean intra-slice bonds are applied as a stencil. Evanescent modes grow by e^(kappa) per slice, so every
``every`` slices the basis is renormalized: right-multiplied by U^-1 from the LU factorization X_s = P^T L U,
so X becomes P^T L (unit lower-triangular, bounded entries) and Y, X_N become Y U^-1, X_N U^-1 (one LU and one
triangular solve with 2n right-hand sides; the Riccati form (1, Y X_s^-1) that RGF applies at every slice needs an
inverse and two products more, measured 5-15% slower overall). Any invertible right factor leaves the solution
space, Sigma and G_N1 unchanged. At the first slice Sigma = Y_1 X_0^-1 is the self-energy of everything to its
right, G_11 = (E - H_1 - Sigma_L - Sigma)^-1 and G_N1 = X_N X_1^-1 G_11, with X_N carried through the
renormalizations. RGF spends one n x n inverse and one product per slice; this sweep one LU per ``every``
slices: 4-7x faster on CPU (4.9x for 32 x 128, 7.0x for 64 x 256, 4.4x spinful; docs/benchmarks.md), agreeing
with RGF to ~1e-11 at ``every`` = 8. With one orbital per site the steps run as one flat loop and the
renormalization as a ``lax.cond`` inside it (the nested loop of blocks copied the carry at every step,
docs/benchmarks.md#flat-transfer-loop); with s x s site blocks, s >= 2, the nested loop stays (measured faster).
With two orbitals per site and inter-slice blocks that share a spin axis (``SiteBlockHopping.axis``: -t + i alpha
sigma_y times a phase, the builders' square and cubic x bonds without SU(2) disorder) the sweep runs in the spin
basis that diagonalizes them all (conjugation by 1_m (x) R, undone on G_N1 at the end), so V^-1 and V^+ are
applied as diagonals, and so are the site blocks where they are multiples of the identity (``scalar_sites``):
spinful ensembles ~6% faster (docs/benchmarks.md#spin-rotation).
Between renormalizations the basis loses e^(every kappa_max) of relative precision (kappa_max ~ 1-2 per slice
for the square lattice): 16 slices leaves ~1e-8, which is why 8 is the default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .hamiltonian import SiteBlockHopping, SlicedHamiltonian, bond_stencil, site_apply, stencil_apply, stencil_blocks
from .linalg import lu_basis
from .rgf import _cmatmul, _dag, checkpointed_scan, inverse

EVERY = 8  # slices between renormalizations of the basis (accuracy ~1e-11 on the square lattice)


def unsupported(ham: SlicedHamiltonian) -> str | None:
    """Why the transfer sweep does not apply to ``ham`` (it needs site-diagonal hopping and L >= 2), or None."""
    if not isinstance(ham.hops, SiteBlockHopping):
        return (f"needs site-diagonal inter-slice hopping (square strips, cubic bars, zigzag honeycomb cylinders), "
                f"not {type(ham.hops).__name__}")
    return None if ham.length > 1 else "needs at least two slices"


def _block_inverse(blocks):
    """Inverses of (..., s, s) blocks: closed form for s = 1, 2 (batched LAPACK calls are slow on CPU)."""
    s = blocks.shape[-1]
    if s == 1:
        return 1.0 / blocks
    if s == 2:
        a, b, c, d = blocks[..., 0, 0], blocks[..., 0, 1], blocks[..., 1, 0], blocks[..., 1, 1]
        adj = jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2)
        return adj / (a * d - b * c)[..., None, None]
    return jnp.linalg.inv(blocks)


# columns: eigenvectors of sigma_x, sigma_y, sigma_z; R^dagger (a + b sigma_axis) R = diag(a + b, a - b)
_SPIN_EIGENBASES = np.array([[[1, 1], [1, -1]], [[1, 1], [1j, -1j]], [[np.sqrt(2), 0], [0, np.sqrt(2)]]]) / np.sqrt(2)


def _spin_rotated(ham: SlicedHamiltonian, sigma_first, sigma_last):
    """(ham, sigma_first, sigma_last) in the per-site spin basis R that diagonalizes every inter-slice block
    (``ham.hops.axis``), i.e. conjugated by K = 1_m (x) R: G_N1 of the result is K^dagger G_N1 K."""
    r = jnp.asarray(_SPIN_EIGENBASES[ham.hops.axis])
    rd = jnp.conj(r.T)

    def blocks(b):  # (..., 2, 2) blocks
        return jnp.einsum("ab,...bc,cd->...ad", rd, b, r)

    ham = SlicedHamiltonian(
        base=_site_conjugated(ham.base, rd, r), site=blocks(ham.site),
        hops=SiteBlockHopping(blocks(ham.hops.blocks), 2), lead=None,  # now diagonal: a + b sigma_z
        bond_values=None if ham.bond_values is None else blocks(ham.bond_values), bond_index=ham.bond_index,
        base_bonds=ham.base_bonds, scalar_sites=ham.scalar_sites,
    )
    return ham, _site_conjugated(sigma_first, rd, r), _site_conjugated(sigma_last, rd, r)


def _site_conjugated(h, left, right):
    """(1_m (x) left) h (1_m (x) right) for an (m s, m s) matrix h and s x s factors."""
    m, s = h.shape[-1] // left.shape[0], left.shape[0]
    return jnp.einsum("ab,ibjc,cd->iajd", left, h.reshape(m, s, m, s), right).reshape(h.shape)


def _apply(a, x):
    """a x for a flat diagonal a (n,) or site blocks a (m, s, s); x (n, k)."""
    return a[:, None] * x if a.ndim == 1 else site_apply(a, x)


def _stencil(ham: SlicedHamiltonian):
    """(neighbours (m, z) static, coefficients (m, z, s, s)) with (base x)[i] = sum_z coef[i, z] x[nbr[i, z]],
    from the static bond list of the clean intra-slice bonds; None if the base is not known to be sparse."""
    if not ham.base_bonds:
        return None
    m, s = ham.site.shape[1], ham.site.shape[2]
    lists = [[] for _ in range(m)]
    for i, j in ham.base_bonds:  # each neighbour once: base already sums repeated bonds
        for a, b in ((i, j), (j, i)):
            if b not in lists[a]:
                lists[a].append(b)
    z = max(len(v) for v in lists)
    nbr = np.array([v + [i] * (z - len(v)) for i, v in enumerate(lists)], dtype=np.int32)
    mask = np.array([[1.0] * len(v) + [0.0] * (z - len(v)) for v in lists])
    base4 = ham.base.reshape(m, s, m, s)
    coef = base4[np.arange(m)[:, None], :, nbr, :]  # (m, z, s, s): H[i, nbr] blocks
    return nbr, coef * mask[:, :, None, None]


def _h_apply(ham, stencil, bond_structure, site, bonds, x):
    """H_s x for one slice: the clean bonds as a stencil (or a dense product), the site blocks, the per-slice bond
    values as a stencil of their own (``bond_structure``; the builders leave ``base`` zero then, and a base without
    a known bond list is applied densely)."""
    if bonds is None:
        if stencil is None:
            return _cmatmul(ham.base, x) + _apply(site, x)
        return stencil_apply(*stencil, x) + _apply(site, x)
    out = stencil_apply(bond_structure[0], stencil_blocks(bond_structure, bonds), x) + _apply(site, x)
    if stencil is not None:
        return out + stencil_apply(*stencil, x)
    return out + _cmatmul(ham.base, x)


def transfer_sweep(energy, ham: SlicedHamiltonian, sigma_first, sigma_last, every: int = EVERY):
    """G_N1, the block of the full retarded Green's function from the first to the last slice (module docstring).

    Needs site-diagonal hopping and L >= 2 (:func:`unsupported`); differentiable, and reverse mode stores
    O(sqrt(L)) carries (blocks of steps run under ``jax.checkpoint``)."""
    if unsupported(ham):
        raise ValueError(f"transfer_sweep {unsupported(ham)}; use the RGF sweep.")
    if int(every) != every or every < 1:
        raise ValueError(f"every must be a positive integer (slices between renormalizations), got {every!r}.")
    n, length, orbitals = ham.size, ham.length, ham.site.shape[-1]
    rotation = None
    if orbitals == 2 and ham.hops.axis is not None:  # one spin rotation makes every V diagonal
        rotation = _SPIN_EIGENBASES[ham.hops.axis]
        ham, sigma_first, sigma_last = _spin_rotated(ham, sigma_first, sigma_last)
    eye = jnp.eye(n, dtype=ham.base.dtype)
    stencil = _stencil(ham)
    site, bonds = ham.slice_data()
    bond_structure = None if bonds is None else bond_stencil(ham.bond_index, ham.site.shape[1])
    v = ham.hops.blocks  # (L - 1, m, s, s): V_s = H[s+1, s]
    if orbitals == 1 or rotation is not None:  # diagonal: applied as flat vectors, one product per entry
        v = jnp.diagonal(v, axis1=-2, axis2=-1).reshape(v.shape[0], n)
        v_inv, v_dag = 1.0 / v, jnp.conj(v)
    else:
        v_inv, v_dag = _block_inverse(v), _dag(v)
    # scalar site blocks (no exchange; unchanged by the rotation) as flat diagonals too
    site_data = jnp.repeat(site[:, :, 0, 0], orbitals, axis=1) if orbitals == 1 or ham.scalar_sites else site

    def step(carry, x):  # (X_s, Y_{s+1}, X_N) -> (X_{s-1}, Y_s, X_N)
        x_s, y_next, last = carry
        site_s, bonds_s, v_inv_s, v_dag_s = x
        rhs = energy * x_s - _h_apply(ham, stencil, bond_structure, site_s, bonds_s, x_s) - y_next
        return (_apply(v_inv_s, rhs), _apply(v_dag_s, x_s), last), None

    def renormalize(carry):
        x_s, y_next, last = carry
        basis, upper = lu_basis(x_s)  # X_s = P^T L U, and X_s U^-1 = P^T L
        # Z U = (Y; X_N) solved from the right as it stands: the transposed left solve costs 1.4x more per call
        both = jax.lax.linalg.triangular_solve(upper, jnp.concatenate([y_next, last]), left_side=False, lower=False)
        return basis, both[:n], both[n:]

    # slices L-1 ... 1 step to the slice before them, each with the hopping V_{s-1}
    xs = (site_data[1:][::-1], None if bonds is None else bonds[1:][::-1], v_inv[::-1], v_dag[::-1])
    steps = length - 1
    blocks, rest = divmod(steps, every)
    carry = (eye, sigma_last, eye)
    if orbitals == 1:
        # one flat loop, renormalizing after steps every-1, 2 every-1, ... through a cond on an unbatched flag:
        # XLA keeps the carry in place and fuses each step (two per iteration) into one loop; the nested loop
        # below copies the carry every step (1.1-1.3x slower here; docs/benchmarks.md#flat-transfer-loop)
        j = np.arange(steps)
        renorm = jnp.asarray(((j + 1) % every == 0) & (j < blocks * every))

        def flat_step(carry, x):
            carry = step(carry, x[:4])[0]
            return jax.lax.cond(x[4], renormalize, lambda c: c, carry), None

        carry = checkpointed_scan(flat_step, carry, xs + (renorm,), steps, unroll=2)
    else:
        # blocks of ``every`` steps, each followed by a renormalization (for 2 x 2 site blocks the flat loop
        # was measured ~8% slower in ensembles, docs/benchmarks.md#flat-transfer-loop)
        def block(carry, xs):
            carry = jax.lax.scan(step, carry, xs)[0]
            return renormalize(carry), None

        head = jax.tree.map(lambda a: a[: blocks * every].reshape((blocks, every) + a.shape[1:]), xs)
        if blocks:
            carry = checkpointed_scan(block, carry, head, blocks)
        if rest:
            carry = jax.lax.scan(step, carry, jax.tree.map(lambda a: a[blocks * every:], xs))[0]
    x_0, y_1, last = carry
    x0_inv = inverse(x_0)
    h_first = ham.block(site[0], None if bonds is None else bonds[0])
    g_11 = inverse(energy * eye - h_first - sigma_first - _cmatmul(y_1, x0_inv))
    g_n1 = _cmatmul(_cmatmul(last, x0_inv), g_11)
    if rotation is None:
        return g_n1
    r = jnp.asarray(rotation)
    return _site_conjugated(g_n1, r, jnp.conj(r.T))
