"""The optimizer and scheduler groups: every option builds and steps, the task presets compose
to their tuned values, and the warmup schedule rises, anneals and resumes from its state."""
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seqkit.schedules import warmup_cosine
from seqkit.train import CONFIGS

OPTIMIZERS = sorted(p.stem for p in (CONFIGS / "optimizer").glob("*.yaml"))
SCHEDULERS = sorted(p.stem for p in (CONFIGS / "scheduler").glob("*.yaml"))
# each preset's learning rate, plateau patience and mode as its own block held them before the
# groups (commit 50bfb44); everything else was Adam's defaults with fused=true, factor 0.5
TUNED = {"lm": (0.002, 1, "min"), "music": (0.003, 3, "min"), "ner": (0.002, 2, "max"),
         "sentiment": (0.001, 1, "max"), "summarization": (0.001, 1, "max"),
         "translation": (0.001, 1, "max")}
PRESETS = [f"task={p.stem}" for p in sorted((CONFIGS / "task").glob("*.yaml"))] + \
    [f"experiment={p.stem}" for p in sorted((CONFIGS / "experiment").glob("*.yaml"))]


def _compose(*overrides):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _build(module, params):
    optimizer = instantiate(module.optimizer)(params=params)
    scheduler = module.get("scheduler")
    return optimizer, scheduler and instantiate(scheduler)(optimizer=optimizer)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_and_schedule_builds_and_steps(optimizer, scheduler):
    cfg = _compose("task=ner", f"optimizer={optimizer}", f"scheduler={scheduler}")
    model = torch.nn.Linear(3, 1)
    start = [p.detach().clone() for p in model.parameters()]
    opt, sched = _build(cfg.module, model.parameters())
    assert opt.defaults["fused"]  # a fused update on the CPU too
    lrs = []
    for epoch in range(3):
        loss = model(torch.ones(4, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(loss.item())
        elif sched is not None:
            sched.step()
    assert all((p != s).any() for p, s in zip(model.parameters(), start))
    assert max(lrs) == pytest.approx(cfg.module.optimizer.lr)
    assert (len(set(lrs)) > 1) == (scheduler in ("cosine", "warmup"))


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_to_their_tuned_optimizer_and_schedule(preset):
    cfg = _compose(preset)
    lr, patience, mode = TUNED[cfg.task_name]
    assert mode == cfg.mode  # the scheduler follows the task's metric
    opt, sched = _build(cfg.module, [torch.nn.Parameter(torch.zeros(2))])
    want = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr, fused=True)
    assert type(opt) is torch.optim.Adam and opt.defaults == want.defaults
    assert type(sched) is torch.optim.lr_scheduler.ReduceLROnPlateau
    assert sched.state_dict() == torch.optim.lr_scheduler.ReduceLROnPlateau(
        want, mode=mode, factor=0.5, patience=patience).state_dict()


def test_a_presets_tuning_leaves_other_options_alone():
    """ner's plateau patience does not reach a cosine; its learning rate reaches any optimizer."""
    cfg = _compose("task=ner", "optimizer=sgd", "scheduler=cosine", "trainer.max_epochs=7")
    opt, sched = _build(cfg.module, [torch.nn.Parameter(torch.zeros(2))])
    assert type(opt) is torch.optim.SGD and opt.defaults["lr"] == 0.002
    assert type(sched) is torch.optim.lr_scheduler.CosineAnnealingLR and sched.T_max == 7


def _warmup(lr=1.0):
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    return optimizer, warmup_cosine(optimizer, warmup_epochs=2, max_epochs=6)


def _epochs(optimizer, scheduler, n):
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_rises_linearly_then_anneals_and_resumes_from_its_state():
    optimizer, scheduler = _warmup()
    lrs = _epochs(optimizer, scheduler, 7)
    cosine = [(1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)]  # T_max = 6 - 2 epochs
    assert lrs == pytest.approx([0.1, 0.55, *cosine])
    optimizer, scheduler = _warmup()
    _epochs(optimizer, scheduler, 3)
    resumed = _warmup(lr=0.5)  # what a checkpoint's states overwrite
    resumed[0].load_state_dict(optimizer.state_dict())
    resumed[1].load_state_dict(scheduler.state_dict())
    assert _epochs(*resumed, 4) == pytest.approx(lrs[3:])


def test_a_run_shorter_than_its_warmup_only_warms_up():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    assert _epochs(optimizer, warmup_cosine(optimizer, warmup_epochs=4, max_epochs=2), 2) == \
        pytest.approx([0.1, 0.325])
    with pytest.raises(ValueError, match="warmup_epochs"):
        warmup_cosine(optimizer, warmup_epochs=0, max_epochs=2)
