"""annodistill: knowledge distillation in automated annotation (LLM labels vs human labels)."""

__version__ = "0.1.0"
