"""`scripts/alignment_trace.py`'s head-mean path tells reading in order from the position shortcut."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "alignment_trace.py"
spec = importlib.util.spec_from_file_location("alignment_trace", SCRIPT)
alignment_trace = importlib.util.module_from_spec(spec)
spec.loader.exec_module(alignment_trace)

N_TEXT, N_SPEECH = 10, 40


def one_hot_path(token_of_step: list[int]) -> torch.Tensor:
    path = torch.zeros(2, len(token_of_step), N_TEXT)                 # two heads that agree
    path[:, torch.arange(len(token_of_step)), torch.tensor(token_of_step)] = 1.0
    return path


def diagonal() -> torch.Tensor:
    return (torch.arange(N_SPEECH) + 0.5) / N_SPEECH


def test_reading_at_the_speech_pace_lies_on_the_diagonal():
    reading = [t * N_TEXT // N_SPEECH for t in range(N_SPEECH)]
    result = alignment_trace.head_mean_path(one_hot_path(reading), diagonal())
    assert result["path_forward"] == 1.0
    assert result["path_peak"] == 1.0
    assert result["path_argmax_distance"] < 0.1


def test_the_position_shortcut_is_forward_and_peaked_but_far_from_the_diagonal():
    hold_first = [0] * 22
    race = list(range(1, N_TEXT))                                     # one token a code
    shortcut = hold_first + race + [N_TEXT - 1] * (N_SPEECH - len(hold_first) - len(race))
    result = alignment_trace.head_mean_path(one_hot_path(shortcut), diagonal())
    assert result["path_forward"] == 1.0
    assert result["path_peak"] == 1.0
    assert result["path_argmax_distance"] > 0.2
    assert result["path_distance"] > 0.2


def test_heads_that_disagree_spread_the_path():
    path = torch.cat([one_hot_path([0] * N_SPEECH)[:1], one_hot_path([N_TEXT - 1] * N_SPEECH)[:1]])
    result = alignment_trace.head_mean_path(path, diagonal())
    assert abs(result["path_peak"] - 0.5) < 1e-6
    assert result["path_distance"] < 0.3
