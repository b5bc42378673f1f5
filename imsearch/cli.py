"""Command-line plumbing shared by the scripts: flags generated from the defaults they pass (config.py), one-line errors."""

import argparse
import dataclasses
import functools
import importlib.util
import math
import os
import sys

from imsearch import InputError, console

# Fields that must be positive, and those that may also be zero, checked for every script.
POSITIVE_FIELDS = ("latent_dim", "convolutions_per_stage", "temperature", "projection_dim", "compact_length", "learning_rate", "batch_size", "epochs", "encode_batch_size", "top_k", "tune_trials", "tune_epochs")
NON_NEGATIVE_FIELDS = ("l2_weight_decay", "l1_activity", "early_stopping_patience", "sample", "denoise_std", "shift_pixels",
                       "duplicate_distance", "workers", "invariance_weight", "histogram_prediction_weight", "seed", "images_limit")


def flag_name(field_name):
    """The kebab-case flag of a config field, dropping the _dir/_path suffix users need not type."""
    for suffix in ("_dir", "_path"):
        if field_name.endswith(suffix) and field_name != "sample_dir":
            field_name = field_name[: -len(suffix)]
    return "--" + field_name.replace("_", "-")


def add_config_flags(parser, defaults, field_names, helps=None):
    """Add one flag per named field of the defaults dataclass, typed from its default, with the default in its help.

    helps: {field name: help text} for a script whose flag means something narrower than the shared reason says.
    """
    fields = {field.name: field for field in dataclasses.fields(defaults)}
    for name in field_names:
        field, default = fields[name], getattr(defaults, name)
        help_text = f"{(helps or {}).get(name, field.metadata['help'])} (default: {format_default(default)})"
        keywords = {"dest": name, "default": default, "help": help_text}
        if isinstance(default, bool):
            keywords["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            keywords.update(type=type(default[0]), nargs="+")
        else:
            keywords.update(type=type(default), choices=field.metadata["choices"])
        parser.add_argument(flag_name(name), **keywords)


def format_default(value):
    """A default as a user would type it."""
    if isinstance(value, tuple):
        return " ".join(str(item) for item in value)
    return repr(value) if value == "" else str(value)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes end in one stderr line that says where help is, not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(script_path, description, defaults, field_names, helps=None):
    """An ArgumentParser for the script at script_path with the named fields of defaults (a config dataclass) as flags."""
    parser = OneLineErrorParser(prog=os.path.basename(script_path), description=description, allow_abbrev=False)
    parser.set_defaults(_config_defaults=defaults)
    add_config_flags(parser, defaults, field_names, helps)
    return parser


def parse_config(parser, argv):
    """Parse argv into the make_parser defaults' dataclass (unflagged fields keep their defaults); mistakes exit via parser.error."""
    namespace = parser.parse_args(argv)
    defaults = namespace._config_defaults
    field_names = {field.name for field in dataclasses.fields(defaults)}
    values = {name: value for name, value in vars(namespace).items() if name in field_names}
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    settings = dataclasses.replace(defaults, **values).in_run_folder()
    problem = find_invalid_value(settings)
    if problem:
        parser.error(problem)
    return settings, namespace


def was_given(argv, flag):
    """Whether a flag is on the command line (argv, or sys.argv's when None), alone or as flag=value."""
    arguments = sys.argv[1:] if argv is None else argv
    return any(argument == flag or argument.startswith(flag + "=") for argument in arguments)


def find_invalid_value(settings):
    """Describe the first nonsensical setting, or return None when all make sense."""
    for field in dataclasses.fields(settings):
        values = getattr(settings, field.name)
        # Every comparison with NaN is false: each check below would let it through.
        if any(isinstance(value, float) and not math.isfinite(value) for value in (values if isinstance(values, tuple) else (values,))):
            return f"{flag_name(field.name)} must be a finite number, got {values}"
    for name in POSITIVE_FIELDS:
        if getattr(settings, name) <= 0:
            return f"{flag_name(name)} must be positive, got {getattr(settings, name)}"
    for name in NON_NEGATIVE_FIELDS:
        if getattr(settings, name) < 0:
            return f"{flag_name(name)} must be zero or more, got {getattr(settings, name)}"
    if settings.image_size != 0 and not 8 <= settings.image_size <= 1024:
        return f"--image-size must be 0 (infer) or between 8 and 1024, got {settings.image_size}"
    if not 0 < settings.view_crop_area <= 1:
        return f"--view-crop-area must be more than 0 and at most 1, got {settings.view_crop_area}"
    if not 0 < settings.validation_fraction < 1:
        return f"--validation-fraction must be between 0 and 1, got {settings.validation_fraction}"
    for name in ("filters", "tune_latent_dims", "tune_first_filters", "tune_learning_rates"):
        if any(value <= 0 for value in getattr(settings, name)):
            return f"{flag_name(name)} must all be positive, got {' '.join(map(str, getattr(settings, name)))}"
    if any(value < 0 for value in settings.tune_l1_activities):
        return f"--tune-l1-activities must all be zero or more, got {' '.join(map(str, settings.tune_l1_activities))}"
    return None


# What a search-only install (requirements-search.txt) leaves out: training and evaluation need them.
TRAINING_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx")


def reports_errors(main):
    """Wrap a script's main so user mistakes end in one stderr line and exit 2, Ctrl-C in exit 130."""

    @functools.wraps(main)
    def wrapper(argv=None):
        program = main.__module__ if main.__module__ != "__main__" else sys.argv[0]
        program = program.rsplit("/", 1)[-1].removesuffix(".py") + ".py"
        try:
            return main(argv)
        except InputError as error:
            console.log(f"{program}: error: {error}")
            sys.exit(2)
        except KeyboardInterrupt:
            console.log(f"{program}: interrupted; no file was left half-written (each is written whole, then renamed)")
            sys.exit(130)
        except ModuleNotFoundError as error:
            if error.name not in TRAINING_PACKAGES:
                raise
            console.log(f"{program}: error: needs {error.name}, which this install lacks (bash install.sh --search-only leaves "
                        "it out); run bash install.sh for the full install")
            sys.exit(2)
        except BrokenPipeError:
            # The reader of stdout has gone (| head): stop quietly, as grep and sort do. Python flushes stdout
            # once more at exit, so it is pointed at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a program that signal ended.

    return wrapper


def lazy_modules(*names):
    """The imsearch modules named, each loaded on its first use rather than now.

    Scripts parse their flags first: --help and flag mistakes then answer at once, without importing TensorFlow.
    """
    modules = []
    for name in names:
        full_name = f"imsearch.{name}"
        if full_name not in sys.modules:
            spec = importlib.util.find_spec(full_name)
            spec.loader = importlib.util.LazyLoader(spec.loader)
            module = importlib.util.module_from_spec(spec)
            sys.modules[full_name] = module
            spec.loader.exec_module(module)
        modules.append(sys.modules[full_name])
    return modules if len(modules) > 1 else modules[0]
