"""The online path of a trained run: the durable interaction log (`events`), per-user serving state (`users`)
and tagged hybrid lists (`hybrid`)."""

from llmrec.online.events import Event, EventStore

__all__ = ["Event", "EventStore"]
