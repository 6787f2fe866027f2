"""Admin API: the support manual's curl commands (SPEC §2.1) plus the operator's routes.

Seed routes, unchanged from the manual:
    PUT  /integration/add/businessintegrationgroup
    GET  /integration/trigger/integrationtriggers/sourceid/{sourceId}
    GET  /integration/businessintegrationgroup/{businessNumber}
    POST /integration/update/businessintegrationgroup?replaceTriggers=true|false
    PUT  /integration/add/businessintegrationmapping
Operator routes:
    GET   /admin/groups                      GET   /admin/groups/{groupId}
    GET   /admin/mappings?businessNumber=&groupId=&active=
    GET   /admin/mappings/{businessNumber}   PATCH /admin/mappings/{businessNumber}
    POST  /admin/mappings/{businessNumber}/deactivate
    GET   /admin/audit?businessNumber=&groupId=&since=&limit=&cursor=   (the audit trail, newest first)
    GET   /admin/health
Dashboard (pipeline.registry.dashboard): GET / and GET /dashboard/... (the page; no token needed to load it).
Every error is `{"error": {"field": ..., "message": ...}}` with a 4xx status; request bodies are never logged.
A refusal a person can meet in the dashboard also carries a stable `code` and its `details`, e.g. a business
that is already mapped: `"code": "mapping_exists"`, `"details": {"businessNumber", "integrationGroupId"}`
(`group_exists`: `parentBusinessNumber`, `groupId`). The message stays written for API users.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sqlite3
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import psycopg2
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.registry.audit import LOCAL_USER, Actor, entry_view
from pipeline.registry.dashboard import is_public, mount_dashboard
from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
from pipeline.registry.model import (
    RegistryError,
    parse_business_number,
    parse_frequency,
    parse_run_time,
)
from pipeline.registry.schema import SCHEMA_VERSION
from pipeline.registry.secrets import SecretKeyError
from pipeline.registry.store import RegistryStore
from pipeline.settings import AdminToken, Settings, load_settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
AUDIT_PAGE_SIZE = 50
MAX_AUDIT_PAGE_SIZE = 500
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


# -- request bodies ------------------------------------------------------------------------------------------


def _business_number(value: object) -> str:
    try:
        return parse_business_number(value, "businessNumber")
    except RegistryError as error:
        raise ValueError(error.message) from None


def _scalar_text(value: object) -> object:
    """Property values are strings in the manual; a plain JSON integer is accepted as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


