"""Shared fixtures: where the shared corpus and checks live, and how to run the CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path | None:
    env = os.environ.get("WHYRST_CORPUS")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "corpus"]:
        if (cand / "MANIFEST.tsv").exists():
            return cand
    return None


def manifest() -> list[dict[str, str]]:
    d = corpus_dir()
    if d is None:
        return []
    with open(d / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    d = corpus_dir()
    if d is None:
        pytest.skip("shared corpus not found (set WHYRST_CORPUS)")
    return d


@pytest.fixture(scope="session")
def seed_dir() -> Path:
    d = corpus_dir()
    checks = d.parent / "checks" / "seed" if d else None
    if checks is None or not checks.exists():
        pytest.skip("shared checks/seed not found")
    return checks


def run_whyrst(*args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "whyrst", *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=REPO)
