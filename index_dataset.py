"""Encode every image of a folder with the trained encoder and save the feature index."""

import dataclasses
import os

import config
from imsearch import InputError, cli, console

distributed, index, indexing, runtime, safeio = cli.lazy_modules("distributed", "index", "indexing", "runtime", "safeio")

FIELDS = ("dataset_dir", "output_dir", "model_path", "index_path", "encode_batch_size", "update", "shard", "workers",
          "ray_address", "compact_above", "compact_length", "approximate",
          "approximate_above", "histograms", "diffusion", "metric")

HELPS = {"diffusion": "link every image to its nearest (a neighbour graph, and its spectrum from 2,000 images) so search.py "
                      "can re-rank by diffusion; --no-diffusion skips it, and search then ranks by cosine alone"}


@cli.reports_errors
def main(argv=None):
    """Parse flags, encode the folder (or what changed in it), write the index; return an IndexingReport."""
    parser = cli.make_parser(__file__, __doc__, config.DEFAULTS, FIELDS, HELPS)
    settings, _ = cli.parse_config(parser, argv)
    if settings.workers and (settings.shard or settings.update):
        parser.error("--workers encodes the whole folder in shards itself: give it without --shard and --update")
    if settings.ray_address and not settings.workers:
        parser.error("--ray-address is the cluster --workers runs on: give --workers N with it")
    shard = indexing.parse_shard(settings.shard) if settings.shard else None
    encoder = runtime.open_encoder(settings.model_path)
    model_sha256 = safeio.sha256_of_file(settings.model_path)
    previous = None
    if settings.update and os.path.isfile(settings.index_path):
        try:
            previous = index.load_index(settings.index_path, encoder, model_sha256)
        except InputError as problem:  # Another model or an older format: nothing in it can be reused.
            console.note(f"{str(problem).split(';')[0]}; encoding every image anew")
    if previous is not None and not cli.was_given(argv, "--dataset"):
        # --update refreshes the folder the index was made of; a new place for it is given with --dataset.
        settings = dataclasses.replace(settings, dataset_dir=previous.dataset_dir)
    if previous is not None and previous.shard and shard is None:
        shard = indexing.parse_shard(previous.shard)  # A shard's index stays that shard's.
    encoded_index = None
    if settings.workers:
        encoded_index = distributed.build_index_on_ray(settings.dataset_dir, settings.model_path, model_sha256, settings.workers,
                                                       settings.encode_batch_size, settings.histograms, settings.ray_address,
                                                       settings.compact_above, settings.compact_length)
    return indexing.index_folder(
        encoder, model_sha256, settings.dataset_dir, settings.index_path, settings.encode_batch_size, previous, shard,
        settings.histograms, settings.compact_above, settings.compact_length, settings.approximate, settings.approximate_above,
        settings.diffusion, settings.metric, encoded_index,
    )


if __name__ == "__main__":
    main()
