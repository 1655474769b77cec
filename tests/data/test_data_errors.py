"""Every user-fixable problem is a one-line `DatasetError` naming the fix."""

import pytest

from artok.data import DATASETS, DatasetError, load_dataset


def _one_line_error(*args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    assert isinstance(info.value, ValueError)
    return message


def test_unknown_name_lists_known_ones():
    message = _one_line_error("cifar-11")
    assert "cifar-11" in message
    for name in DATASETS:
        assert name in message


def test_missing_folder(tmp_path):
    message = _one_line_error(f"folder:{tmp_path / 'nope'}")
    assert "does not exist" in message


def test_empty_folder(tmp_path):
    message = _one_line_error(f"folder:{tmp_path}", "all")
    assert "no files" in message


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_bad_channels(channels):
    message = _one_line_error("digits", channels=channels)
    assert "1" in message and "3" in message


def test_unknown_split():
    message = _one_line_error("digits", "validation")
    assert "train" in message and "test" in message and "all" in message


@pytest.mark.parametrize("argument", ["image_size", "limit"])
def test_bad_sizes(argument):
    _one_line_error("digits", **{argument: 0})


def test_root_only_for_idx_datasets(tmp_path):
    assert "root" in _one_line_error("digits", root=str(tmp_path))


def test_missing_root(tmp_path):
    assert "not an existing folder" in _one_line_error("mnist", root=str(tmp_path / "nope"))


def test_folder_without_path():
    _one_line_error("folder:")


def test_error_message_is_collapsed_to_one_line():
    assert str(DatasetError("a\nb  c")) == "a b c"
