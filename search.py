"""Find the images of an index most similar to query images; one tab-separated line per hit."""

import os
import sys

import config
from imsearch import InputError, cli, console

data, duplicates, gallery, index, model, pictures, ranking, safeio, vectors = cli.lazy_modules(
    "data", "duplicates", "gallery", "index", "model", "pictures", "ranking", "safeio", "vectors")

FIELDS = ("dataset_dir", "output_dir", "model_path", "top_k", "metric", "approximate", "sample", "sample_dir",
          "images", "html_path", "encode_batch_size", "seed", "diffusion", "duplicates", "duplicate_distance")


def gather_queries(arguments, settings):
    """Query paths from the arguments, from stdin for '-', or sampled from a folder."""
    query_paths = []
    for argument in arguments:
        if argument == "-":
            query_paths.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            query_paths.append(argument)
    if settings.sample:
        sample_dir = settings.sample_dir or data.default_sample_dir(settings.dataset_dir)
        query_paths.extend(data.sample_images(sample_dir, settings.sample, settings.seed))
    return query_paths


# Control characters (tab, newline, carriage return, terminal escapes) as \t, \n, \r or \xNN; a backslash doubled.
ESCAPES = {0x5C: "\\\\", 0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"} | {
    code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F] if code not in (0x09, 0x0A, 0x0D)}


def escape(text):
    """Backslash-escape a file name so it can never break the one-line, tab-separated format nor drive a terminal."""
    return text.translate(ESCAPES)


def display_path(path):
    """A path relative to the working folder when it lies inside it, else absolute: usable by xargs."""
    relative = os.path.relpath(path)
    return os.path.abspath(path) if relative.startswith("..") else relative


def write_pictures(settings, feature_index, query_paths, rows, distances):
    """Per query, query_<i>.jpg and results_<i>.jpg (hits in rank order), and the HTML gallery if asked."""
    sections, missing = [], []
    for number, (query_path, hit_rows, hit_distances) in enumerate(zip(query_paths, rows, distances), start=1):
        query_image = read_for_display(query_path, missing)
        hit_distances = hit_distances[hit_rows >= 0]
        hit_paths = [hit_path(feature_index, row) for row in hit_rows[hit_rows >= 0]]
        hit_images = [read_for_display(path, missing) for path in hit_paths]
        if settings.images:
            pictures.write_rgb(os.path.join(settings.output_dir, f"query_{number}.jpg"), pictures.to_display(query_image))
            # A query without hits gets one blank cell, so results_<i>.jpg never shows an older search's hits.
            pictures.write_rgb(os.path.join(settings.output_dir, f"results_{number}.jpg"),
                               pictures.montage(hit_images or [pictures.blank_cell()]))
        if settings.html_path:
            hits = [(display_path(path), distance, image) for path, distance, image in zip(hit_paths, hit_distances, hit_images)]
            sections.append(gallery.query_section(number, query_path, query_image, hits))
    if settings.html_path:
        gallery.write_gallery(settings.html_path, sections, f"{len(sections)} queries, ranked by {settings.metric} distance.")
    report_missing(missing)


def report_missing(missing):
    """Warn with a count about indexed images that could not be read back for the pictures."""
    if missing:
        console.warn(f"{len(missing)} image(s) shown blank in the pictures: unreadable since indexing, first: {missing[0]}; "
                     "refresh the index with index_dataset.py --update")


def read_for_display(path, missing):
    """An image for the pictures, or a blank cell (its path appended to missing) when it can no longer be read."""
    try:
        return data.read_image(path, pictures.CELL_SIZE, 3)
    except data.UnreadableImage:
        missing.append(path)
        return pictures.blank_cell()


