"""The three built-in workflows of the weekly operations chain.

They are real, deterministic text processing (no network, no clock), so the example DAG
does something a person can check:

``inbox_drive_sweep``
    In: ``inbox_items`` (a list of strings, or one string with one item per line or ``;``),
    optional ``urgent_keywords`` (list). Out: ``summary`` ("Prioritized 15 items"), ``count``,
    and ``high``/``normal``/``low`` lists of items.
``weekly_report_pack``
    In: ``start_date``, ``end_date`` (ISO dates), any upstream ``*__summary``. Out:
    ``summary``, ``days``, ``report`` (Markdown).
``meeting_transcript_brief``
    In: ``meeting_title``, optional ``transcript`` (lines starting ``Action:``/``TODO``/``- [ ]``
    are action items, ``Decision:`` decisions), any upstream ``*__summary``. Out: ``summary``,
    ``action_items``, ``decisions``, ``brief`` (Markdown).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from dagflow.workflows import workflow

DEFAULT_URGENT = ("urgent", "asap", "today", "deadline", "overdue", "outage", "blocker")
DEFAULT_LOW = ("newsletter", "fyi", "digest", "promo", "unsubscribe")


def _items(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [part.strip() for part in re.split(r"[\n;]", raw) if part.strip()]
    if isinstance(raw, list):
        return [str(item).strip() for item in raw if str(item).strip()]
    raise ValueError(f"inbox_items must be a string or a list, not {type(raw).__name__}")


def _upstream_summaries(params: Mapping[str, Any]) -> list[str]:
    return [
        f"{key.split('__', 1)[0]}: {value}"
        for key, value in sorted(params.items())
        if key.endswith("__summary")
    ]


@workflow("inbox_drive_sweep")
def inbox_drive_sweep(params: Mapping[str, Any]) -> dict[str, Any]:
    """Sort inbox/drive items into high, normal and low priority by keywords."""
    urgent = tuple(k.lower() for k in params.get("urgent_keywords", DEFAULT_URGENT))
    high: list[str] = []
    normal: list[str] = []
    low: list[str] = []
    for item in _items(params.get("inbox_items")):
        text = item.lower()
        if any(k in text for k in urgent):
            high.append(item)
        elif any(k in text for k in DEFAULT_LOW):
            low.append(item)
        else:
            normal.append(item)
    count = len(high) + len(normal) + len(low)
    return {
        "summary": f"Prioritized {count} items",
        "count": count,
        "high": high,
        "normal": normal,
        "low": low,
    }


def _date(params: Mapping[str, Any], key: str) -> date:
    raw = params.get(key)
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"{key} must be an ISO date like 2025-10-01, got {raw!r}") from None


@workflow("weekly_report_pack")
def weekly_report_pack(params: Mapping[str, Any]) -> dict[str, Any]:
    """Assemble a Markdown weekly report for a date range from upstream summaries."""
    start, end = _date(params, "start_date"), _date(params, "end_date")
    if end < start:
        raise ValueError(f"end_date {end} is before start_date {start}")
    days = (end - start).days + 1
    lines = [f"# Weekly report {start} to {end}", ""]
    inputs = _upstream_summaries(params)
    lines += [f"- {line}" for line in inputs] or ["- no upstream input"]
    return {
        "summary": f"Weekly report {start} to {end} ({days} days, {len(inputs)} inputs)",
        "days": days,
        "report": "\n".join(lines),
    }


@workflow("meeting_transcript_brief")
def meeting_transcript_brief(params: Mapping[str, Any]) -> dict[str, Any]:
    """Pull action items and decisions out of a transcript into a short brief."""
    title = str(params.get("meeting_title") or "Untitled meeting")
    actions: list[str] = []
    decisions: list[str] = []
    for line in str(params.get("transcript", "")).splitlines():
        text = line.strip()
        match = re.match(r"^(?:action:|todo:?|- \[ \])\s*(.+)$", text, re.IGNORECASE)
        if match:
            actions.append(match.group(1).strip())
        elif text.lower().startswith("decision:"):
            decisions.append(text[len("decision:") :].strip())
    context = _upstream_summaries(params)
    brief = [f"# {title}", "", "## Context", *(f"- {c}" for c in context or ["none"])]
    brief += ["", "## Action items", *(f"- [ ] {a}" for a in actions or ["none"])]
    brief += ["", "## Decisions", *(f"- {d}" for d in decisions or ["none"])]
    return {
        "summary": f"Brief for {title}: {len(actions)} action items, {len(decisions)} decisions",
        "action_items": actions,
        "decisions": decisions,
        "brief": "\n".join(brief),
    }
