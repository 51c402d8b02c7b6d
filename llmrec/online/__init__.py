"""The online path of a trained run: the durable interaction log (`events`) and how processes follow it
(`tail`), per-user serving state (`users`) and tagged hybrid lists (`hybrid`)."""

from llmrec.online.events import Event, EventStore
from llmrec.online.tail import LogTail

__all__ = ["Event", "EventStore", "LogTail"]
