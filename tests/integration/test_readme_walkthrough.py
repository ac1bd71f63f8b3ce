"""The README's curl walkthrough, run verbatim (only the ports differ) against the real services."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.support import REPO_ROOT, SAMPLES
from tools.assets import ensure
from tools.local_stack import LocalStack, deploy_default, make_up_model

LAYER2_4BIT_PAYLOAD = 128 * 28 * 28 // 2


def walkthrough() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", readme, re.S)
    assert match, "README lost its walkthrough block"
    return match.group(1)


def run_script(script: str, stack: LocalStack) -> str:
    ported = (
        script.replace("http://localhost:8000", stack.splitter_url)
        .replace("http://localhost:8001", stack.robot_url)
        .replace("http://localhost:8002", stack.edge_url)
    )
    assert ported != script
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", ported], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"walkthrough failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def steps(script: str, first: int, last: int) -> str:
    """Steps ``first`` to ``last`` of the walkthrough (each starts at a comment ``# <n>.``)."""
    parts = re.split(r"^(?=# \d+\. )", script, flags=re.M)
    return "".join(part for part in parts if part and first <= int(part[2 : part.index(".")]) <= last)


def infer(stack: LocalStack, mode: str, image: str = "chelsea.jpg", split_id: str | None = None) -> dict[str, object]:
    form = {"mode": mode, **({"split_id": split_id} if split_id else {})}
    with open(SAMPLES / image, "rb") as handle:
        response = httpx.post(f"{stack.robot_url}/api/infer", files={"image": (image, handle)}, data=form, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_readme_walkthrough_resnet18(stack: LocalStack) -> None:
    deploy_default(stack.splitter_url, make_up_model())  # what make up does before anyone reads the README
    ensure("layout_cdla", REPO_ROOT / "var" / "assets")  # make assets: step 9 uploads it from there
    output = run_script(walkthrough(), stack)
    # Step 0: the trained default model, through the split, knows the cat.
    assert re.search(r"^classification Egyptian cat \d+ bytes sent$", output, re.M), output[:500]
    assert re.search(r"^model [0-9a-f]{16}$", output, re.M)
    found = re.search(r"^split ([0-9a-f]{64})$", output, re.M)
    assert found
    split_id = found.group(1)
    assert re.search(r"^\d+ layer2 \[1, 128, 28, 28\] 50176 bytes at 4 bits$", output, re.M)
    # Step 9: the layout detector's boxes on page.png, the two title lines of the page.
    boxes = re.findall(r"^box (\w+) ([0-9.]+) \[(\d+), (\d+), (\d+), (\d+)\]$", output, re.M)
    assert [label for label, *_ in boxes] == ["title", "title"], output[-800:]

    split = infer(stack, "split", split_id=split_id)
    assert split["split_point"] == "layer2" and split["bits"] == 4
    wire = split["bytes"]
    assert isinstance(wire, dict)
    # The packed codes are 50176 bytes; the robot sends their Zstandard coding, shorter after a ReLU.
    assert 0 < wire["sent"] < LAYER2_4BIT_PAYLOAD
    assert wire["feature_fp32"] == 128 * 28 * 28 * 4
    stage_names = [s["name"] for s in split["stages"]]  # type: ignore[union-attr]
    for expected in ("decode", "preprocess", "head", "quantize", "network", "dequantize", "tail", "postprocess"):
        assert expected in stage_names
    assert split["weights_trained"] is False

    robot_only = infer(stack, "all-robot", split_id=split_id)
    edge_only = infer(stack, "all-edge", split_id=split_id)
    assert robot_only["bytes"]["sent"] == 0  # type: ignore[index]
    assert edge_only["bytes"]["sent"] > (SAMPLES / "chelsea.jpg").stat().st_size  # type: ignore[index]
    # The same fp32 model on the same preprocessed pixels, on two machines' worth of code: the same answer.
    robot_top = [(p["index"], round(p["probability"], 4)) for p in robot_only["predictions"]]  # type: ignore[union-attr]
    edge_top = [(p["index"], round(p["probability"], 4)) for p in edge_only["predictions"]]  # type: ignore[union-attr]
    assert robot_top == edge_top


@pytest.mark.parametrize(("arch", "split_point"), [("mobilenet_v3_small", "features.4")])
def test_walkthrough_other_model_all_modes(stack: LocalStack, arch: str, split_point: str) -> None:
    script = steps(walkthrough(), 1, 8).replace("arch=resnet18", f"arch={arch}").replace('"layer2"', f'"{split_point}"')
    output = run_script(script, stack)
    split_id = re.search(r"^split ([0-9a-f]{64})$", output, re.M)
    assert split_id
    manifest = httpx.get(f"{stack.splitter_url}/api/splits/{split_id.group(1)}").json()
    assert manifest["split_point"] == split_point
    assert manifest["verification"]["head_tail_max_abs_diff"] <= 1e-4
    results = {mode: infer(stack, mode, "coffee.jpg") for mode in ("split", "all-robot", "all-edge")}
    for mode, result in results.items():
        assert result["mode"] == mode
        assert result["split_id"] == split_id.group(1)
        assert len(result["predictions"]) == 5  # type: ignore[arg-type]
    health = json.loads(httpx.get(f"{stack.edge_url}/health").text)
    assert health["active_split_id"] == split_id.group(1)
    assert health["deployed"][-1]["provider"] == "CPUExecutionProvider"


def model_downloads(stack: LocalStack) -> float:
    metrics = httpx.get(f"{stack.splitter_url}/metrics").text
    pattern = r'splitbot_requests_total\{.*route="/api/models/\{model_id\}/model\.onnx".*\} ([0-9.]+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_a_second_split_of_a_held_model_does_not_download_the_model_again(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.splitter_url, timeout=300) as client:
        model_id = client.post("/api/models", data={"arch": "resnet18"}).json()["id"]
        first = client.post(f"/api/models/{model_id}/splits", json={"split_point": "layer1", "bits": 8}).json()["id"]
        assert client.post(f"/api/splits/{first}/deploy").status_code == 200
        before = model_downloads(stack)
        assert before >= 2  # robot and edge each fetched it at least once
        second = client.post(f"/api/models/{model_id}/splits", json={"split_point": "layer3", "bits": 8}).json()["id"]
        assert client.post(f"/api/splits/{second}/deploy").status_code == 200
        assert model_downloads(stack) == before
        assert infer(stack, "all-robot")["split_id"] == second
