"""`python -m llmrec` = the `llmrec` command."""

from llmrec.cli import main

main()
