"""How accuracy is measured: the test subsample, the input length, the batch size (torch-free, so
that configs can be built and checked before any model is loaded)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How accuracy is measured."""

    test_size: int | None = 300
    """Stratified subsample of the task's test split (None, or 0 as a TOML file or the command
    line says it: all of it)."""
    max_length: int = 64
    """Input tokens per text (longer texts are truncated)."""
    batch_size: int = 64
    """Texts per forward pass."""
    prompt_tokens: str = "joined"
    """Causal LMs: 'joined' tokenizes the filled-in prompt as one string, as lm-evaluation-harness
    does; 'parts' tokenizes the template's head, the text and the tail apart, after BOS, as
    results files without this field were scored (cimsim.eval.scoring.CausalScorer). Encoders
    ignore it."""

    def __post_init__(self) -> None:
        if self.prompt_tokens not in ("joined", "parts"):
            raise ValueError(f"prompt_tokens is joined or parts, got '{self.prompt_tokens}'")
        if self.test_size == 0:
            object.__setattr__(self, "test_size", None)
        if self.test_size is not None and self.test_size < 0:
            raise ValueError("test_size must be >= 0 (0: the whole test split)")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be >= 1")
