import json

import pytest
import torch

from artok.evaluation import (
    CLASSIFIER_VERSION,
    ReferenceClassifier,
    ReferenceClassifierConfig,
    classifier_accuracy,
    get_reference_classifier,
    load_reference_classifier,
    read_classifier_record,
    save_reference_classifier,
)
from artok.evaluation import classifier as classifier_module
from artok.evaluation.classifier import random_shift


def test_short_schedule_beats_90_percent_on_digits(digits_splits, digits_classifier):
    _, test = digits_splits
    assert not digits_classifier.training
    assert classifier_accuracy(digits_classifier, test) > 0.90


def test_shapes_and_features():
    config = ReferenceClassifierConfig(in_channels=3, image_size=(12, 20), num_classes=5, width=4, feature_dim=16)
    model = ReferenceClassifier(config)
    images = torch.zeros(2, 3, 12, 20)
    assert model.features(images).shape == (2, 16)
    assert model(images).shape == (2, 5)
    with pytest.raises(ValueError, match="3 x 12 x 20"):
        model(torch.zeros(2, 3, 16, 16))


def test_config_validation():
    assert ReferenceClassifierConfig(image_size=28).image_size == (28, 28)
    with pytest.raises(ValueError):
        ReferenceClassifierConfig(image_size=2)
    with pytest.raises(ValueError):
        ReferenceClassifierConfig(num_classes=1)


def test_random_shift_moves_content_by_at_most_the_limit():
    images = torch.full((64, 1, 9, 9), -1.0)
    images[:, :, 4, 4] = 1.0
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    positions = (shifted[:, 0] == 1.0).flatten(1).float().argmax(dim=1)
    rows, cols = positions // 9, positions % 9
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets differ per image
    assert torch.equal(random_shift(images, 0, torch.Generator()), images)


def test_save_load_round_trip(tmp_path, digits_splits, digits_classifier):
    _, test = digits_splits
    save_reference_classifier(digits_classifier, tmp_path / "entry", {"test_accuracy": 0.5})
    loaded = load_reference_classifier(tmp_path / "entry")
    images, _ = test.batch(torch.arange(32))
    with torch.no_grad():
        assert torch.equal(loaded(images), digits_classifier(images))
    record = read_classifier_record(tmp_path / "entry")
    assert record["version"] == CLASSIFIER_VERSION and record["test_accuracy"] == 0.5
    assert not list((tmp_path / "entry").glob("*.tmp"))  # no temporary files left behind
    # an artok.hub folder: any loader reads it, a generator slot refuses it in one line
    from artok.hub import from_pretrained

    assert isinstance(from_pretrained(tmp_path / "entry"), type(digits_classifier))
    with pytest.raises(ValueError, match="holds a classifier"):
        from_pretrained(tmp_path / "entry", role="generator")
    record_path = tmp_path / "entry" / "config.json"
    payload = json.loads(record_path.read_text())
    payload["extra"]["version"] = "v1"
    record_path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="version 'v1' classifier"):
        load_reference_classifier(tmp_path / "entry")


def test_get_reference_classifier_trains_once_then_loads(tmp_path, monkeypatch, digits_splits):
    import artok.data

    train, test = digits_splits
    loads, trainings = [], []

    def fake_load_dataset(name, split="train", *, root=None, image_size=None, channels=None, limit=None, seed=0):
        loads.append((name, split))
        return {"train": train, "test": test}[split]

    real_train = classifier_module.train_reference_classifier

    def counting_train(*args, **kwargs):
        trainings.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(artok.data, "load_dataset", fake_load_dataset, raising=False)
    monkeypatch.setattr(classifier_module, "train_reference_classifier", counting_train)

    first = get_reference_classifier("digits", cache_dir=tmp_path, steps=30, width=4, progress=False)
    second = get_reference_classifier("digits", cache_dir=tmp_path, steps=30, width=4, progress=False)
    assert len(trainings) == 1
    entries = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(entries) == 1
    assert entries[0].name.startswith(f"digits-1x16x16-{CLASSIFIER_VERSION}-")
    record = read_classifier_record(entries[0])
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["train_settings"] == {"steps": 30, "width": 4}
    images, _ = test.batch(torch.arange(16))
    with torch.no_grad():
        assert torch.equal(first(images), second(images))

    # Different settings are a different entry; ARTOK_CACHE picks the default folder.
    monkeypatch.setenv("ARTOK_CACHE", str(tmp_path / "env"))
    get_reference_classifier("digits", steps=20, width=4, progress=False)
    assert len(trainings) == 2
    assert len(list((tmp_path / "env" / "classifiers").iterdir())) == 1
    with pytest.raises(TypeError, match="unknown training argument"):
        get_reference_classifier("digits", cache_dir=tmp_path, learning_rte=1.0)
