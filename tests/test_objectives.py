"""Training objectives: the spectral term, the noisy base per step, halora's limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cimsim.adapters.lora import LoraConfig, lora_layers
from cimsim.adapters.objectives import objective_loss, spectral_penalty, training_chip_seed
from cimsim.adapters.train import TrainConfig, adapter_key, init_lora, train_lora
from cimsim.chip.cards import load_card
from cimsim.eval.models import load_model
from cimsim.eval.scoring import make_scorer
from cimsim.eval.tasks import load_task

LORA = LoraConfig(r=4, lora_alpha=8.0, target_modules=("query", "value"))
SCORER = {"max_length": 16}  # a scorer's key_fields()


@pytest.fixture
def setup(tiny_bert_dir: Path, topic_task_file: Path):
    loaded = load_model(str(tiny_bert_dir))
    init_lora(loaded.model, LORA, seed=0)
    with torch.no_grad():  # B = 0 at init: give the branches something to penalise
        for layer in lora_layers(loaded.model).values():
            layer.lora_B["default"].weight.normal_(0, 0.3, generator=torch.Generator())
    return loaded, make_scorer(loaded, max_length=16), load_task(str(topic_task_file))


def test_spectral_penalty_matches_a_direct_svd(setup) -> None:
    loaded, _, _ = setup
    expected = 0.0
    for layer in lora_layers(loaded.model).values():
        a = layer.lora_A["default"].weight.detach().double()
        b = layer.lora_B["default"].weight.detach().double()
        # ||A A^T||_2 = sigma_max(A)^2 and ||B^T B||_2 = sigma_max(B)^2.
        expected += torch.linalg.svdvals(a)[0] ** 2 + torch.linalg.svdvals(b)[0] ** 2
    penalty = spectral_penalty(loaded.model)
    assert penalty.item() == pytest.approx(float(expected), rel=1e-5)
    penalty.backward()  # differentiable, also where B is still zero elsewhere
    grads = [p.grad for n, p in loaded.model.named_parameters() if "lora_" in n]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_spectral_penalty_has_finite_gradients_at_init(tiny_bert_dir: Path) -> None:
    loaded = load_model(str(tiny_bert_dir))
    init_lora(loaded.model, LORA, seed=0)  # B = 0: every B^T B is the zero matrix
    spectral_penalty(loaded.model).backward()
    assert all(
        torch.isfinite(p.grad).all() for n, p in loaded.model.named_parameters() if "lora_" in n
    )


def _loss(setup, method: str, step: int = 0, **kwargs):
    loaded, scorer, task = setup
    texts, labels = list(task.train.texts[:6]), torch.tensor(task.train.labels[:6])
    card = load_card("channel").with_value("sigma", 0.2)
    options = {"card": card, "lam": 0.5, "mu": 1e-3, "seed": 0, "step": step, **kwargs}
    return objective_loss(method, scorer, loaded.model, texts, labels, task, **options)


def test_halora_with_lam_and_mu_zero_is_plain_lora(setup) -> None:
    lora, _ = _loss(setup, "lora")
    halora, parts = _loss(setup, "halora", lam=0.0, mu=0.0)
    assert halora.item() == pytest.approx(lora.item(), abs=1e-7)
    assert set(parts) == {"ideal", "noisy"}


def test_halora_combines_its_parts(setup) -> None:
    total, parts = _loss(setup, "halora", lam=0.3, mu=0.01)
    expected = 0.7 * parts["ideal"] + 0.3 * parts["noisy"] + 0.01 * parts["spectral"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert parts["noisy"] != pytest.approx(parts["ideal"])  # sigma 0.2 changes the loss


def test_noise_is_fresh_every_step_and_reproducible(setup) -> None:
    first, _ = _loss(setup, "noise-aware", step=0)
    again, _ = _loss(setup, "noise-aware", step=0)
    other, _ = _loss(setup, "noise-aware", step=1)
    assert first.item() == again.item()
    assert first.item() != other.item()
    assert training_chip_seed(0, 0) != training_chip_seed(0, 1)
    lora_after, _ = _loss(setup, "lora")  # the noisy pass leaves the base digital
    lora_before, _ = _loss(setup, "lora")
    assert lora_after.item() == lora_before.item()


def test_training_with_lam_and_mu_zero_equals_plain_lora(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    task = load_task(str(topic_task_file))
    config = TrainConfig(epochs=1, train_size=24, batch_size=8, lam=0.0, mu=0.0)
    states = {}
    for method in ("lora", "halora"):
        loaded = load_model(str(tiny_bert_dir))
        init_lora(loaded.model, LORA, seed=0)
        scorer = make_scorer(loaded, max_length=16)
        log = train_lora(scorer, loaded.model, task, config, method)
        assert len(log) == 3 and all("ideal" in step for step in log)
        states[method] = {k: v for k, v in loaded.model.state_dict().items() if "lora_" in k}
    for key, value in states["lora"].items():
        assert torch.allclose(value, states["halora"][key], atol=1e-6), key


def test_adapter_key_separates_methods_and_ignores_unused_fields(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    loaded, task = load_model(str(tiny_bert_dir)), load_task(str(topic_task_file))
    base = TrainConfig()

    def key(method: str, **changes) -> str:
        return adapter_key(loaded, task, LORA, TrainConfig(**changes), SCORER, method)

    assert key("lora") == key("lora", lam=0.9)  # lam does not shape plain lora
    assert key("lora") != key("halora") != key("noise-aware")
    assert key("halora") != key("halora", lam=0.9)
    assert key("noise-aware") == key("noise-aware", mu=0.5)
    assert base.objective_fields("lora") == {}


def test_every_objective_field_shapes_some_method_and_no_other_field_is_left_out() -> None:
    # A field either shapes every method's key (base) or shows in the
    # objective fields of some method: none is dropped from every key.
    values = {
        "lam": 0.3, "mu": 0.5, "noise_card": "pcm", "noise_sigma": 0.02, "reprogram_every": 2,
        "kl_scale": 6.0, "split_rank": True, "auto_scalars": False, "lam_rule": "accuracy",
        "lam_source": "held-out", "auto_lr": True, "min_window": 2, "restore_best": True,
        "average_tail": False, "average_start": 0.25, "noisy_target": "ideal",
        "protect_digital": True,
    }  # fmt: skip
    config = TrainConfig(**values)
    shaped = set(config.base())
    for method in ("lora", "noise-aware", "halora", "auto-halora"):
        shaped |= set(config.objective_fields(method))
    shaped |= set(dataclasses.replace(config, auto_scalars=True).objective_fields("auto-halora"))
    shared = dataclasses.replace(config, auto_scalars=True, lam_rule="share")
    shaped |= set(shared.objective_fields("auto-halora"))
    averaged = dataclasses.replace(config, average_tail=True, restore_best=False)
    shaped |= set(averaged.objective_fields("auto-halora"))
    assert shaped == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(config.base()).isdisjoint(values)


def test_reprogram_every_keeps_one_chip_for_that_many_steps(setup) -> None:
    losses = [_loss(setup, "noise-aware", step=k, reprogram_every=2)[0].item() for k in range(4)]
    fresh = [_loss(setup, "noise-aware", step=k)[0].item() for k in (0, 2)]
    assert losses[0] == losses[1] == fresh[0]  # steps 0 and 1: the chip of step 0
    assert losses[2] == losses[3] == fresh[1]  # steps 2 and 3: the chip of step 2
    assert losses[0] != losses[2]
    with pytest.raises(ValueError, match="reprogram_every"):
        TrainConfig(reprogram_every=0)


def test_reprogram_every_one_keeps_earlier_adapter_keys(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    loaded, task = load_model(str(tiny_bert_dir)), load_task(str(topic_task_file))
    assert "reprogram_every" not in TrainConfig().objective_fields("halora")
    assert "reprogram_every" not in TrainConfig(reprogram_every=4).base()
    keys = {
        adapter_key(loaded, task, LORA, TrainConfig(reprogram_every=n), SCORER, "halora")
        for n in (1, 4)
    }
    assert len(keys) == 2


def test_training_with_lora_dropout_does_not_depend_on_what_ran_before(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    task = load_task(str(topic_task_file))
    config = TrainConfig(epochs=1, train_size=24, batch_size=8)
    lora = LoraConfig(r=4, lora_alpha=8.0, target_modules=("query", "value"), lora_dropout=0.3)
    states = []
    for burn in (0, 1000):  # something else drew from torch's global generator in between
        torch.rand(burn)
        loaded = load_model(str(tiny_bert_dir))
        init_lora(loaded.model, lora, seed=0)
        train_lora(make_scorer(loaded, max_length=16), loaded.model, task, config)
        states.append({k: v for k, v in loaded.model.state_dict().items() if "lora_" in k})
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
