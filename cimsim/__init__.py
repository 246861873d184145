"""cimsim: LoRA-adapted language models on simulated compute-in-memory (RRAM) hardware."""

__version__ = "0.1.0"
