"""Satisfaction reports: CSAT (the share of answers of 4 or 5 on 1-5) and NPS (promoters, 9-10, minus
detractors, 0-6, as percentages of the answers) by month, category, agent or value tier. Pure arithmetic here; the
API reads the answers of the range."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Grouping = Literal["period", "category", "agent", "value_tier"]
FIELD_OF: Mapping[Grouping, str] = {"category": "category", "agent": "agent_id", "value_tier": "value_tier"}


@dataclass(frozen=True)
class Satisfaction:
    key: str | None
    csat_answers: int
    csat_percent: float | None
    nps_answers: int
    nps: float | None


def _key(answer: Mapping[str, Any], by: Grouping) -> str | None:
    if by == "period":
        at: datetime = answer["answered_at"]
        return f"{at.year:04d}-{at.month:02d}"
    value = answer.get(FIELD_OF[by])
    return str(value) if value is not None else None


def satisfaction(answers: Iterable[Mapping[str, Any]], by: Grouping) -> list[Satisfaction]:
    """One row per group (None: answers without that field), ordered by key (None last)."""
    groups: dict[str | None, list[Mapping[str, Any]]] = defaultdict(list)
    for answer in answers:
        groups[_key(answer, by)].append(answer)
    rows = []
    for key, members in groups.items():
        csat = [a["score"] for a in members if a["kind"] == "csat"]
        nps = [a["score"] for a in members if a["kind"] == "nps"]
        rows.append(
            Satisfaction(
                key=key,
                csat_answers=len(csat),
                csat_percent=round(100 * sum(1 for s in csat if s >= 4) / len(csat), 1) if csat else None,
                nps_answers=len(nps),
                nps=round(100 * (sum(1 for s in nps if s >= 9) - sum(1 for s in nps if s <= 6)) / len(nps), 1)
                if nps
                else None,
            )
        )
    return sorted(rows, key=lambda r: (r.key is None, r.key or ""))
