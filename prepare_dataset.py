"""Write a benchmark as an image folder: <root>/<name>/{train,test}/<class>/<image>."""

import os

import config
from imsearch import cli, console

photo_sets, published_datasets = cli.lazy_modules("photo_sets", "published_datasets")

SOURCES = ("fashion-mnist", "digits", "photos", "photos-small", "mnist", "cifar10", "cifar100")
# Datasets that come with an installed package, so they need no --source.
BUNDLED = ("fashion-mnist", "digits", "photos", "photos-small")


@cli.reports_errors
def main(argv=None):
    """Parse flags, convert the dataset, and report what was written."""
    parser = cli.make_parser(__file__, __doc__, config.DEFAULTS, ("dataset_root_dir",))
    parser.add_argument("name", nargs="?", default="fashion-mnist", choices=SOURCES,
                        help="which dataset (default: fashion-mnist)")
    parser.add_argument("--source", default=None,
                        help=f"folder of the downloaded files: for mnist train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                             "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may end in .gz); for cifar10 and cifar100 "
                             "the batches of the 'python version' download (data_batch_1..5, test_batch, batches.meta; train, "
                             f"test, meta). Defaults: {config.DEBIAN_FASHION_MNIST_DIR} for fashion-mnist, "
                             f"{config.DEBIAN_SHARE_DIR} holding Debian's wallpapers for photos and photos-small")
    settings, arguments = cli.parse_config(parser, argv)
    if arguments.name not in BUNDLED and not arguments.source:
        parser.error(f"{arguments.name} needs --source DIR, the folder holding its downloaded files")
    if arguments.source and not os.path.isdir(arguments.source):
        parser.error(f"--source {arguments.source}: no such folder; pass the folder holding the downloaded files")
    target_dir = os.path.join(settings.dataset_root_dir, arguments.name)
    if os.path.exists(target_dir):
        console.log(f"{target_dir} already exists; nothing to do (remove it to prepare again)")
        return
    if arguments.name in ("photos", "photos-small"):
        pictures = photo_sets.find_photos(arguments.source or photo_sets.SHARE_DIR)
        build = photo_sets.build_views if arguments.name == "photos" else photo_sets.build_small_folder
        console.log(f"wrote {build(pictures, target_dir)} images of {len(pictures)} photographs to {target_dir}")
        return
    if arguments.name == "fashion-mnist":
        splits, class_names = published_datasets.load_fashion_mnist(arguments.source or published_datasets.DEBIAN_FASHION_MNIST_DIR), published_datasets.FASHION_MNIST_CLASSES
    elif arguments.name == "digits":
        splits, class_names = published_datasets.load_digits(), published_datasets.DIGIT_CLASSES
    elif arguments.name == "mnist":
        splits, class_names = published_datasets.load_idx_splits(arguments.source), published_datasets.DIGIT_CLASSES
    else:
        splits, class_names = published_datasets.load_cifar_splits(arguments.source)
    count = published_datasets.write_image_folders(splits, class_names, target_dir)
    console.log(f"wrote {count} images to {target_dir}")


if __name__ == "__main__":
    main()
