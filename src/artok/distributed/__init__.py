"""Parallelism applied from outside single-device models (torchtitan style)."""
