"""Invariances and metric properties of layersim.metrics, over seeds and sizes.

Every comparison uses the one tolerance TOL; "not invariant" means a change larger than
NOT_INVARIANT.
"""

import numpy as np
import pytest

import metric_reference as ref
from layersim import metrics as m

TOL = 1e-8
NOT_INVARIANT = 1e-3
SEEDS = [0, 1, 2]
SIZES = [(30, 4, 3), (80, 10, 12), (200, 25, 20)]  # (n, p, q), p + q < n


def data(seed, n, p, q):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p))
    Y = X @ rng.normal(size=(p, q)) + rng.normal(size=(n, q)) * 2.0
    return rng, X, Y


def orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def invertible(rng, d):
    """A well-conditioned but far-from-orthogonal invertible map."""
    return orthogonal(rng, d) @ np.diag(np.linspace(0.2, 5.0, d)) @ orthogonal(rng, d)


def similarity_transform(rng, Y):
    """A rotated, rescaled, shifted copy of Y."""
    return 3.7 * Y @ orthogonal(rng, Y.shape[1]) + rng.normal(size=Y.shape[1]) * 10


CKAS = {
    "linear": lambda X, Y: m.linear_cka(X, Y),
    "linear_debiased": lambda X, Y: m.linear_cka(X, Y, debiased=True),
    "rbf": lambda X, Y: m.rbf_cka(X, Y, threshold=0.8),
    "rbf_debiased": lambda X, Y: m.rbf_cka(X, Y, debiased=True),
}
params = pytest.mark.parametrize("seed", SEEDS)
sizes = pytest.mark.parametrize("size", SIZES)


# --- CKA -------------------------------------------------------------------------------------


@params
@sizes
@pytest.mark.parametrize("kind", sorted(CKAS))
def test_cka_invariant_to_orthogonal_maps_isotropic_scaling_and_shifts(seed, size, kind):
    rng, X, Y = data(seed, *size)
    f = CKAS[kind]
    base = f(X, Y)
    assert f(X, similarity_transform(rng, Y)) == pytest.approx(base, abs=TOL)
    assert f(similarity_transform(rng, X), Y) == pytest.approx(base, abs=TOL)


@params
@sizes
@pytest.mark.parametrize("kind", sorted(CKAS))
def test_cka_not_invariant_to_general_invertible_maps(seed, size, kind):
    rng, X, Y = data(seed, *size)
    f = CKAS[kind]
    assert abs(f(X, Y @ invertible(rng, Y.shape[1])) - f(X, Y)) > NOT_INVARIANT


@params
@pytest.mark.parametrize("size", SIZES + [(20, 40, 30)])
@pytest.mark.parametrize("debiased", [False, True])
def test_gram_and_feature_form_linear_cka_agree(seed, size, debiased):
    _, X, Y = data(seed, *size)
    # the Gram form sees uncentred Grams, the feature form centres features: same CKA
    assert m.cka_from_gram(X @ X.T, Y @ Y.T, debiased=debiased) == pytest.approx(
        m.linear_cka(X, Y, debiased=debiased), abs=TOL
    )
    assert m.cka_from_gram(m.linear_gram(X), m.linear_gram(Y), debiased=debiased) == pytest.approx(
        m.linear_cka(X, Y, debiased=debiased), abs=TOL
    )


# --- CCA family --------------------------------------------------------------------------------


@params
@sizes
def test_cca_invariant_to_invertible_maps_and_shifts(seed, size):
    rng, X, Y = data(seed, *size)
    base = m.cca(X, Y)
    X2 = X @ invertible(rng, X.shape[1]) + rng.normal(size=X.shape[1]) * 5
    Y2 = Y @ invertible(rng, Y.shape[1]) - 3.0
    moved = m.cca(X2, Y2)
    np.testing.assert_allclose(moved.rho, base.rho, atol=TOL, rtol=0)
    assert moved.mean_rho == pytest.approx(base.mean_rho, abs=TOL)
    assert moved.r2 == pytest.approx(base.r2, abs=TOL)
    assert m.svcca(X2, Y2, variance=1.0).value == pytest.approx(m.svcca(X, Y, variance=1.0).value, abs=TOL)


@params
@sizes
def test_svcca_invariant_to_orthogonal_maps_isotropic_scaling_and_shifts(seed, size):
    rng, X, Y = data(seed, *size)
    base = m.svcca(X, Y, variance=0.95)
    moved = m.svcca(similarity_transform(rng, X), similarity_transform(rng, Y), variance=0.95)
    assert moved.value == pytest.approx(base.value, abs=TOL) and moved.dims == base.dims


