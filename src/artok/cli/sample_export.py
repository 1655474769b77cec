"""What ``artok sample --num-images`` (the sharded export), ``artok reference`` and the Inception
part of ``artok eval`` run; `artok.cli.generate` parses and calls these."""

from __future__ import annotations

import json
import sys
import warnings

from artok.cli.common import check_output_dir, nonnegative_int, positive_int


def add_export_arguments(parser) -> None:
    group = parser.add_argument_group("export for outside evaluators (with --num-images or --per-class; --out is a folder)")
    group.add_argument("--num-images", type=positive_int, help="images to export, class-balanced (e.g. 50000)")
    group.add_argument("--per-class", type=positive_int, help="images per class (sets --num-images = K x classes)")
    group.add_argument("--format", choices=("png", "npz", "both"), default="both",
                       help="PNG class folders, the ADM .npz (arr_0 uint8 N x H x W x 3, arr_1 labels), or both (default)")
    group.add_argument("--batch-size", type=positive_int, default=250, help="images per sampling batch (default: 250)")
    group.add_argument("--shard-size", type=positive_int, default=1000,
                       help="images per shard: the unit of resuming and of the work split over torchrun ranks (default: 1000)")


def add_inception_arguments(parser) -> None:
    group = parser.add_argument_group("Inception metrics (FID, sFID, IS, precision/recall)")
    group.add_argument("--inception-weights", metavar="PATH",
                       help="pt_inception-2015-12-05-6726825d.pth (default: $ARTOK_INCEPTION); never downloaded")
    group.add_argument("--reference", metavar="NPZ",
                       help="reference statistics: an 'artok reference' file or an ADM reference batch "
                            "(default: the dataset's test split, cached)")


def parse_labels(text: str | None, num_classes: int):
    import torch

    if text is None:
        return torch.arange(num_classes)
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated integers, got {text!r}") from None
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad or not labels:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {text!r}")
    return torch.tensor(labels)


def wants_export(args) -> bool:
    return args.num_images is not None or args.per_class is not None


def export_plan(args, num_classes: int):
    from artok.evaluation.export import ExportPlan, balanced_labels

    classes = parse_labels(args.labels, num_classes).tolist()
    count = args.num_images if args.num_images is not None else args.per_class * len(classes)
    if args.per_class is not None and count != args.per_class * len(classes):
        raise ValueError(f"--num-images {count} is not --per-class {args.per_class} x {len(classes)} classes; give one of them")
    return ExportPlan(tuple(balanced_labels(count, classes)), args.shard_size, args.seed, args.batch_size)


def cmd_sample_export(args) -> int:
    from artok.distributed.env import distributed_run
    from artok.evaluation.export import export_samples
    from artok.pipeline import Pipeline, load_pair

    if args.out is None:
        raise ValueError("--num-images / --per-class export to a folder: give --out DIR")
    if args.out.lower().endswith((".png", ".npz")):
        raise ValueError(f"--out {args.out}: an export is a folder (PNG class folders, shards and the .npz); give a folder")
    check_output_dir(args.out)
    with distributed_run(args.device) as env:
        generator, tokenizer = load_pair(args.generator, args.tokenizer, env.device)
        from artok.cli.common import sampling_config

        sampler, _ = sampling_config(args, generator)
        plan = export_plan(args, generator.config.num_classes)
        pipeline = Pipeline(generator, tokenizer, sampler, engine="auto")

        def sample(labels, seed, batch_size):
            return pipeline(labels, seed=seed, batch_size=batch_size)

        formats = ("png", "npz") if args.format == "both" else (args.format,)
        result = export_samples(sample, plan, args.out, formats, env, progress=not args.no_progress)
        if env.is_main:
            kept = f", kept {result['skipped_shards']} finished shards" if result["skipped_shards"] else ""
            processes = f" ({env.world_size} processes)" if env.distributed else ""
            print(f"exported {plan.num_images} images in {plan.num_shards} shards to {args.out}{processes}: sampled "
                  f"{result['sampled_images']}{kept}, {result['images_per_second']:.1f} images/s on rank 0")
            print(json.dumps(result, indent=2))
    return 0


def inception_network(args, dataset_name: str | None = None, *, required: bool = False):
    """The FID Inception network when weights are given (flag or environment), else None with a
    one-line warning saying what is missing (an error when ``required``)."""
    from artok.evaluation.inception import load_inception, weights_path

    try:
        weights_path(args.inception_weights)
    except FileNotFoundError as error:
        if required or args.inception_weights:
            raise
        fallback = " (the reference classifier's FD is reported instead)" if dataset_name in (
            "digits", "mnist", "fashion-mnist") else ""
        warnings.warn(f"no Inception metrics{fallback}: {error}", UserWarning, stacklevel=1)
        return None
    return load_inception(args.inception_weights, args.device)


