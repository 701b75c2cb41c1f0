"""The fast SVC predictor reproduces sklearn's SVC.predict."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.svm import SVC

from pipeline.models.svm_fast import FastSVC


def _data(rng, n, d, c, spread=1.0):
    centres = rng.normal(size=(c, d)) * 1.5
    y = rng.integers(0, c, n)
    return (centres[y] + rng.normal(size=(n, d)) * spread).astype(np.float32), y


@pytest.mark.parametrize("n_classes,labels", [(2, [3, 8]), (5, [0, 2, 4, 7, 9])])
def test_agreement_with_sklearn(n_classes, labels):
    rng = np.random.default_rng(n_classes)
    X, y = _data(rng, 1500, 6, n_classes)
    y = np.asarray(labels)[y]
    svc = SVC(C=10.0, gamma=0.3).fit(X, y)
    assert len(svc.support_vectors_) > 200
    Xt, _ = _data(np.random.default_rng(99), 5000, 6, n_classes, spread=1.5)
    Xt = np.concatenate([Xt, rng.uniform(-6, 6, size=(2000, 6)).astype(np.float32)])  # far-away points too
    ref = svc.predict(Xt)
    fast = FastSVC(svc, chunk=512, sv_tile=256, n_threads=2)
    labels_fast, conf = fast.predict_with_confidence(Xt)
    assert np.mean(labels_fast == ref) >= 0.9999
    assert conf.dtype == np.float32 and (conf > 0).all() and (conf <= 1).all()
    # decision values match sklearn's ovo decision function
    ovo = SVC(C=10.0, gamma=0.3, decision_function_shape="ovo").fit(X, y)
    ref_dec = ovo.decision_function(Xt[:300])
    if n_classes == 2:  # sklearn flips libsvm's sign and drops the pair axis for binary problems
        ref_dec = -ref_dec[:, None]
    np.testing.assert_allclose(fast.decision_function(Xt[:300]), ref_dec, atol=2e-3, rtol=1e-3)
    # single-threaded, other chunking, and a pickle round-trip give the same labels
    np.testing.assert_array_equal(FastSVC(svc, chunk=4096, sv_tile=10_000, n_threads=1).predict(Xt), labels_fast)
    # the numpy backend agrees too
    assert np.mean(FastSVC(svc, backend="numpy", n_threads=2).predict(Xt) == ref) >= 0.9999
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fast)).predict(Xt), labels_fast)


def test_vote_ties_go_to_lowest_class():
    rng = np.random.default_rng(0)
    X, y = _data(rng, 300, 3, 3)
    fast = FastSVC(SVC(C=1.0, gamma=0.5).fit(X, y))
    # pairs (0,1), (0,2), (1,2): a cycle 0>1, 2>0, 1>2 gives one vote each -> class 0
    votes = fast.votes(np.array([[1.0, -1.0, 1.0]], np.float32))
    np.testing.assert_array_equal(votes, [[1, 1, 1]])
    assert int(np.argmax(votes[0])) == 0
    # dec == 0 exactly votes for j, as libsvm
    np.testing.assert_array_equal(fast.votes(np.zeros((1, 3), np.float32)), [[0, 1, 2]])


def test_rejects_non_rbf():
    rng = np.random.default_rng(0)
    X, y = _data(rng, 100, 3, 2)
    with pytest.raises(ValueError, match="RBF"):
        FastSVC(SVC(kernel="linear").fit(X, y))


def test_leaves_callers_torch_threads_alone():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X, y = _data(rng, 400, 4, 3)
    # The caller's setting differs from the workers' one thread (the test session runs with
    # OMP_NUM_THREADS=1), so that a leaked worker setting would show.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        FastSVC(SVC(gamma=0.5).fit(X, y), chunk=64, n_threads=2, backend="torch").predict(X)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
