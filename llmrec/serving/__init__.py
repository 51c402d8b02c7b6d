"""The serving side: what an online deployment loads and runs (the bundle, the LLM worker), apart from training."""
