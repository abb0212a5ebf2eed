"""Interchange: `import harness` registers the model configs; `harness export` writes a folder that plain
open_clip and clip_benchmark load, giving exactly the embeddings the harness computes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main as harness_main
from harness.errors import UsageError
from harness.interchange import CONFIG_NAME, RECORD_NAME, WEIGHTS_NAME, export_open_clip
from harness.models import load_clip

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["a red circle", "a photo of a blue square", "two green triangles on grass", ""]


def _plain_env() -> dict[str, str]:
    """A child environment in which `import harness` would fail: plain open_clip only."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _images(n: int = 5, size: int = 80, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 7 * i, 3), dtype=np.uint8)) for i in range(n)]


def open_clip_train_checkpoint(root: Path, config: str = "tiny-clip", seed: int = 0) -> Path:
    """A checkpoint laid out as open_clip_train writes it: <run>/checkpoints/epoch_N.pt holding
    {"epoch", "name", "state_dict", "optimizer"}, and <run>/params.txt naming the model."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(config)
    with torch.no_grad():  # move every weight off its initial value, as training would
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    run = root / "tiny_scale"
    (run / "checkpoints").mkdir(parents=True)
    (run / "params.txt").write_text(f"batch_size: 128\nmodel: {config}\nprecision: fp32\n")
    ckpt = run / "checkpoints" / "epoch_4.pt"
    torch.save({"epoch": 4, "name": "tiny_scale", "state_dict": model.state_dict(), "optimizer": {}}, ckpt)
    return ckpt


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return open_clip_train_checkpoint(tmp_path_factory.mktemp("train"))


def _harness_embeddings(spec, images, texts) -> tuple[np.ndarray, np.ndarray]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the child uses one thread too: same kernels, bit-identical sums
    try:
        clip = load_clip(spec)
        return clip.encode_images(images), clip.encode_texts(texts)
    finally:
        torch.set_num_threads(threads)


PLAIN_OPEN_CLIP = """
import json, pickle, sys
import numpy as np, open_clip, torch
torch.set_num_threads(1)
assert "harness" not in sys.modules
folder, images_file, texts_file, out = sys.argv[1:]
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + folder)
tokenizer = open_clip.get_tokenizer("local-dir:" + folder)
model.eval()
images = pickle.load(open(images_file, "rb"))
texts = json.load(open(texts_file))
with torch.inference_mode():
    img = model.encode_image(torch.stack([preprocess(im.convert("RGB")) for im in images])).float()
    txt = model.encode_text(tokenizer(texts)).float()
