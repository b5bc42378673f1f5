"""Flags are generated from the top-level config.py: names, types, defaults in --help, no abbreviations."""

import dataclasses
import pathlib
import subprocess
import sys

import pytest

import config
import index_dataset
import search
import train
from imsearch import cli


def test_every_train_flag_comes_from_the_config(capsys):
    with pytest.raises(SystemExit) as raised:
        train.main(["--help"])
    assert raised.value.code == 0
    help_text = capsys.readouterr().out
    for name in train.FIELDS:
        assert cli.flag_name(name) in help_text
    assert "(default: 192)" in help_text and "(default: 32 64)" in help_text and "--no-flip-augmentation" in help_text


def test_flag_names_drop_dir_and_path_suffixes():
    assert [cli.flag_name(name) for name in ("dataset_dir", "model_path", "top_k", "sample_dir")] == [
        "--dataset", "--model", "--top-k", "--sample-dir"]


def test_parsed_values_are_typed_and_frozen():
    parser = cli.make_parser("test.py", "test", config.DEFAULTS, ("epochs", "learning_rate", "filters", "images"))
    settings, _ = cli.parse_config(parser, ["--epochs", "3", "--learning-rate", "0.01", "--filters", "8", "16", "--no-images"])
    assert (settings.epochs, settings.learning_rate, settings.filters, settings.images) == (3, 0.01, (8, 16), False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 5


def test_the_scripts_take_their_defaults_from_the_top_level_config_which_the_package_never_imports(tmp_path):
    assert pathlib.Path(config.__file__).resolve() == pathlib.Path(__file__).resolve().parents[1] / "config.py"
    # From another directory, with every imsearch module loaded: the package stands on its own.
    modules = [path.stem for path in pathlib.Path(cli.__file__).parent.glob("*.py") if path.stem != "__init__"]
    program = f"import sys, imsearch; [__import__('imsearch.' + name) for name in {modules!r}]; print('config' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    parser = cli.make_parser("test.py", "test", dataclasses.replace(config.DEFAULTS, epochs=7), ("epochs",))
    assert cli.parse_config(parser, [])[0].epochs == 7


def test_every_field_is_a_flag_of_some_script_with_its_reason_in_the_help(capsys):
    import evaluate
    import index_dataset
    import prepare_dataset
    import tune

    help_texts = []
    for script in (train, evaluate, index_dataset, search, tune, prepare_dataset):
        with pytest.raises(SystemExit):
            script.main(["--help"])
        help_texts.append("".join(capsys.readouterr().out.split()))  # argparse wraps lines, even at hyphens.
    for field in dataclasses.fields(config.Config):
        reason = "".join(field.metadata["help"].split())
        assert any(f"{cli.flag_name(field.name)}" in text and reason in text for text in help_texts), field.name


@pytest.mark.parametrize("argv, message", [
    (["--top-k", "0", "x.png"], "--top-k must be positive, got 0"),
    (["--metric", "manhattan", "x.png"], "argument --metric: invalid choice: 'manhattan'"),
    (["--seed", "-1", "x.png"], "--seed must be zero or more, got -1"),
])
def test_search_rejects_nonsense_in_one_line_without_the_usage_block(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        search.main(argv)
    err = capsys.readouterr().err
    assert raised.value.code == 2 and err.startswith("search.py: error: " + message) and err.count("\n") == 1, err
    assert "usage:" not in err and "see search.py --help" in err


@pytest.mark.parametrize("value", ["0", "-3"])
def test_index_rejects_a_compact_length_below_one(value, capsys):
    with pytest.raises(SystemExit):
        index_dataset.main(["--compact-length", value])
    assert f"--compact-length must be positive, got {value}" in capsys.readouterr().err
