"""Every default of the image search suite, each stated once with the reason for it.

The scripts share this module; they pass its settings to the imsearch package, which never imports it.
"""

import dataclasses
import os

from imsearch.locations import DEBIAN_FASHION_MNIST_DIR, DEBIAN_SHARE_DIR, INDEX_FILE, MODEL_FILE  # noqa: F401 (re-exported for the scripts)


def option(default, reason, choices=None):
    """A config field with its help text (the reason) and optional allowed values."""
    return dataclasses.field(default=default, metadata={"help": reason, "choices": choices})


@dataclasses.dataclass(frozen=True)
class Config:
    """Defaults for all scripts; each script exposes the fields it uses as kebab-case flags."""

    # Where things live.
    dataset_root_dir: str = option("dataset", "where prepare_dataset.py writes <name>/{train,test}/<class>/")
    dataset_dir: str = option("dataset/fashion-mnist/train", "folder of images; first-level subfolders are class labels")
    output_dir: str = option("output", "the run folder: train.py writes the model here, the other scripts read it and write the index, metrics and pictures here")
    model_path: str = option("", f"the trained autoencoder; empty means {MODEL_FILE} in --output")
    index_path: str = option("", f"the feature index; empty means {INDEX_FILE} in --output")

    # Images: 0 means "take it from the dataset" in train.py; later scripts read both from the model.
    image_size: int = option(0, "square side in pixels; 0 infers it from the images (their size if uniform and <= 128, else 64)")
    channels: int = option(0, "1 for gray, 3 for colour; 0 infers it from the images", choices=(0, 1, 3))

    # The network of the original design, which its experiment log found best.
    architecture: str = option("strided", "strided convolutions, or max-pooling/up-sampling", choices=("strided", "pooling"))
    filters: tuple = option((32, 64), "filters of each encoder convolution; the decoder mirrors them")
    convolutions_per_stage: int = option(1, "convolutions of the encoder at each size, the first halving it; 2 helped digits and the photos set but cost the held-out photos recall (docs/encoder.md)")
    latent_dim: int = option(192, "length of the encoder's feature vector")
    l2_weight_decay: float = option(1e-4, "L2 penalty on the latent Dense kernel, against overfitting")
    l1_activity: float = option(1e-4, "L1 penalty on latent activations, for sparse features")
    loss: str = option("mse", "reconstruction loss", choices=("mse", "bce"))
    flip_augmentation: bool = option(False, "also train on randomly mirrored images (input and target alike)")
    denoise_std: float = option(0.0, "Gaussian noise added to inputs (targets stay clean): denoising training; 0 is off")
    shift_pixels: int = option(0, "random shifts of inputs by up to this many pixels (targets stay put), for shift-invariant features; 0 is off")

    # What training optimises: the design's reconstruction alone, or views that teach the features what search needs.
    objective: str = option("views", "views: the clean image reconstructed from each of two random views (crops, rotations, colour, noise) with an invariance term pulling the views' features together, so edited copies land near; reconstruction: the original design's, input = target", choices=("views", "reconstruction"))
    invariance: str = option("vicreg", "the views objective's term on the latent: vicreg (views agree, features vary and decorrelate; no negatives, so images of one class are never pushed apart), nt-xent (SimCLR's contrastive loss), or none", choices=("vicreg", "nt-xent", "none"))
    invariance_weight: float = option(0.01, "weight of the invariance term beside the reconstruction loss")
    temperature: float = option(0.2, "nt-xent's temperature: lower sharpens the contrast between a view's twin and the rest")
    histogram_prediction_weight: float = option(3.0, "weight of a term in the views objective that has the features predict the clean image's gradient (and colour) histograms from each view, as MaskFeat predicts HOG: the encoder learns the layout of edges it otherwise keeps little of; 0 is off")
    projection_dim: int = option(128, "length of the projection the invariance term compares; search uses the features before it")
    view_crop_area: float = option(0.6, "smallest share of the image area a random view's crop keeps")

    # Optimisation.
    learning_rate: float = option(1e-3, "Adam's initial rate, decayed linearly to 0 over the run")
    batch_size: int = option(32, "images per training step")
    epochs: int = option(60, "passes over the training split")
    early_stopping_patience: int = option(0, "stop after this many epochs without the validation reconstruction loss improving; 0 never stops")
    validation_fraction: float = option(0.1, "share of images held out for validation, the same in every script")
    seed: int = option(42, "fixes the validation split, sampling and initialisation, so runs repeat")

    # Tuning (tune.py): a grid searched by retrieval quality on the validation split, never by reconstruction loss.
    tune_latent_dims: tuple = option((96, 192, 384), "feature lengths tried")
    tune_first_filters: tuple = option((16, 32), "filters of the first convolution tried; the second has twice as many")
    tune_learning_rates: tuple = option((3e-4, 1e-3, 3e-3), "initial learning rates tried")
    tune_l1_activities: tuple = option((0.0, 1e-4, 1e-3), "L1 penalties on the features tried")
    tune_trials: int = option(6, "grid points trained, drawn at random with --seed; each trains from scratch")
    tune_epochs: int = option(5, "epochs per trial: enough to rank settings, far cheaper than a full run")

    # Indexing and search.
    encode_batch_size: int = option(256, "images per encoder call; large batches amortise call overhead")
    approximate: str = option("auto", "approximate search with a faiss IVF index beside the pickle: auto (index_dataset.py builds it for large collections; search uses it when present), always (built whatever the size; search refuses an index without one) or never", choices=("auto", "always", "never"))
    approximate_above: int = option(200_000, "index size from which auto builds the approximate index; exact search is fast enough below")
    compact_above: int = option(10_000, "index size from which features are stored projected onto their principal components in float16, so each image takes compact_length * 2 bytes; smaller indexes keep every feature")
    compact_length: int = option(256, "numbers kept per image in a compact index")
    update: bool = option(False, "re-encode only new or changed images (path, size, mtime) of the folder the index was made of (or --dataset, where it has moved) and drop deleted ones")
    workers: int = option(0, "encode the folder on this many Ray workers, one shard each, merged into one index; 0 encodes here")
    ray_address: str = option("", "the Ray cluster --workers runs on (auto, or ray://host:10001); empty starts one on this machine")
    shard: str = option("", "encode only shard i of n (as i/n, 0-based) so machines can index a folder in parallel")
    histograms: bool = option(True, "append histograms of gradient orientations (shape) and, for colour models, of HSV colours to the encoder's features")
    diffusion: bool = option(True, "re-rank cosine results by diffusion over the index's nearest-neighbour graph, so images linked to the query's neighbours rank high. The printed distance is the one hits are ranked by: near copies (cosine distance up to 0.05) keep it and come first; other hits get a diffusion distance from 0.05 (the query's best-connected image) to 1 (images the diffusion does not reach); --no-diffusion prints the cosine distance (1 - cos)")
    top_k: int = option(10, "hits reported per query")
    metric: str = option("cosine", "distance search ranks by, and index_dataset.py builds the approximate index for; diffusion re-ranks cosine only, so euclidean turns it off", choices=("euclidean", "cosine"))
    queries_dir: str = option("", "labelled folder of queries for retrieval metrics against --index; empty skips them")
    sample: int = option(0, "also search N random images of --sample-dir, after any listed queries")
    sample_dir: str = option("", "folder to sample queries from; empty means the test folder beside the indexed folder when there is one, else the indexed folder")
    images: bool = option(True, "write query and result montages to the output folder")
    images_limit: int = option(20, "montages are written for the first N queries only: 10,000 queries would otherwise leave 20,000 JPEGs")
    duplicates: bool = option(False, "instead of searching queries, print each copy of a picture in the index once, beside the file of its set to keep (copies: resized, re-encoded, brightened, mirrored, cropped, verified pixel by pixel); removing the second column keeps one file of each picture")
    duplicate_distance: float = option(0.4, "largest cosine distance between two images' histograms at which --duplicates compares their pixels; their pixels decide")
    html_path: str = option("", "also write a self-contained HTML gallery of the results here; empty writes none")

    def in_run_folder(self):
        """These settings with an empty model or index path filled in from the run folder (--output)."""
        return dataclasses.replace(
            self, model_path=self.model_path or os.path.join(self.output_dir, MODEL_FILE),
            index_path=self.index_path or os.path.join(self.output_dir, INDEX_FILE),
        )


DEFAULTS = Config()
