"""Errors that reach the user as a clear message, never as a traceback."""


class LlmrecError(Exception):
    """Base class of every error llmrec raises on purpose; the CLI prints its message and exits 2."""


class ConfigError(LlmrecError):
    """A configuration file or override is malformed or names an unknown option."""


class DataError(LlmrecError):
    """Input data is missing, malformed or inconsistent; the message names the file, column and rows."""


class UnknownIdError(LlmrecError, KeyError):
    """A user or item id that the dataset or model does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DeletedItemError(UnknownIdError):
    """An item that was deleted while serving: it is never recommended again, and events may not name it."""


class ConflictError(LlmrecError):
    """A change that contradicts what is stored: a new item with an id already taken, a change to a catalog item."""


class ModelNotTrainedError(LlmrecError):
    """A model was asked to score before it was fitted or loaded."""
