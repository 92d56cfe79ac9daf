"""Self-supervised examples (clear pixels hidden under real clouds), metrics, the protocol, reports."""

from .protocol import evaluate_series, merge_results, write_report

__all__ = ["evaluate_series", "merge_results", "write_report"]
