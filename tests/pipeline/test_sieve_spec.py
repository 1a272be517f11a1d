from __future__ import annotations

import json

import numpy as np
import pytest

from cluster.errors import ConfigError
from pipeline.prng.sieve import SieveResult, sieve_range, verify_seeds
from pipeline.prng.sieve.dispatch import choose_path
from pipeline.prng.sieve.spec import SieveSpec, SieveSpecError, check_range

BASE = {"generator": "lcg32", "residues": [1, 2, 3], "threshold": 1.0}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"generator": "rand"}, "spec.generator"),
        ({"residues": []}, "spec.residues"),
        ({"residues": [1, 1000]}, "spec.residues[1]"),
        ({"residues": [1, "2"]}, "spec.residues[1]"),
        ({"threshold": 0}, "spec.threshold"),
        ({"threshold": 1.01}, "spec.threshold"),
        ({"threshold": float("nan")}, "spec.threshold"),
        ({"modulus": 1}, "spec.modulus"),
        ({"modulus": 2.5}, "spec.modulus"),
        ({"offset": -1}, "spec.offset"),
        ({"skip_min": 3, "skip_max": 2}, "spec.skip_min"),
        ({"direction": "sideways"}, "spec.direction"),
        ({"colour": "red"}, "spec.colour"),
        ({"generator": "mt19937", "offset": 2**20}, "spec.offset"),
    ],
)
def test_invalid_fields_are_named(change: dict, field: str) -> None:
    with pytest.raises(SieveSpecError) as info:
        SieveSpec.from_dict({**BASE, **change})
    message = str(info.value)
    assert field in message
    assert "\n" not in message
    assert isinstance(info.value, ConfigError)


def test_missing_required_field() -> None:
    with pytest.raises(SieveSpecError, match=r"spec\.threshold is required"):
        SieveSpec.from_dict({"generator": "lcg32", "residues": [1]})


def test_round_trip_and_numpy_values() -> None:
    spec = SieveSpec("mt19937", np.array([5, 6]), 0.5, skip_max=np.int64(2))
    assert spec.residues == (5, 6)
    assert SieveSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_positions_and_check_order() -> None:
    spec = SieveSpec("lcg32", (1, 2, 3), 1.0, offset=7, first_draw=10, skip_max=2, direction="reverse")
    assert spec.position(0, 2) == 7 + 10 * 3 + 2
    assert spec.check_order() == [2, 1, 0]
    assert spec.filter_length() == 1
    assert SieveSpec("lcg32", (1, 2, 3, 4), 0.5).filter_length() == 3


def test_seed_range_checks() -> None:
    assert check_range(0, 2**32) == (0, 2**32)
    for start, end in ((5, 5), (-1, 3), (0, 2**32 + 1)):
        with pytest.raises(SieveSpecError, match="seed range"):
            check_range(start, end)


def test_path_choice() -> None:
    assert choose_path("auto", "cpu", have_numba=True) == "fast"
    assert choose_path("auto", "cpu", have_numba=False) == "fallback"
    assert choose_path("auto", "cuda", have_kernels=False) == "fallback"
    assert choose_path("auto", "cuda:1", have_kernels=True) == "fast"
    assert choose_path("reference", "cpu") == "reference"
    with pytest.raises(SieveSpecError, match="needs CuPy and the C kernels"):
        choose_path("fast", "cuda:0", have_kernels=False)
    with pytest.raises(SieveSpecError, match="needs numba"):
        choose_path("fast", "cpu", have_numba=False)
    with pytest.raises(SieveSpecError, match="path="):
        choose_path("gpu", "cpu")


def test_result_json_and_verify_edges() -> None:
    spec = SieveSpec("lcg32", (0,), 1.0, modulus=2)
    res = sieve_range(spec, 0, 10, device="cpu")
    data = json.loads(res.to_json())
    assert data["survivor_count"] == len(res) == len(data["survivors"])
    assert data["seeds_tested"] == 10
    assert isinstance(res, SieveResult)
    assert verify_seeds(spec, [], device="cpu").survivors() == []
    with pytest.raises(SieveSpecError, match="seeds"):
        verify_seeds(spec, [2**32], device="cpu")


def test_auto_falls_back_to_torch_without_numba() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"  # makes `import numba` raise ImportError, as on a host without it
        "from pipeline.prng.sieve import SieveSpec, sieve_range\n"
        "r = sieve_range(SieveSpec('mt19937', (1,), 1.0, modulus=2), 0, 50, device='cpu')\n"
        "print(r.path, len(r))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    path, count = out.stdout.split()
    assert path == "fallback"
    assert 10 < int(count) < 50
