"""Find the images of an index most similar to query images; one tab-separated line per hit."""

import contextlib
import dataclasses
import os
import re
import sys

import config
from imsearch import InputError, cli, console

duplicates, figures, gallery, image_folders, index, ranking, runtime, safeio, vectors = cli.lazy_modules(
    "duplicates", "figures", "gallery", "image_folders", "index", "ranking", "runtime", "safeio", "vectors")

FIELDS = ("output_dir", "model_path", "top_k", "metric", "approximate", "sample", "sample_dir",
          "images", "images_limit", "html_path", "encode_batch_size", "seed", "diffusion", "duplicates", "duplicate_distance")


def gather_queries(arguments, settings, indexed_dir):
    """Query paths from the arguments, from stdin for '-' (read as they are needed), then sampled from a folder.

    --sample takes its images from --sample-dir, else from the test folder beside the indexed folder, else from it.
    """
    for argument in arguments:
        if argument == "-":
            # Bytes, decoded as the filesystem does: a name that is not UTF-8 stays the same file.
            yield from (os.fsdecode(line.rstrip(b"\n")) for line in sys.stdin.buffer if line.strip())
        else:
            yield argument
    if settings.sample:
        sample_dir = settings.sample_dir or image_folders.default_sample_dir(indexed_dir)
        yield from image_folders.sample_images(sample_dir, settings.sample, settings.seed)


def display_path(path):
    """A path relative to the working folder when it lies inside it, else absolute: usable by xargs."""
    relative = os.path.relpath(path)
    if relative == ".." or relative.startswith("../"):
        return os.path.abspath(path)
    # A name starting with a dash would read as an option to rm, mv or cp.
    return os.path.join(".", relative) if relative.startswith("-") else relative


def write_pictures(settings, feature_index, query_paths, rows, distances, first_number, sections, missing):
    """Per query up to --images-limit, query_<i>.jpg and results_<i>.jpg (hits in rank order) from first_number on;
    gallery sections appended."""
    for number, (query_path, hit_rows, hit_distances) in enumerate(zip(query_paths, rows, distances), start=first_number):
        query_image = read_for_display(query_path, missing)
        hit_distances = hit_distances[hit_rows >= 0]
        hit_paths = [hit_path(feature_index, row) for row in hit_rows[hit_rows >= 0]]
        hit_images = [read_for_display(path, missing) for path in hit_paths]
        if settings.images and number <= settings.images_limit:
            figures.write_rgb(os.path.join(settings.output_dir, f"query_{number}.jpg"), figures.to_display(query_image))
            # A query without hits gets one blank cell, so results_<i>.jpg never shows an older search's hits.
            figures.write_rgb(os.path.join(settings.output_dir, f"results_{number}.jpg"),
                               figures.montage(hit_images or [figures.blank_cell()]))
        if settings.html_path:
            hits = [(display_path(path), distance, image) for path, distance, image in zip(hit_paths, hit_distances, hit_images)]
            sections.append(gallery.query_section(number, query_path, query_image, hits))


def ready_for_pictures(output_dir):
    """Clear an earlier search's pictures from output_dir; False, with a warning, where pictures cannot be written there."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        os.remove(safeio.create_unique(output_dir, ".search-", ".probe"))
        clear_earlier_pictures(output_dir)
    except OSError as error:
        console.warn(f"{output_dir}: cannot write the query and result pictures there ({error.strerror}); "
                     "the hits are printed without them (--no-images says so, --output picks another run folder)")
        return False
    return True


def clear_earlier_pictures(output_dir):
    """Remove the query and result pictures an earlier search left in output_dir, saying so: this search's replace them."""
    earlier = [name for name in os.listdir(output_dir) if re.fullmatch(r"(query|results)_[0-9]+\.jpg", name)] \
        if os.path.isdir(output_dir) else []
    for name in earlier:
        with contextlib.suppress(FileNotFoundError):  # Another search in the same folder removed it first.
            os.remove(os.path.join(output_dir, name))
    if earlier:
        console.note(f"replaced the {len(earlier)} pictures of an earlier search in {output_dir} (query_*.jpg, results_*.jpg)")


