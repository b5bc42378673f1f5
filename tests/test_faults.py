"""Real processes killed mid-run, and a full disk: nothing already written is lost, and reruns finish."""

import csv
import json
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import make_folder
from imsearch import index, model

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(script, argv, stderr_path, **keywords):
    """Start a script as a real subprocess, its stderr going to a file."""
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen([sys.executable, script, *argv], cwd=REPOSITORY_DIR, stdout=subprocess.DEVNULL,
                                stderr=stderr, **keywords)


def wait_for(condition, process, timeout=180):
    """Poll until condition() holds; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the process finished before it could be interrupted"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def digest(path):
    """SHA-256 of a file."""
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def history_epochs(output_dir):
    """Epoch numbers recorded in the history CSV."""
    with open(output_dir / "logs" / "history.csv", newline="") as file:
        return [int(float(row["epoch"])) for row in csv.DictReader(file)]


def test_training_killed_mid_run_resumes_to_the_same_epoch_count(tmp_path):
    dataset_dir = make_folder(tmp_path / "data", per_class=100, gray=True, sizes=((28, 28),))
    output_dir = tmp_path / "output"
    argv = ["--dataset", dataset_dir, "--output", str(output_dir), "--epochs", "6", "--batch-size", "8",
            "--latent-dim", "16", "--filters", "8", "16"]
    process = start("train.py", argv, tmp_path / "first.err")
    resume_dir = output_dir / "logs" / "resume"
    wait_for(lambda: resume_dir.is_dir() and any(name.startswith("epoch-0002") for name in os.listdir(resume_dir)), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    completed = history_epochs(output_dir)
    assert 2 <= len(completed) < 6
    model.load_autoencoder(str(output_dir / "autoencoder.keras"))  # The best model so far is whole.

    rerun = subprocess.run([sys.executable, "train.py", *argv], cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming after epoch" in rerun.stderr
    assert history_epochs(output_dir) == [1, 2, 3, 4, 5, 6]
    assert not resume_dir.exists()
    model.load_autoencoder(str(output_dir / "autoencoder.keras"))


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory, unique=150, copies=30):
    """unique large JPEGs and many symbolic links to them: slow enough to decode to interrupt."""
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    os.makedirs(root / "x")
    for number in range(unique):
        cv2.imwrite(str(root / "x" / f"{number:04d}.jpg"), rng.integers(0, 255, (600, 600, 3), dtype=np.uint8))
    for copy in range(1, copies):
        for number in range(unique):
            os.symlink(root / "x" / f"{number:04d}.jpg", root / "x" / f"{copy:02d}-{number:04d}.jpg")
    return str(root)


def test_indexing_killed_mid_run_keeps_the_previous_index(gray_model, gray_index, big_folder, tmp_path):
    index_path = tmp_path / "features.pkl"
    index_path.write_bytes(gray_index.read_bytes())
    before = digest(index_path)
    argv = ["--dataset", big_folder, "--model", str(gray_model / "autoencoder.keras"),
            "--index", str(index_path)]
    process = start("index_dataset.py", argv, tmp_path / "index.err")
    wait_for(lambda: "encoding" in (tmp_path / "index.err").read_text(), process)
    process.send_signal(signal.SIGKILL)  # At once: decoding 4,500 large JPEGs takes far longer than one poll.
    assert process.wait() == -signal.SIGKILL, "indexing ended before it could be interrupted"
    assert digest(index_path) == before
    assert len(index.load_index(str(index_path)).paths) == 48

    rerun = subprocess.run([sys.executable, "index_dataset.py", *argv], cwd=REPOSITORY_DIR, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(index.load_index(str(index_path)).paths) == 150 * 30


def test_ctrl_c_while_indexing_stops_at_once_with_one_line_and_keeps_the_previous_index(gray_model, gray_index, big_folder,
                                                                                       tmp_path):
    index_path = tmp_path / "features.pkl"
    index_path.write_bytes(gray_index.read_bytes())
    before = digest(index_path)
    argv = ["--dataset", big_folder, "--model", str(gray_model / "autoencoder.keras"), "--index", str(index_path)]
    # As from a terminal: a shell starts background jobs (CI's runner may be one) with Ctrl-C ignored, and the child
    # would inherit that; the user's foreground process takes it.
    process = start("index_dataset.py", argv, tmp_path / "index.err",
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: "encoding" in (tmp_path / "index.err").read_text(), process)
    process.send_signal(signal.SIGINT)
    # Stopping waits for no more than the batches being decoded.
    assert process.wait(timeout=20) == 130
    errors = (tmp_path / "index.err").read_text()
    assert "Traceback" not in errors
    assert errors.splitlines()[-1] == ("index_dataset.py: interrupted; no file was left half-written "
                                       "(each is written whole, then renamed)")
    assert digest(index_path) == before and sorted(os.listdir(tmp_path)) == ["features.pkl", "index.err"]


def limit_file_size():
    """In the child: files may not grow past 2 kB, and a write past it fails instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_disk_full_while_writing_the_index_is_a_clear_error(gray_model, gray_dataset, gray_index, tmp_path):
    index_path = tmp_path / "features.pkl"
    index_path.write_bytes(gray_index.read_bytes())
    before = digest(index_path)
    result = subprocess.run(
        [sys.executable, "index_dataset.py", "--dataset", str(gray_dataset / "train"),
         "--model", str(gray_model / "autoencoder.keras"), "--index", str(index_path)],
        cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "features.pkl: could not be written (File too large)" in result.stderr.splitlines()[-1]
    assert digest(index_path) == before and os.listdir(tmp_path) == ["features.pkl"]


def test_training_under_a_one_worker_cluster_uses_multi_worker_strategy(tmp_path):
    dataset_dir = make_folder(tmp_path / "data", per_class=6, gray=True, sizes=((16, 16),))
    for attempt in range(3):
        # A port free a moment ago may be taken before the worker binds it: then try another.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cluster = {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
        result = subprocess.run(
            [sys.executable, "train.py", "--dataset", dataset_dir, "--output", str(tmp_path / "out"), "--epochs", "1",
             "--latent-dim", "4", "--filters", "4", "4"],
            cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=300, env=os.environ | {"TF_CONFIG": json.dumps(cluster)},
        )
        if "ddress already in use" not in result.stderr:
            break
    assert result.returncode == 0, result.stderr[-2000:]
    # CollectiveAllReduceStrategy is the class behind tf.distribute.MultiWorkerMirroredStrategy.
    assert "training with CollectiveAllReduceStrategy on 1 replicas" in result.stderr
    model.load_autoencoder(str(tmp_path / "out" / "autoencoder.keras"))
