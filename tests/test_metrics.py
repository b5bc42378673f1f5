"""Retrieval metrics against brute-force references (sklearn's average precision, counted precision)."""

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

from imsearch import metrics


def reference(query_features, query_labels, database_features, database_labels):
    """Per-query metrics computed one query at a time with sklearn and plain counting."""
    results = {"map": [], "map_at_100": [], "precision_at_1": [], "precision_at_10": [], "precision_at_100": [], "knn_accuracy": []}
    top_hits = []
    for features, label in zip(query_features, query_labels):
        distances = np.linalg.norm(database_features - features, axis=1)
        relevant = np.asarray(database_labels) == label
        results["map"].append(sklearn_metrics.average_precision_score(relevant, -distances))
        order = np.argsort(distances, kind="stable")
        ranked = relevant[order]
        precisions = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
        results["map_at_100"].append((precisions[:100] * ranked[:100]).sum() / min(relevant.sum(), 100))
        results["precision_at_1"].append(ranked[0])
        top_hits.append(order[0])
        results["precision_at_10"].append(ranked[:10].mean())
        results["precision_at_100"].append(ranked[:100].mean())
        votes = np.asarray(database_labels)[order[:10]]
        values, counts = np.unique(votes, return_counts=True)
        results["knn_accuracy"].append(values[counts.argmax()] == label if (counts == counts.max()).sum() == 1 else np.nan)
    top_hit_share = max(top_hits.count(row) for row in set(top_hits)) / len(top_hits)
    return {name: np.nanmean(values) for name, values in results.items()} | {"top_hit_share": top_hit_share}


def test_metrics_match_the_reference_on_random_clusters():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 6)) * 2
    database_labels = rng.integers(0, 4, size=400)
    query_labels = rng.integers(0, 4, size=300)
    database = (centres[database_labels] + rng.normal(size=(400, 6))).astype(np.float32)
    queries = (centres[query_labels] + rng.normal(size=(300, 6))).astype(np.float32)
    found = metrics.retrieval_metrics(queries, query_labels, database, database_labels)
    expected = reference(queries, query_labels, database, database_labels)
    for name in ("map", "map_at_100", "precision_at_1", "precision_at_10", "precision_at_100", "top_hit_share"):
        assert found[name] == pytest.approx(expected[name], abs=1e-4), name
    assert found["knn_accuracy"] == pytest.approx(expected["knn_accuracy"], abs=0.03)
    assert 0.3 < found["map"] < 1


def test_perfect_and_excluded_rankings():
    database = np.array([[0.0], [0.1], [10.0], [10.1]], dtype=np.float32)
    labels = ["a", "a", "b", "b"]
    perfect = metrics.retrieval_metrics(database, labels, database, labels, exclude=np.arange(4), neighbours=1)
    assert perfect["map"] == 1.0 and perfect["knn_accuracy"] == 1.0
    assert perfect["precision_at_10"] == pytest.approx(1 / 3)  # One relevant item among the three each query is shown.
    assert perfect["precision_at_1"] == 1.0 and perfect["top_hit_share"] == 0.25


def test_majority_vote_breaks_ties_by_rank():
    assert metrics.majority_vote(np.array([2, 1, 1, 2])) == 2
    assert metrics.majority_vote(np.array([3, 1, 1])) == 1
