"""Insights: what the flows resolve, where shoppers drop off, and what shoppers think.

The analytics log is folded (`fold.py`, pure) into counters per day that the store keeps
(`consumer.py`, a background task); the query API (`query.Insights`) reads them back as the
numbers docs/insights.md defines.
"""

from .query import Insights, PeriodError

__all__ = ["Insights", "PeriodError"]
