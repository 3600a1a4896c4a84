"""The console's pages, a router per area; `app.py` includes every one of ROUTERS."""

from fastapi import APIRouter

from crm_console.pages import auth, customers, home, marketing, operator, sales, service

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    home.router,
    customers.router,
    sales.router,
    service.router,
    marketing.router,
    operator.router,
)
