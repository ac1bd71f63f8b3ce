"""Every torchvision builder registered by name, as ``POST /api/models`` with ``arch`` registers it.

For each architecture ``GET /api/architectures`` lists: the registration through the service (the export worker,
folding, analysis), its time, the split points offered by kind, or the error a user would get. Untrained, at the
default input shape (1x3x224x224); no head/tail checks (``bench.model_families`` runs those for one model of each
family). ``--max-params`` leaves out the largest (their parameter counts come from torchvision's weight metadata,
nothing is downloaded); they are listed as skipped. ``--resume`` keeps what ``--out`` already holds for the
architectures it registered or failed, and measures the others.

    python -m bench.every_architecture [--max-params 100e6] [--resume] [--out bench/results/every-architecture.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from common.errors import SplitComputingError
from model_splitter.intake.formats import DEFAULT_INPUT_SHAPE
from model_splitter.intake.torchvision_models import architectures
from model_splitter.services.models import register_torchvision
from model_splitter.store.registry import Registry


def parameter_count(arch: str) -> int | None:
    import torchvision

    weights = list(torchvision.models.get_model_weights(arch))
    return int(weights[0].meta["num_params"]) if weights else None


def measure(arch: str, family: str) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="every-architecture-"))
    started = time.perf_counter()
    try:
        record = register_torchvision(Registry(root), arch, None, None, DEFAULT_INPUT_SHAPE, None)
    except SplitComputingError as exc:
        return {"arch": arch, "family": family, "error": str(exc), "seconds": time.perf_counter() - started}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sizes = [len(point.tensors) for point in record.split_points]
    return {
        "arch": arch,
        "family": family,
        "seconds": time.perf_counter() - started,
        "nodes": {"before": record.folding.nodes_before, "after": record.folding.nodes_after}
        if record.folding
        else None,
        "fixed_batch": record.fixed_batch,
        "cuts": {"single": sizes.count(1), "pair": sizes.count(2), "k": sum(size > 2 for size in sizes)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-params", type=float, default=None, help="skip builders with more parameters")
    parser.add_argument("--out", type=Path, default=Path("bench/results/every-architecture.json"))
    parser.add_argument("--resume", action="store_true", help="keep the measured results --out already holds")
    args = parser.parse_args()
    done: dict[str, dict[str, Any]] = {}
    if args.resume and args.out.exists():
        done = {entry["arch"]: entry for entry in json.loads(args.out.read_text())["architectures"]}
    results = []
    for architecture in architectures():
        if "skipped" not in done.get(architecture.name, {"skipped": None}):
            results.append(done[architecture.name])
            continue
        params = parameter_count(architecture.name)
        if args.max_params is not None and (params is None or params > args.max_params):
            results.append({"arch": architecture.name, "family": architecture.family, "skipped": params})
            continue
        result = {**measure(architecture.name, architecture.family), "params": params}
        results.append(result)
        outcome = result.get("error") or f"{result['cuts']} in {result['seconds']:.1f} s"
        print(f"{architecture.name}: {str(outcome)[:300]}", flush=True)
    registered = sum("cuts" in result for result in results)
    failed = sum("error" in result for result in results)
    print(f"{registered} registered, {failed} failed, {len(results) - registered - failed} skipped")
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "architectures": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
