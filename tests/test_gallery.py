"""The HTML gallery: one section per query, a cell per hit, and every image loads in a real browser."""

import html
import io
import json
import re
import shutil
import subprocess

import pytest

import search

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Injected into a copy of the page: records, once loaded, how many images decoded and how many cells exist.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.setAttribute("data-check", JSON.stringify({
    images: images.length,
    loaded: images.filter((image) => image.complete && image.naturalWidth > 0).length,
    hits: document.querySelectorAll("figure.hit").length,
    queries: document.querySelectorAll("section.query").length,
  }));
});
</script>"""


def make_gallery(gray_model, gray_index, html_path, argv):
    """Run search.py writing only the gallery; return its text."""
    search.main(["--model", str(gray_model / "autoencoder.keras"), "--index", str(gray_index), "--no-images",
                 "--html", str(html_path), *argv])
    return html_path.read_text()


def test_gallery_from_stdin_queries_has_a_cell_per_hit(gray_model, gray_index, gray_dataset, tmp_path, monkeypatch):
    queries = sorted(str(path) for path in (gray_dataset / "test").rglob("*.png"))[:2]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(("\n".join(queries) + "\n").encode())))
    page = make_gallery(gray_model, gray_index, tmp_path / "results.html", ["--top-k", "3", "-"])
    assert page.count('<section class="query">') == 2 and page.count('class="hit"') == 6
    assert page.count("data:image/jpeg;base64,") == 8  # Self-contained: 2 queries and 6 hits embedded.
    assert "training_loss.png" not in page  # Nothing beside the page to link to here.


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_gallery_renders_in_headless_chromium(gray_model, gray_index, gray_dataset, tmp_path):
    shutil.copy(gray_model / "training_loss.png", tmp_path / "training_loss.png")
    page = make_gallery(gray_model, gray_index, tmp_path / "results.html", ["--sample", "3", "--top-k", "4"])
    assert 'href="training_loss.png"' in page
    (tmp_path / "check.html").write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         (tmp_path / "check.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    found = re.search(r'data-check="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    check = json.loads(html.unescape(found.group(1)))
    assert check == {"images": 15, "loaded": 15, "hits": 12, "queries": 3}  # 3 queries x (1 + 4 hits)
