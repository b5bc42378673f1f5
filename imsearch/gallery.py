"""A self-contained HTML page of search results: each query beside its ranked hits."""

import base64
import html
import os

import cv2

from imsearch import console, figures, safeio

THUMBNAIL_SIZE = 112
# Pictures the other scripts leave in the output folder, linked from the page when present.
RELATED_PICTURES = (
    ("training_loss.png", "Training and validation loss"),
    ("reconstructions.png", "Originals above their reconstructions"),
    ("feature_map.png", "Feature space map"),
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1rem; background: #fafafa; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1rem; margin: 0 0 .5rem; word-break: break-all; }
.query { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .75rem; margin-bottom: 1rem; }
.row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: flex-start; }
figure { margin: 0; width: 112px; font-size: .7rem; }
figure img { width: 112px; height: 112px; object-fit: contain; background: #000; display: block; border-radius: 3px; }
figure.query-image img { outline: 3px solid #2a6; }
figcaption { word-break: break-all; margin-top: .2rem; }
nav a { margin-right: 1rem; }
"""


def data_uri(rgb_image):
    """A small RGB image as an embedded JPEG data URI."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb_image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def text(line):
    """Plain text (file names included, as search.py prints them: console.escape) made safe in HTML."""
    return html.escape(console.escape(line))


def figure(image, caption_lines, css_class="hit"):
    """One image cell captioned by lines of plain text, each escaped exactly once."""
    alt = text(" ".join(caption_lines))
    caption = "<br>".join(text(line) for line in caption_lines)
    return (f'<figure class="{css_class}"><img src="{data_uri(figures.to_display(image, THUMBNAIL_SIZE))}" '
            f'alt="{alt}"><figcaption>{caption}</figcaption></figure>')


def query_section(number, query_path, query_image, hits):
    """A section for one query: the query, then (path, distance, image) hits in rank order."""
    cells = [figure(query_image, [f"query {number}"], "query-image")]
    for rank, (path, distance, image) in enumerate(hits, start=1):
        cells.append(figure(image, [f"#{rank} · {distance:.4f}", path]))
    return (f'<section class="query"><h2>{number}. {text(query_path)}</h2>'
            f'<div class="row">{"".join(cells)}</div></section>')


def duplicate_section(number, keeper, copies):
    """A section for one set of duplicates: the file to keep, then its copies, each (path, caption, image)."""
    cells = [figure(keeper[2], [keeper[1], keeper[0]], "query-image")] + [figure(image, [caption, path]) for path, caption, image in copies]
    return (f'<section class="query"><h2>{number}. keep {text(keeper[0])}: {len(copies)} '
            f'{"copy" if len(copies) == 1 else "copies"}</h2><div class="row">{"".join(cells)}</div></section>')


def write_gallery(html_path, sections, summary, title="Image search results"):
    """Write the page atomically under a one-line summary, linking the suite's other pictures that sit beside it."""
    folder = os.path.dirname(os.path.abspath(html_path))
    links = [f'<a href="{name}">{title}</a>' for name, title in RELATED_PICTURES if os.path.isfile(os.path.join(folder, name))]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        f'<nav>{"".join(links)}</nav>{"".join(sections)}</body></html>\n'
    )
    safeio.atomic_write_bytes(html_path, page.encode("utf-8"))
