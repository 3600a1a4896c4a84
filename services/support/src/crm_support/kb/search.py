"""Full-text search of the knowledge base: words stemmed with Snowball, an inverted index in the database, and
results ranked by BM25. Pure: no I/O.

An article's indexed text is its title (weighted 3), problem (2), solution, product and tags. Each term is the
Snowball stem of a word (English by default), so "rollers" finds "roller" and "cleaning" finds "clean"; common
English words are not indexed. The database keeps, per article, its terms (a multikey index answers which
articles hold a query's terms) and their weighted frequencies; BM25 (k1 1.2, b 0.75) ranks the candidates with
the corpus statistics, so a rare word that matches counts more than a common one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

K1 = 1.2
B = 0.75
FIELD_WEIGHTS = {"title": 3, "problem": 2, "solution": 1, "product": 1, "tags": 1}
MAX_QUERY_TERMS = 32

APOSTROPHE = "\u2019"
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "than",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


@lru_cache(maxsize=8)
def _stemmer(language: str) -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer(language)


def terms(text: str, language: str = "english") -> list[str]:
    """The index terms of a text: lower-cased words, stop words out, each stemmed."""
    words = [w.lower().replace(APOSTROPHE, "'") for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOP_WORDS and len(w) > 1]
    return list(_stemmer(language).stemWords(kept))


def weighted_terms(fields: Mapping[str, str | Iterable[str] | None], language: str = "english") -> dict[str, int]:
    """Term -> weighted frequency over an article's fields (a field's words count its weight each)."""
    counts: Counter[str] = Counter()
    for name, weight in FIELD_WEIGHTS.items():
        value = fields.get(name)
        if value is None:
            continue
        text = value if isinstance(value, str) else " ".join(value)
        for term in terms(text, language):
            counts[term] += weight
    return dict(counts)


@dataclass(frozen=True)
class Indexed:
    article_id: str
    frequencies: Mapping[str, int]

    @property
    def length(self) -> int:
        return sum(self.frequencies.values())


@dataclass(frozen=True)
class Hit:
    article_id: str
    score: float
    matched: tuple[str, ...]


def rank(query: Iterable[str], candidates: Iterable[Indexed], *, documents: int, average_length: float) -> list[Hit]:
    """The candidates holding any query term, by BM25 score (highest first, then id). `documents` and
    `average_length` describe the whole searchable corpus; every article holding a query term must be among the
    candidates, since document frequencies are counted on them."""
    wanted = list(dict.fromkeys(query))[:MAX_QUERY_TERMS]
    pool = [c for c in candidates if any(t in c.frequencies for t in wanted)]
    if not wanted or not pool:
        return []
    frequency = {t: sum(1 for c in pool if t in c.frequencies) for t in wanted}
    n, avg = max(documents, len(pool)), max(average_length, 1.0)
    hits = []
    for c in pool:
        score, matched = 0.0, []
        for t in wanted:
            tf = c.frequencies.get(t, 0)
            if not tf:
                continue
            idf = math.log(1 + (n - frequency[t] + 0.5) / (frequency[t] + 0.5))
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * c.length / avg))
            matched.append(t)
        hits.append(Hit(c.article_id, score, tuple(matched)))
    return sorted(hits, key=lambda h: (-h.score, h.article_id))