def report_missing(missing):
    """Warn with a count about indexed images that could not be read back for the pictures."""
    if missing:
        console.warn(f"{len(missing)} image(s) shown blank in the pictures: unreadable since indexing, first: {missing[0]}; "
                     "refresh the index with index_dataset.py --update")


def read_for_display(path, missing):
    """An image for the pictures, or a blank cell (its path appended to missing) when it can no longer be read."""
    try:
        return image_folders.read_display_image(path, figures.CELL_SIZE)
    except image_folders.UnreadableImage:
        missing.append(path)
        return figures.blank_cell()


def report_duplicates(settings, index_paths):
    """Print each copy of a picture once, beside the file of its set to keep (sets largest first); show the sets in --html.

    Each line: keep<TAB>copy<TAB>histogram distance<TAB>pixel correlation<TAB>share of differing cells<TAB>alignment.
    Removing every file of the second column keeps one file of each picture (duplicates.copies_to_remove).
    """
    feature_index = index.load_indexes(index_paths)
    if not feature_index.histograms:
        raise InputError(f"{index_paths[0]}: holds no histograms (indexed with --no-histograms), which --duplicates "
                         "compares; index the folder again without that flag")
    pairs, sets = duplicates.find_duplicates(feature_index, settings.duplicate_distance, settings.encode_batch_size)
    for pair in pairs:
        print(f"{console.escape(display_path(hit_path(feature_index, pair.keep)))}\t{console.escape(display_path(hit_path(feature_index, pair.copy)))}"
              f"\t{pair.distance:.6f}\t{pair.verdict.correlation:.4f}\t{pair.verdict.differing:.4f}\t{pair.verdict.alignment}")
    sys.stdout.flush()
    console.log(f"{len(pairs)} copies in {len(sets)} sets among {feature_index.count} images")
    if settings.html_path:
        missing = []
        def member(row, caption):
            return display_path(hit_path(feature_index, row)), caption, read_for_display(hit_path(feature_index, row), missing)
        sections = [gallery.duplicate_section(number, member(found.keep, "keep"), [member(row, "copy") for row in found.copies])
                    for number, found in enumerate(sets, start=1)]
        gallery.write_gallery(settings.html_path, sections, f"{len(sets)} sets of duplicates: in each, every copy shows the same "
                              "picture as the file to keep (the one no other holds more of, then the largest, lossless, the least "
                              "compressed, the oldest).",
                              title="Duplicates")
        report_missing(missing)


def load_indexes(index_paths, encoder, settings):
    """The index (shards merged into one) and its approximate index when there is one to use.

    The features are post-processed for --metric in place, so a large index is never held twice.
    """
    feature_index = index.load_indexes(index_paths, encoder, safeio.sha256_of_file(settings.model_path))
    # Merged shards have no approximate index of their own.
    approximate = None
    if len(index_paths) == 1 and settings.approximate != "never":
        approximate = index.load_approximate(index_paths[0], feature_index)
    if settings.approximate == "always" and approximate is None:
        raise InputError(f"{index_paths[0]}: no approximate index to search with (index_dataset.py --approximate always "
                         "builds one; shards searched together have none); leave out --approximate always")
    feature_index.features = vectors.postprocess_features(feature_index.features, settings.metric, in_place=True)
    return feature_index, approximate


def report_unreadable(skipped, first_skipped, found_count):
    """Warn with a count about unreadable queries; an error when none was readable."""
    if not skipped:
        return
    if not found_count:
        raise InputError(f"{first_skipped}: {image_folders.why_unreadable(first_skipped)}")
    console.warn(f"skipped {skipped} unreadable query image(s), first: {first_skipped}: {image_folders.why_unreadable(first_skipped)}")


def counted(paths, tally):
    """The paths, each also appended to tally (the batch being ranked), so skipped ones can be named."""
    for path in paths:
        tally.append(path)
        yield path


def format_hit(query_path, rank, distance, path):
    """One output line, query<TAB>rank<TAB>distance<TAB>path, both paths shown alike (see display_path)."""
    # Distances are never negative: float rounding of an exact copy must not print as -0.000000.
    return f"{console.escape(display_path(query_path))}\t{rank}\t{max(float(distance), 0.0):.6f}\t{console.escape(display_path(path))}"


def hit_path(feature_index, row):
    """The file of an index row."""
    return os.path.join(feature_index.dataset_dir, feature_index.paths[row])


