"""REST API of the knowledge base: write and publish articles (`kb:write`), search them, suggest them for a
ticket, and count which ones were used on tickets and resolved them (`tickets:read` / `tickets:write`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from crm_shared.api import Cursor, IdInPath, Limit, Page, keyset_page
from crm_shared.events import EntityId, Line, Text, utc_now
from crm_shared.problems import Problem
from crm_shared.security import Principal, requires
from crm_shared.service import StoreDep
from crm_shared.store import as_stored
from crm_support.kb import repository
from crm_support.tickets import domain as tickets
from crm_support.tickets import handlers as ticket_handlers

router = APIRouter(prefix="/v1", tags=["knowledge base"])

READ = [requires("tickets:read")]
WRITE = [requires("kb:write")]
TicketReader = Annotated[Principal, requires("tickets:read")]
TicketWriter = Annotated[Principal, requires("tickets:write")]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ArticleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Line = Field(min_length=1, max_length=200)
    problem: Text = Field(min_length=1, max_length=20_000, description="What the customer sees.")
    solution: Text = Field(min_length=1, max_length=50_000, description="What solves it.")
    product: EntityId | None = None
    tags: list[Tag] = Field(default=[], max_length=50)
    status: repository.ArticleStatus = Field(default="draft", description="Only published articles are found.")


class ArticleView(ArticleBody):
    article_id: str
    updated_at: datetime
    used: int = Field(description="Tickets it was used on.")
    resolved: int = Field(description="Tickets it resolved.")

    @classmethod
    def of(cls, a: repository.Article) -> ArticleView:
        return cls(
            article_id=a.article_id,
            title=a.title,
            problem=a.problem,
            solution=a.solution,
            product=a.product,
            tags=list(a.tags),
            status=a.status,
            updated_at=a.updated_at,
            used=a.used,
            resolved=a.resolved,
        )


class FoundView(BaseModel):
    article: ArticleView
    score: float = Field(description="BM25 relevance; higher is better.")
    matched: list[str] = Field(description="The stemmed query terms the article holds.")


class UseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    article_id: EntityId
    resolved: bool = Field(default=False, description="The article solved the ticket's problem.")


ARTICLE_EXAMPLE = {
    "title": "Paper jams in the A3 printer",
    "problem": "The printer stops with a paper jam on every second page.",
    "solution": "Open the rear cover, remove the paper tray and clean the feed rollers with a dry cloth.",
    "product": "PRN-A3",
    "tags": ["printer", "paper"],
    "status": "published",
}


@router.put(
    "/kb/articles/{article_id}",
    response_model=ArticleView,
    summary="Write or replace an article (its search terms are indexed with it)",
    dependencies=WRITE,
    responses={200: {"description": "Replaced"}, 201: {"description": "Written"}},
)
async def put_article(
    store: StoreDep,
    response: Response,
    article_id: IdInPath,
    body: Annotated[ArticleBody, Body(examples=[ARTICLE_EXAMPLE])],
) -> ArticleView:
    article = repository.Article(
        article_id=article_id,
        title=body.title,
        problem=body.problem,
        solution=body.solution,
        status=body.status,
        updated_at=as_stored(utc_now()),
        product=body.product,
        tags=tuple(body.tags),
    )
    saved, created = await repository.save(store, article)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ArticleView.of(saved)


@router.get(
    "/kb/articles",
    response_model=Page[ArticleView],
    summary="Articles, most recently written first",
    dependencies=READ,
)
async def list_articles(
    store: StoreDep,
    status_: Annotated[repository.ArticleStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ArticleView]:
    query: dict[str, Any] = {"status": status_} if status_ else {}
    docs, next_cursor = await keyset_page(
        store.db[repository.KB_ARTICLES], query, time_field="updated_at", limit=limit, cursor=cursor, newest_first=True
    )
    return Page[ArticleView](items=[ArticleView.of(repository.from_document(d)) for d in docs], next_cursor=next_cursor)


@router.get(
    "/kb/articles/{article_id}",
    response_model=ArticleView,
    summary="One article",
    dependencies=READ,
    responses={404: {"description": "No such article"}},
)
async def get_article(store: StoreDep, article_id: IdInPath) -> ArticleView:
    doc = await store.db[repository.KB_ARTICLES].find_one({"_id": article_id})
    if doc is None:
        raise Problem(404, "Article not found", f"no article {article_id}")
    return ArticleView.of(repository.from_document(doc))


@router.get(
    "/kb/search",
    response_model=list[FoundView],
    summary="Published articles ranked by relevance to the words given (stemmed; BM25)",
    dependencies=READ,
)
async def search_articles(
    store: StoreDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="Words to look for.")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[FoundView]:
    found = await repository.find(store, q, limit=limit)
    return _views(found)


def _views(found: list[repository.Found]) -> list[FoundView]:
    return [
        FoundView(article=ArticleView.of(f.article), score=round(f.score, 4), matched=list(f.matched)) for f in found
    ]


def _ticket_text(ticket: tickets.Ticket) -> str:
    customer_words = [p.body for p in ticket.posts if p.author.kind == "customer" and p.public]
    return " ".join([ticket.subject, *customer_words])


@router.get(
    "/tickets/{ticket_id}/suggested-articles",
    response_model=list[FoundView],
    summary="Articles that may solve a ticket, from its subject and the customer's messages",
    responses={404: {"description": "No such ticket, or not one the caller sees"}},
)
async def suggest_articles(
    principal: TicketReader,
    store: StoreDep,
    ticket_id: IdInPath,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> list[FoundView]:
    ticket = await ticket_handlers.find_ticket(store, ticket_id, seen_by=principal)
    if ticket is None:
        raise Problem(404, "Ticket not found", f"no ticket {ticket_id}")
    found = await repository.find(store, _ticket_text(ticket), limit=limit)
    return _views(found)


@router.post(
    "/tickets/{ticket_id}/articles",
    response_model=ArticleView,
    summary="Record that an article was used on a ticket (and whether it resolved it); once per ticket",
    responses={
        200: {"description": "Recorded for this ticket before: counted once"},
        201: {"description": "Recorded"},
        404: {"description": "No such ticket the caller sees, or no such article"},
    },
)
async def use_article(
    principal: TicketWriter, store: StoreDep, response: Response, ticket_id: IdInPath, body: UseBody
) -> ArticleView:
    ticket = await ticket_handlers.find_ticket(store, ticket_id, seen_by=principal)
    if ticket is None:
        raise Problem(404, "Ticket not found", f"no ticket {ticket_id}")
    if await store.db[repository.KB_ARTICLES].find_one({"_id": body.article_id}, {"_id": 1}) is None:
        raise Problem(404, "Article not found", f"no article {body.article_id}")
    new = await repository.record_use(
        store, body.article_id, ticket_id, resolved=body.resolved, at=as_stored(utc_now())
    )
    response.status_code = status.HTTP_201_CREATED if new else status.HTTP_200_OK
    doc = await store.db[repository.KB_ARTICLES].find_one({"_id": body.article_id})
    assert doc is not None
    return ArticleView.of(repository.from_document(doc))
