"""Behaviour a user expects off the main paths (issue 22): each test failed before its fix."""

import os
import subprocess
import sys

import cv2

import config
import search

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_reader_that_stops_early_ends_search_quietly(gray_index, gray_model, gray_dataset, tmp_path):
    query = str(next((gray_dataset / "test" / "disc").iterdir()))
    (tmp_path / "queries.txt").write_text((query + "\n") * 3000)  # 30,000 hit lines: far more than a pipe buffers.
    with open(tmp_path / "queries.txt", "rb") as queries:
        process = subprocess.Popen(
            [sys.executable, "search.py", "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index),
             "--no-images", "-"], cwd=REPOSITORY_DIR, stdin=queries, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_line = process.stdout.readline()
    process.stdout.close()  # As head -1 does once it has its line.
    stderr = process.stderr.read().decode()
    process.wait(timeout=120)
    assert first_line.count(b"\t") == 3
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert process.returncode == 141


def test_a_query_without_hits_still_gets_its_pictures(tmp_path, capsys):
    import index_dataset
    import train

    folder = tmp_path / "one"
    folder.mkdir()
    image = cv2.circle(cv2.UMat(64, 64, cv2.CV_8UC1, 0).get(), (32, 32), 20, 255, -1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), image)
    run = tmp_path / "run"
    train.main(["--dataset", str(folder), "--output", str(run), "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    os.remove(folder / "b.png")
    index_dataset.main(["--dataset", str(folder), "--output", str(run)])
    search.main([str(folder / "a.png"), "--output", str(run)])  # The index holds only the query itself.
    err = capsys.readouterr().err
    assert "1 query(ies) got no hits" in err and "Traceback" not in err
    assert cv2.imread(str(run / "results_1.jpg")) is not None and cv2.imread(str(run / "query_1.jpg")) is not None


def test_euclidean_ranking_says_it_turns_diffusion_off(gray_index, gray_model, gray_dataset, capsys):
    query = str(next((gray_dataset / "test" / "disc").iterdir()))
    search.main([query, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--no-images",
                 "--metric", "euclidean"])
    assert "--metric euclidean ranks without diffusion" in capsys.readouterr().err


def test_training_that_diverges_says_no_model_was_written(gray_model, gray_dataset, tmp_path, capsys):
    import shutil

    import train
    from conftest import fails_with

    run = tmp_path / "run"
    shutil.copytree(gray_model, run)  # A reused folder: its older model must not be reported as this run's.
    before = (run / config.MODEL_FILE).read_bytes()
    line = fails_with(train, ["--dataset", str(gray_dataset / "test"), "--output", str(run), "--epochs", "2",
                              "--learning-rate", "1e30", "--latent-dim", "8", "--filters", "4", "8"], capsys)
    assert "training diverged" in line and "--learning-rate" in line
    assert (run / config.MODEL_FILE).read_bytes() == before


def test_control_characters_in_file_names_are_printed_escaped(gray_model, gray_dataset, tmp_path, capsys):
    import shutil

    import index_dataset

    folder = tmp_path / "odd"
    folder.mkdir()
    source = sorted((gray_dataset / "test" / "disc").iterdir())[0]
    names = ("carriage\rreturn.png", "escape\x1b[31mred.png", "plain.png")
    for name in names:
        shutil.copy(source, folder / name)
    index_path = tmp_path / "odd.pkl"
    index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / config.MODEL_FILE), "--index", str(index_path)])
    capsys.readouterr()
    search.main([str(source), "--model", str(gray_model / config.MODEL_FILE), "--index", str(index_path), "--no-images"])
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    assert "carriage\\rreturn.png" in out and "escape\\x1b[31mred.png" in out and len(out.splitlines()) == 3


