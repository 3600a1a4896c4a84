"""Composition of the scoring service."""

from fastapi import FastAPI

from crm_scoring import api, consumers, repository
from crm_scoring.settings import ScoringSettings
from crm_shared.service import Runtime, build_broker, create_app


def create_service(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    runtime = Runtime(settings=settings, broker=build_broker(settings), indexes=repository.INDEXES)
    consumers.register(runtime, settings.thresholds)
    return create_app(
        runtime,
        title="CRM scoring",
        description="Scores every customer from order and ticket facts; publishes crm.scoring.segments.",
        routers=[api.router],
    )
