"""Incremental updates, shard indexes searched as one, and the approximate index."""

import os
import shutil
import time

import cv2
import numpy as np
import pytest

import index_dataset
import search
from imsearch import descriptors, graph, index, indexing, ranking, vectors


def run_search(capsys, model_path, index_paths, query, top_k=5, extra=()):
    """search.py's stdout lines for one query, and its stderr."""
    flags = [flag for path in index_paths for flag in ("--index", str(path))]
    search.main(["--model", str(model_path), *flags, "--no-images", "--top-k", str(top_k), *extra, str(query)])
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


def indexed_copy(gray_model, gray_dataset, tmp_path):
    """A copy of the training folder that --update may change, indexed: (folder, index_path, model_path)."""
    folder, index_path = tmp_path / "images", tmp_path / "features.pkl"
    shutil.copytree(gray_dataset / "train", folder)
    model_path = gray_model / "autoencoder.keras"
    index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path)])
    return folder, index_path, model_path


def test_update_reencodes_only_what_changed(gray_model, gray_dataset, tmp_path, capsys):
    folder, index_path, model_path = indexed_copy(gray_model, gray_dataset, tmp_path)
    before = index.load_index(str(index_path))
    os.remove(folder / "disc" / "000.png")
    shutil.copy(gray_dataset / "test" / "cross" / "000.png", folder / "cross" / "new.png")
    time.sleep(0.01)  # A visibly newer mtime for the rewritten file.
    cv2.imwrite(str(folder / "square" / "005.png"), np.full((28, 28), 255, np.uint8))
    capsys.readouterr()
    report = index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), "--update"])
    assert (report.images, report.encoded) == (48, 2)
    after = index.load_index(str(index_path))
    assert_graph_as_fresh(after, folder, model_path, tmp_path)
    assert "disc/000.png" not in after.paths and "cross/new.png" in after.paths and len(after.paths) == 48
    unchanged = after.paths.index("disc/001.png")
    assert np.array_equal(after.features[unchanged], before.features[before.paths.index("disc/001.png")])
    changed = after.paths.index("square/005.png")
    assert not np.array_equal(after.features[changed], before.features[before.paths.index("square/005.png")])
    # A search right after sees the new image: an outside copy of it finds it first, at distance 0.
    hits, _ = run_search(capsys, model_path, [index_path], gray_dataset / "test" / "cross" / "000.png", top_k=1)
    assert hits[0].split("\t")[3].endswith("cross/new.png") and float(hits[0].split("\t")[2]) < 1e-3


def assert_graph_as_fresh(updated, folder, model_path, tmp_path):
    """The updated index's graph is the one a fresh index of the folder gets, up to ties and float rounding."""
    index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(tmp_path / "fresh.pkl")])
    fresh = index.load_index(str(tmp_path / "fresh.pkl"))
    # The encoder's results differ in the last bits between batch sizes.
    assert updated.paths == fresh.paths and np.allclose(updated.features, fresh.features, atol=1e-5)
    assert np.allclose(updated.neighbour_similarities, fresh.neighbour_similarities, atol=1e-5)
    unit_features = vectors.postprocess_features(updated.features, "cosine")
    listed = np.einsum("ij,ikj->ik", unit_features, unit_features[updated.neighbours])
    assert np.allclose(listed, updated.neighbour_similarities, atol=1e-5)
    # The spectrum, kept from graph.SPECTRUM_MIN_ROWS rows, is the updated graph's own: eigenvectors of its operator.
    assert (updated.diffusion_basis is None) == (updated.count < graph.SPECTRUM_MIN_ROWS)
    if updated.diffusion_basis is not None:
        operator = updated.diffusion_graph().operator
        residual = operator @ updated.diffusion_basis - updated.diffusion_basis * updated.diffusion_eigenvalues
        assert np.abs(residual).max() < 1e-2


def test_update_links_a_new_image_without_rebuilding_the_graph(gray_model, gray_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(graph, "SPECTRUM_MIN_ROWS", 20)  # So this small index keeps a spectrum, made anew by the update.
    monkeypatch.setattr(graph, "SPECTRUM_RANK", 12)
    folder, index_path, model_path = indexed_copy(gray_model, gray_dataset, tmp_path)
    shutil.copy(gray_dataset / "test" / "disc" / "000.png", folder / "disc" / "new.png")
    report = index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), "--update"])
    assert (report.images, report.encoded, report.relinked) == (49, 1, 1)
    assert_graph_as_fresh(index.load_index(str(index_path)), folder, model_path, tmp_path)


