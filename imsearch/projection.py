"""Compact features: a principal-component projection fitted on an index's own features, stored in float16."""

import numpy as np

# The projection is fitted on at most this many rows: enough for a stable basis, a bounded cost at any size.
FIT_SAMPLE = 20_000


def fit_projection(features, length, seed=0):
    """(mean (D,), basis (D, length)) float32 of the principal components of features (at most D of them)."""
    from sklearn.decomposition import PCA

    generator = np.random.default_rng(seed)
    sample = features if len(features) <= FIT_SAMPLE else features[np.sort(generator.choice(len(features), FIT_SAMPLE, replace=False))]
    # From the D x D covariance (one matrix product, then its eigenvectors): the same components as a full SVD
    # of the sample at a fraction of its cost when rows far outnumber features, so Ctrl-C is never held up long.
    analysis = PCA(n_components=min(length, features.shape[1], len(sample)), svd_solver="covariance_eigh").fit(sample)
    return analysis.mean_.astype(np.float32), analysis.components_.T.astype(np.float32)


# Rows projected at a time, so centring never copies the whole (N, D) matrix.
PROJECT_BLOCK = 65536


def project(features, mean, basis):
    """Features as the index stores them: centred, projected onto the basis, rounded to float16 precision."""
    projected = np.empty((len(features), basis.shape[1]), dtype=np.float32)
    for start in range(0, len(features), PROJECT_BLOCK):
        projected[start : start + PROJECT_BLOCK] = (np.asarray(features[start : start + PROJECT_BLOCK], np.float32) - mean) @ basis
    return stored_precision(projected)


def stored_precision(features):
    """float32 features rounded to the float16 the index is saved in, so what is ranked is what is saved."""
    return np.asarray(features, np.float16).astype(np.float32)
