#!/usr/bin/env bash
# Launch a training stage with one process per GPU (one CPU process without GPUs) on one or several nodes.
#
#   bash workflow/scripts/torchrun.sh NODES GPUS -m stages.train_lm ...   (what rules pretrain and sft run)
#
# NODES and GPUS are the rule's resources `nodes` and `gpu` (GPUs in total). One node: torchrun --standalone.
# Several nodes (a SLURM allocation with resources nodes > 1 and mpi set, so that the job's own command
# places its tasks): srun starts one torchrun per node, which meet at a c10d rendezvous on the first node.
set -euo pipefail
if (( $# < 3 )); then
    echo "usage: $0 NODES GPUS ARGS... (arguments after GPUS go to torchrun, e.g. -m stages.train_lm ...)" >&2
    exit 2
fi
nodes=$1 gpus=$2
shift 2
# the trainer stops at once when it was given GPUs and CUDA is unusable (stages/common/devices.py)
export MINIMIND_GPUS=$gpus
if (( nodes <= 1 )); then
    exec torchrun --standalone --nproc_per_node "$(( gpus > 0 ? gpus : 1 ))" "$@"
fi
if (( gpus < nodes || gpus % nodes != 0 )); then
    echo "error: gpu=$gpus cannot be split evenly over nodes=$nodes (resources.gpu counts all nodes' GPUs)" >&2
    exit 2
fi
if [[ -z "${SLURM_JOB_NODELIST:-}" ]]; then
    echo "error: nodes=$nodes needs a SLURM allocation (run with --profile workflow/profiles/slurm); got none" >&2
    exit 2
fi
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
exec srun --nodes "$nodes" --ntasks-per-node 1 --kill-on-bad-exit=1 \
    torchrun --nnodes "$nodes" --nproc_per_node "$(( gpus / nodes ))" \
    --rdzv_backend c10d --rdzv_endpoint "$head_node:${MINIMIND_RDZV_PORT:-29500}" --rdzv_id "${SLURM_JOB_ID}" "$@"
