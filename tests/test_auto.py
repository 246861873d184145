"""auto-halora: the scalars follow AutoLoRa's rule from the ideal pass's accuracy, the learning
rate follows its checkpoints, every chosen value is logged, and with the rule off the method is
halora step for step."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from cimsim.adapters.auto import (
    MIN_WINDOW,
    AutoSchedule,
    TrainingWindow,
    autolora_weights,
    checkpoints,
    halve,
    share_weights,
    validation_sets,
    validation_steps,
    window_size,
)
from cimsim.adapters.lora import LoraConfig
from cimsim.adapters.train import TrainConfig, adapter_key, init_lora, task_batches, train_steps
from cimsim.chip.cards import load_card
from cimsim.cli import main
from cimsim.eval.models import load_model
from cimsim.eval.scoring import make_scorer
from cimsim.eval.tasks import load_task

LORA = LoraConfig(r=4, lora_alpha=8.0, target_modules=("query", "value"))
# 48 training examples in batches of 8: 6 steps an epoch, 12 in all
# a rate high enough that the validation stalls and the rule halves it (in both fixture runs)
CONFIG = TrainConfig(epochs=2, train_size=48, batch_size=8, noise_sigma=0.2, kl_scale=6.0, lr=0.3)


def test_the_scalars_follow_their_rules() -> None:
    assert autolora_weights(0.8) == pytest.approx((0.8, 4.8))
    assert autolora_weights(0.5, kl_scale=2.0) == (0.5, 1.0)
    assert share_weights(0.2, 0.8) == pytest.approx((0.375, 0.0))  # no KL term by default
    assert share_weights(0.2, 0.8, kl_scale=6.0) == pytest.approx((0.375, 2.25))
    assert share_weights(0.0, 0.5) == (0.5, 0.0)  # the noise causes all of the loss
    assert share_weights(0.3, 0.3) == (0.0, 0.0)
    assert share_weights(0.5, 0.4) == (0.0, 0.0)  # noise that helps earns no weight
    assert share_weights(0.0, 0.0) == (0.0, 0.0)
    window = TrainingWindow(2)
    assert window.add(3, 4, 1.0, 2.0) == (0.75, 1.0, 2.0)
    assert window.add(1, 4, 0.5, 1.0) == (0.5, 0.75, 1.5)
    # the first batch has left the window
    assert window.add(4, 8, 0.25, 0.5) == (pytest.approx(5 / 12), 0.375, 0.75)
    assert window_size(6) == 2 and window_size(1) == 1 and window_size(38) == 10


def test_the_learning_rate_checkpoints_are_autoloras_scaled() -> None:
    assert validation_steps(100) == [round(4 * k) for k in range(26)]
    assert validation_steps(12) == list(range(13))
    assert validation_steps(32, spacing=2) == list(range(0, 33, 2))  # every quarter epoch
    assert validation_steps(76, spacing=10) == [round(76 * k / 7) for k in range(8)]
    assert validation_steps(3, spacing=10) == [0, 3]
    # AutoLoRa's epochs 0, 16, 24, 28, 36, 40, 42, ..., 50 of 50 on 25 validations are
    # 0, 8, 12, 14, 18, 20, 21, ..., 25; a window holds at least 8 (AutoLoRa's two epochs at
    # four validations an epoch), none follows the last step
    assert checkpoints(25) == [0, 8, 18]
    assert checkpoints(50) == [0, 16, 24, 36, 44]
    assert checkpoints(12) == [0, 9]  # three epochs validated every quarter epoch
    assert checkpoints(8) == [0]  # two epochs: too short to judge, the rate stays
    assert checkpoints(25, min_window=4) == [0, 8, 12, 18, 22]
    assert checkpoints(8, min_window=4) == [0, 4]  # a floor of four judges two epochs once
    assert checkpoints(8, min_window=1) == [0, 3, 4, 6, 7]  # AutoLoRa's, scaled, and no floor
    assert halve([True, True, True, False]) is False  # 3 of 4 improved: at rho 0.75
    assert halve([True, False, True, False]) is True
    assert halve([False]) is True


@pytest.fixture(
    params=[(False, 4), (True, 4), (False, 1)], ids=["halve", "halve-and-restore", "no-floor"]
)
def trained(request, tiny_bert_dir: Path, topic_task_file: Path):
    """An auto-halora run on the tiny encoder (AutoLoRa's restores off and on; checkpoint
    windows of at least 4 validations, or of any length): the log, the scorer, what it trained
    on and the config."""
    restore, window = request.param
    config = replace(CONFIG, restore_best=restore, min_window=window)
    log, scorer, loaded, batches, card, first = _train(config, tiny_bert_dir, topic_task_file)
    return log, scorer, loaded, batches, card, first.values[0], config


def _train(config: TrainConfig, model_dir: Path, task_file: Path, method: str = "auto-halora"):
    """``method`` trained from a fresh tiny encoder and branch: its log, the scorer, the model,
    the batches, the card, and the schedule as it stood before the first step."""
    task = load_task(str(task_file))
    loaded = load_model(str(model_dir))
    init_lora(loaded.model, LORA, seed=0)
    scorer = make_scorer(loaded, max_length=16)
    batches = task_batches(task, config)
    card = load_card("channel")
    first = AutoSchedule(config, batches, scorer, loaded.model, card, _optimiser(scorer))
    log = train_steps(scorer, loaded.model, batches, config, method, card=card)
    return log, scorer, loaded, batches, card, first


def _decisions(frame: pd.DataFrame) -> tuple[list[float], pd.Index]:
    """From a training log alone: every validation value, the one before training first, and
    the steps after which the rate halved."""
    values = [frame["start_validation"].iloc[0], *frame["validation"].dropna().tolist()]
    halved = frame.index[frame.get("halved", pd.Series(0.0, index=frame.index)) == 1.0]
    return values, halved


def _optimiser(scorer) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad])


def test_every_step_logs_the_rules_inputs_and_choices_by_its_formula(trained) -> None:
    log = pd.DataFrame(trained[0])
    assert len(log) == 12
    size = window_size(6)
    for step in range(len(log)):
        recent = log.iloc[max(0, step - size + 1) : step + 1]
        accuracy = recent["ideal_correct"].sum() / recent["batch"].sum()
        row = log.iloc[step]
        assert row["window_accuracy"] == pytest.approx(accuracy)
        ideal, noisy = recent["ideal"].mean(), recent["noisy"].mean()
        assert row["window_ideal"] == pytest.approx(ideal)
        assert row["window_noisy"] == pytest.approx(noisy)
        assert row["lam"] == pytest.approx(max(0.0, noisy - ideal) / (2 * noisy))
        assert row["kl_weight"] == pytest.approx(6 * row["lam"])
        expected = (1 - row["lam"]) * row["ideal"] + row["lam"] * row["noisy"]
        if row["kl_weight"] > 0:  # a KL term only when it has weight
            expected += row["kl_weight"] * row["kl"]
        expected += CONFIG.mu * row["spectral"]
        assert row["loss"] == pytest.approx(expected, rel=1e-5)
    assert (log["kl_weight"] > 0).any() and (log["kl"].notna() == (log["kl_weight"] > 0)).all()
    assert log["lr"].notna().all() and log["lr"].iloc[0] == CONFIG.lr
    # every quarter epoch (2 steps): 6 validations, after steps 2, 4, ..., 12
    assert log.index[log["validation"].notna()].tolist() == [1, 3, 5, 7, 9, 11]


def test_the_rate_halves_only_at_checkpoints_and_training_ends_where_the_rule_says(
    trained,
) -> None:
    log, scorer, loaded, batches, card, first, config = trained
    frame = pd.DataFrame(log)
    # validation k follows step 2k; marks [0, 4], or [0, 2, 3, 4, 5] without the floor
    marks = checkpoints(6, config.min_window)
    values, halved = _decisions(frame)
    assert len(halved) > 0
    assert set((halved + 1) // 2) <= set(marks[1:]) and ((halved + 1) % 2 == 0).all()
    # the log alone replays every decision: the validation before training is on its first row
    assert frame["start_validation"].iloc[0] == pytest.approx(first)
    assert frame["start_validation"].iloc[1:].isna().all()
    for mark, previous in zip(marks[1:], marks, strict=False):
        improved = [values[k] < values[k - 1] for k in range(previous + 1, mark + 1)]
        assert (2 * mark - 1 in halved) == halve(improved)
    for step in halved:  # the next step runs at half the rate
        if step + 1 < len(frame):
            assert frame["lr"].iloc[step + 1] == pytest.approx(frame["lr"].iloc[step] / 2)
    again = AutoSchedule(config, batches, scorer, loaded.model, card, _optimiser(scorer))
    # the last validation follows the last step: without restores training ends there
    assert again.values[0] == pytest.approx(min(values) if config.restore_best else values[-1])


def test_the_default_floor_judges_no_two_epoch_run_and_judges_a_longer_one(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    # two epochs of 6 steps: 6 validations, no window of eight, so the run is the rule-off run
    # weight for weight (the validations change no step)
    assert CONFIG.min_window == MIN_WINDOW == 8
    runs = []
    for config in (CONFIG, replace(CONFIG, auto_lr=False)):
        log, _, loaded, *_ = _train(config, tiny_bert_dir, topic_task_file)
        state = {k: v for k, v in loaded.model.state_dict().items() if "lora_" in k}
        runs.append((log, state))
    (validated, state), (kept, kept_state) = runs
    assert [s["lr"] for s in validated] == [CONFIG.lr] * 12 and "validation" in validated[-1]
    assert [s["loss"] for s in validated] == [s["loss"] for s in kept]
    assert all(torch.equal(value, kept_state[key]) for key, value in state.items())
    # four epochs: 12 validations, judged once, at the ninth (AutoLoRa's epoch 36 of 50), on
    # the nine values since the start; validation k follows step 2k
    longer = replace(CONFIG, epochs=4)
    log, *_ = _train(longer, tiny_bert_dir, topic_task_file)
    frame = pd.DataFrame(log)
    assert checkpoints(12) == [0, 9]
    values, halved = _decisions(frame)
    assert len(values) == 13
    improved = [values[k] < values[k - 1] for k in range(1, 10)]
    assert halved.tolist() == ([17] if halve(improved) else [])
    assert frame["lr"].iloc[-1] == CONFIG.lr / (2 if halve(improved) else 1)


@pytest.mark.parametrize("auto_lr", [False, True], ids=["rate-kept", "validated"])
def test_with_the_rule_and_the_split_off_auto_halora_is_halora_step_for_step(
    auto_lr: bool, tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    # validated: three steps, validated after each, too few validations for a checkpoint, so
    # the rate stays and the run is halora's validations and all (no chip, mode or random
    # state left behind)
    off = TrainConfig(epochs=1, train_size=24, batch_size=8, lam=0.3, noise_sigma=0.2,
                      split_rank=False, auto_scalars=False, auto_lr=auto_lr)  # fmt: skip
    assert checkpoints(len(validation_steps(3)) - 1) == [0]
    runs = {}
    for method in ("halora", "auto-halora"):
        log, _, loaded, *_ = _train(off, tiny_bert_dir, topic_task_file, method)
        state = {k: v for k, v in loaded.model.state_dict().items() if "lora_" in k}
        runs[method] = ([step["loss"] for step in log], state, log)
    assert ("validation" in runs["auto-halora"][2][-1]) == auto_lr
    assert runs["auto-halora"][0] == runs["halora"][0]
    for key, value in runs["halora"][1].items():
        assert torch.equal(value, runs["auto-halora"][1][key]), key


def test_the_held_out_share_reads_the_last_validation(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    # the rate kept: the validation runs for lam alone, every quarter epoch
    config = replace(CONFIG, lam_source="held-out", auto_lr=False, lr=1e-2)
    steps, *_, before = _train(config, tiny_bert_dir, topic_task_file)
    log = pd.DataFrame(steps)
    assert log.index[log["validation"].notna()].tolist() == [1, 3, 5, 7, 9, 11]
    assert (log["lr"] == config.lr).all() and "halved" not in log
    validated = log[["validation_ideal", "validation_noisy"]].dropna()
    assert log["validation"].dropna().tolist() == pytest.approx(validated.mean(axis=1).tolist())
    # before the first validation after training starts, the one before training
    start = log[["start_validation_ideal", "start_validation_noisy"]].iloc[0]
    assert tuple(start) == pytest.approx(before.held_out_losses)
    inputs = [tuple(start)] * 2
    for step in validated.index[:-1]:
        inputs += [tuple(validated.loc[step])] * 2
    logged = log[["held_out_ideal", "held_out_noisy"]].to_numpy().ravel().tolist()
    assert logged == pytest.approx([value for pair in inputs for value in pair])
    for (ideal, noisy), lam, kl in zip(inputs, log["lam"], log["kl_weight"], strict=True):
        assert (lam, kl) == pytest.approx(share_weights(ideal, noisy, kl_scale=6.0))
    assert log["lam"].nunique() > 1  # the validations moved it


def test_validation_uses_training_examples_no_batch_holds(topic_task_file: Path) -> None:
    task = load_task(str(topic_task_file))
    batches = task_batches(task, TrainConfig(epochs=1, train_size=24, batch_size=8))
    used = {t for _, texts, _ in batches for t in texts}
    [(same, split)] = validation_sets(batches, seed=0)
    assert same is task and len(split) == len(task.train) - 24
    assert not used & set(split.texts)
    everything = task_batches(task, TrainConfig(epochs=1, train_size=None, batch_size=8))
    [(_, fallback)] = validation_sets(everything, seed=0)  # nothing to spare: its own examples
    assert set(fallback.texts) <= {t for _, texts, _ in everything for t in texts}


def test_the_rule_shapes_the_adapter_key(tiny_bert_dir: Path, topic_task_file: Path) -> None:
    loaded, task = load_model(str(tiny_bert_dir)), load_task(str(topic_task_file))

    def key(method: str, **changes) -> str:
        return adapter_key(loaded, task, LORA, TrainConfig(**changes), {"max_length": 16}, method)

    assert key("auto-halora") != key("halora")
    assert key("auto-halora") == key("auto-halora", lam=0.9)  # the rule sets lam
    assert key("auto-halora", auto_scalars=False) != key("auto-halora", auto_scalars=False, lam=0.9)
    assert key("auto-halora") != key("auto-halora", kl_scale=3.0)
    assert key("auto-halora") != key("auto-halora", auto_lr=False)
    assert key("auto-halora") != key("auto-halora", min_window=1)  # halves elsewhere
    assert key("auto-halora", auto_lr=False) == key("auto-halora", auto_lr=False, min_window=1)
    assert key("auto-halora") != key("auto-halora", split_rank=True)
    assert key("auto-halora") != key("auto-halora", protect_digital=True)
    assert key("halora") == key("halora", protect_digital=True)  # auto-halora's alone
    assert key("auto-halora") != key("auto-halora", noisy_target="ideal")
    assert key("auto-halora") != key("auto-halora", average_tail=True)
    on = {"average_tail": True}
    assert key("auto-halora", **on) != key("auto-halora", **on, average_start=0.75)
    assert key("auto-halora") == key("auto-halora", average_start=0.75)  # no average, no start
    assert key("auto-halora") != key("auto-halora", lam_rule="accuracy")
    assert key("auto-halora") != key("auto-halora", lam_source="held-out")
    held_out = {"lam_rule": "accuracy", "lam_source": "held-out"}  # read by the share rule alone
    assert key("auto-halora", lam_rule="accuracy") == key("auto-halora", **held_out)
    assert key("lora") == key("lora", kl_scale=3.0, auto_lr=False)  # unused by plain lora
    with pytest.raises(ValueError, match="kl_scale"):
        TrainConfig(kl_scale=math.nan)
    with pytest.raises(ValueError, match="lam_rule"):
        TrainConfig(lam_rule="gap")
    with pytest.raises(ValueError, match="min_window"):
        TrainConfig(min_window=0)


def test_train_and_sweep_take_auto_halora(
    tiny_bert_dir: Path, topic_task_file: Path, tmp_path: Path
) -> None:
    cache = str(tmp_path / "cache")
    common = ["--model", str(tiny_bert_dir), "--task", str(topic_task_file)]
    common += ["--cache-dir", cache, "--train-noise", "0.2"]
    out = tmp_path / "train"
    assert main(["train", "--out", str(out), "--method", "auto-halora", *common]) == 0
    log = pd.read_csv(out / "training_log.csv")
    assert {"lam", "kl_weight", "lr", "validation", "window_accuracy"} <= set(log.columns)
    assert (out / "loss.png").stat().st_size > 0
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--method", "auto-halora", "--noise", "0.1", "--seeds", "1"]
    assert main([*argv, *common, "--out", str(sweep), "--epochs", "1"]) == 0
    assert pd.read_csv(sweep / "training_log.csv")["lam"].notna().all()
    assert (sweep / "loss.png").is_file()


def test_routing_trains_one_half_of_the_rank_and_changes_no_output(tiny_bert_dir: Path) -> None:
    from cimsim.adapters.lora import lora_layers, routed, split_rank

    loaded = load_model(str(tiny_bert_dir))
    init_lora(loaded.model, LoraConfig(r=5, target_modules=("query",)), seed=0)
    for layer in lora_layers(loaded.model).values():  # B = 0 at init: give B a value
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    inputs = loaded.tokenizer(["a short text"], return_tensors="pt")
    grads, outputs = {}, []
    for half in (None, 0, 1):
        loaded.model.zero_grad()
        if half is None:
            out = loaded.model(**inputs).last_hidden_state
        else:
            with routed(loaded.model, half):
                out = loaded.model(**inputs).last_hidden_state
        out.square().sum().backward()
        named = loaded.model.named_parameters()
        grads[half] = {n: p.grad.clone() for n, p in named if "lora_" in n}
        outputs.append(out.detach())
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    first = split_rank(5)
    assert first == 3
    for name, whole in grads[None].items():
        a = "lora_A" in name  # A: (r, d_in) rows are components; B: (d_out, r) columns
        zero_half = (lambda g: g[first:]) if a else (lambda g: g[:, first:])
        other_zero = (lambda g: g[:first]) if a else (lambda g: g[:, :first])
        assert not zero_half(grads[0][name]).any() and not other_zero(grads[1][name]).any()
        assert torch.allclose(grads[0][name] + grads[1][name], whole, atol=1e-6)
    assert all(not layer.routes for layer in lora_layers(loaded.model).values())


def test_the_accuracy_rule_is_autoloras_and_the_share_rule_reads_the_windows_losses() -> None:
    optimiser = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    batches = [None] * 8  # 8 steps an epoch: windows of 2 batches
    for rule, expected in (
        ("accuracy", [(0.75, 4.5), (0.5, 3.0)]),
        ("share", [(0.25, 1.5), (0.125, 0.75)]),
    ):
        # the held-out source is the share rule's: the accuracy rule reads no validation
        source = "held-out" if rule == "accuracy" else "batches"
        config = TrainConfig(
            epochs=1, lam_rule=rule, lam_source=source, kl_scale=6.0, auto_lr=False
        )
        schedule = AutoSchedule(config, batches, None, None, None, optimiser)  # type: ignore[arg-type]
        assert schedule.validate_at == []
        first = schedule.weights(3, 4, 0.5, 1.0)  # share: (1 - 0.5) / 2
        second = schedule.weights(1, 4, 1.0, 1.0)  # share over the window: (1 - 0.75) / 2
        assert first == pytest.approx(expected[0]) and second == pytest.approx(expected[1])


def test_protected_gradients_drop_the_noisy_gradients_part_against_the_ideal_one() -> None:
    from cimsim.adapters.objectives import protected_gradients

    ideal_dir, lam = torch.tensor([1.0, 0.0, 2.0]), 0.4
    for noisy_dir, conflict in ((torch.tensor([-1.0, 3.0, 0.0]), True),
                                (torch.tensor([1.0, 3.0, 0.0]), False)):  # fmt: skip
        p = torch.nn.Parameter(torch.zeros(3))
        cosine = protected_gradients([p], p @ ideal_dir, p @ noisy_dir, lam)
        dot = float(ideal_dir @ noisy_dir)
        assert cosine == pytest.approx(dot / float(ideal_dir.norm() * noisy_dir.norm()))
        along = dot / float(ideal_dir @ ideal_dir) if conflict else 0.0
        kept = noisy_dir - along * ideal_dir
        assert torch.allclose(p.grad, (1 - lam) * ideal_dir + lam * kept)
        # the step's slope on the ideal loss is at least the ideal part's own
        assert float(p.grad @ ideal_dir) >= (1 - lam) * float(ideal_dir @ ideal_dir) - 1e-6
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.ones(3)  # gradients already there are added to
    unused = torch.nn.Parameter(torch.zeros(2))  # reached by neither loss
    protected_gradients([p, unused], p @ ideal_dir, p.sum() * 0, 0.5)
    assert torch.allclose(p.grad, 1 + 0.5 * ideal_dir) and not unused.grad.any()


def test_protect_digital_writes_the_projected_gradients_of_a_step(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    from cimsim.adapters.objectives import objective_loss

    task = load_task(str(topic_task_file))
    config = replace(CONFIG, epochs=1, protect_digital=True, auto_lr=False)
    loaded = load_model(str(tiny_bert_dir))
    init_lora(loaded.model, LORA, seed=0)
    for name, p in loaded.model.named_parameters():  # B = 0 at init: give the branch a value
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    scorer = make_scorer(loaded, max_length=16)
    params = [p for p in scorer.parameters() if p.requires_grad]
    [(_, texts, labels)] = task_batches(task, config)[:1]
    card = load_card("channel").with_value("sigma", 3.0)
    conflicts = 0
    for step in range(8):  # the same batch on 8 training chips (noise large enough to conflict)
        common = dict(card=card, lam=0.3, mu=0.0, seed=0, step=step)
        grads = []
        for method in ("lora", "noise-aware"):  # each loss's own gradient
            loss, _ = objective_loss(method, scorer, loaded.model, texts, labels, task, **common)
            grads.append(torch.autograd.grad(loss, params))
        ideal, noisy = (torch.cat([g.flatten() for g in gs]) for gs in grads)
        scorer.zero_grad(set_to_none=True)
        loss, parts = objective_loss(
            "auto-halora", scorer, loaded.model, texts, labels, task, **common, protect=True
        )
        written = torch.cat([p.grad.flatten() for p in params])
        dot = float(ideal @ noisy)
        assert parts["cosine"] == pytest.approx(dot / float(ideal.norm() * noisy.norm()), rel=1e-4)
        along = min(0.0, dot) / float(ideal @ ideal)
        assert torch.allclose(written, 0.7 * ideal + 0.3 * (noisy - along * ideal), atol=1e-6)
        assert not loss.requires_grad  # no KL, no spectral term: nothing left to differentiate
        assert loss.item() == pytest.approx(0.7 * parts["ideal"] + 0.3 * parts["noisy"])
        conflicts += dot < 0
    assert 0 < conflicts < 8  # both branches of the rule ran
    # in a run: the rule, the KL term and the spectral penalty on top, the cosine logged each step
    log = pd.DataFrame(train_steps(scorer, loaded.model, task_batches(task, config), config,
                                   "auto-halora", card=card))  # fmt: skip
    assert log["cosine"].between(-1, 1).all() and len(log) == 6
    assert (log["kl_weight"] > 0).any() and log["spectral"].notna().all()


def test_the_consistency_target_trains_the_noisy_pass_towards_the_ideal_predictions(
    tiny_bert_dir: Path, topic_task_file: Path
) -> None:
    task = load_task(str(topic_task_file))
    config = replace(CONFIG, epochs=1, kl_scale=0.0, auto_lr=False, noisy_target="ideal")
    loaded = load_model(str(tiny_bert_dir))
    init_lora(loaded.model, LORA, seed=0)
    scorer = make_scorer(loaded, max_length=16)
    log = pd.DataFrame(train_steps(scorer, loaded.model, task_batches(task, config), config,
                                   "auto-halora"))  # fmt: skip
    assert log["kl"].notna().all() and (log["kl_weight"] == 0).all()
    # the rule reads the cross-entropies; the noisy pass's term is the KL to the ideal one
    assert log["lam"].iloc[0] == pytest.approx(share_weights(log["ideal"][0], log["noisy"][0])[0])
    expected = (1 - log["lam"]) * log["ideal"] + log["lam"] * log["kl"]
    assert log["loss"].to_numpy() == pytest.approx(
        (expected + config.mu * log["spectral"]).to_numpy(), rel=1e-5
    )
    with pytest.raises(ValueError, match="noisy_target"):
        TrainConfig(noisy_target="chip")


@pytest.mark.parametrize("start, first", [(0.5, 6), (0.75, 9)])
def test_average_tail_ends_on_the_mean_of_the_weights_from_its_start(
    tiny_bert_dir: Path, topic_task_file: Path, start: float, first: int
) -> None:
    task = load_task(str(topic_task_file))
    # 12 steps: the mean of the weights after steps 7..12 (0.5) or 10..12 (0.75)
    config = replace(CONFIG, average_tail=True, average_start=start)
    loaded = load_model(str(tiny_bert_dir))
    init_lora(loaded.model, LORA, seed=0)
    scorer = make_scorer(loaded, max_length=16)
    params = {n: p for n, p in scorer.named_parameters() if p.requires_grad}
    seen: list[dict[str, torch.Tensor]] = []

    def keep() -> None:
        seen.append({n: p.detach().clone() for n, p in params.items()})

    log = train_steps(scorer, loaded.model, task_batches(task, config), config, "auto-halora",
                      after_step=keep)  # fmt: skip
    counts = [None] * first + list(range(1, 13 - first))
    assert [step.get("averaged") for step in log] == counts
    for name, p in params.items():
        mean = torch.stack([weights[name] for weights in seen[first:]]).mean(0)
        assert torch.allclose(p, mean, atol=1e-6), name
        assert not torch.allclose(p, seen[-1][name])  # not the last weights
    with pytest.raises(ValueError, match="average_tail"):
        TrainConfig(average_tail=True, restore_best=True)
    with pytest.raises(ValueError, match="average_start"):
        TrainConfig(average_start=1.0)
