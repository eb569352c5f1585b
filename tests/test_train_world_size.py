"""A run resumed with another number of processes: the data, the optimizer state, the step and the loss carry over.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_train_world_size.py -q

The data tests deal one epoch out to a world size, cut it, and deal the rest to another (no DeepSpeed). The
run tests train with torchrun on the CPU (gloo): 2 processes SIGKILLed after a checkpoint and resumed with 1
(ZeRO-2), and 1 resumed with 2 (ZeRO-3); ZeRO-1 from 2 to 1 is marked slow (-m slow). This file is also the
program each process runs there (`drive`): the trainer of stages/train_lm.py, recording every step's
batches and their losses, and the whole fp32 weights and Adam moments at every save and right after resuming.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # as a torchrun script, not only under pytest

from stages.config import from_dict  # noqa: E402
from stages.config.pretrain import TrainConfig  # noqa: E402
from stages.lm.export import load_model  # noqa: E402
from stages.lm.vocab import Vocab  # noqa: E402
from stages.train import checkpoint  # noqa: E402
from stages.train.corpus import Subset, index_corpus  # noqa: E402
from stages.train.data import Position, TrainBatches  # noqa: E402
from stages.train.schedule import warmup_cosine  # noqa: E402
from train_corpus import CODEBOOK, SPEAKERS, fit_tiny_tokenizer, utterances, write_shards  # noqa: E402

ROWS = utterances(200, seed=3)
TRAIN = sorted(r["utt_id"] for r in ROWS if r["split"] == "train")
HOLD = "WORLD_SIZE_TEST_HOLD_AFTER_STEP"   # the driver stops dead after this step, for the test to kill it


# --- the data: an epoch cut at one world size and finished at another --------------------------------------

class CharTokenizer:
    vocab_size = 27

    def encode(self, text: str, language: str) -> list[int]:
        return [ord(c) - 96 if "a" <= c <= "z" else 0 for c in text]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return index_corpus(write_shards(tmp_path_factory.mktemp("codes"), ROWS, n_shards=3, row_group_size=7),
                        CharTokenizer(), Subset())


def processes(index, world_size: int) -> list[TrainBatches]:
    vocab = Vocab(n_text=CharTokenizer.vocab_size, n_speech=CODEBOOK, speakers=SPEAKERS)
    return [TrainBatches(index, vocab, True, 800, 50, 20, seed=0, rank=r, world_size=world_size)
            for r in range(world_size)]


def train_parts(index, parts: list[tuple[int, int]]) -> tuple[list[str], Position]:
    """Train `steps` batches a process at each (world_size, steps) in turn, each part resumed from the last position;
    the utterances of epoch 0 and the position after the last part."""
    position, seen = Position(), []
    for world_size, steps in parts:
        streams = [p.stream(position) for p in processes(index, world_size)]
        for _ in range(steps):
            step = [next(s) for s in streams]
            assert len({pos for _, pos in step}) == 1  # every process at the same place: same count of steps
            seen += [u for batch, pos in step if pos.epoch == 0 for u in batch.utt_ids]
            position = step[0][1]
    return seen, position


@pytest.mark.parametrize("sizes", [(2, 1), (1, 2), (3, 2), (2, 3), (2, 1, 3)])
def test_an_epoch_resumed_at_another_world_size_trains_every_utterance_once(index, sizes):
    first = len(processes(index, sizes[0])[0])
    for cut in (1, 3, first - 1, first):  # early, later, before its last batch, at the end of the epoch
        seen, position = train_parts(index, [(sizes[0], cut)] + [(w, 2) for w in sizes[1:-1]])
        last = processes(index, sizes[-1])
        streams = [p.stream(position) for p in last]
        while True:  # the last world size trains to the end of the epoch
            step = [next(s) for s in streams]
            assert len({pos for _, pos in step}) == 1
            if step[0][1].epoch > 0:
                break
            seen += [u for batch, _ in step for u in batch.utt_ids]
        lost, repeated = set(TRAIN) - set(seen), sorted(u for u in set(seen) if seen.count(u) > 1)
        assert sorted(seen) == TRAIN, f"{sizes}, cut after {cut}: lost {lost}, repeated {repeated}"
        if position.epoch == 0:  # the next epoch is the one planned for this world size, whatever came before
            for p in last:
                p.set_epoch(1)
            assert [batch.utt_ids for batch, _ in step] == [next(iter(p)).utt_ids for p in last]


def test_a_resumed_position_resumes_again_exactly(index):
    """A second kill in the epoch, at the new world size, continues the re-dealt plan, not a fresh one."""
    _, position = train_parts(index, [(2, 3), (1, 4)])
    assert position == Position(0, 4, 1, ((2, 3),))
    assert Position.from_dict(json.loads(json.dumps(position.to_dict()))) == position
    uninterrupted = processes(index, 1)[0].stream(Position(0, 3, 2))
    expected = [batch.utt_ids for batch, _ in itertools.islice(uninterrupted, 4, 8)]
    assert [batch.utt_ids for batch, _ in itertools.islice(processes(index, 1)[0].stream(position), 4)] == expected


def test_positions_of_older_checkpoints_still_load():
    assert Position.from_dict({"epoch": 2, "batches": 5, "world_size": 4}) == Position(2, 5, 4)
    assert Position(2, 5, 4).at(4) == Position(2, 5, 4)
    assert Position(2, 5, 4).at(2) == Position(2, 0, 2, ((4, 5),))
    assert Position(2, 0, 4, ((2, 3),)).at(1) == Position(2, 0, 1, ((2, 3),))  # nothing done at 4: no part


# --- refusals -------------------------------------------------------------------------------------------------

def test_an_incomplete_checkpoint_is_refused_naming_its_folder(tmp_path):
    folder = tmp_path / "step00000004"
    folder.mkdir()
    for rank in (0, 2):
        (folder / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"step00000004: ZeRO optimizer shards of processes \[0, 2\]"):
        checkpoint.saved_world_size(tmp_path, "step00000004")
    (folder / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"")
    assert checkpoint.saved_world_size(tmp_path, "step00000004") == 3


def test_a_checkpoint_that_cannot_be_converted_says_how_to_resume(tmp_path):
    from stages.train.distributed import Dist
    from stages.train.resume import load_resharded

    folder = tmp_path / "step00000004"
    folder.mkdir()
    for rank in (0, 1):
        torch.save({"not": "a ZeRO shard"}, folder / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    own_group = not torch.distributed.is_initialized()  # else another test's one-process group: use it
    if own_group:
        torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match=r"could not convert .*step00000004 to a universal checkpoint(.|\n)*"
                                               r"resume it with 2 process\(es\), or delete .* to train from scratch"):
            load_resharded(None, tmp_path, "step00000004", 2, Dist(0, 1, 0, torch.device("cpu")))
    finally:
        if own_group:
            torch.distributed.destroy_process_group()
    assert not (tmp_path / checkpoint.UNIVERSAL).exists()


# --- the run: torchrun, kill, resume with another world size ---------------------------------------------------

CONFIG = {"max_steps": 8, "batch_tokens": 2000, "warmup_steps": 2, "checkpoint_every": 2, "validate_every": 100,
          "log_every": 1, "shuffle_buffer": 64, "sort_buffer": 32, "lr": 3e-3, "min_lr": 3e-4}


def full_state(trainer) -> dict:
    """Every parameter's fp32 weights and Adam moments, whole (a collective under ZeRO), with the step and lr."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    optimizer = trainer.engine.optimizer
    if hasattr(optimizer, "_lazy_init_hp_params_optimizer_state"):
        # ZeRO 1-2 and the BF16 optimizer link each parameter to its Adam moments after the first step, but
        # only for the first parameter group (the flag is set after it): link the others, or none can be read
        optimizer._hp_optimizer_states_linked = False
        optimizer._lazy_init_hp_params_optimizer_state()
    tensors = {}
    for name, param in trainer.engine.module.named_parameters():
        tensors[name] = safe_get_full_fp32_param(param).detach().clone()
        for moment in ("exp_avg", "exp_avg_sq"):
            tensors[f"{name}:{moment}"] = safe_get_full_optimizer_state(param, moment).detach().clone()
    adam_steps = sorted({float(s["step"]) for s in trainer.engine.optimizer.optimizer.state.values()})
    return {"tensors": tensors, "step": trainer.step, "lr": trainer.engine.get_lr()[0], "adam_steps": adam_steps,
            "global_steps": trainer.engine.global_steps, "position": trainer.position.to_dict()}


