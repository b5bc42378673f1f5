"""Start-up: --help loads no TensorFlow, and a whole run on a small folder writes only the suite's own lines to stderr."""

import os
import re
import subprocess
import sys

from conftest import make_folder

REPOSITORY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lines of TensorFlow's C++ logging (I/W/E/F + MMDD), absl's preamble, and Grappler's remapper error.
FOREIGN_MARKERS = ("I0000 ", "W0000 ", "E0000 ", "absl::InitializeLog", "oneDNN", "remapper failed", "cpu_feature_guard")


def run_script(*argv):
    """Run a script as a real process from the repository root; its completed process."""
    return subprocess.run([sys.executable, *argv], cwd=REPOSITORY_DIR, capture_output=True, text=True, timeout=300)


def test_help_imports_neither_tensorflow_nor_numpy():
    for script in ("search", "train", "index_dataset", "evaluate", "tune", "prepare_dataset"):
        code = (f"import sys, {script}\ntry:\n    {script}.main(['--help'])\nexcept SystemExit:\n    pass\n"
                "print(sorted(name for name in ('tensorflow', 'keras', 'numpy', 'cv2') if name in sys.modules))")
        result = run_script("-c", code)
        assert result.returncode == 0 and result.stdout.splitlines()[-1] == "[]", (script, result.stderr[-1000:])


def test_a_whole_run_on_a_small_folder_writes_no_foreign_lines_to_stderr(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=8, sizes=((32, 32),))
    output = str(tmp_path / "run")
    model, index = os.path.join(output, "autoencoder.keras"), os.path.join(output, "features.pkl")
    query = os.path.join(folder, "disc", "000.png")
    runs = [
        run_script("train.py", "--dataset", folder, "--output", output, "--epochs", "1", "--latent-dim", "8", "--filters", "4", "8"),
        run_script("index_dataset.py", "--dataset", folder, "--model", model, "--index", index),
        run_script("search.py", "--model", model, "--index", index, "--output", output, "--top-k", "3", query),
        run_script("evaluate.py", "--model", model, "--output", output),
    ]
    for result in runs:
        assert result.returncode == 0, result.stderr[-2000:]
        foreign = [line for line in result.stderr.splitlines() if any(marker in line for marker in FOREIGN_MARKERS)]
        assert foreign == [], foreign
    assert len(runs[2].stdout.splitlines()) == 3


def test_long_steps_show_a_progress_bar_on_a_terminal(gray_model, gray_dataset, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 30 rows, 100 columns.
    process = subprocess.Popen(
        [sys.executable, "index_dataset.py", "--dataset", str(gray_dataset / "train"), "--model",
         str(gray_model / "autoencoder.keras"), "--index", str(tmp_path / "features.pkl")],
        cwd=REPOSITORY_DIR, stdout=subprocess.DEVNULL, stderr=follower,
    )
    os.close(follower)
    written = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # The terminal closes when the process ends.
            break
        if not chunk:
            break
        written += chunk
    assert process.wait(timeout=300) == 0
    os.close(leader)
    text = written.decode(errors="replace")
    # A bar is drawn for each long step (how far it gets before it is cleared depends on the machine's speed).
    assert re.search(r"\rencoding: +\d+%\|.*\| \d+/48 ", text) and re.search(r"\rlinking: +\d+%\|", text), text
