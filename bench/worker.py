"""Subprocess entry: `python -m bench.worker module:function '{json kwargs}'`.

Prints `BENCH_RESULT {json}` (the function's dict plus this process's own and its children's
`ru_maxrss`) as the last line. A fresh interpreter per measurement keeps models, caches and
peak memory of one measurement out of the next.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main(argv: list[str]) -> int:
    target, raw = argv[0], argv[1] if len(argv) > 1 else "{}"
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(f"bench.{module_name}"), func_name)
    result = dict(func(**json.loads(raw)))
    result["ru_maxrss_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["ru_maxrss_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    sys.stdout.flush()
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
