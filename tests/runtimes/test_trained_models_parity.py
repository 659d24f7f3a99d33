"""The five committed reference models (models/<name>/1) give TFLM's exact output bytes in
every runtime: numpy reference, MicroPython (WebAssembly), C on the host, generated C, and
C on the emulated Cortex-M4. Fewer inputs for the big keyword CNN, which is slow in the
MicroPython and emulated builds."""
from pathlib import Path

import pytest

from tinyfleet.parity import compare

ROOT = Path(__file__).resolve().parents[2]
INPUTS = {"sine": 200, "anomaly": 100, "weather": 100, "iris": 100, "keyword": 4}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_committed_model_is_bit_exact_everywhere(name):
    folder = ROOT / "models" / name / "1"
    result = compare((folder / "model.tfmb").read_bytes(), (folder / "int8.tflite").read_bytes(),
                     INPUTS[name], seed=7)
    assert result["golden"] == "tflm"
    rows = {r["name"]: r for r in result["runtimes"]}
    assert set(rows) == {"reference", "micropython", "c", "c-codegen", "c-m4"}
    for runtime, row in rows.items():
        assert row["status"] == "ok", f"{name} on {runtime}: {row}"
        assert row["mismatching_bytes"] == 0 and row["compared"] == INPUTS[name]
