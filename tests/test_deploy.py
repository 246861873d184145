"""Deployment onto tiles: noise off is digital, chips are seeded, only base linears go analog."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cimsim.adapters.lora import LoraConfig, LoraLinear, add_lora
from cimsim.chip.deploy import (
    AnalogLinear,
    analog_layers,
    attach_tiles,
    count_analog_weights,
    deploy,
    deployed,
    undeploy,
)
from cimsim.eval.models import load_model
from cimsim.noise_models import get_noise_model


@pytest.fixture
def bert(tiny_bert_dir: Path):
    return load_model(str(tiny_bert_dir))


def _inputs(loaded) -> dict[str, torch.Tensor]:
    return loaded.tokenizer(
        ["the match ended in a draw", "shares fell sharply on monday"],
        padding=True,
        return_tensors="pt",
    )


def _hidden(loaded) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(**_inputs(loaded)).last_hidden_state


def test_every_block_linear_goes_analog_and_pooler_stays_digital(bert) -> None:
    tiles = attach_tiles(bert.model)
    names = {n for n, m in bert.model.named_modules() if isinstance(m, AnalogLinear)}
    # 2 layers x (q, k, v, attention out, intermediate, output) = 12 tiles.
    assert len(tiles) == 12
    assert not any("pooler" in n for n in names)
    assert count_analog_weights(bert.model) == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert attach_tiles(bert.model) == tiles  # idempotent: no tile inside a tile


@pytest.mark.parametrize("noise_model", ["channel", "tensor", "multiplicative", "pcm"])
def test_noise_off_equals_digital(bert, noise_model: str) -> None:
    digital = _hidden(bert)
    with deployed(bert.model, get_noise_model(noise_model, 0.0), seed=5):
        assert torch.allclose(_hidden(bert), digital, atol=1e-6)


def test_noise_on_changes_outputs_and_undeploy_restores(bert) -> None:
    digital = _hidden(bert)
    deploy(bert.model, get_noise_model("channel", 0.1), seed=1)
    noisy = _hidden(bert)
    assert (noisy - digital).abs().max() > 1e-3
    undeploy(bert.model)
    assert torch.equal(_hidden(bert), digital)
    assert all(tile.programmed_weight is None for tile in analog_layers(bert.model))


def test_same_seed_same_chip_and_reprogramming_reuses_buffers(bert) -> None:
    noise = get_noise_model("channel", 0.05)
    deploy(bert.model, noise, seed=7)
    first = _hidden(bert)
    buffers = [tile.programmed_weight.data_ptr() for tile in analog_layers(bert.model)]
    deploy(bert.model, noise, seed=8)
    other = _hidden(bert)
    deploy(bert.model, noise, seed=7)
    assert torch.equal(_hidden(bert), first)
    assert not torch.equal(other, first)
    assert [tile.programmed_weight.data_ptr() for tile in analog_layers(bert.model)] == buffers


def test_digital_weights_are_never_modified(bert) -> None:
    before = {k: v.clone() for k, v in bert.model.state_dict().items()}
    with deployed(bert.model, get_noise_model("channel", 0.2), seed=0):
        pass
    after = bert.model.state_dict()
    renamed = {k.replace(".base_layer", ""): v for k, v in after.items()}
    assert set(renamed) == set(before)
    assert all(torch.equal(before[k], renamed[k]) for k in before)


def test_lora_branches_stay_digital_and_base_goes_analog(bert) -> None:
    add_lora(bert.model, LoraConfig(r=4, target_modules=("query", "value")))
    attach_tiles(bert.model)
    for name, module in bert.model.named_modules():
        if isinstance(module, LoraLinear):
            assert isinstance(module.base_layer, AnalogLinear), name
            assert not isinstance(module.lora_A["default"], AnalogLinear)
    # Only base weights are tiles: 12 tiles, as without LoRA.
    assert len(analog_layers(bert.model)) == 12


def test_empirical_channel_noise_on_a_deployed_layer(bert) -> None:
    tile = attach_tiles(bert.model)[4]  # an intermediate (64 x 32) layer
    deploy(bert.model, get_noise_model("channel", 0.1), seed=0)
    errors = []
    for seed in range(200):
        deploy(bert.model, get_noise_model("channel", 0.1), seed=seed)
        target = tile.base_layer.weight
        errors.append((tile.programmed_weight - target) / target.abs().amax(dim=1, keepdim=True))
    assert torch.stack(errors).std().item() == pytest.approx(0.1, rel=0.03)


def test_a_parked_chip_comes_back_unchanged_and_its_buffers_are_reused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    noise = get_noise_model("channel", 0.1)
    x = torch.randn(5, 8)
    fresh = deploy(model, noise, seed=3)(x).clone()
    buffers = [layer.programmed_weight for layer in analog_layers(model)]
    undeploy(model, release=False)
    assert torch.equal(model(x), model[2].base_layer(torch.relu(model[0].base_layer(x))))
    assert torch.equal(deploy(model, noise, seed=3)(x), fresh)  # restored, not redrawn
    undeploy(model, release=False)
    other = deploy(model, noise, seed=4)(x).clone()
    assert not torch.equal(other, fresh)
    reused = [layer.programmed_weight for layer in analog_layers(model)]
    assert all(a is b for a, b in zip(buffers, reused, strict=True))  # no new allocation
    undeploy(model)  # released: the same seed is programmed again, from its generator
    assert torch.equal(deploy(model, noise, seed=4)(x), other)
    assert all(layer._parked is None for layer in analog_layers(model))


@pytest.mark.parametrize("card_name", ["channel", "multiplicative", "rram-macro"])
def test_an_in_place_chip_reads_as_the_buffered_one_and_undeploy_restores_every_weight(
    tiny_bert_dir: Path, card_name: str
) -> None:
    from transformers import BertModel

    from cimsim.chip.cards import load_card

    card = load_card(card_name)
    model = BertModel.from_pretrained(tiny_bert_dir).eval()
    clean = {name: value.clone() for name, value in model.state_dict().items()}
    x = torch.randint(1000, 2000, (2, 8))
    with torch.no_grad():
        for seed in (3, 4):  # a second chip replaces the first in place
            deploy(model, card.noise, seed, card.tile)
            buffered = model(x).last_hidden_state
            deploy(model, card.noise, seed, card.tile, in_place=True)
            assert torch.equal(model(x).last_hidden_state, buffered)
            if card.tile.is_ideal and card.noise.read_noise == 0:  # no chip buffer at all
                assert all(layer.programmed_weight is None for layer in analog_layers(model))
        undeploy(model)
    restored = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items()}
    assert restored.keys() == clean.keys()
    assert all(torch.equal(restored[name], value) for name, value in clean.items())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("card_name", ["channel", "rram-macro"])
def test_a_half_precision_chip_is_the_float32_draw_cast_to_the_models_dtype(
    tiny_bert_dir: Path, dtype: str, card_name: str
) -> None:
    from cimsim.chip.cards import load_card

    card = load_card(card_name).with_value("sigma", 0.05 if card_name == "channel" else 1.0)
    half = load_model(str(tiny_bert_dir), dtype=dtype)
    full = load_model(str(tiny_bert_dir))
    assert half.fingerprint != full.fingerprint  # adapters trained on it are cached apart
    deploy(half.model, card.noise, 7, card.tile)
    layers = analog_layers(half.model)
    if card.tile.is_ideal:
        for layer in layers:  # the chip costs the model's bytes per weight
            assert layer.programmed_weight is not None
            assert layer.programmed_weight.dtype == getattr(torch, dtype)
        # the same draws as a float32 model holding the half-precision weights, then cast
        for layer in attach_tiles(full.model):
            layer.base_layer.weight.data = layer.base_layer.weight.to(getattr(torch, dtype)).float()
        deploy(full.model, card.noise, 7, card.tile)
        for h, f in zip(layers, analog_layers(full.model), strict=True):
            assert torch.equal(h.programmed_weight, f.programmed_weight.to(h.weight.dtype))
        # noise statistics: (w' - w) / (sigma max|W[row,:]|) is standard normal
        w = torch.cat([layer.weight.float().flatten() for layer in layers])
        scale = torch.cat(
            [layer.weight.float().abs().amax(1, keepdim=True).expand_as(layer.weight).flatten()
             for layer in layers]
        )  # fmt: skip
        programmed = torch.cat([layer.programmed_weight.float().flatten() for layer in layers])
        z = (programmed - w) / (0.05 * scale)
        assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.03
    x = half.tokenizer(["a short text"], return_tensors="pt")
    with torch.no_grad():
        out = half.model(**x).last_hidden_state
    assert out.dtype == getattr(torch, dtype) and torch.isfinite(out).all()
    undeploy(half.model)
