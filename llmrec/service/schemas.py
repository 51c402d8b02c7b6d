"""Request and response bodies of the HTTP API, with the bounds every request is checked against."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from llmrec.config import MAX_K
from llmrec.online.item_log import MAX_CATEGORIES, MAX_CATEGORY_CHARS, MAX_TITLE_CHARS

MAX_LIST_ITEMS = 1000
MAX_CONTEXT_KEYS = 32

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
ContextValue = Annotated[str, StringConstraints(max_length=256)]
Category = Annotated[str, StringConstraints(max_length=MAX_CATEGORY_CHARS)]
Context = Annotated[dict[Id, ContextValue], Field(max_length=MAX_CONTEXT_KEYS)]
CONTEXT_HELP = (f"Situation of the request as flat string pairs (at most {MAX_CONTEXT_KEYS}), "
                'e.g. {"device": "phone", "daypart": "evening"}.')


class RecommendRequest(BaseModel):
    """Who to recommend to: a known user, or an anonymous history of item ids."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = Field(None, description="A known user; their history, with events posted since, is used.")
    history: list[Id] | None = Field(None, max_length=MAX_LIST_ITEMS,
                                     description="Item ids, oldest first, for a user the service does not know.")
    interests: str | None = Field(None, min_length=1,
                                  description="What a user the service does not know likes, in their own words "
                                              "(e.g. \"I like dark Scandinavian crime novels\"); with or without "
                                              "a history. At most `online.max_text_chars` characters.")
    k: int = Field(10, ge=1, le=MAX_K, strict=True, description=f"How many items to return (1 to {MAX_K}).")
    context: Context | None = Field(None, description=CONTEXT_HELP)
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_LIST_ITEMS,
                              description="Item ids never to return (items in the history are never returned).")
    mode: Literal["default", "hybrid"] = Field(
        "default", description="`hybrid` mixes in items beyond the user's usual interests and tags each item "
                               "with the reason it was picked.")

    @model_validator(mode="after")
    def _one_source(self) -> "RecommendRequest":
        if (self.user_id is None) == (self.history is None and self.interests is None):
            raise ValueError("give exactly one of user_id and history (or interests, with or without a history)")
        return self


class RecommendationOut(BaseModel):
    """One recommended item."""

    model_config = ConfigDict(extra="allow")

    item_id: str
    score: float = Field(description="The model's score; higher is better, comparable within one response.")
    text: str = Field(description="The item's catalog text.")
    tag: str | None = Field(None, description="Why a hybrid recommendation was picked; null in default mode.")


class RecommendResponse(BaseModel):
    """Recommended items, best first."""

    items: list[RecommendationOut]


class EventRequest(BaseModel):
    """An interaction that just happened."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id
    item_id: Id
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False,
                                    description="Seconds since the epoch, at most a day ahead of the server's clock; "
                                                "default: when the service receives it.")
    context: Context | None = Field(None, description=CONTEXT_HELP)


class EventAck(BaseModel):
    """The acknowledgement of a stored event: it is durable once this is sent."""

    model_config = ConfigDict(extra="allow")

    event_id: int
    user_id: str
    history_length: int = Field(description="How many interactions the user has now.")


class ItemUpdate(BaseModel):
    """An item's text, title and categories."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The item's text as the catalog has it (what the item encoder "
                                                "embeds); at most `online.max_text_chars` characters.")
    title: str | None = Field(None, max_length=MAX_TITLE_CHARS,
                              description="Display title (default: the text), what profiles and explanations "
                                          "may call it.")
    categories: list[Category] = Field(default_factory=list, max_length=MAX_CATEGORIES,
                                       description="Categories (genres, shop categories).")


class ItemRequest(ItemUpdate):
    """A new item."""

    item_id: Id


class ItemAck(BaseModel):
    """The acknowledgement of a stored item change: it is durable, and in effect, once this is sent."""

    model_config = ConfigDict(extra="allow")

    item_id: str
    action: Literal["add", "update", "delete"]
    log_id: int = Field(description="Position of the change in the item log.")


class ComponentHealth(BaseModel):
    """One part of the service: `ok`, `degraded` (with `detail`) or `disabled` (not configured)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded", "disabled"]
    detail: str | None = Field(None, description="What is wrong, or why the part is disabled.")


class Health(BaseModel):
    """What the service is serving, and whether its parts work."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded"] = Field(description="`degraded` when any component is (still HTTP 200).")
    components: dict[str, ComponentHealth] = Field(
        description="`index` (ChromaDB), `llm` (the LLM worker: degraded when its queue is full or it stopped), "
                    "`events` (the event store) and `items` (the item log).")
    items: int = Field(description="Items that can be recommended: the catalog's and those added while serving, "
                                   "less the deleted ones.")
    users: int = Field(description="Known users.")
    model: Any = Field(None, description="The recommendation model.")
    index: Any = Field(None, description="The item index.")


class ErrorBody(BaseModel):
    """Every error response: one plain message, never a traceback."""

    error: str
    request_id: str | None = Field(None, description="Only on 500: the id the server logged the error under "
                                                     "(also the `X-Request-ID` header of every response).")
