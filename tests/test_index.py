"""Unit tests of ranking, feature post-processing, the restricted unpickler and atomic writes."""

import os
import pickle

import numpy as np
import pytest

from imsearch import InputError, graph, ranking, safeio, vectors


def brute_force(queries, database, top_k):
    """The original design's algorithm: a loop of np.linalg.norm over every item, then sorted."""
    results = []
    for query in queries:
        distances = [(np.linalg.norm(query - item), row) for row, item in enumerate(database)]
        results.append(sorted(distances)[:top_k])
    return results


def test_rank_matches_brute_force():
    rng = np.random.default_rng(0)
    database = rng.normal(size=(700, 12)).astype(np.float32)
    queries = rng.normal(size=(300, 12)).astype(np.float32)  # More than one query block.
    rows, distances = ranking.rank(queries, database, top_k=7)
    for query_rows, query_distances, expected in zip(rows, distances, brute_force(queries, database, 7)):
        assert query_rows.tolist() == [row for _, row in expected]
        assert np.allclose(query_distances, [distance for distance, _ in expected], atol=1e-4)


def test_rank_excludes_the_query_itself():
    database = np.arange(10, dtype=np.float32).reshape(5, 2)
    rows, distances = ranking.rank(database[[1, 3]], database, top_k=10, exclude=np.array([1, -1]))
    # Five rows asked for ten: the first query is shown the other four, then row -1 where its own would be.
    assert rows.shape == (2, 5) and rows[0, -1] == -1 and np.isinf(distances[0, -1])
    assert 1 not in rows[0] and (rows[1] >= 0).all() and rows[1][0] == 3 and distances[1][0] == 0


def structured_features(count, length, noise, seed):
    """Rows near a 12-dimensional subspace, like encoder features, plus isotropic noise of the given scale."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(count, 12)) @ rng.normal(size=(12, length))
    return (latent + noise * rng.normal(size=(count, length))).astype(np.float32)


def test_cosine_postprocessing_in_place_and_twice_copies_nothing():
    features = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    normalised = vectors.postprocess_features(features, "cosine", in_place=True)
    assert normalised is features and np.allclose(features[0], [0.6, 0.8])
    assert vectors.postprocess_features(normalised, "cosine") is normalised  # Already unit length.
    read_only = np.array([[3.0, 4.0]], dtype=np.float32)
    read_only.flags.writeable = False
    assert np.allclose(vectors.postprocess_features(read_only, "cosine", in_place=True), [[0.6, 0.8]])
    assert np.array_equal(read_only, [[3.0, 4.0]])


def test_cosine_postprocessing_normalises_rows():
    features = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    normalised = vectors.postprocess_features(features, "cosine")
    assert np.allclose(normalised[0], [0.6, 0.8]) and np.all(np.isfinite(normalised))
    assert np.array_equal(vectors.postprocess_features(features, "euclidean"), features)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_restricted_unpickler_reads_arrays_and_plain_containers(tmp_path, protocol):
    value = {"features": np.arange(6, dtype=np.float32).reshape(2, 3), "paths": ["a", "b"], "n": (1, 2.5, None)}
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(value, protocol=protocol))
    loaded = safeio.restricted_load(str(tmp_path / "ok.pkl"))
    assert np.array_equal(loaded["features"], value["features"]) and loaded["paths"] == ["a", "b"]


def test_restricted_unpickler_refuses_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"features": Payload()}))
    with pytest.raises(InputError, match="refused to load posix.system"):
        safeio.restricted_load(str(tmp_path / "evil.pkl"))
    assert not (tmp_path / "ran").exists()


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "file.bin"
    safeio.atomic_write_bytes(str(target), b"first")
    with pytest.raises(RuntimeError):
        with safeio.atomic_path(str(target)) as temporary_path:
            with open(temporary_path, "wb") as file:
                file.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first" and os.listdir(tmp_path) == ["file.bin"]


def test_atomic_write_into_unwritable_place_is_a_clear_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(InputError, match="cannot write here"):
        safeio.atomic_write_bytes(str(tmp_path / "a_file" / "x.bin"), b"data")


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("sparse_share", [0.0, 1 / 16, 1.0])  # Later rows offered pairs densely, by need, sparsely.
@pytest.mark.parametrize("sort_rows", [False, True])
def test_neighbour_graph_matches_brute_force_and_skips_self(monkeypatch, sparse_share, sort_rows):
    monkeypatch.setattr(graph, "GRAPH_BLOCK_ELEMENTS", 1100 * 40)  # Many blocks, growing towards the end.
    monkeypatch.setattr(graph, "GRAPH_SPARSE_SHARE", sparse_share)
    features = np.random.default_rng(3).normal(size=(1100, 8)).astype(np.float32)
    if sort_rows:  # Ordered along one direction, the way a folder sorted by class is: early lists are poor.
        features = features[np.argsort(features[:, 0])]
    # Rows of very different lengths: the graph is by direction alone.
    rows, similarities = graph.neighbour_graph(features * np.arange(1, 1101, dtype=np.float32)[:, None], neighbours=4)
    expected_rows, expected_similarities = brute_force_graph(features, 4)
    assert rows.shape == (1100, 4) and rows.dtype == np.int32
    assert np.array_equal(rows, expected_rows)
    assert np.allclose(similarities, expected_similarities, atol=1e-5)


def brute_force_graph(features, neighbours):
    """Each row's nearest other rows by cosine, from the full similarity matrix."""
    unit_features = vectors.postprocess_features(features, "cosine")
    full = unit_features @ unit_features.T
    np.fill_diagonal(full, -np.inf)
    rows = np.argsort(-full, axis=1, kind="stable")[:, :neighbours]
    return rows, np.take_along_axis(full, rows, axis=1)