def test_a_huge_top_k_costs_no_more_memory_than_the_index_holds(gray_model, gray_dataset, tmp_path, capsys):
    import tracemalloc

    import index_dataset

    index_path = str(tmp_path / "approximate.pkl")
    index_dataset.main(["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / config.MODEL_FILE),
                        "--index", index_path, "--approximate", "always"])
    query = str(sorted((gray_dataset / "test" / "disc").iterdir())[0])
    capsys.readouterr()
    tracemalloc.start()
    search.main([query, "--model", str(gray_model / config.MODEL_FILE), "--index", index_path, "--no-images",
                 "--top-k", "3000000"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(capsys.readouterr().out.splitlines()) > 0
    assert peak < 50 * 2**20  # 3,000,000 rows of int64 and float32 alone would take 34 MiB per array.


def test_a_validation_share_near_one_still_leaves_an_image_to_train_on():
    from imsearch import image_folders

    train_rows, validation_rows = image_folders.split_indices(40, 0.99, seed=0)
    assert len(train_rows) == 1 and len(validation_rows) == 39
    assert sorted([*train_rows, *validation_rows]) == list(range(40))


def test_shifts_as_large_as_the_image_are_refused_before_training(gray_dataset, tmp_path, capsys):
    import train
    from conftest import fails_with

    line = fails_with(train, ["--dataset", str(gray_dataset / "test"), "--output", str(tmp_path / "run"),
                              "--shift-pixels", "28"], capsys)
    assert "--shift-pixels 28 must be below the image size (28 pixels)" in line
    assert not (tmp_path / "run" / config.MODEL_FILE).exists()


def test_an_index_with_a_negative_image_size_is_refused_in_one_line(gray_model, gray_index, tmp_path, capsys):
    import pickle

    from conftest import fails_with

    with open(gray_index, "rb") as file:
        saved = pickle.load(file)
    saved["image_size"] = -5
    with open(tmp_path / "odd.pkl", "wb") as file:
        pickle.dump(saved, file)
    line = fails_with(search, ["--model", str(gray_model / config.MODEL_FILE), "--index", str(tmp_path / "odd.pkl"),
                               "--duplicates"], capsys)
    assert "odd.pkl" in line and "bad image shape" in line


def test_search_prints_the_first_hits_before_stdin_ends(gray_index, gray_model, gray_dataset):
    import select

    query = str(next((gray_dataset / "test" / "disc").iterdir()))
    process = subprocess.Popen(
        [sys.executable, "search.py", "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index),
         "--no-images", "--encode-batch-size", "1", "-"], cwd=REPOSITORY_DIR, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    process.stdin.write((query + "\n").encode())
    process.stdin.flush()  # And left open, as a slow producer upstream in a pipeline leaves it.
    ready, _, _ = select.select([process.stdout], [], [], 120)
    first_line = process.stdout.readline() if ready else b""
    process.stdin.close()
    process.stdout.read()
    process.wait(timeout=60)
    assert first_line.startswith(query.encode() + b"\t1\t")
    assert process.returncode == 0


def test_names_that_are_not_utf8_or_hold_line_breaks_train_index_search_and_show(gray_dataset, tmp_path, capsys):
    import shutil

    import index_dataset
    import train

    folder = tmp_path / "odd"
    names = [os.fsdecode(b"caf\xe9.png"), "new\nline.png", "carriage\rreturn.png"]
    for label in ("disc", "square"):
        (folder / label).mkdir(parents=True)
        for number, source in enumerate(sorted((gray_dataset / "train" / label).iterdir())[:6]):
            shutil.copy(source, folder / label / (names[number] if number < len(names) else source.name))
    run = tmp_path / "run"
    train.main(["--dataset", str(folder), "--output", str(run), "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    index_dataset.main(["--dataset", str(folder), "--output", str(run)])
    capsys.readouterr()
    query = str(folder / "disc" / names[0])
    search.main([query, "--output", str(run), "--html", str(run / "results.html"), "--top-k", "11"])
    out = capsys.readouterr().out
    assert out.count("\n") == 11 and "\r" not in out  # Every other image, each on one line.
    assert all(line.startswith(str(folder / "disc" / "caf\\xe9.png") + "\t") for line in out.splitlines())
    assert "square/caf\\xe9.png" in out and "new\\nline.png" in out and "carriage\\rreturn.png" in out
    page = (run / "results.html").read_text(encoding="utf-8")
    assert "square/caf\\xe9.png" in page and "new\\nline.png" in page and page.count("<figure") == 12


def test_evaluate_measures_the_split_training_used_from_any_folder(gray_dataset, tmp_path, monkeypatch, capsys):
    import shutil

    import evaluate
    import train

    shutil.copytree(gray_dataset / "train", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    train.main(["--dataset", "data", "--output", "run", "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    for number in range(9):  # Images added after training must not join, nor shift, its validation split.
        shutil.copy(gray_dataset / "test" / "disc" / "000.png", tmp_path / "data" / "disc" / f"new{number}.png")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    evaluate.main(["--output", str(tmp_path / "run")])
    validation = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("validation"))
    assert validation.split("\t")[1] == "5"  # 10% of the 48 images trained on, as training held them out.


def test_a_rerun_with_other_settings_says_it_drops_the_interrupted_run_and_replaces_the_model(gray_model, gray_dataset,
                                                                                              tmp_path, capsys):
    import json
    import shutil

    import train

    run = tmp_path / "run"
    shutil.copytree(gray_model, run)
    resume = run / "logs" / "resume"
    resume.mkdir(parents=True, exist_ok=True)
    (resume / "settings.json").write_text(json.dumps({"epochs": 60, "learning_rate": 0.001}))
    (resume / "epoch-0003.keras").write_bytes(b"state of an interrupted run")
    capsys.readouterr()
    train.main(["--dataset", str(gray_dataset / "test"), "--output", str(run), "--epochs", "1",
                "--latent-dim", "8", "--filters", "4", "8"])
    err = capsys.readouterr().err
    assert f"the interrupted run in {resume} had other settings (" in err and "epochs" in err and "cannot resume" in err
    assert f"{run / config.MODEL_FILE} of an earlier run will be replaced" in err
    assert "its saved state is dropped" in err and not (resume / "epoch-0003.keras").exists()  # As the line says.


def test_pictures_keep_the_aspect_and_an_earlier_search_is_replaced_with_a_note(gray_model, gray_index, gray_dataset,
                                                                               tmp_path, capsys):
    import numpy as np

    from imsearch import figures

    wide = np.full((20, 80, 3), 200, np.uint8)
    cell = figures.to_display(wide, 64)
    assert cell.shape == (64, 64, 3) and cell[:20].max() == 0 and cell[24:40].min() == 200  # Bars, never a squash.
    cv2.imwrite(str(tmp_path / "wide.png"), wide)
    query = str(sorted((gray_dataset / "test" / "disc").iterdir())[0])
    for name in ("query_7.jpg", "results_7.jpg"):
        cv2.imwrite(str(tmp_path / name), wide)
    search.main([query, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--output", str(tmp_path)])
    assert "replaced the 2 pictures of an earlier search" in capsys.readouterr().err
    assert not (tmp_path / "query_7.jpg").exists() and (tmp_path / "query_1.jpg").exists()


def test_colour_photos_on_a_gray_model_and_sampling_from_the_indexed_folder(gray_model, gray_index, gray_dataset,
                                                                           colour_dataset, tmp_path, capsys):
    import index_dataset

    index_dataset.main(["--dataset", str(colour_dataset / "train"), "--model", str(gray_model / config.MODEL_FILE),
                        "--index", str(tmp_path / "colour.pkl")])
    assert "are in colour but the model was trained on gray images" in capsys.readouterr().err
    search.main(["--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--no-images", "--sample", "2"])
    queries = {line.split("\t")[0] for line in capsys.readouterr().out.splitlines()}
    assert len(queries) == 2 and all(os.path.realpath(query).startswith(os.path.realpath(gray_dataset / "test")) for query in queries)


def test_a_mistyped_source_folder_is_refused_instead_of_falling_back(tmp_path, capsys):
    import prepare_dataset
    from conftest import fails_with

    line = fails_with(prepare_dataset, ["fashion-mnist", "--source", str(tmp_path / "fashoin"),
                                        "--dataset-root", str(tmp_path / "out")], capsys)
    assert f"--source {tmp_path / 'fashoin'}: no such folder" in line and not (tmp_path / "out").exists()


def test_montages_are_written_for_the_first_queries_only_with_a_note(gray_model, gray_index, gray_dataset, tmp_path, capsys):
    queries = [str(path) for path in sorted((gray_dataset / "test" / "disc").iterdir())]
    assert len(queries) == 3
    search.main([*queries, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--output",
                 str(tmp_path), "--images-limit", "2", "--top-k", "2"])
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 6  # Every query's hits are printed all the same.
    assert sorted(os.listdir(tmp_path)) == ["query_1.jpg", "query_2.jpg", "results_1.jpg", "results_2.jpg"]
    assert "montages written for the first 2 of 3 queries (--images-limit)" in captured.err


def test_the_distance_printed_under_diffusion_rises_down_each_querys_list(gray_index, gray_model, gray_dataset, capsys):
    queries = sorted(str(path) for path in (gray_dataset / "test").rglob("*.png"))
    search.main([*queries, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--no-images",
                 "--top-k", "20"])
    distances = {}
    for line in capsys.readouterr().out.splitlines():
        query, _, distance, _ = line.split("\t")
        distances.setdefault(query, []).append(float(distance))
    assert len(distances) == len(queries)
    for query, column in distances.items():
        assert column == sorted(column), query
    help_text = subprocess.run([sys.executable, "search.py", "--help"], cwd=REPOSITORY_DIR, capture_output=True, text=True).stdout
    assert "other hits get a diffusion distance" in " ".join(help_text.split())


def write_png_header(path, width, height):
    """A PNG whose header declares width x height gray pixels, followed by no image data: a decompression bomb's claim."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b""))


def test_an_image_of_too_many_pixels_is_skipped_or_refused_saying_why(gray_model, gray_index, gray_dataset, tmp_path, capsys):
    import shutil

    import index_dataset
    from conftest import fails_with

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(sorted((gray_dataset / "test" / "disc").iterdir())[0], folder / "good.png")
    write_png_header(folder / "panorama.png", 40_000, 40_000)  # 1.6 billion pixels: OpenCV refuses by raising.
    index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / config.MODEL_FILE), "--index", str(tmp_path / "f.pkl")])
    assert f"skipped 1 unreadable image(s) of 2, first: {folder / 'panorama.png'}: has too many pixels" in capsys.readouterr().err
    line = fails_with(search, [str(folder / "panorama.png"), "--model", str(gray_model / config.MODEL_FILE),
                               "--index", str(gray_index), "--no-images"], capsys)
    assert "panorama.png: has too many pixels to decode safely; pass a smaller copy" in line


def test_search_prints_its_hits_where_it_cannot_write_pictures(gray_model, gray_index, gray_dataset, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    query = str(sorted((gray_dataset / "test" / "disc").iterdir())[0])
    search.main([query, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index),
                 "--output", str(tmp_path / "a_file" / "run")])
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 10
    assert "cannot write the query and result pictures there" in captured.err and "Traceback" not in captured.err


def test_a_hit_whose_name_starts_with_a_dash_is_printed_as_no_option(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert search.display_path("-rf.jpg") == "./-rf.jpg"
    assert search.display_path(str(tmp_path / "a" / "b.jpg")) == "a/b.jpg"
    assert search.display_path("..hidden.jpg") == "..hidden.jpg"
    assert search.display_path(str(tmp_path.parent / "c.jpg")) == str(tmp_path.parent / "c.jpg")


def test_an_error_about_a_name_with_a_line_break_stays_on_one_line(gray_model, gray_index, tmp_path, capsys):
    from conftest import fails_with

    missing = str(tmp_path / "no\nsuch\x1b[31m.jpg")
    line = fails_with(search, [missing, "--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index)], capsys)
    assert "no\\nsuch\\x1b[31m.jpg: does not exist" in line


def test_linked_folders_are_indexed_once_each(gray_model, gray_dataset, tmp_path, capsys):
    import index_dataset
    from imsearch import index

    folder = tmp_path / "images"
    folder.mkdir()
    os.symlink(gray_dataset / "train" / "disc", folder / "disc")  # A class kept elsewhere, linked in.
    os.symlink(folder, folder / "disc_again")  # A loop back to the top.
    index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / config.MODEL_FILE), "--index", str(tmp_path / "f.pkl")])
    assert "skipped 1 folder(s) of" in capsys.readouterr().err
    paths = index.load_index(str(tmp_path / "f.pkl")).paths
    assert len(paths) == 16 and all(path.startswith("disc/") for path in paths)


def test_search_flags_are_named_right_in_their_errors(gray_model, gray_index, tmp_path, capsys):
    from conftest import fails_with

    flags = ["--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--no-images"]
    line = fails_with(search, [*flags, "--sample", "2", "--sample-dir", str(tmp_path / "nowhere")], capsys)
    assert "no such folder; pass --sample-dir DIR" in line
    line = fails_with(search, [*flags, "--approximate", "always", str(tmp_path / "q.png")], capsys)
    assert "no approximate index to search with" in line


def test_workers_without_ray_installed_is_one_line(gray_model, gray_dataset, tmp_path, monkeypatch, capsys):
    import index_dataset
    from conftest import fails_with

    monkeypatch.setitem(sys.modules, "ray", None)  # As on an install made with install.sh --search-only.
    line = fails_with(index_dataset, ["--dataset", str(gray_dataset / "train"), "--model", str(gray_model / config.MODEL_FILE),
                                      "--index", str(tmp_path / "f.pkl"), "--workers", "2"], capsys)
    assert "--workers needs Ray, which this install lacks" in line


def test_evaluate_skips_queries_it_cannot_score_and_says_so(gray_model, gray_index, gray_dataset, tmp_path, capsys):
    import shutil

    import evaluate
    from conftest import fails_with

    queries = tmp_path / "queries"
    shutil.copytree(gray_dataset / "test" / "disc", queries / "disc")
    (queries / "disc" / "broken.png").write_text("not an image")
    shutil.copytree(gray_dataset / "test" / "cross", queries / "triangle")  # A class the index does not have.
    flags = ["--model", str(gray_model / config.MODEL_FILE), "--index", str(gray_index), "--output", str(tmp_path)]
    evaluate.main([*flags, "--queries", str(queries)])
    err = capsys.readouterr().err
    assert "skipped 1 unreadable queries of 7" in err and "skipped 3 queries of classes the index does not have (triangle)" in err
    assert "retrieval: 3 queries against 48 indexed images" in err
    shutil.rmtree(queries / "disc")
    line = fails_with(evaluate, [*flags, "--queries", str(queries)], capsys)
    assert "no readable query of a class the index has" in line


def test_training_scripts_on_a_search_only_install_say_what_is_missing(gray_model, gray_dataset):
    # A real process in which TensorFlow cannot be imported, as after bash install.sh --search-only.
    code = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    for script, flags in (("train.py", ["--dataset", str(gray_dataset / "train"), "--output", "/nonexistent/run", "--epochs", "1"]),
                          ("evaluate.py", ["--model", str(gray_model / config.MODEL_FILE), "--output", str(gray_model)])):
        process = subprocess.run([sys.executable, "-c", code, script, *flags], cwd=REPOSITORY_DIR, capture_output=True, text=True,
                                 timeout=120)
        assert process.returncode == 2 and "Traceback" not in process.stderr, process.stderr
        assert f"{script}: error: needs tensorflow, which this install lacks" in process.stderr


def test_a_run_folder_that_is_the_image_folder_never_indexes_its_own_pictures(gray_dataset, tmp_path, capsys):
    import shutil

    import index_dataset
    import train
    from imsearch import index

    folder = tmp_path / "disc"
    shutil.copytree(gray_dataset / "train" / "disc", folder)
    train.main(["--dataset", str(folder), "--output", str(folder), "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"])
    assert (folder / "training_loss.png").exists()
    index_dataset.main(["--dataset", str(folder), "--output", str(folder)])
    search.main([str(folder / "000.png"), "--output", str(folder)])  # Writes query_1.jpg and results_1.jpg beside the images.
    index_dataset.main(["--dataset", str(folder), "--output", str(folder), "--update"])
    assert len(index.load_index(str(folder / config.INDEX_FILE)).paths) == 16
    assert "skipped 3 picture(s) this suite wrote into" in capsys.readouterr().err


def test_a_hard_link_to_an_indexed_image_never_finds_that_image(gray_model, gray_dataset, tmp_path, capsys):
    import shutil

    import index_dataset

    folder = tmp_path / "images"
    shutil.copytree(gray_dataset / "train", folder)
    index_dataset.main(["--dataset", str(folder), "--model", str(gray_model / config.MODEL_FILE), "--output", str(tmp_path)])
    os.link(folder / "disc" / "000.png", tmp_path / "linked.png")  # One file, a second name outside the folder.
    capsys.readouterr()
    search.main([str(tmp_path / "linked.png"), "--model", str(gray_model / config.MODEL_FILE), "--output", str(tmp_path),
                 "--no-images", "--top-k", "3"])
    hits = [line.split("\t")[3] for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 3 and not any(hit.endswith("disc/000.png") for hit in hits)