img = torch.nn.functional.normalize(img, dim=-1).numpy()
txt = torch.nn.functional.normalize(txt, dim=-1).numpy()
np.savez(out, img=img, txt=txt, modules=np.array(sorted(m for m in sys.modules if m.startswith("harness"))))
"""


def _plain_embeddings(folder: Path, images, texts, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    import pickle

    (tmp / "images.pkl").write_bytes(pickle.dumps(images))
    (tmp / "texts.json").write_text(json.dumps(texts))
    out = tmp / "plain.npz"
    proc = subprocess.run([sys.executable, "-c", PLAIN_OPEN_CLIP, str(folder), str(tmp / "images.pkl"),
                           str(tmp / "texts.json"), str(out)], cwd=tmp, env=_plain_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    assert list(got["modules"]) == []  # plain open_clip: nothing of the harness was imported
    return got["img"], got["txt"]


def test_import_harness_registers_the_model_configs_with_open_clip(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    show = "print(json.dumps([m for m in ('tiny-clip', 'ref-b32-tiny', 'hype-tiny') if m in open_clip.list_models()]))"
    for imports in ("import json, harness, open_clip", "import json, open_clip, harness",  # either order
                    # a find_spec probe (libraries do this to test for open_clip) does not use up the hook
                    "import json, importlib.util, harness; importlib.util.find_spec('open_clip'); import open_clip"):
        proc = subprocess.run([sys.executable, "-c", f"{imports}; {show}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout) == ["tiny-clip", "ref-b32-tiny", "hype-tiny"]
    # `import harness` itself stays light: open_clip (and torch) are not imported by it
    proc = subprocess.run([sys.executable, "-c", "import sys, harness; print('open_clip' in sys.modules, 'torch' in sys.modules)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"], proc.stderr
    # and without harness, plain open_clip does not know them (so the export below is what makes it loadable)
    proc = subprocess.run([sys.executable, "-c", "import open_clip; print('tiny-clip' in open_clip.list_models())"],
                          cwd=tmp_path, env=_plain_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["False"], proc.stderr


def test_export_of_a_training_checkpoint_gives_identical_embeddings_in_plain_open_clip(checkpoint, tmp_path):
    out = tmp_path / "export"
    record = export_open_clip(checkpoint, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, RECORD_NAME])
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["model_cfg"] == json.loads((REPO / "harness/model_configs/tiny-clip.json").read_text())
    assert config["preprocess_cfg"]["size"] == [64, 64] and len(config["preprocess_cfg"]["mean"]) == 3
    assert record["open_clip_config"] == "tiny-clip" and record["source_kind"] == "checkpoint"

    images = _images()
    want_img, want_txt = _harness_embeddings(checkpoint, images, TEXTS)
    got_img, got_txt = _plain_embeddings(out, images, TEXTS, tmp_path)
    assert got_img.shape == want_img.shape == (5, 64) and got_txt.shape == (4, 64)
    assert np.array_equal(got_img, want_img) and np.array_equal(got_txt, want_txt)


def test_export_of_a_world_model_directory(tiny_world, tmp_path):
    model_dir = tiny_world / "models" / "ref_b32"
    out = tmp_path / "ref_b32"
    record = export_open_clip(model_dir, out)
    assert record["source_kind"] == "world model directory" and record["open_clip_config"] == "ref-b32-tiny"
    images = _images(3, size=64, seed=1)
    want_img, want_txt = _harness_embeddings(model_dir, images, TEXTS)
    got_img, got_txt = _plain_embeddings(out, images, TEXTS, tmp_path)
    assert np.array_equal(got_img, want_img) and np.array_equal(got_txt, want_txt)


def _wds_task(root: Path, n: int = 24, classes: int = 4) -> Path:
    from harness.benchmarks.evaluation import _write_wds

    rng = np.random.default_rng(3)
    blobs = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)).save(buf, "WEBP", quality=90)
        blobs.append(buf.getvalue())
    _write_wds(root, blobs, [i % classes for i in range(n)], [f"shape {c}" for c in range(classes)],
               ["a photo of a {c}.", "{c}"], per_shard=10)
    return root


def _clip_benchmark(argv: list[str], out: Path, env: dict[str, str], prelude: str = "") -> dict:
    code = f"{prelude}import sys; from clip_benchmark.cli import main; sys.argv = {['clip_benchmark', *argv]!r}; main()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=out.parent, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())["metrics"]


def test_clip_benchmark_evaluates_the_export_like_the_original(checkpoint, tmp_path):
    out = tmp_path / "export"
    export_open_clip(checkpoint, out)
    data = _wds_task(tmp_path / "wds_task")
    common = ["eval", "--dataset", "wds/task", "--dataset_root", str(data), "--task", "zeroshot_classification",
              "--batch_size", "8", "--num_workers", "0", "--no_amp"]
    exported = _clip_benchmark([*common, "--model_type", "open_clip", "--model", f"local-dir:{out}",
                                "--output", str(tmp_path / "exported.json")], tmp_path / "exported.json", _plain_env())
    # the original checkpoint, which clip_benchmark can only build once harness registered tiny-clip
    original = _clip_benchmark([*common, "--model", "tiny-clip", "--pretrained", str(checkpoint),
                                "--output", str(tmp_path / "original.json")], tmp_path / "original.json",
                               {**_plain_env(), "PYTHONPATH": str(REPO)},
                               prelude="import torch; torch.set_num_threads(1); import harness; ")
    assert set(exported) >= {"acc1", "acc5", "mean_per_class_recall"}
    assert exported == original


def test_cli_export_refuses_to_overwrite_and_names_the_folder(checkpoint, tmp_path, capsys):
    out = tmp_path / "export"
    assert harness_main(["export", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"local-dir:{out}" in printed and "tiny-clip" in printed
    before = (out / WEIGHTS_NAME).read_bytes()
    assert harness_main(["export", str(checkpoint), "--out", str(out)]) == 2
    assert str(out) in capsys.readouterr().err
    assert harness_main(["export", str(checkpoint), "--out", str(out), "--force"]) == 0
    assert (out / WEIGHTS_NAME).read_bytes() == before  # same weights, same bytes
    other = tmp_path / "not-an-export"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an earlier output; refusing to delete it"):
        export_open_clip(checkpoint, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"