@pytest.mark.parametrize("removed, changed, added", [(0, 0, 0), (8, 0, 0), (0, 8, 0), (0, 0, 8), (5, 5, 5)])
def test_graph_update_matches_a_fresh_graph_and_relinks_only_what_it_must(monkeypatch, removed, changed, added):
    monkeypatch.setattr(graph, "GRAPH_BLOCK_ELEMENTS", 400 * 30)
    rng = np.random.default_rng(removed + 2 * changed + 3 * added)
    previous = rng.normal(size=(400, 6)).astype(np.float32)
    previous_graph = graph.neighbour_graph(previous, neighbours=5)
    kept = np.sort(rng.choice(400, 400 - removed, replace=False))
    features, previous_rows = previous[kept], kept.copy()
    changed_rows = rng.choice(len(kept), changed, replace=False)
    features[changed_rows], previous_rows[changed_rows] = rng.normal(size=(changed, 6)), -1
    features = np.concatenate([features, rng.normal(size=(added, 6)).astype(np.float32)])
    previous_rows = np.concatenate([previous_rows, np.full(added, -1)])
    # A few changes must not rebuild the whole graph.
    monkeypatch.setattr(graph, "neighbour_graph", lambda *arguments: pytest.fail("rebuilt the whole graph"))
    rows, similarities, relinked = graph.update_neighbour_graph(features, previous_rows, *previous_graph)
    assert changed + added <= relinked < 100
    expected_rows, expected_similarities = brute_force_graph(features, 5)
    assert rows.dtype == np.int32 and np.array_equal(rows, expected_rows)
    assert np.allclose(similarities, expected_similarities, atol=1e-5)


def two_chains(points=20):
    """Two well-separated curves of unit vectors: the graph links each point to its chain neighbours."""
    angles = np.linspace(0, 1.2, points)
    first = np.stack([np.cos(angles), np.sin(angles), np.zeros(points)], axis=1)
    second = np.stack([np.zeros(points), np.cos(angles) * 0.2, np.ones(points)], axis=1)
    return unit(np.concatenate([first, second]).astype(np.float32))