BusinessNumber = Annotated[str, BeforeValidator(_business_number)]
PositiveId = Annotated[StrictInt, Field(gt=0)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PropertyBody(_Body):
    propertyKey: StrictStr
    propertyValue: Annotated[StrictStr, BeforeValidator(_scalar_text), Field(max_length=2000)]
    isSecure: StrictBool = False


class TriggerBody(_Body):
    triggerId: PositiveId
    triggerTypeId: PositiveId
    actionIds: Annotated[list[PositiveId], Field(min_length=1, max_length=20)] | None = None


class FrequencyBody(_Body):
    value: StrictInt
    unit: Literal["days", "hours"]


class GroupCreateBody(_Body):
    parentBusinessNumber: BusinessNumber
    integrationSourceId: StrictInt
    integrationGroupProperties: Annotated[list[PropertyBody], Field(max_length=20)]
    integrationGroupTriggers: Annotated[list[TriggerBody], Field(max_length=20)]


class GroupUpdateBody(_Body):
    groupId: StrictInt
    integrationGroupTriggers: Annotated[list[TriggerBody], Field(max_length=20)] | None = None
    integrationGroupProperties: Annotated[list[PropertyBody], Field(max_length=20)] | None = None
    removePropertyKeys: Annotated[list[StrictStr], Field(max_length=20)] | None = None


class MappingCreateBody(_Body):
    businessNumber: BusinessNumber
    integrationGroupId: StrictInt
    integrationProperties: Annotated[list[PropertyBody], Field(max_length=20)] = []
    active: StrictBool = True
    test: StrictBool = False
    beta: StrictBool = False
    frequency: FrequencyBody | None = None
    nextRunTime: StrictStr | None = None


class MappingPatchBody(_Body):
    integrationProperties: Annotated[list[PropertyBody], Field(max_length=20)] | None = None
    removePropertyKeys: Annotated[list[StrictStr], Field(max_length=20)] | None = None
    active: StrictBool | None = None
    test: StrictBool | None = None
    beta: StrictBool | None = None
    frequency: FrequencyBody | None = None
    nextRunTime: StrictStr | None = None


def _properties(bodies: list[PropertyBody], field: str) -> list[PropertyInput]:
    return [
        PropertyInput(body.propertyKey, body.propertyValue, body.isSecure, f"{field}[{index}]")
        for index, body in enumerate(bodies)
    ]


def _triggers(bodies: list[TriggerBody], field: str) -> list[TriggerInput]:
    return [
        TriggerInput(
            body.triggerId,
            body.triggerTypeId,
            tuple(body.actionIds) if body.actionIds is not None else None,
            f"{field}[{index}]",
        )
        for index, body in enumerate(bodies)
    ]


def _actor(request: Request) -> Actor:
    """Who makes this change, for the audit trail: the token's name (`RequestGuard` puts it in the request's
    state), `local` when the API runs without tokens; and the method and route template it came through."""
    route = request.scope.get("route")
    return Actor(
        getattr(request.state, "admin_user", LOCAL_USER),
        request.method,
        getattr(route, "path", request.url.path),
    )


def _schedule(frequency: FrequencyBody | None, next_run_time: str | None) -> tuple:
    return (
        parse_frequency(frequency.value, frequency.unit, "frequency") if frequency else None,
        parse_run_time(next_run_time, "nextRunTime") if next_run_time is not None else None,
    )


# -- errors --------------------------------------------------------------------------------------------------


def _error(status: int, field: str | None, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status, headers=headers)


def _registry_error(exc: RegistryError) -> JSONResponse:
    """`field` and `message` as every error; a refusal with a code adds `code` and `details`."""
    error: dict[str, Any] = {"field": exc.field, "message": exc.message}
    if exc.code is not None:
        error.update(code=exc.code, details=exc.details)
    return JSONResponse({"error": error}, status_code=exc.status)


def _field_path(loc: tuple) -> str:
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _validation_message(error: dict) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "is required" if len(error.get("loc", ())) > 1 else "a JSON request body is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "model_attributes_type":
        return "must be a JSON object"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "malformed")
        return _error(400, "body", f"invalid JSON: {detail}")
    response = {
        "error": {"field": _field_path(tuple(first.get("loc", ()))), "message": _validation_message(first)}
    }
    if len(errors) > 1:
        response["errors"] = [
            {"field": _field_path(tuple(e.get("loc", ()))), "message": _validation_message(e)} for e in errors
        ]
    return JSONResponse(response, status_code=422)


async def _on_registry_error(request: Request, exc: RegistryError) -> JSONResponse:
    return _registry_error(exc)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, None, str(exc.detail), **(exc.headers or {}))