def report_duplicates(settings, index_paths):
    """Print every verified duplicate pair of the index, the file to keep first, closest first; show the sets in --html.

    Each line: keep<TAB>copy<TAB>histogram distance<TAB>pixel correlation<TAB>share of differing cells<TAB>alignment.
    """
    feature_index = index.load_indexes(index_paths)
    if not feature_index.histograms:
        raise InputError(f"{index_paths[0]}: holds no histograms (indexed with --no-histograms), which --duplicates "
                         "compares; index the folder again without that flag")
    pairs, sets = duplicates.find_duplicates(feature_index, settings.duplicate_distance, settings.encode_batch_size)
    for pair in pairs:
        print(f"{escape(display_path(hit_path(feature_index, pair.keep)))}\t{escape(display_path(hit_path(feature_index, pair.copy)))}"
              f"\t{pair.distance:.6f}\t{pair.verdict.correlation:.4f}\t{pair.verdict.differing:.4f}\t{pair.verdict.alignment}")
    sys.stdout.flush()
    console.log(f"{len(pairs)} duplicate pairs in {len(sets)} sets among {feature_index.count} images")
    if settings.html_path:
        missing = []
        def member(row, caption):
            return display_path(hit_path(feature_index, row)), caption, read_for_display(hit_path(feature_index, row), missing)
        sections = [gallery.duplicate_section(number, member(found.keep, "keep"), [member(row, "copy") for row in found.copies])
                    for number, found in enumerate(sets, start=1)]
        gallery.write_gallery(settings.html_path, sections, f"{len(sets)} sets of duplicates: in each, every copy shows the same "
                              "picture as the file to keep (the largest, then the least compressed, then the oldest).",
                              title="Duplicates")
        report_missing(missing)


def load_indexes(index_paths, autoencoder, settings):
    """The index (shards merged into one) and its approximate index when there is one to use.

    The features are post-processed for --metric in place, so a large index is never held twice.
    """
    feature_index = index.load_indexes(index_paths, autoencoder, safeio.sha256_of_file(settings.model_path))
    # Merged shards have no approximate index of their own.
    approximate = None
    if len(index_paths) == 1 and settings.approximate != "never":
        approximate = index.load_approximate(index_paths[0], feature_index)
    feature_index.features = vectors.postprocess_features(feature_index.features, settings.metric, in_place=True)
    return feature_index, approximate


def report_unreadable(query_paths, found_paths):
    """Warn with a count about unreadable queries; an error when none was readable."""
    if len(found_paths) == len(query_paths):
        return
    found = set(found_paths)
    missing = next(path for path in query_paths if path not in found)
    if not found_paths:
        raise InputError(f"{missing}: {data.why_unreadable(missing)}")
    console.warn(f"skipped {len(query_paths) - len(found_paths)} unreadable query image(s), first: {missing}: "
                 f"{data.why_unreadable(missing)}")


def format_hit(query_path, rank, distance, path):
    """One output line, query<TAB>rank<TAB>distance<TAB>path, both paths shown alike (see display_path)."""
    # Distances are never negative: float rounding of an exact copy must not print as -0.000000.
    return f"{escape(display_path(query_path))}\t{rank}\t{max(float(distance), 0.0):.6f}\t{escape(display_path(path))}"


def hit_path(feature_index, row):
    """The file of an index row."""
    return os.path.join(feature_index.dataset_dir, feature_index.paths[row])


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
    query_paths = gather_queries(arguments.queries, settings)
    if not query_paths:
        parser.error("no queries: give image paths, - to read them from stdin, or --sample N")
    if settings.metric == "euclidean" and settings.diffusion:
        console.warn("--metric euclidean ranks without diffusion, which re-ranks cosine similarities only; "
                     "pass --no-diffusion to say so, or use the default cosine")
    autoencoder = model.load_autoencoder(settings.model_path)
    feature_index, approximate = load_indexes(index_paths, autoencoder, settings)
    found_paths, rows, distances = ranking.search(model.encoder_of(autoencoder), feature_index, query_paths,
                                                settings.top_k, settings.metric, settings.encode_batch_size, approximate,
                                                settings.diffusion)
    report_unreadable(query_paths, found_paths)
    without_hits = 0
    for query_path, hit_rows, hit_distances in zip(found_paths, rows, distances):
        found = hit_rows >= 0  # Row -1: nothing left to show (a small index, or the query's own row left out).
        without_hits += not found.any()
        for rank, (row, distance) in enumerate(zip(hit_rows[found], hit_distances[found]), start=1):
            print(format_hit(query_path, rank, distance, hit_path(feature_index, row)))
    sys.stdout.flush()
    if without_hits:
        console.warn(f"{without_hits} query(ies) got no hits: the index holds no image other than the query itself")
    if settings.images or settings.html_path:
        write_pictures(settings, feature_index, found_paths, rows, distances)


if __name__ == "__main__":
    main()
