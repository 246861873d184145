"""LoRA branches: a fresh branch is a no-op, and adapters round-trip with peft both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from cimsim.adapters.lora import (
    LoraConfig,
    add_lora,
    disable_adapters,
    load_adapter,
    lora_layers,
    save_adapter,
)
from cimsim.core.errors import CimsimError

CONFIG = LoraConfig(r=4, lora_alpha=8.0, target_modules=("query", "value"))


def _inputs(directory: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    return tokenizer(
        ["a goal in the last minute", "the bank raised rates"], padding=True, return_tensors="pt"
    )


def _hidden(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def _randomise_branches(model) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.normal_(0, 0.5)


def test_a_fresh_branch_changes_nothing(tiny_bert_dir: Path) -> None:
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    inputs = _inputs(tiny_bert_dir)
    before = _hidden(model, inputs)
    names = add_lora(model, CONFIG)
    assert len(names) == 4  # query and value in 2 layers
    assert torch.equal(_hidden(model, inputs), before)


def test_only_branches_train(tiny_bert_dir: Path) -> None:
    model = AutoModel.from_pretrained(tiny_bert_dir)
    add_lora(model, CONFIG)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_disable_adapters_gives_the_base_model(tiny_bert_dir: Path) -> None:
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    inputs = _inputs(tiny_bert_dir)
    base = _hidden(model, inputs)
    add_lora(model, CONFIG)
    _randomise_branches(model)
    assert not torch.allclose(_hidden(model, inputs), base)
    with disable_adapters(model):
        assert torch.equal(_hidden(model, inputs), base)


def test_peft_loads_a_cimsim_adapter_and_gives_the_same_outputs(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    add_lora(model, CONFIG)
    _randomise_branches(model)
    inputs = _inputs(tiny_bert_dir)
    ours = _hidden(model, inputs)
    save_adapter(model, tmp_path / "adapter", CONFIG, base_model_name_or_path=str(tiny_bert_dir))

    base = AutoModel.from_pretrained(tiny_bert_dir).eval()
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    theirs = _hidden(peft_model, inputs)
    with peft_model.disable_adapter():
        assert not torch.allclose(_hidden(peft_model, inputs), theirs, atol=1e-3)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_a_saved_adapter_is_readable_as_the_umask_allows(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """safetensors creates its file 0600: a results folder shared with a group could not be read."""
    import os
    import stat

    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    add_lora(model, CONFIG)
    umask = os.umask(0o022)
    try:
        path = save_adapter(model, tmp_path / "adapter", CONFIG, base_model_name_or_path="tiny")
    finally:
        os.umask(umask)
    for saved in path.iterdir():
        assert stat.S_IMODE(saved.stat().st_mode) == 0o644, saved.name


def test_cimsim_loads_a_peft_adapter_and_gives_the_same_outputs(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModel.from_pretrained(tiny_bert_dir),
        PeftLoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]),
    ).eval()
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    inputs = _inputs(tiny_bert_dir)
    theirs = _hidden(peft_model, inputs)
    peft_model.save_pretrained(tmp_path / "peft")

    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    config = load_adapter(model, tmp_path / "peft")
    assert (config.r, config.lora_alpha, set(config.target_modules)) == (4, 8.0, {"query", "value"})
    assert torch.allclose(_hidden(model, inputs), theirs, atol=1e-5)


def test_adapter_that_does_not_fit_is_a_user_error(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = AutoModel.from_pretrained(tiny_bert_dir)
    add_lora(model, LoraConfig(r=4, target_modules=("query",)))
    save_adapter(
        model,
        tmp_path / "a",
        LoraConfig(r=4, target_modules=("query",)),
        base_model_name_or_path="x",
    )
    (tmp_path / "a" / "adapter_config.json").write_text(
        (tmp_path / "a" / "adapter_config.json").read_text().replace('"query"', '"q_proj"')
    )
    with pytest.raises(CimsimError, match="does not fit"):
        load_adapter(AutoModel.from_pretrained(tiny_bert_dir), tmp_path / "a")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no adapter_config.json"),
        ({"adapter_config.json": "{not json"}, "cannot read"),
        ({"adapter_config.json": '{"peft_type": "IA3"}'}, "not a LoRA adapter"),
        (
            {
                "adapter_config.json": '{"peft_type": "LORA", "r": 4, "lora_alpha": 8, '
                '"target_modules": ["query"]}',
                "adapter_model.safetensors": "garbage",
            },
            "corrupt adapter_model.safetensors",
        ),
    ],
)
def test_broken_adapter_dirs_are_user_errors(
    tiny_bert_dir: Path, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(CimsimError, match=message):
        load_adapter(AutoModel.from_pretrained(tiny_bert_dir), tmp_path)


def test_rank_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rank"):
        LoraConfig(r=0)
