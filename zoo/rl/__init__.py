"""Group-relative RL for LLM agents (GRPO family): the shared core and one module per paper."""