async def _on_sqlite_error(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
    if "locked" in str(exc) or "busy" in str(exc):
        return _error(503, None, "the registry is busy; retry shortly", **{"Retry-After": "1"})
    log.error("registry database error on %s %s: %s", request.method, request.url.path, exc)
    return _error(500, None, "registry database error; see the server log")


async def _on_postgres_error(request: Request, exc: psycopg2.OperationalError) -> JSONResponse:
    """`DATABASE_URL`'s server is down or unreachable (psycopg2 names the host, never a password)."""
    log.error("registry database unreachable on %s %s: %s", request.method, request.url.path, exc)
    return _error(503, None, "the registry's database is unreachable; retry shortly", **{"Retry-After": "5"})


async def _on_secret_key_error(request: Request, exc: SecretKeyError) -> JSONResponse:
    log.error("%s", exc)
    return _error(500, None, str(exc))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return _error(500, None, "internal error; see the server log")


# -- transport guard -----------------------------------------------------------------------------------------


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _host_name(host: str) -> str:
    """`Host` (or an origin's authority) without its port, lower-cased: `[::1]:8300` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestGuard:
    """Host and Origin, bearer token, body size and content type, checked before FastAPI reads a byte of
    the body.

    Without a token the API answers only to loopback `Host` names, so a web page whose DNS name re-binds to
    127.0.0.1 cannot drive it from the support engineer's browser; with one, to `allowed_hosts` (any if
    None). A write whose `Origin` is another site than the one addressed is refused whatever the token:
    the dashboard served here and curl (no `Origin`) are the clients.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Sequence[AdminToken] = (),
        allowed_hosts: tuple[str, ...] | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.tokens = [(t.token.encode(), t) for t in tokens]
        self.allowed_hosts = allowed_hosts if tokens else LOOPBACK_NAMES
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value for key, value in scope["headers"]}
        refusal = self._refused_host_or_origin(scope["method"], headers)
        if refusal is not None:
            await _error(403, *refusal)(scope, receive, send)
            return
        if self.tokens and not is_public(scope["method"], scope["path"]):
            user = self._user(headers.get("authorization", b""))
            if user is None:
                await _error(
                    401,
                    "Authorization",
                    "send an admin token as 'Authorization: Bearer <token>' (ADMIN_TOKEN or ADMIN_TOKENS)",
                    **{"WWW-Authenticate": "Bearer"},
                )(scope, receive, send)
                return
            if scope["method"] in _BODY_METHODS and user.role != "write":
                await _error(
                    403,
                    "Authorization",
                    f"the token named {user.name!r} may only read; changes need a token with the write role",
                )(scope, receive, send)
                return
            scope.setdefault("state", {})["admin_user"] = user.name
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        content_type = headers.get("content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if body and content_type != "application/json":
            await _error(
                415,
                "Content-Type",
                f"send the body as application/json, not {content_type or 'no content type'}",
            )(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _refused_host_or_origin(self, method: str, headers: dict[str, bytes]) -> tuple[str, str] | None:
        """(header, what to do) when the request must be refused for its Host or Origin, else None."""
        host = headers.get("host", b"").decode("latin-1")
        if self.allowed_hosts is not None and _host_name(host) not in self.allowed_hosts:
            shown = ", ".join(self.allowed_hosts)
            fix = (
                "open it as http://127.0.0.1:<port>, or set ADMIN_TOKEN (and ADMIN_ALLOWED_HOSTS) to serve "
                "other names"
                if not self.tokens
                else "add the name to ADMIN_ALLOWED_HOSTS"
            )
            return "Host", f"this admin API answers only to Host {shown}, not {host or 'none'}; {fix}"
        origin = headers.get("origin")
        if method in _BODY_METHODS and origin is not None:
            text = origin.decode("latin-1").strip()
            authority = text.split("://", 1)[1] if "://" in text else ""
            if authority.lower().rstrip("/") != host.strip().lower():
                return "Origin", (
                    f"a change from another site ({text}) is refused: make changes from the dashboard "
                    "served here, or with curl"
                )
        return None

    def _user(self, header: bytes) -> AdminToken | None:
        """The token the `Authorization` header carries, compared in constant time with every one."""
        scheme, _, credentials = header.partition(b" ")
        found = None
        for token, user in self.tokens:
            if hmac.compare_digest(credentials.strip(), token) and scheme.lower() == b"bearer":
                found = user
        return found

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _error(413, "body", f"the request body is larger than {self.max_body} bytes")(
            scope, receive, send
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


# -- the app -------------------------------------------------------------------------------------------------


def create_app(settings: Settings, *, store: RegistryStore | None = None) -> FastAPI:
    """The admin app over `settings.registry_path`; the registry file and schema are created if absent."""
    registry = store or RegistryStore.open(settings)
    app = FastAPI(
        title="cliniko-reviews admin API",
        version=str(SCHEMA_VERSION),
        description=__doc__,
        # Swagger UI and ReDoc load their scripts from a CDN; only the offline OpenAPI document is served.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url="/openapi.json",
    )
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(RegistryError, _on_registry_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(sqlite3.OperationalError, _on_sqlite_error)
    app.add_exception_handler(psycopg2.OperationalError, _on_postgres_error)
    app.add_exception_handler(SecretKeyError, _on_secret_key_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(RequestGuard, tokens=settings.admin_tokens, allowed_hosts=settings.admin_allowed_hosts)
    app.state.registry = registry
    mount_dashboard(app)

    @app.put("/integration/add/businessintegrationgroup", tags=["seed"])
    def create_group(body: GroupCreateBody, request: Request) -> JSONResponse:
        """Create the integration group of an SMB or enterprise parent business (manual: create group)."""
        group, created = registry.create_group(
            body.parentBusinessNumber,
            body.integrationSourceId,
            _properties(body.integrationGroupProperties, "integrationGroupProperties"),
            _triggers(body.integrationGroupTriggers, "integrationGroupTriggers"),
            _actor(request),
        )
        return JSONResponse(group, status_code=201 if created else 200)

    @app.get("/integration/trigger/integrationtriggers/sourceid/{sourceId}", tags=["seed"])
    def list_triggers(sourceId: int) -> list[dict[str, Any]]:
        """The triggers of an integration source, shaped like the manual's sample response."""
        return registry.triggers(sourceId)

    @app.get("/integration/businessintegrationgroup/{businessNumber}", tags=["seed"])
    def find_group(businessNumber: str) -> dict[str, Any]:
        """The group whose parent is this business, else the group that maps it as a location."""
        return registry.group_for_business(parse_business_number(businessNumber, "businessNumber"))

    @app.post("/integration/update/businessintegrationgroup", tags=["seed"])
    def update_group(
        body: GroupUpdateBody, request: Request, replaceTriggers: bool = False
    ) -> dict[str, Any]:
        """Append triggers (replaceTriggers=false) or replace them; optionally upsert or remove properties."""
        return registry.update_group(
            body.groupId,
            triggers=(
                _triggers(body.integrationGroupTriggers, "integrationGroupTriggers")
                if body.integrationGroupTriggers is not None
                else None
            ),
            replace_triggers=replaceTriggers,
            properties=(
                _properties(body.integrationGroupProperties, "integrationGroupProperties")
                if body.integrationGroupProperties is not None
                else None
            ),
            remove_keys=body.removePropertyKeys,
            actor=_actor(request),
        )

    @app.put("/integration/add/businessintegrationmapping", tags=["seed"])
    def create_mapping(body: MappingCreateBody, request: Request) -> JSONResponse:
        """Map a Birdeye location (businessNumber) to an integration group (manual: mapping)."""
        frequency, next_run_time = _schedule(body.frequency, body.nextRunTime)
        mapping, created = registry.create_mapping(
            MappingInput(
                business_number=body.businessNumber,
                group_id=body.integrationGroupId,
                properties=_properties(body.integrationProperties, "integrationProperties"),
                active=body.active,
                test=body.test,
                beta=body.beta,
                frequency=frequency,
                next_run_time=next_run_time,
            ),
            _actor(request),
        )
        return JSONResponse(mapping, status_code=201 if created else 200)

    @app.get("/admin/health", tags=["operator"])
    def health() -> dict[str, Any]:
        """Liveness, and the registry's schema version."""
        return {"status": "ok", "schemaVersion": SCHEMA_VERSION}

    @app.get("/admin/groups", tags=["operator"])
    def list_groups() -> dict[str, Any]:
        """Every integration group, secrets masked."""
        return {"groups": registry.groups()}

    @app.get("/admin/groups/{groupId}", tags=["operator"])
    def get_group(groupId: int) -> dict[str, Any]:
        return registry.group(groupId)

    @app.get("/admin/mappings", tags=["operator"])
    def list_mappings(
        businessNumber: Annotated[str | None, Query()] = None,
        groupId: Annotated[int | None, Query()] = None,
        active: Annotated[bool | None, Query()] = None,
    ) -> dict[str, Any]:
        """Mappings, optionally filtered by business number, group or active flag."""
        number = (
            parse_business_number(businessNumber, "businessNumber") if businessNumber is not None else None
        )
        return {"mappings": registry.mappings(business_number=number, group_id=groupId, active=active)}

    @app.get("/admin/mappings/{businessNumber}", tags=["operator"])
    def get_mapping(businessNumber: str) -> dict[str, Any]:
        return registry.mapping(parse_business_number(businessNumber, "businessNumber"))

    @app.patch("/admin/mappings/{businessNumber}", tags=["operator"])
    def patch_mapping(businessNumber: str, body: MappingPatchBody, request: Request) -> dict[str, Any]:
        """Change properties (upsert by key; removePropertyKeys drops overrides), flags, schedule."""
        frequency, next_run_time = _schedule(body.frequency, body.nextRunTime)
        return registry.update_mapping(
            parse_business_number(businessNumber, "businessNumber"),
            MappingPatch(
                properties=(
                    _properties(body.integrationProperties, "integrationProperties")
                    if body.integrationProperties is not None
                    else None
                ),
                remove_keys=body.removePropertyKeys,
                active=body.active,
                test=body.test,
                beta=body.beta,
                frequency=frequency,
                next_run_time=next_run_time,
            ),
            _actor(request),
        )

    @app.post("/admin/mappings/{businessNumber}/deactivate", tags=["operator"])
    def deactivate_mapping(businessNumber: str, request: Request) -> dict[str, Any]:
        """Stop running a mapping; it stays in the registry and can be re-activated with PATCH."""
        return registry.deactivate_mapping(
            parse_business_number(businessNumber, "businessNumber"), _actor(request)
        )

    @app.get("/admin/audit", tags=["operator"])
    def audit_trail(
        businessNumber: Annotated[str | None, Query()] = None,
        groupId: Annotated[int | None, Query()] = None,
        since: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE_SIZE)] = AUDIT_PAGE_SIZE,
        cursor: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        """Changes to groups and mappings, newest first: who, when, which route, the changed fields (before
        and after, secrets masked). `businessNumber` matches a mapping's location and a group's parent;
        `since` is a time with an offset; the next page is `cursor=<nextCursor>` (null on the last page)."""
        rows = registry.audit_rows(
            business_number=(
                parse_business_number(businessNumber, "businessNumber")
                if businessNumber is not None
                else None
            ),
            group_id=groupId,
            since=parse_run_time(since, "since") if since is not None else None,
            before_id=cursor,
            limit=limit + 1,
        )
        page = rows[:limit]
        more = len(rows) > limit
        return {
            "changes": [entry_view(row) for row in page],
            "nextCursor": page[-1]["change_id"] if more else None,
        }

    return app


# -- serving -------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Only literal loopback addresses and `localhost` count; any other name may resolve outward."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, has_tokens: bool) -> str | None:
    """Why `serve` must not listen on `host`, or None if it may (any admin token makes it safe)."""
    if has_tokens or is_loopback(host):
        return None
    return (
        f"refusing to serve the admin API on {host} without ADMIN_TOKEN or ADMIN_TOKENS: anyone who can "
        "reach it could read and change the registry. Set ADMIN_TOKEN (clients then send "
        "'Authorization: Bearer <token>') or bind 127.0.0.1."
    )


def serve(host: str = "127.0.0.1", port: int = 8300) -> None:
    """Run the admin API with uvicorn; exits non-zero before binding a non-loopback host without a token."""
    settings = load_settings()
    refusal = bind_refusal(host, bool(settings.admin_tokens))
    if refusal:
        raise SystemExit(f"Error: {refusal}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    log.info("registry at %s (schema version %s)", settings.registry_location, SCHEMA_VERSION)
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="info")
