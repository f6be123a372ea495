"""benchmarks/gpu_check.py, the one script that measures on a GPU machine: its CIFAR-10 pack round-trips, and
its JSON is complete whatever ran (every section present, skipped ones saying why); the smoke mode end to end."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg_zip(path: Path, per_class: int = 2) -> dict[str, np.ndarray]:
    """A ZIP laid out like the CIFAR-10 archive, with solid-colour images whose colour says the class."""
    from PIL import Image

    from_class = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for split in ("train", "test"):
            for c, name in enumerate(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                      "ship", "truck")):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (c * 25, 255 - c * 25, 128)).save(buf, "JPEG", quality=95)
                    z.writestr(f"cifar10/{split}/{name}/{i:04d}.jpg", buf.getvalue())
                from_class[c] = np.array([c * 25, 255 - c * 25, 128])
    return from_class


def test_the_pack_keeps_every_image_with_its_label_and_split(gpu_check, tmp_path):
    colours = jpeg_zip(tmp_path / "c.zip", per_class=2)
    info = gpu_check.prep(str(tmp_path / "c.zip"), str(tmp_path / "pack.npz"))
    assert info["images"] == 40 and info["train"] == 20
    images = gpu_check.decode_pack(str(tmp_path / "pack.npz"))
    assert images["x_train"].shape == (20, 32, 32, 3) and images["x_test"].shape == (20, 32, 32, 3)
    assert sorted(images["y_train"].tolist()) == sorted(list(range(10)) * 2)
    for x, y in zip(images["x_train"], images["y_train"]):  # the colour decodes back to its class (JPEG: +-3)
        assert np.abs(x.reshape(-1, 3).mean(0) - colours[int(y)]).max() < 4
    sub = gpu_check.decode_pack(gpu_check.subset_pack(str(tmp_path / "pack.npz"), str(tmp_path / "s.npz"), 5, 3))
    assert len(sub["y_train"]) == 5 and len(sub["y_test"]) == 3
    for x, y in zip(sub["x_test"], sub["y_test"]):
        assert np.abs(x.reshape(-1, 3).mean(0) - colours[int(y)]).max() < 4
    data = gpu_check.cifar_dataset(images)
    assert (data.n_train, data.n_val, tuple(data.x_train.shape[1:])) == (20, 20, (3, 32, 32))


def test_the_json_is_complete_when_every_section_is_skipped(gpu_check, tmp_path):
    jpeg_zip(tmp_path / "c.zip", per_class=1)
    gpu_check.prep(str(tmp_path / "c.zip"), str(tmp_path / "pack.npz"))
    out = tmp_path / "check.json"
    gpu_check.main(["--smoke", "--data", str(tmp_path / "pack.npz"), "--out", str(out),
                    "--skip", ",".join(gpu_check.SECTIONS)])
    d = json.loads(out.read_text())
    assert d["finished"] and d["smoke"] and d["environment"]["device"] == "cpu"
    assert set(d["sections"]) == set(gpu_check.SECTIONS)
    assert all(s["skipped"] == "--skip" for s in d["sections"].values())
    assert d["data"]["train"] == 10


@pytest.mark.slow
def test_the_smoke_mode_runs_every_section_on_the_cpu(gpu_check, tmp_path):
    jpeg_zip(tmp_path / "c.zip", per_class=30)
    gpu_check.prep(str(tmp_path / "c.zip"), str(tmp_path / "pack.npz"))
    out = tmp_path / "check.json"
    gpu_check.main(["--smoke", "--data", str(tmp_path / "pack.npz"), "--out", str(out)])
    s = json.loads(out.read_text())["sections"]
    assert not [name for name, sec in s.items() if sec.get("error")], s
    assert s["tests"]["returncode"] == 0 and s["tests"]["tests"]  # skipped here: no CUDA
    runs = {(r["model"], r["resolution"], r["mode"]): r for r in s["throughput"]["runs"]}
    assert runs[("mobilenet-v2", 224, "fp32")]["images_per_s"] > 0
    assert "skipped" in runs[("mobilenet-v2", 224, "bf16+compile")]
    assert all("images_per_s" in a or "skipped" in a or "error" in a for a in s["throughput"]["anchor"])
    assert s["real_vs_synthetic"]["memory_over_synthetic"] > 0 and s["real_vs_synthetic"]["streamed_over_synthetic"] > 0
    one, two, windowed = s["trials_per_hour"]["runs"]
    assert [(r["workers"], r["windows"]) for r in (one, two, windowed)] == [(1, False), (2, False), (2, True)]
    # two worker processes may still be starting at the smoke's deadline on a busy machine
    assert one["completed"] >= 1 and two["submitted"] >= 2 and windowed["submitted"] >= 2
    assert not one["failed"] and not two["failed"] and not windowed["failed"]
    assert s["converge"]["epochs"] == 1 and s["converge"]["history"]


@pytest.mark.slow
def test_the_supernet_gpu_call_runs_from_a_pack_and_summarises_at_its_deadline(gpu_check, tmp_path):
    """benchmarks/supernet_gpu.py, the prepared device call of issue 29, on the CPU at tiny sizes: from a
    CIFAR-10-like pack to the fidelity summary; then a deadline that kills every process, and the summary is
    made from what they left (the supernet's step recorded)."""
    import subprocess
    import sys

    jpeg_zip(tmp_path / "c.zip", per_class=6)
    pack = str(tmp_path / "pack.npz")
    gpu_check.prep(str(tmp_path / "c.zip"), pack)
    script = SCRIPT.parent / "supernet_gpu.py"
    tiny = ["--pack", pack, "--device", "cpu", "--workers", "1", "--archs", "3", "--epochs", "0.5",
            "--steps", "6", "--train-limit", "40", "--holdout", "20", "--width", "0.25", "--batch-size", "8"]
    r = subprocess.run([sys.executable, str(script), *tiny, "--out", str(tmp_path / "full"), "--budget", "600"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads((tmp_path / "full" / "gpu_summary.json").read_text())
    assert {p["rc"] for p in got["processes"].values()} == {0} and got["summary_rc"] == 0
    assert got["partial"]["supernet_step"] == 6 and got["partial"]["archs_complete"] == 3
    assert got["summary"]["archs"] == 3 and "seed_to_seed_tau_p_method" in got["summary"]
    # a deadline before anything can finish: every process killed, the summary says there is nothing to read
    r = subprocess.run([sys.executable, str(script), *tiny, "--steps", "100000", "--out", str(tmp_path / "cut"),
                        "--budget", "14", "--reserve", "10"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    cut = json.loads((tmp_path / "cut" / "gpu_summary.json").read_text())
    assert {p["rc"] for p in cut["processes"].values()} == {"killed at the deadline"}
    assert cut["summary_rc"] != 0 and cut["summary"] is None
