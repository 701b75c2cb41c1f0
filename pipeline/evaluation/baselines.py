"""No-skill baselines: what a classifier that never looks at the image scores on the same test set.

With an unbalanced test set a model can score 76% while a constant map scores 78%; a model table
without that row hides it. Both baselines are fitted, like every model, on each fold's training
samples only and predict that fold's test samples (scikit-learn's ``DummyClassifier``):

* ``majority``: every pixel gets the most frequent training class (``most_frequent``);
* ``stratified``: every pixel gets a class drawn at random with the training class frequencies
  (``stratified``; seeded, so a run repeats).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Baseline name -> (DummyClassifier strategy, how the report names it).
NO_SKILL: dict[str, tuple[str, str]] = {
    "majority": ("most_frequent", "no-skill: majority class"),
    "stratified": ("stratified", "no-skill: stratified random"),
}


def no_skill_predictions(
    y: np.ndarray, train_sets: Sequence[np.ndarray], fold: np.ndarray, seed: int
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Predictions of every :data:`NO_SKILL` baseline for the test rows of a run.

    Parameters
    ----------
    y : ndarray of int, shape (n_samples,)
        Class id of every sample (``samples.parquet`` order).
    train_sets : sequence of ndarray of int
        Training sample positions of each fold (``folds.json``).
    fold : ndarray of int, shape (n,)
        Fold of each test row (``eval/<model>.parquet``); a baseline ignores the pixels.
    seed : int

    Returns
    -------
    predictions : dict name -> ndarray of int, shape (n,)
        Each baseline's prediction for each test row.
    majority : list of int
        The majority class of each fold's training samples.
    """
    from sklearn.dummy import DummyClassifier

    y = np.asarray(y)
    fold = np.asarray(fold)
    out = {name: np.zeros(fold.size, dtype=np.int64) for name in NO_SKILL}
    majority: list[int] = []
    for f, train in enumerate(train_sets):
        rows = np.flatnonzero(fold == f)
        yt = y[np.asarray(train, dtype=np.int64)]
        if not yt.size:
            raise ValueError(f"fold {f} has no training sample")
        for name, (strategy, _) in NO_SKILL.items():
            # the fold's own stream: a baseline's draws do not depend on the other folds
            state = np.random.RandomState(np.random.SeedSequence([seed, f]).generate_state(1)[0])
            dummy = DummyClassifier(strategy=strategy, random_state=state).fit(np.zeros((yt.size, 1)), yt)
            if rows.size:
                out[name][rows] = dummy.predict(np.zeros((rows.size, 1)))
            if strategy == "most_frequent":
                majority.append(int(dummy.predict(np.zeros((1, 1)))[0]))
    return out, majority
