"""The HTTP API over a trained run: recommendations, profiles, explanations and new interactions.

    app = create_app(Recommender.load("runs/demo"))      # then: uvicorn.run(app), or `llmrec serve`

Endpoints are plain functions, so FastAPI runs them in its threadpool; the recommender is not assumed to be
thread-safe, so its calls take turns behind one lock. Every error is `{"error": message}`: 404 for an unknown
(or deleted) user or item, 409 for an item change that conflicts (a taken id, a catalog item), 422 for bad
input, 413 for a body over 1 MiB, and 500 `internal error` for anything else (its traceback goes to the server log
only).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llmrec.errors import ConfigError, ConflictError, DataError, UnknownIdError
from llmrec.service.guard import RequestGuard
from llmrec.service.schemas import (EventAck, EventRequest, ErrorBody, Health, ItemAck, ItemRequest, ItemUpdate,
                                    RecommendRequest, RecommendResponse)

if TYPE_CHECKING:
    from llmrec.pipeline import Recommender

T = TypeVar("T")
MAX_REPORTED_ERRORS = 3
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown user or item."},
    413: {"model": ErrorBody, "description": "Request body over 1 MiB."},
    422: {"model": ErrorBody, "description": "Invalid request."},
    500: {"model": ErrorBody, "description": "Internal error (details in the server log)."},
}
_LOCATIONS = ("body", "query", "path")


def create_app(recommender: "Recommender") -> FastAPI:
    """A FastAPI application serving `recommender` (an `llmrec.pipeline.Recommender`)."""
    lock = threading.Lock()

    def call(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with lock:
            return method(*args, **kwargs)

    app = FastAPI(title="llmrec", version="0.1.0",
                  description="Recommendations from text interest profiles. Errors are `{\"error\": message}`.")
    app.add_middleware(RequestGuard)
    _add_error_handlers(app)

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS, tags=["recommend"])
    def recommend(request: RecommendRequest) -> dict[str, Any]:
        """The top `k` items for a known user (`user_id`) or an anonymous user's `history` and/or stated
        `interests`, never items already seen, deleted or listed in `exclude`."""
        items = call(recommender.recommend, request.user_id, request.k, history=request.history,
                     interests=request.interests, context=request.context, exclude=request.exclude,
                     mode=request.mode)
        return {"items": [item.to_dict() for item in items]}

    @app.get("/profile/{user_id}", responses=_ERRORS, tags=["users"])
    def profile(user_id: str = Path(min_length=1, max_length=256, description="User id.")) -> dict[str, Any]:
        """A user's interest profile: its text, top categories and interest weights."""
        return call(recommender.profile, user_id)

    @app.get("/explain", responses=_ERRORS, tags=["users"])
    def explain(user_id: str = Query(min_length=1, max_length=256, description="User id."),
                item_id: str = Query(min_length=1, max_length=256, description="Item id.")) -> dict[str, Any]:
        """Why an item suits a user: the history items and profile sentences the score rests on."""
        return call(recommender.explain, user_id, item_id)

    @app.post("/events", status_code=201, response_model=EventAck, responses=_ERRORS, tags=["users"])
    def events(event: EventRequest) -> dict[str, Any]:
        """Record an interaction; it is stored durably before the acknowledgement is sent, and the user's next
        recommendations take it into account."""
        return call(recommender.add_interaction, event.user_id, event.item_id, event.timestamp, event.context)

    _add_item_routes(app, recommender, call)

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness, and the size of what is served."""
        return call(recommender.health)

    return app


def _add_item_routes(app: FastAPI, recommender: "Recommender", call: Callable[..., Any]) -> None:
    """POST /items, PUT /items/{item_id}, DELETE /items/{item_id}: the catalog changes while serving."""
    responses = {**_ERRORS, 409: {"model": ErrorBody, "description": "The item id is taken, or the item is "
                                                                     "a catalog item, which cannot be changed."}}
    item_id_path = Path(min_length=1, max_length=256, description="Item id.")

    @app.post("/items", status_code=201, response_model=ItemAck, responses=responses, tags=["items"])
    def add_item(item: ItemRequest) -> dict[str, Any]:
        """Add an item; it is stored durably before the acknowledgement is sent and can be recommended from the
        next request on, without retraining."""
        return call(recommender.add_item, item.item_id, item.text, title=item.title, categories=item.categories)

    @app.put("/items/{item_id}", response_model=ItemAck, responses=responses, tags=["items"])
    def update_item(update: ItemUpdate, item_id: str = item_id_path) -> dict[str, Any]:
        """Replace the text, title and categories of an item added while serving."""
        return call(recommender.update_item, item_id, update.text, title=update.title,
                    categories=update.categories)

    @app.delete("/items/{item_id}", response_model=ItemAck, responses=responses, tags=["items"])
    def delete_item(item_id: str = item_id_path) -> dict[str, Any]:
        """Never recommend an item again; events may no longer name it (histories that do stay valid)."""
        return call(recommender.delete_item, item_id)


def _add_error_handlers(app: FastAPI) -> None:
    def handler(status: int, message: Callable[[Any], str]) -> Callable[[Request, Exception], Any]:
        async def respond(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": message(exc)}, status_code=status)
        return respond

    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:  # unknown route, wrong method
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(UnknownIdError, handler(404, str))
    app.add_exception_handler(ConflictError, handler(409, str))
    for bad_input in (DataError, ConfigError, ValueError):
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
