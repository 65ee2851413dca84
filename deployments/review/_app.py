"""The review room: a small Starlette app over the ledger (SQLite or PostgreSQL) for supervisors.

Pages (HTML, one set of templates with the static report):

- ``GET /``: the batches, newest first (or the batch ``voidflow review --batch`` named);
- ``GET /batches/{batch}``: the overview of a batch and its rerun chain, updating live; ``…/cards`` is its cards;
- ``GET /batches/{batch}/shots/{shot}``: the shot page (player, comparisons, decisions, mask prompts).

The JSON API (the page uses nothing else; errors are ``{"error": "<one line>"}`` with 404, 409, 415 or 422):

- ``GET /api/batches``: batches with their shots and states;
- ``GET /api/batches/{batch}`` and ``GET /api/batches/{batch}/shots/{shot}``: what the pages show;
- ``POST /api/batches/{batch}/shots/{shot}/mask/decision``: ``{decision, reviewer, note, rerun_from}``;
- ``POST /api/shots/{shot}/versions/{label}/decision``: the same for a delivered version;
- ``POST /api/batches/{batch}/shots/{shot}/prompts``: ``{points, boxes, remove, reviewer}``: new mask prompts,
  rerun from the mask stage (202 with a job);
- ``POST /api/batches/{batch}/resume``: "resume approved" (202 with a job);
- ``GET /api/jobs`` and ``GET /api/jobs/{id}``: the work started from here;
- ``GET /media/{artifact}``: a review picture or proxy movie (never a plate or a delivery), byte ranges served.

Security: served on localhost by default; any other address needs ``VOIDFLOW_REVIEW_TOKEN``, then every request
carries it (``Authorization: Bearer …``, or the cookie set by opening ``/?token=…`` once). Requests naming another
host are refused (DNS rebinding), decisions must be JSON (no cross-site form posts), media must lie in its batch's
output folder and the allowed roots, and everything from the ledger reaches the page escaped.
"""

from __future__ import annotations

import dataclasses
import hmac
import html
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from voidflow.deployments.review._jobs import Jobs, voidflow_command
from voidflow.infra.database import Artifact
from voidflow.infra.paths import ensure_allowed
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.review import (
    REVIEW_MEDIA,
    STATIC,
    Prompts,
    UnknownName,
    batch_page,
    batch_summaries,
    decide_mask,
    decide_version,
    render,
    resumable,
    shot_page,
    write_prompts,
)
from voidflow.void_ops.exceptions import DecisionConflict, InvalidInput, PathNotAllowed

__all__ = ["COOKIE", "ReviewConfig", "create_app", "is_loopback"]

COOKIE = "voidflow_review"
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class ReviewConfig:
    """How the review room runs: the settings (ledger, allowed roots, token, user), the batch it opens on, and the
    address it is served on."""

    settings: Settings
    batch: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approved", "rejected"]
    reviewer: str = Field(min_length=1, max_length=255)
    note: str = Field(default="", max_length=4000)
    rerun_from: Literal["mask", "pass1"] | None = None


class _Prompts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: list[dict[str, Any]] = Field(default_factory=list)
    boxes: list[dict[str, Any]] = Field(default_factory=list)
    remove: str | None = Field(default=None, max_length=1000)
    reviewer: str = Field(min_length=1, max_length=255)


class _Resume(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: str = Field(min_length=1, max_length=255)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status_code=status)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"field '{where}': {first['msg']}"


_Handler = Callable[[Request, Any], Response]


