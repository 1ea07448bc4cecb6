"""How many replicas and threads the endpoint gets on this machine: the hardware policy, kept out
of the config schema (which only says what the user asked for)."""

from __future__ import annotations

import math
import os

from search.config import ServeConfig

__all__ = ["default_threads", "replica_count"]


def replica_count(cfg: ServeConfig) -> int:
    """Replicas when not autoscaling: ``serve.replicas``, else enough to fill one GPU
    (1 / gpus_per_replica) with GPUs; on CPU 2 where the machine has 2+ cores, each with half
    the threads, so one's request handling overlaps the other's forward (BENCHMARKS.md,
    serving)."""
    if cfg.replicas is not None:
        return cfg.replicas
    if cfg.gpus_per_replica > 0:
        return max(1, math.floor(1 / cfg.gpus_per_replica))
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def default_threads(replicas: int = 1) -> int:
    """The cores this process may use, shared among ``replicas`` replicas of one machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, replicas))
