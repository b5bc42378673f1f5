"""Find the images of an index most similar to query images; one tab-separated line per hit."""

import os
import sys

from imsearch import InputError, cli, data, index, model, pictures, safeio

FIELDS = ("dataset_dir", "output_dir", "model_path", "index_path", "top_k", "metric", "sample", "sample_dir",
          "images", "encode_batch_size", "seed")


def gather_queries(arguments, settings):
    """Query paths from the arguments, from stdin for '-', or sampled from a folder."""
    query_paths = []
    for argument in arguments:
        if argument == "-":
            query_paths.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            query_paths.append(argument)
    if settings.sample:
        query_paths.extend(data.sample_images(settings.sample_dir or data.default_sample_dir(settings.dataset_dir), settings.sample, settings.seed))
    return query_paths


def display_path(path):
    """A path relative to the working folder when it lies inside it, else absolute: usable by xargs."""
    relative = os.path.relpath(path)
    return os.path.abspath(path) if relative.startswith("..") else relative


def write_pictures(output_dir, feature_index, query_paths, rows):
    """query_<i>.jpg and results_<i>.jpg (a montage of the hits in rank order) per query."""
    for number, (query_path, hit_rows) in enumerate(zip(query_paths, rows), start=1):
        pictures.write_rgb(os.path.join(output_dir, f"query_{number}.jpg"), pictures.to_display(data.read_image(query_path, pictures.CELL_SIZE, 3)))
        hits = [data.read_image(os.path.join(feature_index["dataset_dir"], feature_index["paths"][row]), pictures.CELL_SIZE, 3) for row in hit_rows]
        pictures.write_rgb(os.path.join(output_dir, f"results_{number}.jpg"), pictures.montage(hits))


@cli.reports_errors
def main(argv=None):
    """Parse flags, rank the index for every query, print hits, write montages."""
    parser = cli.make_parser(__doc__, FIELDS)
    parser.add_argument("queries", nargs="*", help="query image paths; - reads paths from stdin, one per line")
    settings, arguments = cli.parse_config(parser, argv)
    query_paths = gather_queries(arguments.queries, settings)
    if not query_paths:
        parser.error("no queries: give image paths, - to read them from stdin, or --sample N")
    autoencoder = model.load_autoencoder(settings.model_path)
    feature_index = index.load_index(settings.index_path, autoencoder, safeio.sha256_of_file(settings.model_path))
    found_paths, rows, distances = index.search(
        model.encoder_of(autoencoder), feature_index, query_paths, settings.top_k, settings.metric, settings.encode_batch_size
    )
    if len(found_paths) < len(query_paths):
        missing = next(path for path in query_paths if path not in set(found_paths))
        if not found_paths:
            raise InputError(f"{missing}: not a readable image; pass image files (jpg, png, bmp, webp)")
        data.warn(f"skipped {len(query_paths) - len(found_paths)} unreadable query image(s), first: {missing}")
    for query_path, hit_rows, hit_distances in zip(found_paths, rows, distances):
        for rank, (row, distance) in enumerate(zip(hit_rows, hit_distances), start=1):
            hit_path = os.path.join(feature_index["dataset_dir"], feature_index["paths"][row])
            print(f"{query_path}\t{rank}\t{distance:.6f}\t{display_path(hit_path)}")
    sys.stdout.flush()
    if settings.images:
        write_pictures(settings.output_dir, feature_index, found_paths, rows)


if __name__ == "__main__":
    main()
