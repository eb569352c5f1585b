"""Resume decisions that must hold across processes: every rank resumes from the tag the main process chose."""

from __future__ import annotations

import socket

import torch.multiprocessing as mp



def _claim(rank: int, port: int, folders: list[str], results) -> None:
    import torch.distributed as dist
    from pathlib import Path

    from stages.train.resume import claim_checkpoint_dir

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results[rank] = claim_checkpoint_dir(Path(folders[rank]), {"run": 1}, is_main=rank == 0)
    finally:
        dist.destroy_process_group()


def test_every_rank_resumes_from_the_main_process_tag(tmp_path):
    # Rank 1's view of the checkpoint folder is stale (NFS caching after rank 0 moved things): it shows no
    # checkpoint at all. It must still resume from the tag rank 0 read, or the ranks would hang apart.
    main_view, stale_view = tmp_path / "node0", tmp_path / "node1"
    (main_view / "step00000040").mkdir(parents=True)
    (main_view / "latest").write_text("step00000040")
    (main_view / "fingerprint.json").write_text('{"run": 1}')
    stale_view.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_claim, args=(port, [str(main_view), str(stale_view)], results), nprocs=2, join=True)
    assert dict(results) == {0: "step00000040", 1: "step00000040"}
    assert not (stale_view / "fingerprint.json").exists()  # only the main process writes
