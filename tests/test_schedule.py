"""The one warm-up + cosine schedule, shared by the codec trainer and the LM trainer.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_schedule.py -q
"""

from __future__ import annotations

import math

import pytest

from stages.train.schedule import warmup_cosine


def codec_schedule_before_the_merge(warmup: int, total: int):
    """The codec trainer's own copy, as it was: the merged schedule must give its every lr bit for bit."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


@pytest.mark.parametrize("warmup, total", [(0, 8), (4, 24), (100, 2600), (100, 100), (7, 3), (1, 1)])
def test_the_codec_gets_the_learning_rates_of_its_former_schedule(warmup, total):
    merged, former = warmup_cosine(warmup, total, min_ratio=0.0), codec_schedule_before_the_merge(warmup, total)
    for step in range(total):  # the codec trains steps 0 .. total - 1
        assert merged(step) == former(step), step


def test_warm_up_then_cosine_down_to_the_floor():
    f = warmup_cosine(50, 600, 0.1)
    assert f(0) == 1 / 50 and f(49) == 1.0 and f(50) == 1.0
    assert f(325) == pytest.approx(0.55) and f(600) == pytest.approx(0.1) and f(10_000) == 0.1
    assert all(f(s) >= f(s + 1) for s in range(50, 700))


def test_a_token_budget_decays_by_the_share_spent_and_ends_at_the_first_limit():
    spent = [0.0]
    f = warmup_cosine(10, None, 0.1, budget_spent=lambda: spent[0])
    assert f(5) == 6 / 10                       # warm-up counts steps
    spent[0] = 0.5
    assert f(400) == pytest.approx(0.55)        # half the budget: half the cosine, whatever the step
    spent[0] = 1.2
    assert f(400) == 0.1
    both = warmup_cosine(10, 110, 0.1, budget_spent=lambda: 0.25)
    assert both(60) == pytest.approx(warmup_cosine(10, 110, 0.1)(60))   # steps further on than tokens
    assert both(20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_a_token_budget_lr_stays_continuous_when_the_tokens_per_step_change():
    """A resume with half the processes trains half the tokens a step: the lr goes on where it was."""
    budget, tokens, lrs = 10_000, [0], []
    f = warmup_cosine(5, None, 0.1, budget_spent=lambda: tokens[0] / budget)
    for step in range(200):
        lrs.append(f(step))
        tokens[0] += 100 if step < 40 else 50
    # the step after the change moves the lr by half the step before it (half the tokens), never by a jump
    assert abs(lrs[41] - lrs[40]) == pytest.approx(abs(lrs[40] - lrs[39]) / 2, rel=0.05)
    assert lrs[-1] == pytest.approx(0.1) and tokens[0] >= budget