def report_hits(settings, encoder, feature_index, approximate, query_paths):
    """Rank the index for the query paths a batch at a time, printing each batch's hits and writing its pictures.

    Each batch is printed as soon as it is ranked: memory stays that of a batch, and a reader sees the first
    hits while later queries are still being read.
    """
    batch, skipped, first_skipped, found_count, without_hits, sections, missing = [], 0, None, 0, 0, [], []
    if settings.images and not ready_for_pictures(settings.output_dir):
        settings = dataclasses.replace(settings, images=False)
    batches = ranking.search_batches(encoder, feature_index,
                                     counted(query_paths, batch), settings.top_k,
                                     settings.metric, settings.encode_batch_size, approximate, settings.diffusion)
    for found_paths, rows, distances in batches:
        if not found_count:
            image_folders.warn_if_colour_for_gray_model(found_paths, encoder.channels, "the queries")
        if len(found_paths) < len(batch):
            readable = set(found_paths)
            first_skipped = first_skipped or next(path for path in batch if path not in readable)
            skipped += len(batch) - len(found_paths)
        batch.clear()
        for query_path, hit_rows, hit_distances in zip(found_paths, rows, distances):
            found = hit_rows >= 0  # Row -1: nothing left to show (a small index, or the query's own row left out).
            without_hits += not found.any()
            for rank, (row, distance) in enumerate(zip(hit_rows[found], hit_distances[found]), start=1):
                print(format_hit(query_path, rank, distance, hit_path(feature_index, row)))
        sys.stdout.flush()
        if (settings.images and found_count < settings.images_limit) or settings.html_path:
            write_pictures(settings, feature_index, found_paths, rows, distances, found_count + 1, sections, missing)
        found_count += len(found_paths)
    if not found_count and not skipped:
        raise InputError("no queries: stdin held no paths; give image paths, one per line")
    report_unreadable(skipped, first_skipped, found_count)
    if without_hits:
        console.warn(f"{without_hits} query(ies) got no hits: the index holds no image other than the query itself")
    if settings.html_path:
        linked = feature_index.neighbours is not None and feature_index.neighbours.size > 0
        ranked_by = "diffusion distance" if settings.diffusion and linked \
            and settings.metric == "cosine" else f"{settings.metric} distance"
        gallery.write_gallery(settings.html_path, sections, f"{len(sections)} queries, ranked by {ranked_by}.")
    report_missing(missing)
    if settings.images and found_count > settings.images_limit:
        console.note(f"montages written for the first {settings.images_limit} of {found_count} queries (--images-limit)")


@cli.reports_errors
def main(argv=None):
    """Parse flags, rank the index for every query, print hits, write montages."""
    parser = cli.make_parser(__file__, __doc__, config.DEFAULTS, FIELDS)
    parser.add_argument("queries", nargs="*", help="query image paths; - reads paths from stdin, one per line")
    parser.add_argument("--index", dest="index_paths", action="append", metavar="INDEX",
                        help=f"the index; repeat it to search shard indexes as one (default: {config.INDEX_FILE} in --output)")
    settings, arguments = cli.parse_config(parser, argv)
    index_paths = arguments.index_paths or [settings.index_path]
    if settings.duplicates:
        if arguments.queries or settings.sample:
            parser.error("--duplicates compares the indexed images with each other: give no queries and no --sample")
        report_duplicates(settings, index_paths)
        return
    if not arguments.queries and not settings.sample:
        parser.error("no queries: give image paths, - to read them from stdin, or --sample N")
    if settings.metric == "euclidean" and settings.diffusion:
        console.warn("--metric euclidean ranks without diffusion, which re-ranks cosine similarities only; "
                     "pass --no-diffusion to say so, or use the default cosine")
    encoder = runtime.open_encoder(settings.model_path)
    feature_index, approximate = load_indexes(index_paths, encoder, settings)
    if not os.path.isdir(feature_index.dataset_dir):
        console.warn(f"{feature_index.dataset_dir}: the indexed folder is gone, so the hits name files that are no longer "
                     "there; if it moved, run index_dataset.py --update --dataset with its new place")
    report_hits(settings, encoder, feature_index, approximate, gather_queries(arguments.queries, settings, feature_index.dataset_dir))


if __name__ == "__main__":
    main()