def test_shard_indexes_search_as_one(gray_model, gray_dataset, gray_index, tmp_path, capsys):
    model_path = gray_model / "autoencoder.keras"
    shards = [tmp_path / f"shard{number}.pkl" for number in range(3)]
    for number, shard_path in enumerate(shards):
        index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path),
                            "--index", str(shard_path), "--shard", f"{number}/3"])
    assert sum(len(index.load_index(str(path)).paths) for path in shards) == 48
    query = gray_dataset / "test" / "square" / "001.png"
    merged, errors = run_search(capsys, model_path, shards, query, top_k=8)
    assert "no neighbour graph" in errors  # Shards are not linked: the merge ranks by cosine alone.
    whole, _ = run_search(capsys, model_path, [gray_index], query, top_k=8, extra=["--no-diffusion"])
    assert len(merged) == 8
    assert [line.split("\t")[3] for line in merged] == [line.split("\t")[3] for line in whole]
    assert np.allclose([float(line.split("\t")[2]) for line in merged], [float(line.split("\t")[2]) for line in whole], atol=1e-5)
    assert "shards of the folder" not in errors
    _, errors = run_search(capsys, model_path, shards[:2], query, top_k=8)
    assert "searching 2 of the 3 shards of the folder: shard(s) 2/3 not given" in errors


def test_a_moved_folder_is_named_in_a_warning(gray_model, gray_dataset, tmp_path, capsys):
    folder, index_path, model_path = indexed_copy(gray_model, gray_dataset, tmp_path)
    shutil.move(folder, tmp_path / "moved")
    hits, errors = run_search(capsys, model_path, [index_path], gray_dataset / "test" / "disc" / "000.png", top_k=3)
    assert len(hits) == 3 and f"{folder}: the indexed folder is gone" in errors


def test_approximate_index_is_written_used_and_checked(gray_model, gray_dataset, gray_index, tmp_path, capsys):
    model_path, index_path = gray_model / "autoencoder.keras", tmp_path / "features.pkl"
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path),
                        "--index", str(index_path), "--approximate", "always"])
    assert (tmp_path / "features.ivf").stat().st_size > 0
    query = gray_dataset / "train" / "disc" / "003.png"  # Indexed itself: must still not be its own hit.
    # Without re-ranking both rank by cosine alone (the approximate index probes every list of so few rows).
    approximate, _ = run_search(capsys, model_path, [index_path], query, top_k=6, extra=("--no-diffusion",))
    exact, _ = run_search(capsys, model_path, [index_path], query, top_k=6, extra=("--approximate", "never", "--no-diffusion"))
    assert [line.split("\t")[3] for line in approximate] == [line.split("\t")[3] for line in exact]
    assert np.allclose([float(line.split("\t")[2]) for line in approximate], [float(line.split("\t")[2]) for line in exact], atol=1e-5)
    assert not any(line.split("\t")[3].endswith("disc/003.png") for line in approximate)
    with open(tmp_path / "features.ivf", "ab") as file:
        file.write(b"tampered")
    fallback, errors = run_search(capsys, model_path, [index_path], query, top_k=6, extra=("--no-diffusion",))
    assert "features.ivf: missing or not the one this index was saved with; searching exactly" in errors
    assert fallback == exact


def test_fresh_index_records_what_update_compares(gray_index):
    # A fresh index takes sizes and mtimes from the reads themselves; they must equal what --update stats.
    saved = index.load_index(str(gray_index))
    stamps = np.array([indexing.file_stamp(os.path.join(saved.dataset_dir, path)) for path in saved.paths])
    assert np.array_equal(saved.stamps, stamps) and (stamps[:, 0] > 0).all()


