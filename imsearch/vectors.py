"""Vector helpers shared by ranking, the neighbour graph and the metrics: lengths, distances, masks."""

import os

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


def available_memory():
    """Bytes of memory the system can give without swapping (MemAvailable), or free pages where that is unknown."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # Not Linux, or an unusual /proc: fall back to what sysconf knows.
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def block_workers(bytes_per_block, memory=None, cores=None):
    """Threads for blocks of queries: one per core, but no more than half the available memory holds; at least one."""
    memory = available_memory() if memory is None else memory
    cores = (os.cpu_count() or 1) if cores is None else cores
    return max(1, min(cores, int(memory // 2 // max(1, bytes_per_block))))
