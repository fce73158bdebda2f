"""Finding a dataset's atomic files: a user directory, or a known dataset fetched once and cached.

ml-100k comes from RecBole's published archive when the internet is reachable, else from the copy
inside the ``recbole==1.2.1`` wheel (``pip download``; read with zipfile, nothing installed). Every
file is checked against its sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from models.errors import DataError, closest
from models.utils import file_lock


@dataclass(frozen=True)
class KnownDataset:
    archive_url: str
    wheel: str  # pip requirement whose wheel bundles the files
    wheel_dir: str  # folder inside the wheel
    sha256: dict[str, str]  # file name -> digest


KNOWN_DATASETS: dict[str, KnownDataset] = {
    "ml-100k": KnownDataset(
        archive_url="https://recbole.s3-accelerate.amazonaws.com/data/ml-100k.zip",
        wheel="recbole==1.2.1",
        wheel_dir="recbole/dataset_example/ml-100k/",
        sha256={
            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            "ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
            "ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
        },
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("SEQTUNE_CACHE", Path.home() / ".cache" / "seqtune"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_dataset_dir(dataset: str, data_path: str | None = None) -> Path | None:
    """The directory of a user's dataset, None for a known dataset that is fetched; raises when neither
    (a check that reads nothing and fetches nothing: the tuner runs it before a study starts)."""
    if data_path:
        root = Path(data_path).expanduser()
        for candidate in (root / dataset, root):
            if (candidate / f"{dataset}.inter").is_file():
                return candidate
        raise DataError(f"{root}: no {dataset}.inter here or in {root / dataset} (data_path in RecBole atomic format)")
    if dataset not in KNOWN_DATASETS:
        raise DataError(
            f"unknown dataset {dataset!r}{closest(dataset, KNOWN_DATASETS)}; known: "
            f"{', '.join(KNOWN_DATASETS)} (or give data_path= a directory in atomic format)"
        )
    return None


def resolve_dataset_dir(dataset: str, data_path: str | None = None) -> Path:
    """Return the directory holding ``<dataset>.inter`` and its companions."""
    return local_dataset_dir(dataset, data_path) or fetch_known_dataset(dataset)


def fetch_known_dataset(dataset: str) -> Path:
    spec = KNOWN_DATASETS[dataset]
    target = cache_root() / "datasets" / dataset
    if _verified(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{dataset}.lock"):
        if _verified(target, spec):  # another process fetched it meanwhile
            return target
        files = _from_archive(spec) or _from_wheel(spec)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{dataset}-"))
        for name, content in files.items():
            (staging / name).write_bytes(content)
        if target.exists():
            for old in target.iterdir():
                old.unlink()
            target.rmdir()
        os.replace(staging, target)  # atomic: readers see all files or none
    return target


def _verified(target: Path, spec: KnownDataset) -> bool:
    return all((target / n).is_file() and sha256_of(target / n) == h for n, h in spec.sha256.items())


def _pick_verified(names_to_bytes: dict[str, bytes], spec: KnownDataset) -> dict[str, bytes] | None:
    picked = {}
    for name, digest in spec.sha256.items():
        content = names_to_bytes.get(name)
        if content is None or hashlib.sha256(content).hexdigest() != digest:
            return None
        picked[name] = content
    return picked


def _from_archive(spec: KnownDataset) -> dict[str, bytes] | None:
    try:
        with urllib.request.urlopen(spec.archive_url, timeout=10) as response:
            payload = response.read()
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            contents = {Path(n).name: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return _pick_verified(contents, spec)  # the archive lacks .kg/.link: then the wheel serves


def _from_wheel(spec: KnownDataset) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, spec.wheel]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataError(f"could not fetch the dataset: `{' '.join(command[2:])}` failed: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            contents = {
                Path(n).name: wheel.read(n) for n in wheel.namelist() if n.startswith(spec.wheel_dir)
            }
    picked = _pick_verified(contents, spec)
    if picked is None:
        raise DataError(f"{wheels[0].name}: the bundled dataset files do not match their sha256 checksums")
    return picked
