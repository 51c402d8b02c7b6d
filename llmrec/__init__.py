"""llmrec: LLM-augmented recommendation with text interest profiles."""

from llmrec.errors import LlmrecError

__version__ = "0.1.0"
__all__ = ["LlmrecError", "__version__"]
