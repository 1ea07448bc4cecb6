"""Serving: the best checkpoint behind Ray Serve, with dynamic batching and strict validation.

Modules, one job each (only ``app`` and ``deploy`` import Ray):

- ``schemas``: request and response models, and the body parser with its 4xx errors;
- ``auth``: bearer-key checks in constant time;
- ``predictor``: load a checkpoint (safetensors only) and classify texts;
- ``service``: a replica's state between HTTP and the model (batches, stats, ``/model``);
- ``coalesce``: merges batches that queued behind a busy forward into the next one;
- ``api``: the FastAPI app (``/predict``, ``/healthz``, ``/model``, ``/stats``, ``/docs``);
- ``app``: the Serve deployment and ``build_app`` for ``serve run serving.app:build_app``;
- ``resolve``: sweep NAME / trial / directory to a checkpoint;
- ``deploy``: start, update in place, stop; ``daemon``: the ``--detach`` background owner;
- ``cli``: ``sftune serve``.
"""

__all__: list[str] = []
