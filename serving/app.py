"""The Ray Serve deployment and its typed app builder.

Run it with Serve's own CLI::

    serve run serving.app:build_app model=runs/best
    serve run serving.app:build_app model=runs/best max_batch_size=32 api_key_env=SFTUNE_KEY

or through ``sftune serve``, which calls :func:`build_app` too. Every field of
:class:`~search.config.ServeConfig` is an argument; ``model`` is required.

How it stays fast and safe:

- ``@serve.batch`` merges concurrent requests (up to ``max_batch_size`` texts, waiting at most
  ``batch_wait_timeout_s``), and ``max_ongoing_requests`` (>= the batch size, checked by the
  config) lets enough requests reach the replica for batches to fill. Serve batches formed while
  the model is busy are merged again into its next forward (:mod:`serving.coalesce`).
- ``max_surge_percent=100``: a new model's replicas start before the old ones stop, so
  redeploying under the same app name swaps models with no failed request.
- The API key never enters Serve's config: the builder hashes it (see :mod:`serving.auth`).

This module imports Ray Serve; only :mod:`serving.app` and :mod:`serving.deploy` do.
"""

# No `from __future__ import annotations`: Serve reads build_app's annotation as a class to
# validate `key=value` arguments into AppArgs, and a string annotation would skip that.

import logging
import os
from dataclasses import replace
from typing import Any

from ray import serve

from search import storage
from search.config import ServeConfig
from serving.api import create_api
from serving.auth import key_hash_from_env
from serving.predictor import Predictor
from serving.schemas import Limits
from serving.service import ModelService
from serving.sizing import default_threads, replica_count

__all__ = ["DEPLOYMENT_NAME", "AppArgs", "SftuneModel", "batch_wait_s", "build_app",
           "deployment_options"]

DEPLOYMENT_NAME = "SftuneModel"
#: Serve batches that may be formed while the model is busy. They wait in the
#: :class:`~serving.coalesce.Coalescer`, which merges all of them into the next forward; with
#: Serve's default of 1 they would instead queue one by one as small separate forwards.
SERVE_BATCHES_IN_FLIGHT = 8


class _MergedDownstream(logging.Filter):
    """Drops Serve's warning that max_batch_size x max_concurrent_batches exceeds
    max_ongoing_requests: it assumes concurrent batches run separately, but ours merge, so a
    forward does reach max_batch_size (the config checks max_ongoing_requests >= it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "max_concurrent_batches" not in record.getMessage()


class AppArgs(ServeConfig):
    """Arguments of :func:`build_app`: the serve config plus what to serve."""

    model: str
    source: str | None = None
    test_metrics: dict[str, Any] | None = None


def _count_texts(requests: list[list[str]]) -> int:
    # A request with 10 texts fills 10 slots of the batch, not 1.
    return sum(len(texts) for texts in requests)


def batch_wait_s(max_wait_s: float, last_forward_s: float | None, *, busy: bool) -> float:
    """How long the next batch may wait for more requests.

    Waiting only pays when other requests are on their way: a lone client would wait out the
    timeout on every request. Under load the wait lets a burst still being parsed join one
    batch, but never for longer than the model's last batch took: what arrives after that joins
    the next forward anyway (:mod:`serving.coalesce`), and on a fast model (an H100 runs 32
    texts in 6 ms) a fixed 30 ms wait would be most of every request's latency.
    """
    if not busy:
        return 0.0
    return max_wait_s if last_forward_s is None else min(max_wait_s, last_forward_s)


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class SftuneModel:
    """One replica: a loaded checkpoint behind the FastAPI app of :mod:`serving.api`."""

    def __init__(self, *, model_dir: str, settings: dict[str, Any], source: str | None,
                 api_key_sha256: str | None, test_metrics: dict[str, Any] | None) -> None:
        cfg = ServeConfig.model_validate(settings)
        logging.getLogger("ray.serve").addFilter(_MergedDownstream())
        replicas = cfg.min_replicas if cfg.autoscaling else replica_count(cfg)
        predictor = Predictor.load(
            storage.local_copy(model_dir), device=cfg.device, bf16=cfg.bf16,
            num_threads=cfg.num_threads or default_threads(max(1, replicas)),
            max_tokens=cfg.max_tokens, forward_batch_size=cfg.forward_batch_size,
        )
        limits = replace(Limits.from_config(cfg), pairs=predictor.pairs)
        self.service = ModelService(predictor, limits=limits, source=source,
                                    api_key_sha256=api_key_sha256,
                                    request_timeout_s=cfg.request_timeout_s,
                                    test_metrics=test_metrics,
                                    max_batch_texts=cfg.max_batch_size)
        self.limits, self.api_key_sha256 = self.service.limits, api_key_sha256
        self.request_timeout_s = cfg.request_timeout_s
        self._batched.set_max_batch_size(cfg.max_batch_size)
        self._max_wait_s, self._in_flight = cfg.batch_wait_timeout_s, 0
        self._batched.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    def __serve_build_asgi_app__(self):
        # Built here, after __init__, so the app closes over this replica's limits and key.
        return create_api(self)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=_count_texts,
                 max_concurrent_batches=SERVE_BATCHES_IN_FLIGHT)
    async def _batched(self, requests: list[list[str]]) -> list[list[dict[str, Any]]]:
        self._adapt_wait(len(requests))
        return await self.service.run_batch_async(requests)

    def _adapt_wait(self, batch_requests: int) -> None:
        busy = batch_requests > 1 or self._in_flight > batch_requests
        self._batched.set_batch_wait_timeout_s(
            batch_wait_s(self._max_wait_s, self.service.last_forward_s, busy=busy))

    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        self._in_flight += 1
        try:
            return await self._batched(texts)
        finally:
            self._in_flight -= 1

    def model_info(self) -> dict[str, Any]:
        return self.service.model_info()

    def stats(self) -> dict[str, Any]:
        return self.service.stats()


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """Serve deployment options from the config (replicas, resources, batching, roll-out)."""
    options: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "ray_actor_options": {
            "num_cpus": cfg.cpus_per_replica, "num_gpus": cfg.gpus_per_replica,
            # Idle OpenMP threads spin by default, burning the cores the HTTP path needs between
            # forwards: measured 4x more replica CPU per request on 2 cores without this.
            "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}},
        },
        # Start the new model's replicas before stopping the old: a swap drops no request.
        "max_surge_percent": 100,
        # In-flight requests may finish before an old replica is killed.
        "graceful_shutdown_timeout_s": cfg.request_timeout_s + 5,
        "health_check_period_s": 5.0,
        # Per-request access logs cost the replica CPU at every request; errors are still logged.
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
    }
    if cfg.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = replica_count(cfg)
    return options


def build_app(args: AppArgs) -> serve.Application:
    """The Serve application for ``args.model``; usable as ``serve run serving.app:build_app``."""
    if isinstance(args, dict):  # called directly with a plain dict, e.g. from a test
        args = AppArgs.model_validate(args)
    model_dir = storage.root(os.path.expanduser(args.model))  # a directory or a bucket URI
    from search.artifacts import verify_safetensors_only

    # Fail in the builder, not in every replica (a bucket's copy is downloaded once per node).
    verify_safetensors_only(storage.local_copy(model_dir))
    settings = ServeConfig.model_validate(
        args.model_dump(exclude={"model", "source", "test_metrics"}))
    return SftuneModel.options(**deployment_options(settings)).bind(
        model_dir=model_dir, settings=settings.model_dump(), source=args.source,
        api_key_sha256=key_hash_from_env(settings.api_key_env), test_metrics=args.test_metrics,
    )
