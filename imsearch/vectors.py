"""Vector helpers shared by ranking, the neighbour graph and the metrics: lengths, distances, masks."""

import numpy as np

# Rows whose length is this close to 1 count as normalised already (float32 rounding of a unit row is ~1e-7).
UNIT_LENGTH_TOLERANCE = 1e-5


def postprocess_features(features, metric, in_place=False):
    """The one place features are transformed for ranking: L2-normalised for cosine, as-is for Euclidean.

    in_place: normalise the given float32 array itself rather than a copy, for a caller that gives it up.
    Rows already of unit length (or zero) come back as they are, so post-processing twice copies nothing.
    """
    features = np.asarray(features, dtype=np.float32)
    if metric != "cosine":
        return features
    norms = np.sqrt(squared_norms(features))[:, None]  # Not np.linalg.norm: it squares a copy of every row.
    if np.all((np.abs(norms - 1.0) <= UNIT_LENGTH_TOLERANCE) | (norms == 0.0)):
        return features
    in_place = in_place and features.flags.writeable  # An array unpickled from bytes may be read-only.
    return np.divide(features, np.maximum(norms, 1e-12), out=features if in_place else None)


def mask_excluded(matrix, excluded, value):
    """Set matrix[i, excluded[i]] to value for every block row i whose excluded row is >= 0 (in place)."""
    matrix[np.flatnonzero(excluded >= 0), excluded[excluded >= 0]] = value


def squared_norms(features):
    """Row-wise squared L2 norms, (N, D) -> (N,)."""
    return np.einsum("ij,ij->i", features, features)


def squared_distances(queries, database, database_norms):
    """(Q, N) squared Euclidean distances as |q|^2 - 2 q.x + |x|^2: one matrix product, no loop over items."""
    squared = database_norms[None, :] - 2.0 * queries @ database.T
    squared += squared_norms(queries)[:, None]
    return squared
