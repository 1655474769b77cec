"""`folder:PATH` on hostile folders: symlink loops, 16-bit and odd-mode images, one huge image.

Each test here failed before the loader tracked visited directories, scaled wide integer images,
chose the modal size from headers and bounded decoded pixels.
"""

import contextlib
import io
import os
import signal
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from artok.data import DatasetError, load_dataset
from artok.data.errors import DatasetWarning


def _png(path, size, seed=0, mode="RGB"):
    """A random PNG of ``size = (width, height)``."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _png16_bytes(array, color_type):
    """A 16-bit PNG of an ``H x W x C`` uint16 array (Pillow cannot write 16-bit colour PNGs)."""
    height, width = array.shape[:2]
    rows = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))
    return _png_chunks(struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0), zlib.compress(rows))


def _png_chunks(header, data):
    def chunk(kind, payload):
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _blank_png(width, height):
    """A valid black 1-bit grey PNG of any size, a few kB on disk and never whole in memory here."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj()
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return _png_chunks(header, data)


@contextlib.contextmanager
def _deadline(seconds):
    """Fail (rather than hang the suite) when the body runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _quiet_load(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(*args, **kwargs)


def _rows(dataset):
    return [image.numpy().tobytes() for image in dataset.images]


needs_alarm = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="needs POSIX symlinks")


# -- 1. symlinks --------------------------------------------------------------------------------


@needs_alarm
@needs_symlinks
def test_self_link_and_parent_link_load_each_image_once(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(10):
            _png(tmp_path / name / f"{i}.png", (4, 4), seed=100 * ord(name) + i)
    os.symlink(".", tmp_path / "a" / "self")
    os.symlink("..", tmp_path / "a" / "up")
    os.symlink(".", tmp_path / "b" / "self1")  # two self-links hung the old walk
    os.symlink(".", tmp_path / "b" / "self2")
    start = time.perf_counter()
    with _deadline(20):
        everything = _quiet_load(f"folder:{tmp_path}", "all")
        train = _quiet_load(f"folder:{tmp_path}", "train")
        test = _quiet_load(f"folder:{tmp_path}", "test")
    assert time.perf_counter() - start < 20
    assert len(everything) == 20 and everything.labels.tolist() == [0] * 10 + [1] * 10
    assert len(set(_rows(everything))) == 20
    assert len(train) + len(test) == 20
    assert not set(_rows(train)) & set(_rows(test))


@needs_alarm
@needs_symlinks
def test_file_reachable_twice_appears_once_where_it_really_is(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for i in range(3):
        _png(tmp_path / "a" / f"{i}.png", (4, 4), seed=i)
    _png(tmp_path / "a" / "sub" / "deep.png", (4, 4), seed=7)
    _png(tmp_path / "b" / "own.png", (4, 4), seed=8)
    os.symlink("../a/sub", tmp_path / "b" / "alias")  # sorted before b/own.png and a's walk
    os.symlink("../a/0.png", tmp_path / "b" / "copy.png")
    os.link(tmp_path / "a" / "1.png", tmp_path / "a" / "hard.png")
    with _deadline(20):
        dataset = _quiet_load(f"folder:{tmp_path}", "all")
    assert len(dataset) == 5
    assert dataset.labels.tolist() == [0, 0, 0, 0, 1]  # deep.png and 0.png stay in class a
    assert len(set(_rows(dataset))) == 5


@needs_alarm
@needs_symlinks
def test_outside_folder_is_followed_once_and_ancestors_never(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(3):
        _png(outside / f"{i}.png", (4, 4), seed=50 + i)
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    _png(root / "a" / "own.png", (4, 4), seed=60)
    os.symlink(outside, root / "a" / "first")
    os.symlink(outside, root / "a" / "second")
    os.symlink(tmp_path, root / "a" / "top")  # an ancestor of the dataset: would re-walk it all
    with _deadline(20):
        dataset = _quiet_load(f"folder:{root}", "all")
    assert len(dataset) == 4


# -- 2. image modes -----------------------------------------------------------------------------


def _expected_eight_bit(values):
    return np.round(values.astype(np.float64) * 255 / 65535)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = np.round(np.linspace(0, 65535, 300)).astype(np.uint16).reshape(15, 20)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    grey = load_dataset(f"folder:{tmp_path}", "all", channels=1)
    assert np.abs(grey.images[0, 0].numpy() - _expected_eight_bit(ramp)).max() <= 1
    colour = load_dataset(f"folder:{tmp_path}", "all")
    assert (colour.images[0] == grey.images[0]).all()


def test_thirty_two_bit_integer_image_in_sixteen_bit_range_is_scaled(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "wide.tif")
    assert Image.open(tmp_path / "wide.tif").mode == "I"
    dataset = load_dataset(f"folder:{tmp_path}", "all", channels=1)
    assert dataset.images[0, 0, 0].tolist() == [0, 4, 128, 255]


def test_sixteen_bit_colour_png_keeps_its_range(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    (tmp_path / "colour.png").write_bytes(_png16_bytes(colour, color_type=2))
    dataset = load_dataset(f"folder:{tmp_path}", "all")
    assert np.abs(dataset.images[0].permute(1, 2, 0).numpy() - _expected_eight_bit(colour)).max() <= 1


def test_alpha_is_composited_over_black(tmp_path):
    pixels = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [200, 100, 50, 0]]], dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    dataset = load_dataset(f"folder:{tmp_path}", "all")
    got = dataset.images[0].permute(1, 2, 0).numpy()[0].astype(int)
    assert got[0].tolist() == [200, 100, 50]
    assert np.abs(got[1] - np.array([100, 50, 25])).max() <= 1
    assert got[2].tolist() == [0, 0, 0]


def test_grey_alpha_palette_bilevel_and_cmyk_convert_sensibly(tmp_path):
    (tmp_path / "grey_alpha").mkdir()
    Image.fromarray(np.array([[[90, 255], [90, 0]]], dtype=np.uint8), "LA").save(tmp_path / "grey_alpha" / "x.png")
    (tmp_path / "palette").mkdir()
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.putdata([0, 1])
    palette.save(tmp_path / "palette" / "x.png")
    (tmp_path / "palette_transparent").mkdir()
    palette.save(tmp_path / "palette_transparent" / "x.png", transparency=1)
    (tmp_path / "bilevel").mkdir()
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bilevel" / "x.png")
    (tmp_path / "cmyk").mkdir()
    Image.frombytes("CMYK", (2, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0])).save(tmp_path / "cmyk" / "x.tif")
    dataset = load_dataset(f"folder:{tmp_path}", "all")  # every image is 2 wide, 1 high
    assert dataset.class_names == ["bilevel", "cmyk", "grey_alpha", "palette", "palette_transparent"]
    pixels = {dataset.class_names[label]: dataset.images[i].permute(1, 2, 0).reshape(-1, 3).tolist()
              for i, label in enumerate(dataset.labels.tolist())}
    assert pixels["bilevel"] == [[255, 255, 255], [0, 0, 0]]
    assert pixels["cmyk"] == [[255, 255, 255], [0, 255, 255]]
    assert pixels["grey_alpha"] == [[90, 90, 90], [0, 0, 0]]
    assert pixels["palette"] == [[255, 0, 0], [0, 0, 255]]
    assert pixels["palette_transparent"] == [[255, 0, 0], [0, 0, 0]]


# -- 3. size choice -----------------------------------------------------------------------------


def test_modal_size_wins_and_others_are_resized_and_counted(tmp_path):
    (tmp_path / "a").mkdir()
    _png(tmp_path / "a" / "0_first.png", (40, 30))  # sorted first: the old loader's size
    for i in range(3):
        _png(tmp_path / "a" / f"1_{i}.png", (12, 10), seed=i)
    _png(tmp_path / "a" / "2_other.png", (20, 20))
    with pytest.warns(DatasetWarning) as record:
        dataset = load_dataset(f"folder:{tmp_path}", "all")
    assert dataset.image_size == (10, 12)
    assert dataset.resized == 2 and dataset.skipped == 0 and len(dataset) == 5
    assert len(record) == 1 and "resized 2" in str(record[0].message)


def test_modal_size_ties_go_to_the_smaller_area(tmp_path):
    for i in range(2):
        _png(tmp_path / f"big{i}.png", (10, 10), seed=i)
        _png(tmp_path / f"small{i}.png", (8, 8), seed=10 + i)
    assert _quiet_load(f"folder:{tmp_path}", "all").image_size == (8, 8)


def test_modal_size_reads_exif_orientation_from_headers(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))  # stored 20 wide, 10 high
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated: 10 wide, 20 high
    image.save(tmp_path / "r1.jpg", exif=exif)
    image.save(tmp_path / "r2.jpg", exif=exif)
    _png(tmp_path / "wide.png", (20, 10))
    dataset = _quiet_load(f"folder:{tmp_path}", "all")
    assert dataset.image_size == (20, 10) and dataset.resized == 1


def test_train_and_test_share_the_folder_wide_size(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(10):
            _png(tmp_path / name / f"{i}.png", (6, 6) if i % 3 else (9, 7), seed=100 * ord(name) + i)
    train = _quiet_load(f"folder:{tmp_path}", "train")
    test = _quiet_load(f"folder:{tmp_path}", "test")
    assert train.image_size == test.image_size == (6, 6)


def test_outliers_skip_leaves_other_sizes_out(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", (8, 8), seed=i)
    _png(tmp_path / "odd.png", (9, 8))
    with pytest.warns(DatasetWarning, match=r"skipped 1 .*another size.*odd\.png"):
        dataset = load_dataset(f"folder:{tmp_path}", "all", outliers="skip")
    assert len(dataset) == 3 and dataset.skipped == 1 and dataset.resized == 0


# -- 4. bounded decoding ------------------------------------------------------------------------


@pytest.fixture
def decoded_sizes(monkeypatch):
    """The (width, height) of every image Pillow decodes while the test runs."""
    sizes = []
    load = ImageFile.ImageFile.load

    def spy(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return sizes


def test_huge_first_image_is_skipped_without_decoding(tmp_path, decoded_sizes):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0000_huge.png").write_bytes(_blank_png(9000, 9000))
    for i in range(6):
        _png(tmp_path / "a" / f"{i + 1:04d}.png", (16, 16), seed=i)
    decoded_sizes.clear()
    start = time.perf_counter()
    with pytest.warns(DatasetWarning) as record:
        dataset = load_dataset(f"folder:{tmp_path}", "all")
    elapsed = time.perf_counter() - start
    assert dataset.image_size == (16, 16) and len(dataset) == 6 and dataset.skipped == 1
    assert (9000, 9000) not in decoded_sizes and (16, 16) in decoded_sizes
    assert elapsed < 10
    message = str(record[0].message)
    assert len(record) == 1 and "too large" in message and "0000_huge.png" in message and "\n" not in message
    # An explicit size does not lift the bound either.
    assert len(_quiet_load(f"folder:{tmp_path}", "all", image_size=8)) == 6
    assert (9000, 9000) not in decoded_sizes


def test_max_pixels_decides_between_skip_and_resize(tmp_path):
    _png(tmp_path / "0_big.png", (120, 100))
    for i in range(3):
        _png(tmp_path / f"{i + 1}.png", (10, 10), seed=i)
    bounded = _quiet_load(f"folder:{tmp_path}", "all", max_pixels=10_000)
    assert len(bounded) == 3 and bounded.skipped == 1 and bounded.resized == 0
    generous = _quiet_load(f"folder:{tmp_path}", "all", max_pixels=20_000)
    assert len(generous) == 4 and generous.skipped == 0 and generous.resized == 1


def test_decompression_bomb_header_counts_as_too_large(tmp_path):
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)  # 900M pixels, a few bytes on disk
    (tmp_path / "0_bomb.png").write_bytes(_png_chunks(header, zlib.compress(b"\x00" * 64)))
    _png(tmp_path / "1.png", (8, 8))
    with pytest.warns(DatasetWarning, match="too large"):
        dataset = load_dataset(f"folder:{tmp_path}", "all", max_pixels=10**10)
    assert len(dataset) == 1 and dataset.skipped == 1


def test_oversized_target_is_refused_before_decoding(tmp_path, decoded_sizes):
    for i in range(3):
        _png(tmp_path / f"{i}.png", (8, 8), seed=i)
    decoded_sizes.clear()
    with pytest.raises(DatasetError, match=r"--image-size") as caught:
        load_dataset(f"folder:{tmp_path}", "all", image_size=40_000)
    assert "\n" not in str(caught.value)
    assert decoded_sizes == []


def test_every_image_too_large_is_an_error_naming_max_pixels(tmp_path):
    _png(tmp_path / "a.png", (50, 50))
    with pytest.raises(DatasetError, match="max_pixels"):
        load_dataset(f"folder:{tmp_path}", "all", max_pixels=100)


# -- 5. options and warnings --------------------------------------------------------------------


def test_unreadable_files_warn_once_with_dataset_warning(tmp_path):
    _png(tmp_path / "good.png", (8, 8))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.warns(DatasetWarning) as record:
        dataset = load_dataset(f"folder:{tmp_path}", "all")
    assert len(record) == 1 and issubclass(record[0].category, UserWarning)
    assert "skipped 1 unreadable" in str(record[0].message) and dataset.skipped == 1


def test_clean_folder_does_not_warn(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", (8, 8), seed=i)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(f"folder:{tmp_path}", "all", image_size=4)  # resizing to an asked size is silent


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"outliers": "crop"}, "outliers"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"max_pixels": 1.5}, "max_pixels"),
    ],
)
def test_bad_folder_options_are_one_line_errors(tmp_path, arguments, match):
    _png(tmp_path / "a.png", (8, 8))
    with pytest.raises(DatasetError, match=match):
        load_dataset(f"folder:{tmp_path}", "all", **arguments)


def test_folder_options_are_refused_for_other_datasets():
    with pytest.raises(DatasetError, match="folder:PATH"):
        load_dataset("digits", "all", max_pixels=100)
    with pytest.raises(DatasetError, match="folder:PATH"):
        load_dataset("digits", "all", outliers="skip")


def test_sixteen_bit_png_bytes_helper_is_read_by_pillow():
    image = Image.open(io.BytesIO(_png16_bytes(np.zeros((2, 3, 3), dtype=np.uint16), color_type=2)))
    assert image.size == (3, 2)