def test_diffusion_follows_the_manifold():
    database = two_chains()
    diffusion_graph = graph.diffusion_graph_of(*graph.neighbour_graph(database, neighbours=3))
    assert abs(diffusion_graph.operator - diffusion_graph.operator.T).max() < 1e-6  # Symmetric, as conjugate gradients need.
    # A query at the start of the first chain: by cosine, the end of the first chain is farther than
    # part of the second chain, but diffusion ranks the whole first chain first.
    query = unit(np.array([[1.0, -0.1, 0.9]], dtype=np.float32))
    cosine_order = np.argsort(-(query @ database.T)[0])
    assert (cosine_order[:20] >= 20).sum() > 5
    rows, distances = graph.rank_by_diffusion(query, database, diffusion_graph, 20, np.array([-1]))
    assert sorted(rows[0].tolist()) == list(range(20))


def test_diffusion_reports_the_distance_it_ranks_by():
    database = two_chains()
    diffusion_graph = graph.diffusion_graph_of(*graph.neighbour_graph(database, neighbours=3))
    query = unit(np.array([[1.0, -0.1, 0.9]], dtype=np.float32))  # Its cosine order is not the diffusion's.
    rows, distances = graph.rank_by_diffusion(query, database, diffusion_graph, 40, np.array([-1]))
    cosine = 1 - (query @ database.T)[0][rows[0]]
    assert (np.diff(cosine) < 0).any()  # A later hit is nearer by cosine: printing cosine would fall down the list.
    assert (np.diff(distances[0]) >= 0).all()
    # No near copy here: from 0.05 for the best-connected row to at most 1.
    assert distances[0][0] == pytest.approx(graph.NEAR_COPY_DISTANCE, abs=1e-5) and distances[0][-1] <= 1.0


def test_diffusion_leaves_the_excluded_row_out():
    database = two_chains(10)
    diffusion_graph = graph.diffusion_graph_of(*graph.neighbour_graph(database, neighbours=3))
    rows, _ = graph.rank_by_diffusion(database[[2]], database, diffusion_graph, 50, np.array([2]))
    # 20 rows asked for 50: the other 19, then row -1 (nothing left) where the query's own row would be.
    assert rows.shape == (1, 20) and 2 not in rows[0] and rows[0, -1] == -1 and (rows[0, :-1] >= 0).all()


def test_diffusion_graph_is_none_without_a_neighbour_graph():
    assert graph.diffusion_graph_of(None, None) is None


def test_diffusion_ranks_copies_of_the_query_first():
    database = two_chains()
    diffusion_graph = graph.diffusion_graph_of(*graph.neighbour_graph(database, neighbours=3))
    # The chain's end point is poorly connected, so diffusion alone would rank its neighbours above it.
    rows, distances = graph.rank_by_diffusion(database[[19]], database, diffusion_graph, 3, np.array([-1]))
    assert rows[0][0] == 19 and distances[0][0] < 1e-6


def test_nearer_of_mirrors_keeps_each_row_once_at_its_nearer_distance():
    # Two queries, then their mirror images; -1 is faiss's filler where it found fewer rows.
    rows = np.array([[4, 2, 7], [5, -1, -1], [2, 9, 4], [6, 5, -1]])
    distances = np.array([[0.1, 0.3, 0.5], [0.4, 0.0, 0.0], [0.05, 0.2, 0.6], [0.1, 0.2, 0.0]], dtype=np.float32)
    merged_rows, merged_distances = ranking.nearer_of_mirrors(rows, distances, 3)
    assert merged_rows.tolist() == [[2, 4, 9], [6, 5, -1]]
    assert np.allclose(merged_distances[0], [0.05, 0.1, 0.2]) and np.allclose(merged_distances[1][:2], [0.1, 0.2])
    assert np.isinf(merged_distances[1][2])  # faiss's filler stays last, for drop_excluded to remove.


