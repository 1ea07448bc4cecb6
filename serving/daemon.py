"""``python -m serving.daemon SPEC``: the background owner started by ``sftune serve --detach``.

It runs :func:`serving.owner.serve_forever` on the model and config in SPEC (a JSON file written
by :func:`serving.owner.start_background`) until it gets SIGTERM from ``sftune serve --stop``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from search import storage
from search.config import ServeConfig
from serving.owner import serve_forever
from serving.resolve import ResolvedModel

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    where = spec["model"]["model_dir"]
    model = ResolvedModel(**{**spec["model"], "model_dir": where if storage.is_remote(where)
                             else Path(where)})
    serve_forever(model, ServeConfig.model_validate(spec["serve"]),
                  on_ready=lambda url: print(f"serving at {url}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