def _answers(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint around ``handler(request, body)``: the JSON body read first (POST), the handler's ledger reads
    and writes run on a worker thread (the event loop keeps streaming media meanwhile), and voidflow's errors become
    the API's one-line JSON errors (404, 409, 422)."""

    async def wrapped(request: Request) -> Response:
        try:
            body = None
            if request.method == "POST":
                try:
                    body = await request.json()
                except ValueError:
                    raise InvalidInput("the body is not JSON") from None
            return await run_in_threadpool(handler, request, body)
        except UnknownName as error:
            return _error(404, str(error))
        except DecisionConflict as error:
            return _error(409, str(error))
        except ValidationError as error:
            return _error(422, _describe(error))
        except InvalidInput as error:
            return _error(422, str(error))

    return wrapped


class _Guard(BaseHTTPMiddleware):
    """The token (when one is set), JSON-only writes, and the security headers on every answer."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self._token = token

    def _holds_token(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), self._token.encode())

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        offered = request.query_params.get("token")
        if self._token is not None and offered is not None and request.method == "GET":
            if not hmac.compare_digest(offered.encode(), self._token.encode()):
                return _error(401, "wrong review token")
            answer: Response = RedirectResponse(request.url.remove_query_params("token").path, status_code=303)
            answer.set_cookie(COOKIE, self._token, httponly=True, samesite="strict")
        elif not self._holds_token(request):
            answer = _error(401, "this review room needs its token (Authorization: Bearer …, or open /?token=…)")
        elif request.method == "POST" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            answer = _error(415, "send decisions as application/json")
        else:
            answer = await call_next(request)
        answer.headers.update(_SECURITY_HEADERS)
        return answer


class _Room:
    """The routes' shared state: settings, the ledger and the jobs started from here."""

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.ledger = Ledger(self.settings.db_url, db_timeout_s=self.settings.db_timeout_s)
        self.jobs = Jobs(self.settings.home / "review-jobs")

    @staticmethod
    def media_url(artifact: Artifact) -> str:
        return f"/media/{artifact.id}"

    # -- pages -------------------------------------------------------------------------------------------------------
    def index(self, request: Request, body: Any) -> Response:
        if self.config.batch:
            return RedirectResponse(f"/batches/{self.config.batch}", status_code=303)
        batches = batch_summaries(self.ledger)
        data = [dataclasses.asdict(b) for b in batches]
        return HTMLResponse(render("index", batches=batches, data=data, user=self.settings.user))

    def overview(self, request: Request, body: Any) -> Response:
        try:
            page = batch_page(self.ledger, request.path_params["batch"], self.media_url)
        except UnknownName as error:
            return HTMLResponse(f"<p>{html.escape(str(error))}</p>", status_code=404)
        data = dataclasses.asdict(page)
        return HTMLResponse(render("overview", page=page, data=data, user=self.settings.user))

    def cards(self, request: Request, body: Any) -> Response:
        page = batch_page(self.ledger, request.path_params["batch"], self.media_url)
        return HTMLResponse(render("cards", page=page))

    def shot(self, request: Request, body: Any) -> Response:
        batch, name = request.path_params["batch"], request.path_params["shot"]
        try:
            page = shot_page(self.ledger, batch, name, self.media_url)
        except UnknownName as error:
            return HTMLResponse(f"<p>{html.escape(str(error))}</p>", status_code=404)
        data = {"batch_id": batch, "page": dataclasses.asdict(page)}
        return HTMLResponse(render("shot", page=page, batch_id=batch, data=data, user=self.settings.user))

    # -- reads ---------------------------------------------------------------------------------------------------------
    def api_batches(self, request: Request, body: Any) -> Response:
        return JSONResponse([dataclasses.asdict(b) for b in batch_summaries(self.ledger)])

    def api_batch(self, request: Request, body: Any) -> Response:
        page = batch_page(self.ledger, request.path_params["batch"], self.media_url)
        return JSONResponse(dataclasses.asdict(page))

    def api_shot(self, request: Request, body: Any) -> Response:
        page = shot_page(self.ledger, request.path_params["batch"], request.path_params["shot"], self.media_url)
        return JSONResponse(dataclasses.asdict(page))

    def api_jobs(self, request: Request, body: Any) -> Response:
        return JSONResponse([job.as_dict() for job in self.jobs.all()])

    def api_job(self, request: Request, body: Any) -> Response:
        job = self.jobs.get(request.path_params["job"])
        if job is None:
            raise UnknownName(f"no job '{request.path_params['job']}' in this review room")
        return JSONResponse(job.as_dict())

    def media(self, request: Request, body: Any) -> Response:
        found = self.ledger.artifact(request.path_params["artifact"])
        if found is None or found[0].kind not in REVIEW_MEDIA:
            raise UnknownName(f"no review picture or movie with ID {request.path_params['artifact']}")
        artifact, out_dir = found
        path = Path(artifact.path).resolve()
        try:
            ensure_allowed(path, (str(Path(out_dir).resolve()),), what="review media")
            ensure_allowed(path, self.settings.allowed_roots, what="review media")
        except PathNotAllowed as error:
            raise UnknownName(str(error)) from None
        if not path.is_file():
            raise UnknownName(f"{path}: the file is gone")
        return FileResponse(path)

    # -- decisions -----------------------------------------------------------------------------------------------------
    def _rerun(self, batch: str, shots: list[str], stage: str, sidecar: Path | None = None) -> dict[str, object]:
        arguments = ["rerun", "--batch", batch, *[f"--shot={s}" for s in shots], "--from", stage]
        arguments += ["--sidecar", str(sidecar)] if sidecar is not None else []
        job = self.jobs.start(f"rerun {', '.join(shots)} from {stage}", [voidflow_command(*arguments)])
        return job.as_dict()

    def mask_decision(self, request: Request, body: Any) -> Response:
        body = _Decision.model_validate(body)
        shot = request.path_params["shot"]
        batch = decide_mask(
            self.ledger, request.path_params["batch"], shot, body.decision, reviewer=body.reviewer, note=body.note
        )
        answer: dict[str, object] = {"shot": shot, "batch": batch, "mask": body.decision, "reviewer": body.reviewer}
        if body.rerun_from:
            answer["job"] = self._rerun(batch, [shot], body.rerun_from)
        return JSONResponse(answer)

    def version_decision(self, request: Request, body: Any) -> Response:
        body = _Decision.model_validate(body)
        shot, label = request.path_params["shot"], request.path_params["label"]
        batch = decide_version(self.ledger, shot, label, body.decision, reviewer=body.reviewer, note=body.note)
        answer: dict[str, object] = {"shot": shot, "version": label, "decision": body.decision}
        answer["reviewer"] = body.reviewer
        if body.rerun_from:
            answer["job"] = self._rerun(batch, [shot], body.rerun_from)
        return JSONResponse(answer)

    def prompts(self, request: Request, body: Any) -> Response:
        body = _Prompts.model_validate(body)
        batch, shot = request.path_params["batch"], request.path_params["shot"]
        page = shot_page(self.ledger, batch, shot, self.media_url)
        _check_inside(body, page.frames, page.head, page.width, page.height)
        owner, sidecar = write_prompts(self.ledger, batch, shot, Prompts(body.points, body.boxes, body.remove))
        return JSONResponse(self._rerun(owner, [shot], "mask", sidecar), status_code=202)

    def resume(self, request: Request, body: Any) -> Response:
        _Resume.model_validate(body)
        found = resumable(self.ledger, request.path_params["batch"])
        commands = [
            voidflow_command("rerun", "--batch", b, *[f"--shot={s}" for s in shots]) for b, shots in found.items()
        ]
        names = ", ".join(s for shots in found.values() for s in shots)
        return JSONResponse(self.jobs.start(f"resume {names}", commands).as_dict(), status_code=202)


def _check_inside(body: _Prompts, frames: int, head: int, width: int | None, height: int | None) -> None:
    """Refuse prompts off the shot's frames or off the plate, naming the field (422)."""
    for kind, items in (("points", body.points), ("boxes", body.boxes)):
        for index, item in enumerate(items):
            frame = item.get("frame", 0)
            if isinstance(frame, int) and not -head <= frame < frames - head:
                raise InvalidInput(
                    f"field '{kind}.{index}.frame': {frame} is outside the shot ({-head}..{frames - head - 1})"
                )
            corners = [(item.get("x"), item.get("y"))] if kind == "points" else []
            box = item.get("box")
            if kind == "boxes" and isinstance(box, list) and len(box) == 4:
                corners = [(box[0], box[1]), (box[2], box[3])]
            for x, y in corners:
                for name, value, limit in (("x", x, width), ("y", y, height)):
                    if limit is not None and isinstance(value, int | float) and not 0 <= value <= limit:
                        raise InvalidInput(f"field '{kind}.{index}.{name}': {value} is off the plate (0..{limit})")


def create_app(config: ReviewConfig) -> Starlette:
    """The review room as an ASGI app (serve it with uvicorn; tests can also drive it with httpx)."""
    room = _Room(config)
    hosts = ["*"] if not is_loopback(config.host) else [config.host, "localhost", "127.0.0.1", "[::1]"]
    routes = [
        Route("/", _answers(room.index)),
        Route("/batches/{batch}", _answers(room.overview)),
        Route("/batches/{batch}/cards", _answers(room.cards)),
        Route("/batches/{batch}/shots/{shot}", _answers(room.shot)),
        Route("/api/batches", _answers(room.api_batches)),
        Route("/api/batches/{batch}", _answers(room.api_batch)),
        Route("/api/batches/{batch}/shots/{shot}", _answers(room.api_shot)),
        Route("/api/batches/{batch}/shots/{shot}/mask/decision", _answers(room.mask_decision), methods=["POST"]),
        Route("/api/batches/{batch}/shots/{shot}/prompts", _answers(room.prompts), methods=["POST"]),
        Route("/api/batches/{batch}/resume", _answers(room.resume), methods=["POST"]),
        Route("/api/shots/{shot}/versions/{label}/decision", _answers(room.version_decision), methods=["POST"]),
        Route("/api/jobs", _answers(room.api_jobs)),
        Route("/api/jobs/{job}", _answers(room.api_job)),
        Route("/media/{artifact:int}", _answers(room.media)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
        Middleware(_Guard, token=config.settings.review_token),
    ]
    return Starlette(routes=routes, middleware=middleware)
