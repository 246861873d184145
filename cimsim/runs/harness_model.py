"""cimsim's model type for EleutherAI's lm-evaluation-harness: a causal LM on a programmed chip.

Importing this module registers ``cimsim`` with lm-eval's model registry, so that::

    cimsim lm-eval --model cimsim --model_args pretrained=smollm2-135m,card=pcm,sigma=1.0,chip=3 \
        --tasks piqa

(lm-eval's own command line, with cimsim's model registered) or ``lm_eval.simple_evaluate(
model="cimsim", model_args=...)`` after ``import cimsim.runs.harness_model`` evaluates chip 3 of the
``pcm`` card at sigma 1.0: the model's base linear layers deployed exactly as ``cimsim sweep``
deploys them (its chip ``3`` at that sigma, root seed ``seed``), LoRA and everything
:mod:`cimsim.chip.deploy` keeps digital stays digital. Loglikelihood, rolling loglikelihood and
generation are lm-eval's own HF implementations (:class:`lm_eval.models.huggingface.HFLM`)
running on that model, so a chip at sigma 0 gives exactly lm-eval's ``hf`` numbers.

Model arguments: ``pretrained`` (a registered cimsim model, a local HF directory or hub id),
``card`` (``digital``, the default, or any device card or .toml file), ``sigma`` (default: the
card's own), ``chip`` (instance, default 0), ``seed`` (root seed, default 0), ``adapter`` (a peft
LoRA adapter folder), ``dtype`` (float32, bfloat16, float16), ``in_place``, ``device``; the rest
go to HFLM (``batch_size``, ``add_bos_token``, ...).

The harness reads its datasets through ``datasets``; cimsim never downloads at run time, so this
module sets ``HF_DATASETS_OFFLINE`` and ``HF_HUB_OFFLINE`` (unless already set) before they load.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402, F401  (for cimsim.runs.harness)

from cimsim.core.errors import CimsimError  # noqa: E402

NAME = "cimsim"


@register_model(NAME)
class CimsimLM(HFLM):
    """lm-eval's HF causal LM, its base layers on chip ``chip`` of ``card`` at ``sigma``."""

    def __init__(
        self,
        pretrained: Any,
        card: str = "digital",
        sigma: float | None = None,
        chip: int = 0,
        seed: int = 0,
        adapter: str | None = None,
        dtype: str = "float32",
        in_place: bool = False,
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        from cimsim.adapters.lora import load_adapter
        from cimsim.eval.models import load_model

        loaded = pretrained if not isinstance(pretrained, str) else None
        if loaded is None:
            loaded = load_model(str(pretrained), device=device or "cpu", dtype=dtype)
            if adapter:
                load_adapter(loaded.model, Path(adapter))
        if loaded.kind != "causal":
            raise CimsimError(f"lm-eval needs a causal LM; '{loaded.name}' is an encoder")
        self.loaded = loaded
        self.chip_record: dict[str, Any] = {"card": "digital"}
        if card != "digital":
            self.program(card, sigma, int(chip), int(seed), bool(in_place))
        kwargs.pop("backend", None)
        tokenizer: Any = loaded.tokenizer
        if tokenizer.bos_token_id is None and tokenizer.eos_token_id is None:
            # lm-eval needs a token to condition an empty context on: the model's own BOS
            model: Any = loaded.model
            kwargs.setdefault("prefix_token_id", model.config.bos_token_id)
        super().__init__(
            pretrained=loaded.model, tokenizer=loaded.tokenizer, backend="causal", **kwargs
        )

    def program(
        self, card: str, sigma: float | None, chip: int, seed: int = 0, in_place: bool = False
    ) -> None:
        """Deploy chip ``chip`` of ``card`` at ``sigma``: the chip ``cimsim sweep`` evaluates
        at that sigma (:func:`cimsim.runs.sweep.chip_seed`)."""
        from cimsim.runs.sweep import program_chip

        self.chip_record = program_chip(self.loaded.model, card, sigma, chip, seed, in_place)
