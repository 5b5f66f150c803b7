"""What a benchmark ran on: machine, processor, library versions, date (stored with results)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    import faiss
    import numpy
    import PIL
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "host": socket.gethostname(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "gpu": gpu,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


def write_results(name: str, results: dict[str, Any], out_dir: Path) -> Path:
    """results/NAME-HOST-DATE-torchV-faissV.json (machine, date, library versions); the path."""
    env = results["machine"]
    stamp = env["date"][:10]
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_version = env["torch"].split("+")[0]
    path = out_dir / f"{name}-{env['host']}-{stamp}-torch{torch_version}-faiss{env['faiss']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