def reference_for(args, network, test) -> tuple:
    from artok.evaluation.reference_stats import dataset_reference, load_reference

    if args.reference:
        return load_reference(args.reference, network, need_features=True, progress=not args.no_progress), args.reference
    reference, path = dataset_reference(test, network, progress=not args.no_progress)
    return reference, str(path)


def inception_eval(network, reference, images, prefix: str, reconstruction: bool = False) -> dict:
    """``{prefix}.fid`` ... of ``images`` against ``reference``; for a tokenizer's reconstructions
    (``reconstruction``) the reconstruction metrics rFID and rsFID (``{prefix}.rfid``)."""
    from artok.evaluation.inception_metrics import inception_features, inception_metrics

    samples = inception_features(network, images)
    device = next(network.parameters()).device
    metrics = inception_metrics(samples, reference, splits=min(10, len(samples)), device=device)
    if reconstruction:
        return {f"{prefix}.r{key}": metrics[key] for key in ("fid", "sfid") if key in metrics} | {
            f"{prefix}.rfid_num_images": metrics["num_samples"]}
    return {f"{prefix}.{key}": value for key, value in metrics.items()}


def add_reference_parser(sub) -> None:
    from artok.cli.common import add_common

    parser = sub.add_parser("reference", help="compute Inception reference statistics (.npz) of a dataset",
                            description="Inception FID/sFID statistics (mu, sigma, mu_s, sigma_s, count) and pool features "
                            "(for precision/recall) of a dataset split, written as .npz for 'artok eval --reference'.")
    parser.add_argument("--dataset", required=True, help="dataset: digits, mnist, fashion-mnist, folder:PATH, ...")
    parser.add_argument("--split", default="test", choices=("train", "test", "val", "all"),
                        help="split (default: test; imagenet: val = test)")
    parser.add_argument("--image-size", type=positive_int, help="square image side (default: the dataset's)")
    parser.add_argument("--limit", type=positive_int, help="use only the first N images")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--no-features", action="store_true", help="store only the statistics (no precision/recall)")
    parser.add_argument("--stream", action="store_true",
                        help="read folder: images from disk in batches (always for imagenet:ROOT; needs --image-size)")
    parser.add_argument("--workers", type=nonnegative_int, default=2, help="loader processes when streaming (default: 2)")
    parser.add_argument("--inception-weights", metavar="PATH", help="pt_inception-2015-12-05-6726825d.pth (default: $ARTOK_INCEPTION)")
    add_common(parser)
    parser.set_defaults(run=cmd_reference)


def cmd_reference(args) -> int:
    import time

    from artok.cli.common import check_output_file
    from artok.data import load_dataset
    from artok.evaluation.inception_metrics import InceptionReference, inception_features
    from artok.evaluation.reference_stats import save_reference

    check_output_file(args.out)
    network = inception_network(args, required=True)
    if args.stream or args.dataset.startswith("imagenet:"):
        from artok.data.stream import open_stream

        if args.image_size is None:
            raise ValueError(f"streaming {args.dataset} needs --image-size (images are center-cropped to it, as ADM does)")
        dataset = open_stream(args.dataset, args.split, image_size=args.image_size, limit=args.limit)
    else:
        dataset = load_dataset(args.dataset, args.split, limit=args.limit, image_size=args.image_size)
    started = time.perf_counter()
    features = inception_features(network, dataset, progress=not args.no_progress, workers=args.workers)
    reference = InceptionReference.from_features(features, source=f"{args.dataset} ({args.split})")
    save_reference(args.out, reference, network.weights_sha256, with_features=not args.no_features)
    print(f"wrote Inception statistics of {len(features)} {args.dataset} ({args.split}) images to {args.out} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(json.dumps({"out": args.out, "count": len(features), "weights_sha256": network.weights_sha256}))
    return 0


def eval_report(path: str, dataset: str, metrics: dict, images, per_class: int) -> None:
    """``artok eval --report``: the metrics (with their reference and weights checksum) and a grid
    of the samples (one row per class, at most 12 columns)."""
    from artok.evaluation import Report

    report = Report(f"artok eval: {dataset}")
    report.add_heading("Metrics")
    report.add_metrics_table({key: value for key, value in metrics.items() if key != "run"})
    if images is not None:
        columns = min(per_class, 12)
        grid = images.view(-1, per_class, *images.shape[1:])[:, :columns].flatten(0, 1)
        report.add_heading("Samples")
        report.add_image_grid(grid, nrow=columns, caption="one row per class")
    report.save(path)
