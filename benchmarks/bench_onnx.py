"""Can search run on ONNX Runtime instead of PyTorch? (issue 34, the first measurement.)

Exports EfficientNet-Lite0's feature maps (the taps the default content space and the style
space read: final; stage4, stage6, final) from the packaged weights to an ONNX graph
(torch.onnx, the TorchScript exporter, batch dimension dynamic), runs it with ONNX Runtime,
pools in numpy exactly as artsearch.pooling does (avg; meanstd), and compares the vectors
with the torch Extractor's on the example collection (fp32 both). Then, in fresh
processes, the cold cost of one query picture: importing the engine, building the model or
session, and embedding it, against a bare `import torch`.

    python benchmarks/bench_onnx.py            # results/onnx-*.json; needs the onnx package
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" / "collection"
SPACES = {"content": ("avg", ("final",)), "style": ("meanstd", ("stage4", "stage6", "final"))}


def export(path: Path, layers: tuple[str, ...]) -> float:
    """Write Lite0's maps at `layers` as an ONNX graph; the seconds it took."""
    import torch

    from artsearch import backbones

    spec = backbones.get("efficientnet-lite0")
    from artsearch.backbones.lite import LiteNet

    model = spec.build(spec, layers).eval()
    for m in model.modules():
        if isinstance(m, LiteNet):
            m.for_export()
    pre = spec.preprocess

    class Maps(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> Any:
            out = self.net(x)
            return tuple(out) if isinstance(out, list | tuple) else (out,)

    started = time.perf_counter()
    x = torch.zeros(1, 3, pre.size, pre.size)
    names = [f"map{i}" for i in range(len(layers))]
    torch.onnx.export(Maps(), (x,), str(path), input_names=["x"], output_names=names,
                      dynamic_axes={"x": {0: "n"}, **{n: {0: "n"} for n in names}},
                      opset_version=17, dynamo=False)
    return time.perf_counter() - started


def onnx_vectors(path: Path, pixels: np.ndarray, pooling: str) -> np.ndarray:
    """uint8 (N, 3, S, S) pixels -> unit vectors, preprocessing and pooling in numpy."""
    import onnxruntime as ort

    from artsearch import backbones

    pre = backbones.get("efficientnet-lite0").preprocess
    mean = np.array(pre.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.array(pre.std, np.float32).reshape(1, 3, 1, 1)
    x = ((pixels.astype(np.float32) * (pre.scale / 255.0) - mean) / std).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    maps = session.run(None, {"x": x})
    parts = []
    for m in maps:
        flat = m.reshape(m.shape[0], m.shape[1], -1)
        if pooling == "avg":
            parts.append(flat.mean(axis=2))
        else:  # meanstd: each layer's channel means and standard deviations, each half unit
            mu, sd = flat.mean(axis=2), flat.std(axis=2)
            both = np.concatenate([mu, sd], axis=1)
            parts.append(both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12))
    v = np.concatenate(parts, axis=1)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


COLD_TORCH = """
import time, sys; t0 = time.perf_counter()
from PIL import Image
from artsearch import backbones
from artsearch.extract import Extractor
ex = Extractor(backbones.get("efficientnet-lite0"), pooling="avg", precision="fp32", num_workers=0)
t1 = time.perf_counter(); v = ex.embed_images([Image.open(sys.argv[1]).convert("RGB")])
print(t1 - t0, time.perf_counter() - t1)
"""
COLD_ONNX = """
import time, sys; t0 = time.perf_counter()
import numpy as np, onnxruntime as ort
from PIL import Image
s = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
t1 = time.perf_counter()
im = Image.open(sys.argv[1]).convert("RGB").resize((224, 224))
x = (np.asarray(im, np.float32).transpose(2, 0, 1)[None] - 127.0) / 128.0
v = s.run(None, {"x": x})[0].mean(axis=(2, 3))
print(t1 - t0, time.perf_counter() - t1, "torch" in sys.modules)
"""
BARE_TORCH = "import time; t0 = time.perf_counter(); import torch; print(time.perf_counter() - t0)"


def cold(graph: Path, picture: Path, rounds: int = 3) -> dict[str, Any]:
    """Paired fresh-process runs: a bare torch import, a torch query, an ONNX query."""
    out: dict[str, list[Any]] = {"bare_torch_import": [], "torch_query": [], "onnx_query": []}
    py = sys.executable
    for _ in range(rounds):
        for key, code, args in (("bare_torch_import", BARE_TORCH, []),
                                ("torch_query", COLD_TORCH, [str(picture)]),
                                ("onnx_query", COLD_ONNX, [str(picture), str(graph)])):
            started = time.perf_counter()
            res = subprocess.run([py, "-c", code, *args], capture_output=True, text=True,
                                 check=True, cwd=HERE.parent)
            wall = time.perf_counter() - started
            out[key].append({"wall": round(wall, 3), "printed": res.stdout.split()})
    return {k: {"median_wall": float(np.median([r["wall"] for r in v])), "runs": v}
            for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    from PIL import Image

    from artsearch import backbones
    from artsearch.extract import Extractor, prepare

    spec = backbones.get("efficientnet-lite0")
    paths = sorted(EXAMPLES.rglob("*.jpg"))
    pixels = np.stack([prepare(Image.open(p).convert("RGB"), spec.preprocess).numpy()
                       for p in paths])
    report: dict[str, Any] = {"machine": machine(), "pictures": len(paths), "spaces": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (pooling, layers) in SPACES.items():
            graph = Path(tmp) / f"lite0-{name}.onnx"
            seconds = export(graph, layers)
            ex = Extractor(spec, layer=layers, pooling=pooling, precision="fp32",
                           num_workers=0)
            import torch

            ref = ex.embed_pixels(torch.from_numpy(pixels))
            got = onnx_vectors(graph, pixels, pooling)
            cos = (ref * got).sum(axis=1)
            report["spaces"][name] = {
                "pooling": pooling, "layers": list(layers), "export_seconds": round(seconds, 2),
                "graph_bytes": graph.stat().st_size, "cosine_min": float(cos.min()),
                "cosine_median": float(np.median(cos))}
            print(name, report["spaces"][name], flush=True)
            if name == "content":
                report["cold"] = cold(graph, paths[0])
                print(json.dumps({k: v["median_wall"] for k, v in report["cold"].items()}))
    print(f"wrote {write_results('onnx', report, args.out)}")
    return report


if __name__ == "__main__":
    main()
