"""Any-subset autoregression with exact parallel sampling (ASSD, https://arxiv.org/abs/2504.20456)."""

from artok.generators.any_order.model import AnyOrderConfig, AnyOrderGenerator

__all__ = ["AnyOrderConfig", "AnyOrderGenerator"]
