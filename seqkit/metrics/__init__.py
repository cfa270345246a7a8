"""Metrics torchmetrics lacks: entity-level (span) precision, recall and F1."""
from .spans import SCHEMES, SpanF1, entities, span_scores, split_tag, transition_allowed

__all__ = ["SCHEMES", "SpanF1", "entities", "span_scores", "split_tag", "transition_allowed"]