def test_compact_index_is_projected_searched_and_updated_in_place(gray_model, gray_dataset, tmp_path, capsys):
    folder, index_path, model_path = tmp_path / "images", tmp_path / "features.pkl", gray_model / "autoencoder.keras"
    shutil.copytree(gray_dataset / "train", folder)
    compact = ["--compact-above", "40", "--compact-length", "8"]
    index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), *compact])
    before = index.load_index(str(index_path))
    assert before.compact and before.features.shape == (48, 8) and before.projection_basis.shape == (16 + descriptors.HISTOGRAM_LENGTH, 8)
    shutil.copy(gray_dataset / "test" / "disc" / "000.png", folder / "disc" / "new.png")
    report = index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), "--update", *compact])
    assert (report.images, report.encoded, report.relinked) == (49, 1, 1)
    after = index.load_index(str(index_path))
    assert np.array_equal(after.projection_basis, before.projection_basis)  # Kept, so unchanged rows keep their features.
    assert np.array_equal(after.features[after.paths.index("cross/003.png")], before.features[before.paths.index("cross/003.png")])
    unit_features = vectors.postprocess_features(after.features, "cosine")
    listed = np.einsum("ij,ikj->ik", unit_features, unit_features[after.neighbours])
    assert np.allclose(listed, after.neighbour_similarities, atol=1e-5)
    # Queries are projected as the index's rows are: an outside copy of the new image finds it first, at distance 0.
    hits, _ = run_search(capsys, model_path, [index_path], gray_dataset / "test" / "disc" / "000.png", top_k=1)
    assert hits[0].split("\t")[3].endswith("disc/new.png") and float(hits[0].split("\t")[2]) < 1e-3


def test_small_indexes_keep_every_feature_in_float16(gray_index):
    import pickle

    with open(gray_index, "rb") as file:
        saved = pickle.load(file)  # Our own file, written by the fixture.
    assert saved["projection_basis"] is None and saved["features"].dtype == np.float16 and saved["features"].shape[1] == 16 + descriptors.HISTOGRAM_LENGTH


def test_duplicate_candidates_of_a_compact_index_are_those_of_the_full_one(gray_model, gray_dataset, tmp_path):
    from imsearch import duplicates

    model_path = gray_model / "autoencoder.keras"
    found = {}
    for name, flags in (("full", ()), ("compact", ("--compact-above", "1"))):
        index_path = tmp_path / f"{name}.pkl"
        index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path), "--index", str(index_path), *flags])
        feature_index = index.load_index(str(index_path))
        assert feature_index.compact == (name == "compact")
        # The compact index reads its images again for their histograms: the same candidates at the same distances.
        found[name] = duplicates.candidate_pairs(feature_index, 0.3, 64)
    assert len(found["full"][0]) > 5 and np.array_equal(found["compact"][0], found["full"][0])
    assert np.allclose(found["compact"][1], found["full"][1], atol=2e-3)


def test_only_shards_of_one_run_are_merged(gray_model, gray_dataset, tmp_path, capsys):
    model_path = gray_model / "autoencoder.keras"
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path), "--index", str(tmp_path / "shard.pkl"),
                        "--shard", "0/2"])
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path), "--index", str(tmp_path / "compact.pkl"),
                        "--compact-above", "1"])
    from conftest import fails_with

    line = fails_with(search, ["--model", str(model_path), "--index", str(tmp_path / "shard.pkl"), "--index",
                               str(tmp_path / "compact.pkl"), "--no-images", str(gray_dataset / "test" / "disc" / "000.png")], capsys)
    assert "compact.pkl: a whole index, not a shard" in line
    line = fails_with(search, ["--model", str(model_path), "--index", str(tmp_path / "shard.pkl"), "--index",
                               str(tmp_path / "shard.pkl"), "--no-images", str(gray_dataset / "test" / "disc" / "000.png")], capsys)
    assert "an image is in two of the shards given" in line


def test_large_indexes_are_linked_and_re_ranked_with_the_approximate_index(gray_model, gray_dataset, tmp_path, capsys):
    model_path, index_path = gray_model / "autoencoder.keras", tmp_path / "features.pkl"
    report = index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path), "--index", str(index_path),
                                 "--approximate-above", "40"])
    saved = index.load_index(str(index_path))
    assert report.relinked == 48 and saved.neighbours.shape == (48, graph.GRAPH_NEIGHBOURS) and saved.approximate_sha256 is not None
    query = gray_dataset / "test" / "square" / "001.png"
    # 48 rows: every one is a candidate, so diffusion over the candidates' graph is the whole diffusion.
    local, errors = run_search(capsys, model_path, [index_path], query, top_k=10)
    whole, _ = run_search(capsys, model_path, [index_path], query, top_k=10, extra=("--approximate", "never"))
    assert "no neighbour graph" not in errors and len(local) == 10 and local == whole


