"""Registration of torchvision models by name, family by family: cuts offered without and with constant folding,
the time each step takes, and the head/tail check at every offered cut (``--quick``: a sample of each kind).

The models are untrained (no weights download here); cuts and exactness do not depend on the weights, except that
an untrained detector's scores are nearly all equal, so its TopK and non-maximum suppression can pick other boxes
when float rounding differs across a cut (the check's verdict is recorded, not asserted).

    python -m bench.model_families [--quick] [--only ARCH ...] [--out bench/results/model-families.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import onnx

from common.errors import UnprocessableModel
from model_splitter.graph.analysis import analyse_split_points
from model_splitter.graph.cutting import cut_model
from model_splitter.graph.folding import fold_constants
from model_splitter.graph.verification import head_tail_max_abs_diff, head_tail_tolerance, reference_outputs
from model_splitter.intake.formats import intake_torchvision
from model_splitter.intake.torchvision_models import family_of
from model_splitter.records import SplitPoint

MODELS: list[tuple[str, int]] = [
    ("resnet18", 224),
    ("mobilenet_v2", 224),
    ("mobilenet_v3_large", 224),
    ("efficientnet_b0", 224),
    ("shufflenet_v2_x0_5", 224),
    ("regnet_y_400mf", 224),
    ("densenet121", 224),
    ("convnext_tiny", 224),
    ("vit_b_16", 224),
    ("swin_t", 224),
    ("deeplabv3_mobilenet_v3_large", 224),
    ("lraspp_mobilenet_v3_large", 224),
    ("ssdlite320_mobilenet_v3_large", 320),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", 320),
    ("retinanet_resnet50_fpn", 320),
    ("fasterrcnn_resnet50_fpn", 320),
]
QUICK = {"resnet18", "shufflenet_v2_x0_5", "lraspp_mobilenet_v3_large"}


def _kinds(points: list[SplitPoint]) -> dict[str, int]:
    sizes = [len(point.tensors) for point in points]
    return {
        "single": sizes.count(1),
        "pair": sizes.count(2),
        "k": sum(size > 2 for size in sizes),
        "max_k": max(sizes, default=0),
        # a cut that is exactly one module's outputs is labelled by the module alone (graph/module_cuts.py)
        "module": sum(
            len(point.tensors) > 1 and " + " not in point.label and " … " not in point.label for point in points
        ),
    }


def _sampled(points: list[SplitPoint]) -> list[SplitPoint]:
    singles = [point for point in points if len(point.tensors) == 1]
    chosen = [singles[0], singles[len(singles) // 2], singles[-1]] if singles else []
    chosen += [point for point in points if len(point.tensors) == 2][:1]
    chosen += [point for point in points if len(point.tensors) > 2][:2]
    return list({point.label: point for point in chosen}.values())


def _check(model: onnx.ModelProto, shape: tuple[int, ...], points: list[SplitPoint]) -> list[dict[str, Any]]:
    expected = reference_outputs(model, shape)
    tolerance = head_tail_tolerance(expected)
    checks = []
    for point in points:
        try:
            head, tail = cut_model(model, point.tensors, input_shape=shape)
            difference = head_tail_max_abs_diff(model, head, tail, shape, expected=expected)
        except UnprocessableModel as exc:
            checks.append({"label": point.label, "tensors": len(point.tensors), "error": str(exc), "exact": False})
            continue
        checks.append(
            {
                "label": point.label,
                "tensors": len(point.tensors),
                "max_abs_diff": difference,
                "tolerance": tolerance,
                "exact": difference <= tolerance,
            }
        )
    return checks


def measure(arch: str, size: int, sampled: bool) -> dict[str, Any]:
    shape = (1, 3, size, size)
    started = time.perf_counter()
    intake = intake_torchvision(arch, None, None, shape)
    export_s = time.perf_counter() - started
    analysis_shape = (1, *intake.input_shape[1:])
    started = time.perf_counter()
    unfolded = analyse_split_points(intake.model, analysis_shape, pair_cuts=True)
    unfolded_s = time.perf_counter() - started
    started = time.perf_counter()
    folded_model, folding = fold_constants(intake.model, intake.input_shape)
    fold_s = time.perf_counter() - started
    started = time.perf_counter()
    folded = analyse_split_points(folded_model, analysis_shape, pair_cuts=True)
    folded_s = time.perf_counter() - started
    return {
        "arch": arch,
        "family": family_of(arch),
        "input_shape": list(intake.input_shape),
        "export_via": intake.source_format,
        "nodes": {"before": folding.nodes_before, "after": folding.nodes_after},
        "folding_kept_original": folding.kept_original,
        "cuts_unfolded": _kinds(unfolded),
        "cuts_folded": _kinds(folded),
        "seconds": {
            "export": export_s,
            "fold": fold_s,
            "analysis_unfolded": unfolded_s,
            "analysis_folded": folded_s,
            "registration": export_s + fold_s + folded_s,
        },
        "checks": _check(folded_model, intake.input_shape, _sampled(folded) if sampled else folded),
    }


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [result["arch"] for result in results]
    figure, (cuts_ax, time_ax) = plt.subplots(1, 2, figsize=(13, 5))
    bottom = [0] * len(results)
    for kind, colour in (("single", "tab:blue"), ("pair", "tab:orange"), ("k", "tab:green")):
        counts = [result["cuts_folded"][kind] for result in results]
        cuts_ax.barh(names, counts, left=bottom, color=colour, label=f"{kind} tensor cuts")
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    cuts_ax.set_xlabel("cuts offered (folded graph)")
    cuts_ax.invert_yaxis()
    cuts_ax.legend(fontsize=8)
    left = [0.0] * len(results)
    for step, colour in (("export", "tab:grey"), ("fold", "tab:purple"), ("analysis_folded", "tab:red")):
        seconds = [result["seconds"][step] for result in results]
        time_ax.barh(names, seconds, left=left, color=colour, label=step)
        left = [a + b for a, b in zip(left, seconds, strict=True)]
    time_ax.set_xlabel("registration seconds (untrained, one run)")
    time_ax.invert_yaxis()
    time_ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three models, a sample of their cuts")
    parser.add_argument(
        "--only", nargs="+", metavar="ARCH", help="measure these models of the list again, keeping the others' results"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    default = Path("bench/results") / ("tmp/model-families.json" if args.quick else "model-families.json")
    out: Path = args.out or default
    results = []
    for arch, size in MODELS:
        if (args.quick and arch not in QUICK) or (args.only and arch not in args.only):
            continue
        result = measure(arch, size, sampled=args.quick)
        results.append(result)
        folded, unfolded = result["cuts_folded"], result["cuts_unfolded"]
        print(
            f"{arch}: nodes {result['nodes']['before']} -> {result['nodes']['after']}, cuts (single/pair/k) "
            f"{unfolded['single']}/{unfolded['pair']}/{unfolded['k']} -> {folded['single']}/{folded['pair']}/"
            f"{folded['k']} ({folded['module']} at module boundaries), "
            f"registration {result['seconds']['registration']:.1f} s, exact "
            f"{sum(check['exact'] for check in result['checks'])}/{len(result['checks'])}",
            flush=True,
        )
    if args.only and out.exists():  # the other models' figures stay, in the list's order
        measured = {result["arch"] for result in results}
        kept = [result for result in json.loads(out.read_text())["models"] if result["arch"] not in measured]
        order = [arch for arch, _ in MODELS]
        results = sorted(kept + results, key=lambda result: order.index(result["arch"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    out.write_text(json.dumps({"machine": machine, "models": results}, indent=2) + "\n")
    _plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
