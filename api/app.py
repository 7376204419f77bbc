"""The FastAPI application: ``create_app(config)`` wires the routers, the problem handlers and
the shared clients (database pool, MQTT publisher, job runner) made in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from psycopg_pool import ConnectionPool

from api.config import ApiConfig
from api.jobs import JobRunner
from api.problems import install_problem_handlers, problems_as_problem_json
from api.publisher import CommandPublisher
from api.routes import (
    alerts,
    auth,
    commands,
    console,
    devices,
    jobs,
    open311,
    rules,
    silences,
    strategies,
    telemetry,
    users,
)
from api.state import ApiState

API_PREFIX: Final = "/api/v1"
DOCS_URL: Final = f"{API_PREFIX}/docs"
"""The API's interactive documentation (Swagger UI), its assets beside it."""
_DESCRIPTION: Final = """\
The city platform's HTTP API: the device registry, telemetry, alerts, rules, energy strategies
and commands. Every request but `POST /api/v1/auth/login` carries a bearer token; what a token
may do depends on its user's role (technician, crew, energy manager, admin). Errors are problem
details (RFC 9457, `application/problem+json`).
"""

TAGS: Final = [
    {"name": "auth", "description": "Log in and out; who am I."},
    {"name": "users", "description": "People and scripts, their roles and tokens (admin)."},
    {"name": "devices", "description": "The registry and provisioning of devices."},
    {"name": "telemetry", "description": "Latest values and bucketed ranges."},
    {"name": "alerts", "description": "Fault alerts and the crews' work on them."},
    {"name": "rules", "description": "Rule sets: versions, validation, activation, backtests."},
    {"name": "strategies", "description": "Energy strategies: versions, activation, what-ifs."},
    {"name": "commands", "description": "Commands to devices and their acknowledgements."},
    {"name": "jobs", "description": "Long requests run in the background."},
]


def create_app(config: ApiConfig) -> FastAPI:
    """The application for ``config``; nothing connects until it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool[Any] = ConnectionPool(
            config.database_url,
            min_size=1,
            max_size=config.pool_size,
            open=False,
            name="smartcity-api",
        )
        state = ApiState(config=config, pool=pool, clock=config.clock)
        state.publisher = CommandPublisher(config)
        state.jobs = JobRunner(pool, config.clock or (lambda: datetime.now(UTC)))
        try:
            pool.open(wait=True, timeout=30)
            state.publisher.start()
            state.jobs.start()
            app.state.api = state
            yield
        finally:
            state.jobs.stop()
            state.publisher.stop()
            pool.close()

    # The docs' page and its assets come from the platform itself: a municipal network may
    # have no internet, and a page loaded from a CDN would be blank there.
    app = FastAPIOffline(
        title="smartcity API",
        version="1",
        description=_DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=DOCS_URL,
        redoc_url=None,
        static_url=f"{DOCS_URL}/assets",
        swagger_ui_oauth2_redirect_url=f"{DOCS_URL}/oauth2-redirect",
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    install_problem_handlers(app)
    if config.cors_origins:  # closed by default: browsers refuse other sites' pages
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    for module in (
        auth,
        users,
        devices,
        telemetry,
        alerts,
        silences,
        rules,
        strategies,
        commands,
        jobs,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(console.router)
    app.include_router(open311.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = problems_as_problem_json(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise
    return app