def drive(codes: list[Path], tokenizer: Path, run_dir: Path, config_json: str) -> None:
    """One process of a training run (under torchrun) that records its steps' utterances and its saved state."""
    from stages.common.cli import config_section, start
    from stages.train.loop import Trainer

    start(threads=1)
    rank, hold = int(os.environ["RANK"]), int(os.environ.get(HOLD, "0"))
    trace = open(run_dir / f"trace-{os.getpid()}-rank{rank}.jsonl", "a")
    train_step, save = Trainer.train_step, Trainer.save

    def recorded_step(self, batches):
        losses.clear()
        sums = train_step(self, batches)
        record = {"step": self.step + 1, "epoch": self.position.epoch, "world_size": self.dist.world_size,
                  "batches": [b.utt_ids for b in batches], "losses": list(losses)}
        trace.write(json.dumps(record) + "\n")
        trace.flush()
        if hold and self.step + 1 == hold:
            time.sleep(600)  # until the test kills the run
        return sums

    def dump(trainer, name: str) -> None:
        state = full_state(trainer)
        if trainer.dist.is_main:
            torch.save(state, run_dir / name)

    def dumped_save(self):
        dump(self, f"saved-{self.step}.pt")
        save(self)

    Trainer.train_step, Trainer.save = recorded_step, dumped_save
    trainer = Trainer(codes, tokenizer, run_dir / "checkpoints", config_section(TrainConfig, config_json, "pretrain"),
                      threads=1, progress=False, section="pretrain")
    losses: list[float] = []  # each micro-batch's mean cross-entropy, as its forward computed it
    trainer.engine.module.register_forward_hook(lambda module, args, out: losses.append(out.ce_loss.item())
                                                if module.training else None)
    if trainer.step:
        dump(trainer, f"restored-{trainer.step}.pt")
    trainer.fit()
    trainer.export(run_dir / "model")
    trainer.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return write_shards(root / "codes", utterances(150, frames=(1, 2))), fit_tiny_tokenizer(root)