@params
@sizes
def test_pwcca_invariances(seed, size):
    rng, X, Y = data(seed, *size)
    base = m.pwcca(X, Y).value
    p = X.shape[1]
    signed_permutation = np.eye(p)[rng.permutation(p)] * rng.choice([-1.0, 1.0], size=p)
    assert m.pwcca(2.5 * X @ signed_permutation + 7.0, Y).value == pytest.approx(base, abs=TOL)
    assert m.pwcca(X, Y @ invertible(rng, Y.shape[1]) + 4.0).value == pytest.approx(base, abs=TOL)


@params
def test_pwcca_centred_weights_are_shift_invariant_unlike_the_uncentred_variant(seed):
    rng, X, Y = data(seed, 150, 6, 12)
    shift = rng.normal(size=X.shape[1]) * 20
    assert m.pwcca(X + shift, Y).value == pytest.approx(m.pwcca(X, Y).value, abs=TOL)
    naive, naive_shifted = ref.pwcca(X, Y, centre_weights=False), ref.pwcca(X + shift, Y, centre_weights=False)
    assert abs(naive_shifted - naive) > NOT_INVARIANT


# --- Procrustes ----------------------------------------------------------------------------------


@params
@sizes
def test_procrustes_zero_for_rotated_shifted_rescaled_copy(seed, size):
    rng, X, _ = data(seed, *size)
    for sqrt in (False, True):
        assert m.procrustes(X, similarity_transform(rng, X), sqrt=sqrt) == pytest.approx(0.0, abs=TOL)
        # a wider copy: X embedded in more dimensions, then rotated
        wide = np.pad(X, ((0, 0), (0, 3))) @ orthogonal(rng, X.shape[1] + 3)
        assert m.procrustes(wide, X, sqrt=sqrt) == pytest.approx(0.0, abs=TOL)


@params
@sizes
def test_procrustes_symmetric_and_invariant(seed, size):
    rng, X, Y = data(seed, *size)
    d = m.procrustes(X, Y)
    assert m.procrustes(Y, X) == pytest.approx(d, abs=TOL)
    assert m.procrustes(similarity_transform(rng, X), similarity_transform(rng, Y)) == pytest.approx(d, abs=TOL)
    assert 0 < d <= 2


@params
@pytest.mark.parametrize("n", [10, 60])
def test_procrustes_sqrt_satisfies_triangle_inequality(seed, n):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 5))
    # near neighbours and far points, different widths
    reps = [base, base @ rng.normal(size=(5, 7)), base + 0.3 * rng.normal(size=(n, 5)),
            rng.normal(size=(n, 4)), np.tanh(base @ rng.normal(size=(5, 6)))]
    d = np.array([[m.procrustes(a, b, sqrt=True) for b in reps] for a in reps])
    for i in range(len(reps)):
        for j in range(len(reps)):
            for k in range(len(reps)):
                assert d[i, k] <= d[i, j] + d[j, k] + TOL


# --- subspace match --------------------------------------------------------------------------------


@params
@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_subspace_match_invariances(seed, epsilon):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 6))
    scaled_permuted = X[:, rng.permutation(6)] * rng.uniform(0.5, 2, size=6) * rng.choice([-1, 1], size=6)
    assert m.subspace_match(X, scaled_permuted, epsilon=epsilon).similarity == 1.0
    # an invertible map of all neurons keeps the span: the full sets match
    assert m.subspace_match(X, X @ invertible(rng, 6), epsilon=epsilon).similarity == 1.0
    # independent neurons in n > p + q dimensions: nothing matches
    assert m.subspace_match(X, rng.normal(size=(30, 5)), epsilon=epsilon).similarity == 0.0


# --- self-similarity is exact ------------------------------------------------------------------------


@params
@pytest.mark.parametrize("size", SIZES + [(20, 40, 30)])
def test_self_similarity_is_exact(seed, size):
    _, X, _ = data(seed, *size)
    for name, f in m.METRICS.items():
        if f.kind == "unnormalised":
            continue
        with np.errstate(all="raise"):
            value = f(X, X)
        assert value == pytest.approx(1.0 if f.kind == "similarity" else 0.0, abs=TOL), name
    assert m.subspace_match(X, X, epsilon=0.0).similarity == 1.0
    P = np.abs(X[:, :3]) / np.abs(X[:, :3]).sum(1, keepdims=True)
    assert m.jsd(P, P) == 0.0
    assert m.prediction_disagreement(P, P) == 0.0
    assert m.accuracy_difference(P, P, np.zeros(len(P), int)) == 0.0