def test_near_copies_rank_first_in_order_of_similarity():
    database = two_chains()
    # Three near copies of row 19 (cosine 1, about 0.996 and 0.98), beside its chain neighbours.
    copies = unit(database[[19, 19, 19]] + np.array([[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0.1]], dtype=np.float32))
    with_copies = np.concatenate([database, copies])
    diffusion_graph = graph.diffusion_graph_of(*graph.neighbour_graph(with_copies, neighbours=3))
    rows, distances = graph.rank_by_diffusion(database[[19]], with_copies, diffusion_graph, 10, np.array([19]))
    similarities = with_copies[rows[0]] @ database[19]
    near = int((similarities >= 1 - graph.NEAR_COPY_DISTANCE).sum())
    # Every near copy comes before every other row, the exact copy first, and they are in order of similarity.
    assert near >= 3 and rows[0][0] == 40 and (similarities[near:] < 1 - graph.NEAR_COPY_DISTANCE).all()
    assert (np.diff(similarities[:near]) <= 0).all()
    # Near copies are reported at their cosine distance, the rest from 0.05 on: one rising column.
    assert np.allclose(distances[0][:near], 1 - similarities[:near], atol=1e-6)
    assert (distances[0][near:] >= graph.NEAR_COPY_DISTANCE).all() and (np.diff(distances[0]) >= 0).all()


def test_a_full_length_projection_keeps_distances_and_a_short_one_keeps_the_largest_spread():
    from imsearch import projection

    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 6)).astype(np.float32) * np.array([5, 4, 3, 0.1, 0.1, 0.1], np.float32)
    mean, basis = projection.fit_projection(features, 6)
    projected = projection.project(features, mean, basis)
    distances = lambda rows: np.linalg.norm(rows[:, None] - rows[None], axis=2)  # noqa: E731
    assert np.allclose(distances(projected), distances(features), atol=0.02)
    mean, basis = projection.fit_projection(features, 3)
    assert basis.shape == (6, 3) and np.abs(basis[3:]).max() < 0.05  # The three wide axes, not the narrow ones.
    assert projection.project(features, mean, basis).dtype == np.float32


def test_approximate_graph_probing_every_list_is_the_exact_graph():
    features = unit(np.random.default_rng(5).normal(size=(600, 8)).astype(np.float32))
    approximate = ranking.build_approximate(features)
    assert approximate.nlist <= ranking.GRAPH_PROBES  # So the graph search probes every list: exact.
    rows, similarities = ranking.approximate_neighbour_graph(approximate, features, 4)
    expected_rows, expected_similarities = brute_force_graph(features, 4)
    assert rows.dtype == np.int32 and np.array_equal(rows, expected_rows)
    assert np.allclose(similarities, expected_similarities, atol=1e-5)
    assert approximate.nprobe == min(approximate.nlist, ranking.APPROXIMATE_PROBES)  # Searches probe as before.


def test_local_diffusion_over_every_row_is_the_whole_diffusion_and_truncates_to_its_candidates():
    database = two_chains()
    # Local diffusion runs by conjugate-gradient steps: compared with the whole graph diffused the same way.
    diffusion_graph = graph.diffusion_graph_of(*graph.neighbour_graph(database, neighbours=3))
    queries = unit(np.array([[1.0, -0.1, 0.9], [0.0, 0.3, 1.0]], dtype=np.float32))
    exclude = np.array([-1, 25])
    expected = graph.rank_by_diffusion(queries, database, diffusion_graph, 12, exclude, queries)
    every_row = np.tile(np.arange(len(database)), (2, 1))
    rows, distances = graph.rank_by_local_diffusion(queries, queries, database, diffusion_graph, every_row, 12, exclude)
    assert np.array_equal(rows, expected[0]) and np.allclose(distances, expected[1], atol=1e-6)
    # With five candidates (one of them filler), only they are ranked, and the rest of the list is padding.
    few = np.array([[3, 1, 0, -1, 2], [30, 21, 25, 22, 23]])
    rows, distances = graph.rank_by_local_diffusion(queries, queries, database, diffusion_graph, few, 6, exclude)
    assert sorted(rows[0, :4].tolist()) == [0, 1, 2, 3] and (rows[0, 4:] == -1).all() and np.isinf(distances[0, 4:]).all()
    assert sorted(rows[1, :4].tolist()) == [21, 22, 23, 30] and 25 not in rows[1]


