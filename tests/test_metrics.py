"""layersim.metrics against float64 references, its error messages, Johnson's Example 3.1,
the minibatch engine, and the workflow registry. Invariances: test_metrics_properties.py."""

import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest

import metric_reference as ref
from layersim import metrics as m

REF_TOL = 1e-8  # agreement with the references (the bar)
SEEDS = [0, 1, 2]
SHAPES = [(40, 3, 5), (120, 20, 10), (200, 30, 30)]  # (n, p, q) with p + q < n


def correlated(seed, n, p, q, noise=1.0):
    """X with unequal variances per direction and Y partly a linear function of X."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) @ np.diag(np.linspace(0.5, 3.0, p)) @ rng.normal(size=(p, p)) + rng.normal(size=p)
    Y = X @ rng.normal(size=(p, q)) + noise * rng.normal(size=(n, q)) * np.linspace(1, 4, q) - 2.0
    return X, Y


# --- agreement with the references ---------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES + [(30, 50, 80)])  # the last one has p, q > n
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matches_reference(seed, shape, debiased):
    X, Y = correlated(seed, *shape)
    assert m.linear_cka(X, Y, debiased=debiased) == pytest.approx(ref.linear_cka(X, Y, debiased), abs=REF_TOL)
    assert m.cka_from_gram(X @ X.T, Y @ Y.T, debiased=debiased) == pytest.approx(
        ref.linear_cka(X, Y, debiased), abs=REF_TOL
    )
    for threshold in (0.5, 1.0, 2.0):
        assert m.rbf_cka(X, Y, threshold=threshold, debiased=debiased) == pytest.approx(
            ref.rbf_cka(X, Y, threshold, debiased), abs=REF_TOL
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_rbf_gram_matches_reference(seed):
    X, _ = correlated(seed, 50, 6, 1)
    np.testing.assert_allclose(m.rbf_gram(X, threshold=0.7), ref.rbf_gram(X, 0.7), atol=REF_TOL, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_cca_family_matches_reference(seed, shape):
    X, Y = correlated(seed, *shape)
    res = m.cca(X, Y)
    rho = ref.cca_rho(X, Y)
    np.testing.assert_allclose(res.rho, rho, atol=REF_TOL, rtol=0)
    assert res.mean_rho == pytest.approx(rho.mean(), abs=REF_TOL)
    assert res.r2 == pytest.approx(np.mean(rho**2), abs=REF_TOL)
    assert res.dims == (shape[1], shape[2]) and res.reduced_to == (None, None)
    for variance in (0.5, 0.9, 0.99, 1.0):
        assert m.svcca(X, Y, variance=variance).value == pytest.approx(ref.svcca(X, Y, variance), abs=REF_TOL)
    assert m.pwcca(X, Y).value == pytest.approx(ref.pwcca(X, Y), abs=REF_TOL)
    assert m.pwcca(Y, X).value == pytest.approx(ref.pwcca(Y, X), abs=REF_TOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES + [(30, 50, 80), (20, 7, 60)])
def test_procrustes_matches_reference(seed, shape):
    X, Y = correlated(seed, *shape)
    d2 = ref.procrustes(X, Y)
    assert m.procrustes(X, Y) == pytest.approx(d2, abs=REF_TOL)
    assert m.procrustes(X, Y, sqrt=True) == pytest.approx(np.sqrt(d2), abs=REF_TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_jsd_matches_reference(seed):
    rng = np.random.default_rng(seed)
    logits_p, logits_q = rng.normal(size=(2, 30, 5)) * 3
    P = np.exp(logits_p) / np.exp(logits_p).sum(1, keepdims=True)
    Q = np.exp(logits_q) / np.exp(logits_q).sum(1, keepdims=True)
    P[0] = [1, 0, 0, 0, 0]  # zeros are allowed
    assert m.jsd(P, Q) == pytest.approx(ref.jsd(P, Q, 2.0), abs=REF_TOL)
    assert m.jsd(P, Q, base=np.e) == pytest.approx(ref.jsd(P, Q, np.e), abs=REF_TOL)
    P_soft = np.exp(logits_p) / np.exp(logits_p).sum(1, keepdims=True)
    Q_soft = np.exp(logits_q) / np.exp(logits_q).sum(1, keepdims=True)
    assert m.jsd(logits_p, logits_q, from_logits=True) == pytest.approx(ref.jsd(P_soft, Q_soft, 2.0), abs=REF_TOL)
    assert 0 <= m.jsd(P, Q) <= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_prediction_disagreement_and_accuracy_difference(seed):
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(size=(2, 50, 4))
    labels = rng.integers(0, 4, size=50)
    pred_p, pred_q = [int(np.argmax(r)) for r in P], [int(np.argmax(r)) for r in Q]
    assert m.prediction_disagreement(P, Q) == sum(a != b for a, b in zip(pred_p, pred_q)) / 50
    assert m.prediction_disagreement(np.array(pred_p), np.array(pred_q)) == m.prediction_disagreement(P, Q)
    acc_p = sum(a == y for a, y in zip(pred_p, labels)) / 50
    acc_q = sum(a == y for a, y in zip(pred_q, labels)) / 50
    assert m.accuracy_difference(P, Q, labels) == pytest.approx(abs(acc_p - acc_q))


def test_linear_probe_accuracy_is_seeded_and_sensible():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    X = rng.normal(size=(120, 5)) + 4.0 * np.eye(3, 5)[labels]  # well separated classes
    assert m.linear_probe_accuracy(X, labels) == 1.0
    noise = rng.normal(size=(120, 5))
    a = m.linear_probe_accuracy(noise, labels, seed=3)
    assert a == m.linear_probe_accuracy(noise, labels, seed=3)
    assert a < 0.7  # no signal: near chance (1/3)
    with pytest.raises(m.SampleMismatchError, match="labels"):
        m.linear_probe_accuracy(X, labels[:-1])
    with pytest.raises(m.InvalidParameterError, match="test_fraction"):
        m.linear_probe_accuracy(X, labels, test_fraction=1.0)


# --- the p ≥ n reduction rule ----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_wide_inputs_are_reduced_by_svd_and_say_so(seed):
    X, Y = correlated(seed, 30, 50, 4)
    k = (30 - 1) // 2
    res = m.cca(X, Y)
    assert res.reduced_to == (k, None) and res.dims == (k, 4)
    np.testing.assert_allclose(res.rho, ref.cca_rho(ref.pca_top(X, k), Y), atol=REF_TOL, rtol=0)
    assert m.cca(X, Y, max_dims=5).reduced_to == (5, None)
    sv = m.svcca(X, Y, variance=0.9)
    assert sv.reduced_to[0] is not None and sv.reduced_to[0] <= k
    assert m.pwcca(X, Y).reduced_to == (k, None)


def test_cca_impossible_or_degenerate_is_reported():
    X = np.array([[0.0, 1.0], [1.0, 3.0]])
    with pytest.raises(m.TooFewSamplesError, match="at least 3 samples"):
        m.cca(X, X)
    X, Y = correlated(0, 20, 12, 12)
    with pytest.warns(m.DegenerateCCAWarning, match="at least 5 canonical correlation"):
        res = m.cca(X, Y)
    assert np.sum(res.rho > 1 - 1e-9) >= 5
    with pytest.raises(m.InvalidParameterError, match="max_dims"):
        m.cca(X, Y, max_dims=20)


# --- bad input -------------------------------------------------------------------------------

ALL = dict(m.METRICS)
ALL.update(
    svcca_full=lambda X, Y: m.svcca(X, Y, variance=1.0).value,
    subspace_match=lambda X, Y: m.subspace_match(X, Y, epsilon=0.1).similarity,
)


@pytest.mark.parametrize("name", sorted(ALL))
def test_different_numbers_of_samples(name):
    X, Y = correlated(0, 10, 3, 2)
    with pytest.raises(m.SampleMismatchError, match="X has 10 samples and Y has 9"):
        ALL[name](X, Y[:9])


@pytest.mark.parametrize("name", sorted(ALL))
def test_non_finite_values_name_the_input_and_count(name):
    X, Y = correlated(0, 10, 3, 2)
    Xbad, Ybad = X.copy(), Y.copy()
    Xbad[0, 0] = Xbad[3, 1] = np.nan
    Xbad[5, 2] = np.inf
    Ybad[1, 1] = -np.inf
    with pytest.raises(m.NonFiniteInputError, match=r"X contains 2 NaN and 1 infinite values \(of 30\)"):
        ALL[name](Xbad, Y)
    with pytest.raises(m.NonFiniteInputError, match=r"Y contains 0 NaN and 1 infinite values \(of 20\)"):
        ALL[name](X, Ybad)


@pytest.mark.parametrize("name", sorted(set(ALL) - {"subspace_match"}))
def test_constant_input_is_an_error(name):
    X, Y = correlated(0, 10, 3, 2)
    with pytest.raises(m.ConstantInputError, match="Y is constant across samples"):
        ALL[name](X, np.full_like(Y, 3.7))
    with pytest.raises(m.ConstantInputError, match="X is constant across samples"):
        ALL[name](np.ones_like(X) * 0.1, Y)


def test_rbf_with_mostly_duplicate_samples_is_an_error():
    X = np.zeros((10, 2))
    X[:2] = [[1.0, 0.0], [0.0, 1.0]]  # 8 identical rows: median squared distance 0
    with pytest.raises(m.ConstantInputError, match="median squared distance"):
        m.rbf_cka(X, X)


@pytest.mark.parametrize("f", [m.linear_cka, m.rbf_cka])
def test_debiased_needs_four_samples(f):
    X, Y = correlated(0, 3, 2, 2)
    with pytest.raises(m.TooFewSamplesError, match="debiased CKA needs at least 4 samples; got 3"):
        f(X, Y, debiased=True)
    f(X, Y)  # the biased estimator is defined
    with pytest.raises(m.TooFewSamplesError, match="at least 4"):
        m.cka_from_gram(X @ X.T, Y @ Y.T, debiased=True)


@pytest.mark.parametrize("threshold", [0, -1.0, np.nan, np.inf, "1"])
def test_threshold_must_be_positive(threshold):
    X, Y = correlated(0, 10, 3, 2)
    with pytest.raises(m.InvalidParameterError, match="threshold must be a positive number"):
        m.rbf_cka(X, Y, threshold=threshold)


@pytest.mark.parametrize("variance", [0, -0.1, 1.01, np.nan])
def test_variance_must_be_in_unit_interval(variance):
    X, Y = correlated(0, 10, 3, 2)
    with pytest.raises(m.InvalidParameterError, match=r"variance must be a fraction in \(0, 1\]"):
        m.svcca(X, Y, variance=variance)


@pytest.mark.parametrize("epsilon", [-0.1, 1.0, np.nan])
def test_epsilon_must_be_in_range(epsilon):
    with pytest.raises(m.InvalidParameterError, match="epsilon"):
        m.subspace_match(np.eye(3), np.eye(3), epsilon=epsilon)


def test_bad_distributions_and_shapes():
    with pytest.raises(m.MetricInputError, match="rows of P must sum to 1"):
        m.jsd([[0.5, 0.6]], [[0.5, 0.5]])
    with pytest.raises(m.MetricInputError, match="Q has negative entries"):
        m.jsd([[0.5, 0.5]], [[1.5, -0.5]])
    with pytest.raises(m.SampleMismatchError):
        m.jsd([[0.5, 0.5]], [[0.5, 0.5], [1.0, 0.0]])
    with pytest.raises(m.MetricInputError, match="scalar"):
        m.linear_cka(1.0, np.ones(3))
    with pytest.raises(m.MetricInputError, match="square"):
        m.cka_from_gram(np.ones((4, 3)), np.ones((4, 3)))


def test_errors_are_value_errors():
    for cls in (m.SampleMismatchError, m.TooFewSamplesError, m.NonFiniteInputError, m.ConstantInputError,
                m.InvalidParameterError):
        assert issubclass(cls, m.MetricInputError) and issubclass(cls, ValueError)


# --- inputs: flattening, torch, lazy import --------------------------------------------------


def test_activations_are_flattened_per_sample():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 2, 3, 2)), rng.normal(size=(40, 5))
    assert m.linear_cka(X, Y) == m.linear_cka(X.reshape(40, -1), Y)
    assert m.procrustes(X, Y) == m.procrustes(X.reshape(40, -1), Y)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    X, Y = correlated(0, 40, 4, 3)
    tx, ty = torch.tensor(X, dtype=torch.float64, requires_grad=True), torch.tensor(Y, dtype=torch.float64)
    for name, f in m.METRICS.items():
        assert f(tx, ty) == pytest.approx(f(X, Y), abs=1e-12), name
    assert isinstance(m.linear_cka(tx, ty), float)


def test_importing_metrics_does_not_import_torch():
    code = "import sys, layersim.metrics; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- Johnson (2019), Example 3.1 ---------------------------------------------------------------


def relu(a):
    return np.maximum(a, 0.0)


INPUTS = np.array([[1.0, 1.0], [-1.0, -1.0]])  # rows: the inputs a₁ = (1, 1), a₂ = (−1, −1)
W1 = np.eye(2)
W2 = np.array([[1.0, -1.0], [1.0, -1.0]])


def test_johnson_example_as_printed_does_not_show_what_it_claims():
    # Example 3.1 as printed: W̃1 = diag(1, −1), W̃2 = W2, y = W2 ReLU(W1 x), ReLU hidden layer.
    # Worked by hand (rows = inputs, columns = neurons):
    #   H  = ReLU(A W1ᵀ) = [[1, 1], [0, 0]]   neuron vectors z₁ = z₂ = (1, 0)
    #   H̃  = ReLU(A W̃1ᵀ) = [[1, 0], [0, 1]]   neuron vectors z̃₁ = (1, 0), z̃₂ = (0, 1)
    #   O  = H W2ᵀ = [[0, 0], [0, 0]]          O~ = H̃ W̃2ᵀ = [[1, 1], [−1, −1]]
    # So the outputs are NOT identical (the text says both are zero), and the hidden layers DO
    # match: span{z₁, z₂} = span{z̃₁} = span{(1, 0)}, so the maximum match is ({1, 2}, {1})
    # with similarity 3/4 (the text says there is no match). The text's activation sets
    # {[1,1]ᵀ,[1,1]ᵀ} and {[1,0]ᵀ,[1,0]ᵀ} are not what these weights give either.
    H, H_t = relu(INPUTS @ W1.T), relu(INPUTS @ np.diag([1.0, -1.0]).T)
    np.testing.assert_array_equal(H, [[1, 1], [0, 0]])
    np.testing.assert_array_equal(H_t, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(H @ W2.T, np.zeros((2, 2)))
    np.testing.assert_array_equal(H_t @ W2.T, [[1, 1], [-1, -1]])
    res = m.subspace_match(H, H_t, epsilon=0.0)
    assert (res.x_neurons, res.y_neurons, res.similarity) == ((0, 1), (0,), 0.75)
    assert (res.x_neurons, res.y_neurons) == ref.maximum_match(H, H_t, 0.0)


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 0.9])
def test_johnson_example_corrected(epsilon):
    # A construction that does what the text claims: W̃1 = −I (and W̃2 = W2).
    #   H̃ = ReLU(−A) = [[0, 0], [1, 1]]: both hidden neurons have z̃ = (0, 1), H's have (1, 0);
    #   O = O~ = 0: identical outputs; no subspace match at the hidden layer for any ε < 1
    #   (dist((1, 0), span{(0, 1)}) = 1 = ‖(1, 0)‖); yet both layers span a line (isomorphic),
    #   and the centred representations are negatives of each other, so the measures with the
    #   invariances of Kornblith/Ding see them as identical.
    H, H_t = relu(INPUTS @ W1.T), relu(INPUTS @ (-np.eye(2)).T)
    np.testing.assert_array_equal(H_t, [[0, 0], [1, 1]])
    np.testing.assert_array_equal(H @ W2.T, H_t @ W2.T)
    assert np.linalg.matrix_rank(H) == np.linalg.matrix_rank(H_t) == 1
    res = m.subspace_match(H, H_t, epsilon=epsilon)
    assert (res.x_neurons, res.y_neurons, res.similarity) == ((), (), 0.0)
    assert ref.maximum_match(H, H_t, epsilon) == ((), ())
    assert m.linear_cka(H, H_t) == pytest.approx(1.0, abs=REF_TOL)
    assert m.procrustes(H, H_t) == pytest.approx(0.0, abs=REF_TOL)


# --- subspace match against the brute-force definition ----------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_subspace_match_equals_union_of_all_matches(seed, epsilon):
    rng = np.random.default_rng(seed)
    n = 8
    base = rng.normal(size=(n, 3))
    # X: 4 neurons, Y: 3 neurons, sharing a planted 2-D subspace plus private directions;
    # small noise on one neuron so that ε matters.
    X = np.column_stack([base[:, 0], base[:, 1], base[:, :2] @ rng.normal(size=2), rng.normal(size=n)])
    Y = np.column_stack([base[:, :2] @ rng.normal(size=2), base[:, :2] @ rng.normal(size=2) + 0.2 * rng.normal(size=n),
                         base[:, 2]])
    X, Y = X[:, rng.permutation(4)], Y[:, rng.permutation(3)]
    res = m.subspace_match(X, Y, epsilon=epsilon)
    assert (res.x_neurons, res.y_neurons) == ref.maximum_match(X, Y, epsilon)
    assert res.similarity == (len(res.x_neurons) + len(res.y_neurons)) / 7


# --- the minibatch engine on one batch ----------------------------------------------------------


def _engine():
    try:
        from layersim.engine import MinibatchCKA
    except ImportError as err:  # the engine is written in parallel with this module
        pytest.skip(f"layersim.engine is not importable yet ({err})")
    return MinibatchCKA


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(64, 10, 6), (40, 60, 8)])
def test_debiased_linear_cka_equals_minibatch_engine_on_one_batch(seed, shape):
    MinibatchCKA = _engine()
    X, Y = correlated(seed, *shape)
    acc = MinibatchCKA(dtype=np.float64)
    acc.update([X], [Y])
    out = acc.compute()
    assert out.shape == (1, 1)
    assert out[0, 0] == pytest.approx(m.linear_cka(X, Y, debiased=True), abs=REF_TOL)
    acc32 = MinibatchCKA()  # the engine's default float32 Grams
    acc32.update([X], [Y])
    assert acc32.compute()[0, 0] == pytest.approx(m.linear_cka(X, Y, debiased=True), abs=1e-4)


# --- registry and docstrings --------------------------------------------------------------------


def test_registry():
    expected = {"linear_cka", "linear_cka_debiased", "rbf_cka", "cca_mean_rho", "cca_r2", "svcca", "pwcca",
                "procrustes", "procrustes_sqrt"}
    assert expected <= set(m.METRICS)
    assert {f.kind for f in m.METRICS.values()} == {"similarity", "distance", "unnormalised"}
    assert m.METRICS["procrustes"].kind == m.METRICS["procrustes_sqrt"].kind == "distance"
    assert [n for n, f in m.METRICS.items() if f.kind == "unnormalised"] == ["linear_hsic"]
    X, Y = correlated(0, 50, 4, 3)
    for name, f in m.METRICS.items():
        value = f(X, Y)
        assert type(value) is float, name
    assert m.METRICS["cca_r2"](X, Y) == m.cca(X, Y).r2
    assert m.METRICS["linear_cka_debiased"](X, Y) == m.linear_cka(X, Y, debiased=True)


def test_no_unbiased_flag_anywhere():
    for name in m.__all__:
        obj = getattr(m, name)
        if callable(obj) and not isinstance(obj, type):
            assert "unbiased" not in inspect.signature(obj).parameters, name


@pytest.mark.parametrize("name", [n for n in m.__all__ if inspect.isfunction(getattr(m, n))])
def test_public_functions_have_numpydoc_with_invariances(name):
    doc = inspect.getdoc(getattr(m, name))
    assert doc and "Parameters\n----------" in doc and "Returns\n-------" in doc, name
    documented = {line.split(" :")[0].strip() for line in doc.splitlines() if " : " in line or line.endswith(" :")}
    params = set(inspect.signature(getattr(m, name)).parameters)
    for param in params:  # every argument documented (alone or in a "P, Q : ..." line)
        assert any(param in {p.strip() for p in d.split(",")} for d in documented), (name, param)
    assert "nvariant" in doc, name


def test_warnings_are_not_raised_for_ordinary_data():
    X, Y = correlated(0, 100, 10, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in m.METRICS.values():
            f(X, Y)


def test_rank_deficient_inputs_use_their_numerical_rank():
    X, Y = correlated(0, 60, 5, 4)
    Xdup = np.column_stack([X, X[:, 0] * 2.0 - X[:, 1]])  # a redundant neuron
    res = m.cca(Xdup, Y)
    assert res.dims == (5, 4) and res.reduced_to == (None, None)
    np.testing.assert_allclose(res.rho, m.cca(X, Y).rho, atol=REF_TOL, rtol=0)


def test_constant_gram_is_an_error():
    X, _ = correlated(0, 6, 2, 1)
    with pytest.raises(m.ConstantInputError, match="K has .*zero centred self-similarity"):
        m.cka_from_gram(np.ones((6, 6)), X @ X.T)
    with pytest.raises(m.ConstantInputError, match="L has"):
        m.cka_from_gram(X @ X.T, np.full((6, 6), 2.0), debiased=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confidence_rank_correlation_matches_ranks_by_hand(seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(4), size=30)
    Q = 0.5 * P + 0.5 * rng.dirichlet(np.ones(4), size=30)
    labels = rng.integers(0, 4, 30)
    cp, cq = P[np.arange(30), labels], Q[np.arange(30), labels]
    rp, rq = np.argsort(np.argsort(cp)).astype(float), np.argsort(np.argsort(cq)).astype(float)
    expected = np.corrcoef(rp, rq)[0, 1]  # Spearman = Pearson of ranks (no ties here)
    assert m.confidence_rank_correlation(P, Q, labels) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(m.SampleMismatchError):
        m.confidence_rank_correlation(P, Q, labels[:-1])


def test_every_consumer_reads_the_one_registry(repo):
    """Every metric name a consumer uses (identification, Ding, architectures, the config's lists
    and schema enums) is a key of layersim.metrics.METRICS."""
    import yaml

    from layersim.experiments import ding, kornblith

    assert set(kornblith.IDENTIFICATION_METRICS) <= set(m.METRICS)
    assert set(kornblith.RBF_THRESHOLDS) <= set(kornblith.IDENTIFICATION_METRICS)
    assert [m.METRICS[k].label for k in kornblith.IDENTIFICATION_METRICS][:3] == ["CCA (ρ̄)", "CCA (R²_CCA)", "SVCCA (ρ̄)"]
    assert set(kornblith.PAPER_ACCURACY) == set(kornblith.IDENTIFICATION_METRICS)
    assert not hasattr(ding, "DISTANCES") and not hasattr(m, "METRIC_KIND")
    X, Y = correlated(0, 40, 4, 3)
    assert ding.distance("linear_cka", X, Y) == 1.0 - m.linear_cka(X, Y)
    assert ding.distance("procrustes", X, Y) == m.procrustes(X, Y)
    assert np.isnan(ding.distance("pwcca", X, np.ones((40, 2))))

    def names(node):  # every list of metric names under a "metrics"/"names" key of the schema and config
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("metrics", "names") and isinstance(value, dict):
                    for listed in (value.get("enum"), value.get("items", {}).get("enum"), value.get("default")):
                        yield from listed if isinstance(listed, list) else []
                if key in ("metrics", "names") and isinstance(value, list):
                    yield from value
                yield from names(value)
        elif isinstance(node, list):
            for value in node:
                yield from names(value)

    used = {n for f in ["workflow/schemas/config.schema.yaml", "config/config.yaml"] if (repo / f).exists() for n in names(yaml.safe_load((repo / f).read_text()))}
    used = {n for n in used if isinstance(n, str)}
    assert {"linear_cka", "pwcca", "procrustes", "linear_hsic"} <= used
    assert used <= set(m.METRICS), used - set(m.METRICS)