def test_approximate_search_with_diffusion_gives_every_hit_asked_for(gray_model, gray_dataset, tmp_path, capsys, monkeypatch):
    model_path, index_path = gray_model / "autoencoder.keras", tmp_path / "features.pkl"
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(model_path), "--index", str(index_path),
                        "--approximate-above", "40"])
    monkeypatch.setattr(ranking, "DIFFUSION_CANDIDATES", 10)
    hits, _ = run_search(capsys, model_path, [index_path], gray_dataset / "test" / "square" / "001.png", top_k=20)
    assert len(hits) == 20 and len({line.split("\t")[3] for line in hits}) == 20


def test_update_of_a_large_index_relinks_approximately(gray_model, gray_dataset, tmp_path, capsys, monkeypatch):
    folder, index_path, model_path = tmp_path / "images", tmp_path / "features.pkl", gray_model / "autoencoder.keras"
    shutil.copytree(gray_dataset / "train", folder)
    approximate = ["--approximate-above", "40"]
    index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), *approximate])
    for number in range(10):  # More rows than the share relinked one by one: the graph is found anew, approximately.
        shutil.copy(gray_dataset / "test" / "disc" / "000.png", folder / "disc" / f"new{number}.png")
    monkeypatch.setattr(graph, "neighbour_graph", lambda *arguments: pytest.fail("built the exact O(N^2) graph"))
    report = index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), "--update", *approximate])
    assert (report.images, report.encoded, report.relinked) == (58, 10, 58)
    assert index.load_index(str(index_path)).neighbours.shape == (58, graph.GRAPH_NEIGHBOURS)


def test_an_index_that_grows_past_compact_above_is_compacted_and_linked_anew(gray_model, gray_dataset, tmp_path):
    folder, index_path, model_path = tmp_path / "images", tmp_path / "features.pkl", gray_model / "autoencoder.keras"
    shutil.copytree(gray_dataset / "train", folder)
    compact = ["--compact-above", "50", "--compact-length", "8"]
    index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), *compact])
    assert not index.load_index(str(index_path)).compact  # 48 images: below the threshold.
    for number in range(3):
        shutil.copy(gray_dataset / "test" / "cross" / f"00{number}.png", folder / "cross" / f"new{number}.png")
    report = index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), "--update", *compact])
    grown = index.load_index(str(index_path))
    # Every row is projected now, so every row is linked anew, and the graph fits the projected features.
    assert (report.images, report.encoded, report.relinked) == (51, 3, 51) and grown.compact and grown.features.shape == (51, 8)
    unit_features = vectors.postprocess_features(grown.features, "cosine")
    listed = np.einsum("ij,ikj->ik", unit_features, unit_features[grown.neighbours])
    assert np.allclose(listed, grown.neighbour_similarities, atol=1e-5)


def test_an_update_that_changes_nothing_keeps_the_spectrum_without_finding_it_again(gray_model, gray_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(graph, "SPECTRUM_MIN_ROWS", 20)
    monkeypatch.setattr(graph, "SPECTRUM_RANK", 12)
    folder, index_path, model_path = indexed_copy(gray_model, gray_dataset, tmp_path)
    before = index.load_index(str(index_path))
    assert before.diffusion_basis is not None
    found = []
    monkeypatch.setattr(graph, "spectrum_of", lambda operator: found.append(operator))
    report = index_dataset.main(["--dataset", str(folder), "--model", str(model_path), "--index", str(index_path), "--update"])
    after = index.load_index(str(index_path))
    assert (report.encoded, report.relinked) == (0, 0) and not found
    assert np.array_equal(after.diffusion_basis, before.diffusion_basis)
    assert np.array_equal(after.diffusion_eigenvalues, before.diffusion_eigenvalues)


def test_update_without_dataset_refreshes_the_indexed_folder(gray_model, gray_dataset, tmp_path, monkeypatch, capsys):
    folder, index_path, model_path = indexed_copy(gray_model, gray_dataset, tmp_path)
    os.remove(folder / "disc" / "000.png")
    monkeypatch.chdir(tmp_path)  # Where the default --dataset does not exist: only the index's own folder is read.
    report = index_dataset.main(["--model", str(model_path), "--index", str(index_path), "--update"])
    assert (report.images, report.encoded) == (47, 0)
    assert index.load_index(str(index_path)).dataset_dir == os.path.abspath(folder)
