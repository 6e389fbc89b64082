"""Run each fuzz target (fuzz/fuzz_*.py) over its committed seed corpus, without atheris.

The targets assert their invariants themselves; here they only have to return.
A few hundred derived inputs (each seed cut short and with bytes flipped, from a
fixed seed) exercise them a little beyond the seeds.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = ("frames", "handshake", "deflate", "http11")


def load_target(name: str) -> Callable[[bytes], None]:
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"fuzz_{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target: Callable[[bytes], None] = module.TestOneInput
    return target


def seeds(name: str) -> list[Path]:
    return sorted((FUZZ / "corpus" / name).iterdir())


@pytest.mark.parametrize("name", TARGETS)
def test_target_passes_on_its_seed_corpus(name: str) -> None:
    target = load_target(name)
    files = seeds(name)
    assert len(files) >= 5, f"seed corpus of {name} is missing"
    for path in files:
        target(path.read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_target_passes_on_mutated_seeds(name: str) -> None:
    target = load_target(name)
    rng = random.Random(f"wsline-{name}")
    for path in seeds(name):
        data = path.read_bytes()
        for _ in range(8):
            mutated = bytearray(data[: rng.randint(0, len(data))] if rng.random() < 0.3 else data)
            for _ in range(rng.randint(1, 3)):
                if len(mutated) > 2:
                    mutated[rng.randrange(2, len(mutated))] ^= 1 << rng.randrange(8)
            target(bytes(mutated))


def test_targets_import_without_atheris() -> None:
    for name in TARGETS:
        source = (FUZZ / f"fuzz_{name}.py").read_text()
        top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not any("atheris" in line for line in top_level), name