def test_a_bf16_zero1_run_exports_its_fp32_weights(corpus, tmp_path):
    """DeepSpeed's BF16 optimizer (bf16 with ZeRO-1) writes shards that zero_to_fp32 refuses ("is not a zero
    checkpoint"): the export reads the weights from the checkpoint's universal conversion instead."""
    from stages.train.loop import Trainer

    config = from_dict(TrainConfig, {**CONFIG, "max_steps": 2, "zero_stage": 1, "precision": "bf16"}, "train")
    trainer = Trainer(*corpus, tmp_path / "checkpoints", config, threads=1, progress=False)
    trainer.fit()
    trainer.export(tmp_path / "model")
    trainer.close()
    assert type(trainer.engine.optimizer).__name__ == "BF16_Optimizer"
    weights = full_state(trainer)["tensors"]
    exported = load_model(tmp_path / "model", dtype=None).model.state_dict()
    for name, _ in trainer.engine.module.named_parameters():
        assert torch.equal(exported[name], weights[name]), name
    assert not (tmp_path / "checkpoints" / checkpoint.UNIVERSAL).exists()


def launch(corpus, run_dir: Path, world_size: int, config: dict, hold: int = 0) -> subprocess.Popen:
    codes, tokenizer = corpus
    env = {**os.environ, "PYTHONPATH": str(REPO), HOLD: str(hold)}
    log = open(run_dir / f"torchrun-{world_size}-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world_size),
         __file__, "--drive", json.dumps({"codes": list(map(str, codes)), "tokenizer": str(tokenizer),
                                          "run_dir": str(run_dir), "config_json": json.dumps(config)})],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)


def traced(run_dir: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(run_dir.glob("trace-*.jsonl"))
            for line in path.read_text().splitlines() if line.endswith("}")]


def logs(run_dir: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(run_dir.glob("torchrun-*.log")))


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: torchrun starts each worker in a session of its own, out of its group."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_after(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> None:
    """SIGKILL the whole run (torchrun and its processes) once a process has trained `step` (where it holds).

    The workers die with torchrun, as a node's crash takes them all; left alive, they would wait for their
    dead peers forever, holding a gigabyte each.
    """
    deadline = time.monotonic() + timeout
    try:
        while not any(r["step"] == step for r in traced(run_dir)):
            assert process.poll() is None, f"the run ended before step {step}:\n{logs(run_dir)}"
            assert time.monotonic() < deadline, f"no step {step} within {timeout} s:\n{logs(run_dir)}"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            workers = descendants(process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        process.wait()


def metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "checkpoints" / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if m["kind"] == "train"]


# bf16 with ZeRO-1 runs DeepSpeed's BF16 optimizer (its own shards; a GPU's default with zero_stage: 1)
@pytest.mark.parametrize("before, after, zero_stage, precision", [
    (2, 1, 2, "fp32"), (1, 2, 3, "fp32"), pytest.param(2, 1, 1, "bf16", marks=pytest.mark.slow)])
