"""``artok sample`` and ``artok eval``: images from a saved generator (through a `Pipeline`, with the
kind's engine on CUDA) and the metrics of a tokenizer and/or generator; every input is checked
before any work."""

from __future__ import annotations

import json
import sys
import warnings

from artok.cli.common import (
    add_common,
    add_sampling,
    check_output_file,
    positive_int,
    sampling_config,
)
from artok.cli.sample_export import (
    add_export_arguments,
    add_inception_arguments,
    add_reference_parser,
    cmd_sample_export,
    eval_report,
    inception_eval,
    inception_network,
    parse_labels,
    reference_for,
)


def add_parser(sub) -> str:
    sample = sub.add_parser("sample", help="sample class-conditional images to a PNG grid, or export N images",
                            description="Sample images from a saved generator and write a PNG grid (one row per label); "
                            "with --num-images / --per-class, export them for outside evaluators (PNG class folders and "
                            "the ADM .npz, resumable shards, split over torchrun ranks).")
    sample.add_argument("--generator", required=True, help="saved generator folder")
    sample.add_argument("--tokenizer", help="saved tokenizer folder (default: the one recorded with the generator)")
    sample.add_argument("--labels", default=None, help="comma-separated class indices (default: every class)")
    sample.add_argument("--per-label", type=positive_int, default=8, help="images per label (default: 8)")
    sample.add_argument("--out", default=None, help="output PNG (default: samples.png); with --num-images: a folder")
    add_export_arguments(sample)
    add_sampling(sample)
    add_common(sample)

    sample.set_defaults(run=cmd_sample)

    ev = sub.add_parser("eval", help="evaluate a tokenizer and/or a generator, write metrics JSON",
                        description="Reconstruction metrics of a tokenizer on a dataset's test split; with --generator, class "
                        "accuracy and Frechet distance of its samples under the dataset's reference classifier (digits, "
                        "mnist, fashion-mnist only: other datasets get tokenizer metrics and a note saying so).")
    ev.add_argument("--tokenizer", help="saved tokenizer folder (default: the generator's)")
    ev.add_argument("--generator", help="saved generator folder")
    ev.add_argument("--dataset", default=None, help="dataset (default: the one recorded with the model)")
    ev.add_argument("--image-size", type=positive_int, help="square image side (default: the tokenizer's)")
    ev.add_argument("--samples-per-class", type=positive_int, default=50, help="samples per class (default: 50)")
    ev.add_argument("--out", default=None, help="write metrics JSON here (default: print only)")
    ev.add_argument("--report", default=None, help="also write an HTML report (metrics table, sample grid) here")
    add_inception_arguments(ev)
    add_sampling(ev)
    add_common(ev)

    ev.set_defaults(run=cmd_eval)
    add_reference_parser(sub)
    return "sample"


def _sample(generator, tokenizer, labels, sampler, args, draft, stats):
    """Images through a `Pipeline`: on CUDA with the kind's fast engine (bf16, compiled), said on stderr."""
    from artok.pipeline import Pipeline

    pipeline = Pipeline(generator, tokenizer, sampler, engine="auto")
    images = pipeline(labels, seed=args.seed, draft=draft, draft_length=args.draft_length, stats=stats)
    if pipeline.engine_used:
        print(f"artok: sampled with the {pipeline.engine_used}: bf16 compiled copy of the weights", file=sys.stderr)
    return images


def cmd_sample(args) -> int:
    from artok.evaluation import save_image_grid
    from artok.pipeline import load_pair

    from artok.cli.sample_export import wants_export

    if wants_export(args):
        return cmd_sample_export(args)
    args.out = args.out or "samples.png"
    check_output_file(args.out)
    generator, tokenizer = load_pair(args.generator, args.tokenizer, args.device)
    labels = parse_labels(args.labels, generator.config.num_classes).repeat_interleave(args.per_label)
    sampler, draft = sampling_config(args, generator)
    stats = []
    images = _sample(generator, tokenizer, labels, sampler, args, draft, stats)
    save_image_grid(args.out, images, nrow=args.per_label, scale=4)
    print(f"wrote {len(labels)} samples to {args.out}")
    if stats:
        print(f"speculative: {sum(s.mean_accepted for s in stats) / len(stats):.2f} per target pass, "
              f"acceptance {sum(s.acceptance_rate for s in stats) / len(stats):.3f}")
    return 0


