"""Evaluation: reconstruction metrics, codebook statistics, a reference classifier with Frechet
distance and class accuracy for generated images, and self-contained HTML reports."""

from artok.evaluation.classifier import (
    CLASSIFIER_VERSION,
    ReferenceClassifier,
    ReferenceClassifierConfig,
    classifier_accuracy,
    default_cache_dir,
    get_reference_classifier,
    load_reference_classifier,
    read_classifier_record,
    save_reference_classifier,
    train_reference_classifier,
)
from artok.evaluation.codebook import CodebookStats
from artok.evaluation.frechet import (
    FeatureStatistics,
    classifier_features,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
)
from artok.evaluation.generation import (
    evaluate_generation,
    reference_fd,
    reference_statistics,
)
from artok.evaluation.metrics import (
    PSNR_CAP_DB,
    psnr,
    psnr_per_image,
    ssim,
    ssim_per_image,
)
from artok.evaluation.report import Report, format_number, image_grid, save_image_grid
from artok.evaluation.text_set import find_fonts, render_text_set
from artok.evaluation.tokenizer_bench import (
    TokenizerBenchConfig,
    TokenizerBenchResult,
    post_training_quantize,
    run_tokenizer_bench,
)

__all__ = [
    "CLASSIFIER_VERSION",
    "CodebookStats",
    "FeatureStatistics",
    "PSNR_CAP_DB",
    "ReferenceClassifier",
    "ReferenceClassifierConfig",
    "Report",
    "TokenizerBenchConfig",
    "TokenizerBenchResult",
    "classifier_accuracy",
    "classifier_features",
    "default_cache_dir",
    "evaluate_generation",
    "feature_statistics",
    "find_fonts",
    "format_number",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "get_reference_classifier",
    "image_grid",
    "load_reference_classifier",
    "post_training_quantize",
    "psnr",
    "psnr_per_image",
    "read_classifier_record",
    "reference_fd",
    "reference_statistics",
    "render_text_set",
    "run_tokenizer_bench",
    "save_image_grid",
    "save_reference_classifier",
    "ssim",
    "ssim_per_image",
    "train_reference_classifier",
]