def exact_diffusion(diffusion_graph, seeded):
    """(I - alpha S)^-1 y for each row y of the dense (B, N) seeds, by a direct sparse solve."""
    import scipy.sparse
    import scipy.sparse.linalg

    system = scipy.sparse.identity(seeded.shape[1], format="csc") - graph.DIFFUSION_ALPHA * diffusion_graph.operator.astype(np.float64).tocsc()
    return scipy.sparse.linalg.spsolve(system, seeded.T.astype(np.float64)).T


def seeds_of(diffusion_graph, rows):
    import scipy.sparse

    seeded = np.zeros((len(rows), diffusion_graph.operator.shape[0]), dtype=np.float32)
    seeded[np.arange(len(rows)), rows] = 1.0
    return scipy.sparse.csr_matrix(seeded)


def test_a_small_graph_keeps_no_spectrum_and_its_diffusion_solves_the_system():
    rows, similarities = graph.neighbour_graph(two_chains(), neighbours=3)
    diffusion_graph = graph.diffusion_graph_of(rows, similarities, graph.graph_spectrum(rows, similarities))
    assert diffusion_graph.basis is None  # 40 rows: conjugate gradients over the whole graph cost little.
    seeded = seeds_of(diffusion_graph, [0, 17, 33])
    scores, exact = graph.diffusion_scores(diffusion_graph, seeded), exact_diffusion(diffusion_graph, seeded.toarray())
    assert np.abs(scores - exact).max() < 1e-2 * np.abs(exact).max()


def test_diffusion_over_the_leading_spectrum_ranks_as_the_solved_system(monkeypatch):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 16))
    features = unit((centres[rng.integers(0, 12, 900)] + 0.6 * rng.normal(size=(900, 16))).astype(np.float32))
    monkeypatch.setattr(graph, "SPECTRUM_MIN_ROWS", 100)
    monkeypatch.setattr(graph, "SPECTRUM_RANK", 60)
    rows, similarities = graph.neighbour_graph(features)
    diffusion_graph = graph.diffusion_graph_of(rows, similarities, graph.graph_spectrum(rows, similarities))
    assert diffusion_graph.basis.shape == (900, 60) and (np.diff(diffusion_graph.eigenvalues) >= -1e-6).all()
    seeded = seeds_of(diffusion_graph, np.arange(0, 900, 30))
    top = lambda scores: np.argsort(-scores, axis=1)[:, :10]  # noqa: E731
    found, expected = top(graph.diffusion_scores(diffusion_graph, seeded)), top(exact_diffusion(diffusion_graph, seeded.toarray()))
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected)])
    assert overlap >= 0.9


def test_eigenvectors_not_found_leave_the_diffusion_to_conjugate_gradients(monkeypatch, capsys):
    import scipy.sparse.linalg

    def fails(*arguments, **keywords):
        raise scipy.sparse.linalg.ArpackNoConvergence("no convergence", np.zeros(0), np.zeros((0, 0)))

    monkeypatch.setattr(scipy.sparse.linalg, "eigsh", fails)
    monkeypatch.setattr(graph, "SPECTRUM_MIN_ROWS", 10)
    rows, similarities = graph.neighbour_graph(two_chains(), neighbours=3)
    diffusion_graph = graph.diffusion_graph_of(rows, similarities, graph.graph_spectrum(rows, similarities))
    assert diffusion_graph.basis is None and "search will diffuse by conjugate gradients" in capsys.readouterr().err
