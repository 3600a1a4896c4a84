"""The support database's knowledge base: `kb_articles` (one document per article, with its index terms and
their weighted frequencies for search), `kb_stats` (the published corpus' size and total length, kept in the
same transaction as every article write) and `kb_usage` (one document per article and ticket it was used on)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, IndexModel

from crm_shared.store import IndexSpec, Store, UnitOfWork, find_any
from crm_support.kb import search

KB_ARTICLES = "kb_articles"
KB_STATS = "kb_stats"
KB_USAGE = "kb_usage"
CORPUS = "published"

ArticleStatus = Literal["draft", "published", "archived"]

INDEXES = (
    IndexSpec(KB_ARTICLES, IndexModel([("updated_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")),
    # The inverted index: which published articles hold a term.
    IndexSpec(KB_ARTICLES, IndexModel([("terms", ASCENDING), ("status", ASCENDING)], name="by_term")),
)


@dataclass(frozen=True)
class Article:
    article_id: str
    title: str
    problem: str
    solution: str
    status: ArticleStatus
    updated_at: datetime
    product: str | None = None
    tags: tuple[str, ...] = ()
    used: int = 0
    resolved: int = 0
    frequencies: Mapping[str, int] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return sum(self.frequencies.values())


def indexed(article: Article) -> Article:
    fields = {
        "title": article.title,
        "problem": article.problem,
        "solution": article.solution,
        "product": article.product,
        "tags": list(article.tags),
    }
    return Article(**{**article.__dict__, "frequencies": search.weighted_terms(fields)})


def to_document(article: Article) -> dict[str, Any]:
    return {
        "_id": article.article_id,
        "title": article.title,
        "problem": article.problem,
        "solution": article.solution,
        "status": article.status,
        "product": article.product,
        "tags": list(article.tags),
        "updated_at": article.updated_at,
        "terms": sorted(article.frequencies),
        "frequencies": dict(article.frequencies),
        "length": article.length,
    }


def from_document(doc: Mapping[str, Any]) -> Article:
    return Article(
        article_id=doc["_id"],
        title=doc["title"],
        problem=doc["problem"],
        solution=doc["solution"],
        status=doc["status"],
        updated_at=doc["updated_at"],
        product=doc.get("product"),
        tags=tuple(doc.get("tags", [])),
        used=doc.get("used", 0),
        resolved=doc.get("resolved", 0),
        frequencies=doc.get("frequencies", {}),
    )


def _weight(article: Article | None) -> tuple[int, int]:
    """What an article adds to the searchable corpus: (documents, length)."""
    return (1, article.length) if article is not None and article.status == "published" else (0, 0)


async def save(store: Store, article: Article) -> tuple[Article, bool]:
    """Create or replace the article (its index terms computed) and keep the corpus statistics; (article,
    created)."""
    article = indexed(article)

    async def work(uow: UnitOfWork) -> tuple[Article, bool]:
        old_doc = await uow.db[KB_ARTICLES].find_one({"_id": article.article_id}, session=uow.session)
        old = from_document(old_doc) if old_doc else None
        document = to_document(article)
        if old_doc is not None:
            document.update(used=old_doc.get("used", 0), resolved=old_doc.get("resolved", 0))
        await uow.db[KB_ARTICLES].replace_one({"_id": article.article_id}, document, upsert=True, session=uow.session)
        (n_old, len_old), (n_new, len_new) = _weight(old), _weight(article)
        if (n_old, len_old) != (n_new, len_new):
            await uow.db[KB_STATS].update_one(
                {"_id": CORPUS},
                {"$inc": {"documents": n_new - n_old, "length": len_new - len_old}},
                upsert=True,
                session=uow.session,
            )
        saved = Article(
            **{**article.__dict__, "used": document.get("used", 0), "resolved": document.get("resolved", 0)}
        )
        return saved, old is None

    return await store.transaction(work)


@dataclass(frozen=True)
class Found:
    article: Article
    score: float
    matched: tuple[str, ...]


async def find(store: Store, text: str, *, limit: int, exclude: Iterable[str] = ()) -> list[Found]:
    """The published articles matching the text best, by BM25 over their stemmed terms."""
    query = search.terms(text)[: search.MAX_QUERY_TERMS]
    if not query:
        return []
    docs = await find_any(store.db[KB_ARTICLES], [{"terms": {"$in": sorted(set(query))}, "status": "published"}])
    skipped = set(exclude)
    articles = {d["_id"]: from_document(d) for d in docs if d["_id"] not in skipped}
    stats = await store.db[KB_STATS].find_one({"_id": CORPUS}) or {}
    documents = max(int(stats.get("documents", 0)), 1)
    average = max(float(stats.get("length", 0)) / documents, 1.0)
    hits = search.rank(
        query,
        (search.Indexed(a.article_id, a.frequencies) for a in articles.values()),
        documents=documents,
        average_length=average,
    )
    return [Found(articles[h.article_id], h.score, h.matched) for h in hits[:limit]]


async def record_use(store: Store, article_id: str, ticket_id: str, *, resolved: bool, at: datetime) -> bool:
    """Count the article as used on the ticket (once per ticket), and as having resolved it when it did; False
    when it was counted for this ticket already."""

    async def work(uow: UnitOfWork) -> bool:
        usage_id = f"{article_id}:{ticket_id}"
        if await uow.db[KB_USAGE].find_one({"_id": usage_id}, {"_id": 1}, session=uow.session) is not None:
            return False
        usage = {"_id": usage_id, "article_id": article_id, "ticket_id": ticket_id, "at": at, "resolved": resolved}
        await uow.db[KB_USAGE].insert_one(usage, session=uow.session)
        increment = {"used": 1, "resolved": 1 if resolved else 0}
        await uow.db[KB_ARTICLES].update_one({"_id": article_id}, {"$inc": increment}, session=uow.session)
        return True

    # Two calls at once for the same ticket: the second's insert meets the first's, and its retry finds it.
    return await store.transaction_racing(work)
