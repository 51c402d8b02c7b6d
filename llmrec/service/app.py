"""The HTTP API over a trained run: recommendations, profiles, explanations, new interactions and items.

    app = create_app(Recommender.load("runs/demo"))      # then: uvicorn.run(app), or `llmrec serve`

The recommender is safe to call from many threads, and nothing waits for the LLM longer than
`online.explain_timeout_s` (its one worker thread writes explanations; `/explain` then falls back to the
attribution text and says so in `degraded`). `/recommend` runs on the event loop: its work is a few
milliseconds of CPU (the model, the embedded index), and handing it to a thread costs more under load (thread
hops and GIL contention took a third more CPU per request on a small run); only a request with stated
`interests`, whose text is embedded, runs in the threadpool. `/explain` runs on threads of its own, scheduled
`online.llm_nice` steps below the others (as the LLM worker is): its attribution embeds profile sentences, a tenth
of a second of CPU that recommendations get first. The other endpoints wait on disk (event and item commits,
profile stores), so they are plain functions that FastAPI runs in its threadpool.
With a remote Chroma server (`index.host`), its round trip holds the event loop too: run one worker per core.
Every error is `{"error": message}`: 404 for an unknown (or deleted) user or item, 409 for an item change that
conflicts (a taken id, a catalog item), 422 for bad input (`DataError`, `ConfigError`, a request that fails
validation), 413 for a body over 1 MiB, and 500 `internal error` with the request's `request_id` for anything
else (its traceback goes to the server log under that id).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from llmrec.errors import ConfigError, ConflictError, DataError, UnknownIdError
from llmrec.service.guard import RequestGuard
from llmrec.service.schemas import (EventAck, EventRequest, ErrorBody, Health, ItemAck, ItemRequest, ItemUpdate,
                                    RecommendRequest, RecommendResponse)
from llmrec.service.workers import WorkerPid
from llmrec.serving.llm_worker import lower_thread_priority

if TYPE_CHECKING:
    from llmrec.pipeline import Recommender

MAX_REPORTED_ERRORS = 3
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown user or item."},
    413: {"model": ErrorBody, "description": "Request body over 1 MiB."},
    422: {"model": ErrorBody, "description": "Invalid request."},
    500: {"model": ErrorBody, "description": "Internal error (details in the server log, under `request_id`)."},
}
_LOCATIONS = ("body", "query", "path")


def create_app(recommender: "Recommender") -> FastAPI:
    """A FastAPI application serving `recommender` (an `llmrec.pipeline.Recommender`)."""
    app = FastAPI(title="llmrec", version="0.1.0",
                  description="Recommendations from text interest profiles. Errors are `{\"error\": message}`.")
    app.add_middleware(RequestGuard)
    app.add_middleware(WorkerPid)
    _add_error_handlers(app)

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS, tags=["recommend"])
    async def recommend(request: RecommendRequest) -> dict[str, Any]:
        """The top `k` items for a known user (`user_id`) or an anonymous user's `history` and/or stated
        `interests`, never items already seen, deleted or listed in `exclude`."""
        ask = partial(recommender.recommend, request.user_id, request.k, history=request.history,
                      interests=request.interests, context=request.context, exclude=request.exclude,
                      mode=request.mode)
        items = ask() if request.interests is None else await run_in_threadpool(ask)  # embedding text takes a while
        return {"items": [item.to_dict() for item in items]}

    @app.get("/profile/{user_id}", responses=_ERRORS, tags=["users"])
    def profile(user_id: str = Path(min_length=1, max_length=256, description="User id.")) -> dict[str, Any]:
        """A user's interest profile: its text, top categories and interest weights."""
        return recommender.profile(user_id)

    online = recommender.config.online
    explaining = ThreadPoolExecutor(online.llm_queue + 1, thread_name_prefix="explain",
                                    initializer=lower_thread_priority, initargs=(online.llm_nice,))

    @app.get("/explain", responses=_ERRORS, tags=["users"])
    async def explain(user_id: str = Query(min_length=1, max_length=256, description="User id."),
                      item_id: str = Query(min_length=1, max_length=256, description="Item id.")) -> dict[str, Any]:
        """Why an item suits a user: the history items and profile sentences the score rests on, and a checked LLM
        sentence. When the LLM is busy or slow, `text` is the attribution's own (`source: attribution`) and
        `degraded` says why (`llm-busy`, `llm-timeout`, `llm-stopped`)."""
        return await asyncio.get_running_loop().run_in_executor(explaining, recommender.explain, user_id, item_id)

    @app.post("/events", status_code=201, response_model=EventAck, responses=_ERRORS, tags=["users"])
    def events(event: EventRequest) -> dict[str, Any]:
        """Record an interaction; it is stored durably before the acknowledgement is sent, and the user's next
        recommendations take it into account."""
        return recommender.add_interaction(event.user_id, event.item_id, event.timestamp, event.context)

    _add_item_routes(app, recommender)

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness, what is served, and the state of each part (`components`: the item index, the LLM worker,
        the event store). `status` is `degraded`, still with HTTP 200, when a part is."""
        return recommender.health()

    return app


def _add_item_routes(app: FastAPI, recommender: "Recommender") -> None:
    """POST /items, PUT /items/{item_id}, DELETE /items/{item_id}: the catalog changes while serving."""
    responses = {**_ERRORS, 409: {"model": ErrorBody, "description": "The item id is taken, or the item is "
                                                                     "a catalog item, which cannot be changed."}}
    item_id_path = Path(min_length=1, max_length=256, description="Item id.")

    @app.post("/items", status_code=201, response_model=ItemAck, responses=responses, tags=["items"])
    def add_item(item: ItemRequest) -> dict[str, Any]:
        """Add an item; it is stored durably before the acknowledgement is sent and can be recommended from the
        next request on, without retraining."""
        return recommender.add_item(item.item_id, item.text, title=item.title, categories=item.categories)

    @app.put("/items/{item_id}", response_model=ItemAck, responses=responses, tags=["items"])
    def update_item(update: ItemUpdate, item_id: str = item_id_path) -> dict[str, Any]:
        """Replace the text, title and categories of an item added while serving."""
        return recommender.update_item(item_id, update.text, title=update.title, categories=update.categories)

    @app.delete("/items/{item_id}", response_model=ItemAck, responses=responses, tags=["items"])
    def delete_item(item_id: str = item_id_path) -> dict[str, Any]:
        """Never recommend an item again; events may no longer name it (histories that do stay valid)."""
        return recommender.delete_item(item_id)


def _add_error_handlers(app: FastAPI) -> None:
    def handler(status: int, message: Callable[[Any], str]) -> Callable[[Request, Exception], Any]:
        async def respond(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": message(exc)}, status_code=status)
        return respond

    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:  # unknown route, wrong method
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(UnknownIdError, handler(404, str))
    app.add_exception_handler(ConflictError, handler(409, str))
    for bad_input in (DataError, ConfigError):  # llmrec's own input checks; anything else is a 500
        app.add_exception_handler(bad_input, handler(422, str))
    app.add_exception_handler(RequestValidationError, handler(422, lambda exc: describe_errors(exc.errors())))
    app.add_exception_handler(HTTPException, http_error)


def describe_errors(errors: Sequence[dict[str, Any]]) -> str:
    """One short line from pydantic's validation errors, e.g. `k: Input should be less than or equal to 100`."""
    parts = []
    for error in errors[:MAX_REPORTED_ERRORS]:
        if error.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
            continue
        loc = list(error.get("loc", ()))
        where = ".".join(str(p) for p in (loc[1:] if loc[:1] and loc[0] in _LOCATIONS else loc))
        where = where or ("request body" if loc == ["body"] else "")
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)