def _reconstructions(tokenizer, dataset, device: str, batch_size: int = 256):
    """Decoded tokens of every image of ``dataset`` (float in [-1, 1], CPU): rFID's sample set."""
    import torch

    parts = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            images, _ = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))), device)
            parts.append(tokenizer.decode(tokenizer.encode(images)).cpu())
    return torch.cat(parts)


def cmd_eval(args) -> int:
    from artok.data import load_dataset
    from artok.pipeline import load_pair
    from artok.recipes import evaluate_samples, evaluate_tokenizer
    from artok.zoo import from_pretrained

    if not args.tokenizer and not args.generator:
        raise ValueError("give --tokenizer and/or --generator")
    for path in (args.out, args.report):
        if path:
            check_output_file(path, "--out" if path == args.out else "--report")
    generator, images = None, None
    if args.generator:
        generator, tokenizer = load_pair(args.generator, args.tokenizer, args.device)
    else:
        tokenizer = from_pretrained(args.tokenizer, args.device, role="tokenizer")
    recorded = (generator.extra if generator is not None else tokenizer.extra).get("dataset")
    dataset = args.dataset or recorded
    if not isinstance(dataset, str):
        raise ValueError("the model does not record its dataset; pass --dataset")
    image_size = args.image_size or getattr(tokenizer.config, "image_size", None)
    test = load_dataset(dataset, "test", image_size=image_size)
    network = inception_network(args, dataset)
    metrics, reference = {}, None
    if network is not None:
        reference, source = reference_for(args, network, test)
        metrics.update({"inception.weights_sha256": network.weights_sha256, "inception.reference": source,
                        "inception.convention": "uint8 round trip, grey to RGB, TF1 bilinear to 299, pt_inception-2015-12-05"})
    metrics.update({f"tokenizer.{k}": v for k, v in evaluate_tokenizer(tokenizer, test, device=args.device).items()})
    if network is not None:
        metrics.update(inception_eval(network, reference, _reconstructions(tokenizer, test, args.device), "tokenizer",
                                      reconstruction=True))
    if generator is not None:
        import torch

        train = load_dataset(dataset, "train", image_size=image_size)
        labels = torch.arange(generator.config.num_classes).repeat_interleave(args.samples_per_class)
        sampler, draft = sampling_config(args, generator)
        stats = []
        images = _sample(generator, tokenizer, labels, sampler, args, draft, stats)
        result = evaluate_samples(dataset, images, labels, train, test, progress=not args.no_progress)
        if not result:
            how = ("Inception metrics are reported below" if network is not None else
                   "give --inception-weights for Inception FID/IS/precision/recall")
            warnings.warn(f"no class accuracy or FD for {dataset}: a reference classifier exists only for "
                          f"digits, mnist and fashion-mnist; {how}", UserWarning, stacklevel=1)
        metrics.update({f"generator.{k}": v for k, v in result.items()})
        if network is not None:
            metrics.update(inception_eval(network, reference, images, "generator"))
        if stats:
            metrics["generator.speculative_mean_accepted"] = sum(s.mean_accepted for s in stats) / len(stats)
            metrics["generator.speculative_acceptance_rate"] = sum(s.acceptance_rate for s in stats) / len(stats)
    from artok.hub import atomic_write_text
    from artok.provenance import run_metadata

    metrics["run"] = run_metadata(args.seed, args.device)
    text = json.dumps(metrics, indent=2)
    if args.out:
        atomic_write_text(args.out, text)
    if args.report:
        eval_report(args.report, dataset, metrics, images, args.samples_per_class)
    print(text)
    return 0