def test_a_killed_run_resumes_with_another_number_of_processes(corpus, tmp_path, before, after, zero_stage,
                                                              precision):
    config = {**CONFIG, "zero_stage": zero_stage, "precision": precision}
    saved_step = config["checkpoint_every"]
    kill_after(launch(corpus, tmp_path, before, config, hold=saved_step + 1), tmp_path, saved_step + 1)
    assert checkpoint.latest_tag(tmp_path / "checkpoints") == checkpoint.tag_of(saved_step)
    killed = [m for m in metrics(tmp_path) if m["step"] <= saved_step]
    resumed_run = launch(corpus, tmp_path, after, config)
    assert resumed_run.wait(timeout=300) == 0, logs(tmp_path)
    assert f"saved by {before} process(es); resuming it with {after}" in logs(tmp_path)

    # the state: weights, Adam moments and their step count, lr and schedule, as saved, to the bit
    saved = torch.load(tmp_path / f"saved-{saved_step}.pt", weights_only=True)
    restored = torch.load(tmp_path / f"restored-{saved_step}.pt", weights_only=True)
    assert restored["tensors"].keys() == saved["tensors"].keys()
    for name, tensor in saved["tensors"].items():
        assert torch.equal(restored["tensors"][name], tensor), name
    for key in ("step", "lr", "adam_steps", "global_steps", "position"):
        assert restored[key] == saved[key], key
    assert saved["adam_steps"] == [float(saved_step)] and saved["global_steps"] == saved_step

    # the steps: numbered on from the checkpoint to max_steps, the schedule's lr of an uninterrupted run
    assert [m["step"] for m in metrics(tmp_path)] == list(range(1, config["max_steps"] + 1))
    steps = [m for m in metrics(tmp_path) if m["step"] > saved_step]
    assert checkpoint.latest_tag(tmp_path / "checkpoints") == checkpoint.tag_of(config["max_steps"])
    schedule = warmup_cosine(config["warmup_steps"], config["max_steps"], config["min_lr"] / config["lr"])
    assert [m["lr"] for m in steps] == pytest.approx([config["lr"] * schedule(m["step"] - 1) for m in steps])

    # the model exported at the end holds the fp32 weights of the last save
    final = torch.load(tmp_path / f"saved-{config['max_steps']}.pt", weights_only=True)["tensors"]
    exported = load_model(tmp_path / "model", dtype=None).model.state_dict()
    for name in exported.keys() & final.keys():
        assert torch.equal(exported[name], final[name]), name

    # the data: epoch 0, begun by `before` processes and finished by `after`, trains each utterance once
    records = traced(tmp_path)
    kept = [r for r in records if (r["world_size"] == before) == (r["step"] <= saved_step)]
    epoch0 = sorted(u for r in kept if r["epoch"] == 0 for batch in r["batches"] for u in batch)
    train_ids = sorted(u["utt_id"] for u in utterances(150, frames=(1, 2)) if u["split"] == "train")
    assert epoch0 == train_ids
    assert any(r["epoch"] == 1 for r in kept), "the run ended inside epoch 0: lengthen it"

    # the loss: the first step after the resume computes, on a batch the killed run also trained at that step
    # (its first global batch, dealt to process 0 either way), the killed run's loss to the bit
    def first_step(world_size: int) -> dict:
        return {tuple(batch): loss for r in records if r["world_size"] == world_size and r["step"] == saved_step + 1
                for batch, loss in zip(r["batches"], r["losses"])}
    killed_losses, resumed_losses = first_step(before), first_step(after)
    shared = killed_losses.keys() & resumed_losses.keys()
    assert shared, "no batch of the first step after the resume was trained before the kill"
    for batch in shared:
        assert resumed_losses[batch] == killed_losses[batch]
    print(f"{before}->{after} processes, ZeRO-{zero_stage} {precision}: step {saved_step + 1} loss "
          f"{[resumed_losses[b] for b in shared]} resumed, {[killed_losses[b] for b in shared]} before the kill; "
          f"train loss {[round(m['loss'], 4) for m in killed]} then "
          f"{[round(m['loss'], 4) for m in steps]}")


if __name__ == "__main__" and sys.argv[1:2] == ["--drive"]:
    arguments = json.loads(sys.argv[2])
    drive([Path(c) for c in arguments["codes"]], Path(arguments["tokenizer"]), Path(arguments["run_dir"]),
          arguments["config_json"])
