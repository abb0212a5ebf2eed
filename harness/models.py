"""Model loading: the project's open_clip configs and one loader for every kind of CLIP spec.

`load_clip(spec)` accepts
- a world model directory (`<world>/models/<name>/` holding `model.json` + `model.pt`),
- a checkpoint file written by open_clip_train (`.../checkpoints/epoch_N.pt`; the architecture is
  read from the run's `params.txt`), or `"<config>:<path/to/checkpoint.pt>"`,
- an open_clip id: `"ViT-B-32:openai"` (architecture:pretrained tag),
- a Hugging Face hub model `"hf-hub:apple/DFN-public"`, pinned to a revision (branch, tag or commit)
  with `"hf-hub:apple/DFN-public@<revision>"`, or a folder in that layout, `"local-dir:<path>"`.

Every model is created with its weights in one step and loaded strictly: weights that do not fit the
architecture (missing, unexpected or misshapen keys) or a hub snapshot without a weights file are a
`ModelLoadError` naming the spec and the keys, never a randomly initialised network.

A model's `fingerprint` is content, never a name: the sha256 of a local weights file; for a hub
model, a hash of the resolved commit and the sha256 of its config and weights files. `identity`
records what was loaded (source, resolved revision, file hashes) for score tables and subset.json.
Hub lookups go through huggingface_hub, so `HF_HUB_OFFLINE=1` resolves from the local cache only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import safeload
from harness.stages import sha256_file

CONFIG_DIR = Path(__file__).parent / "model_configs"
HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
HUB_CONFIG_FILE = "open_clip_config.json"
# The weights files open_clip looks for in a hub repo, in its order of preference (open_clip
# pretrained.py, download_pretrained_from_hf: the safetensors alternative of HF_WEIGHTS_NAME first).
HUB_WEIGHTS_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# ... and in a local folder (open_clip factory.py, _find_checkpoint_in_dir's preferred order).
LOCAL_WEIGHTS_FILES = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_RANDOM_INIT_WARNING = "No pretrained weights loaded for model"
_registered = False


class ModelLoadError(ValueError):
    """A model spec that does not resolve to a complete set of weights for its architecture."""


def register_configs() -> None:
    """Add harness/model_configs/*.json to open_clip's model registry (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    _registered = True


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RANDOM_INIT_WARNING)


@contextlib.contextmanager
def quiet_random_init() -> Iterator[None]:
    """Silence open_clip's "No pretrained weights loaded ... initialized randomly" warning.

    Only for models whose weights the caller sets itself: loaded and checked right after, or
    trained from scratch. Elsewhere that warning is the one sign of a half-loaded model.
    """
    root = logging.getLogger()  # open_clip's factory logs through the root logger
    drop = _DropRandomInitWarning()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    name: str
    fingerprint: str
    device: str = "cpu"
    config: str = ""  # the open_clip config name (or hf-hub:/local-dir: id) the model was built from
    identity: dict[str, Any] = field(default_factory=dict)

    def _run(self, fn, batches) -> np.ndarray:
        import torch

        outs = []
        with torch.inference_mode():
            for b in batches:
                f = fn(b.to(self.device)).float()
                outs.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
        dim = int(getattr(self.model, "embed_dim", 0) or 0) if not outs else outs[0].shape[1]
        return np.concatenate(outs, 0).astype(np.float32) if outs else np.zeros((0, dim), np.float32)

    def encode_images(self, images: list, batch_size: int = 256) -> np.ndarray:
        """float32 [N, D], L2-normalised."""
        import torch

        def batches():
            for i in range(0, len(images), batch_size):
                yield torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + batch_size]])

        return self._run(self.model.encode_image, batches())

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """float32 [N, D], L2-normalised."""

        def batches():
            for i in range(0, len(texts), batch_size):
                yield self.tokenizer(list(texts[i:i + batch_size]))

        return self._run(self.model.encode_text, batches())


def _read_model_json(d: Path) -> dict:
    path = d / "model.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{d} is not a world model directory: {path} is missing") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if "model_name" not in meta:
        raise ValueError(f"{path}: no 'model_name' (the open_clip config the weights belong to)")
    return meta


def _config_from_params(ckpt: Path) -> str | None:
    """open_clip_train writes <run>/params.txt beside <run>/checkpoints/; it names the model."""
    for params in (ckpt.parent.parent / "params.txt", ckpt.parent / "params.txt"):
        if params.is_file():
            for line in params.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "model":
                    return value.strip()
    return None


# --- strict loading ------------------------------------------------------------------------------

def _describe_keys(keys: list[str], limit: int = 8) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _state_dict_error(spec: str, weights: Path | str, arch: str, exc: Exception) -> ModelLoadError:
    """torch's strict load_state_dict message, boiled down to the keys, naming the spec."""
    msg = str(exc)
    parts = []
    for label, pattern in (("missing keys", r"Missing key\(s\) in state_dict: ([^\n]*)"),
                           ("unexpected keys", r"Unexpected key\(s\) in state_dict: ([^\n]*)")):
        found = re.search(pattern, msg)
        if found:
            keys = sorted(re.findall(r'"([^"]+)"', found.group(1)))
            parts.append(f"{label}: {_describe_keys(keys)}")
    sizes = re.findall(r"size mismatch for ([^:]+):", msg)
    if sizes:
        parts.append(f"wrong shapes: {_describe_keys(sizes)}")
    why = "; ".join(parts) if parts else msg
    return ModelLoadError(f"model {spec!r}: the weights in {weights} do not fit the {arch} architecture: {why}")


def _create(spec: str, arch: str, pretrained: str | None, weights: Path | str, device: str,
            label: str | None = None) -> tuple[Any, Any]:
    """open_clip model and eval transform, the weights loaded strictly in the same call."""
    import open_clip

    try:
        # open_clip torch.loads with weights_only=True; safeload names a refused file in one line
        with safeload.refusing(weights):
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    except RuntimeError as exc:
        if "state_dict" in str(exc):
            raise _state_dict_error(spec, weights, label or arch, exc) from exc
        raise
    return model, preprocess


# --- Hugging Face hub ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubSnapshot:
    """A hub model resolved to one commit: its config and weights files in the local cache."""

    repo_id: str
    requested: str | None  # the @REVISION asked for; None: the repository's default branch
    revision: str  # the commit hash the files come from
    config: Path
    weights: Path

    @property
    def spec(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}@{self.revision}"


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """'hf-hub:ORG/NAME[@REVISION]' -> (repo id, revision or None)."""
    if not spec.startswith(HUB_PREFIX):
        raise ValueError(f"{spec!r} is not a hub spec (hf-hub:ORG/NAME[@REVISION])")
    body = spec[len(HUB_PREFIX):]
    repo_id, sep, revision = body.partition("@")  # a repo id never holds '@'
    if not repo_id or (sep and not revision) or "@" in revision:
        raise ValueError(f"{spec!r}: expected hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return repo_id, (revision or None)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_hub(spec: str) -> HubSnapshot:
    """Resolve a hub spec to a commit and its config + weights files (downloaded unless offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo_id, requested = parse_hub_spec(spec)
    offline = _hub_offline()
    where = " in the local cache (HF_HUB_OFFLINE is set)" if offline else ""
    try:
        config = Path(hf_hub_download(repo_id, HUB_CONFIG_FILE, revision=requested, local_files_only=offline))
    except Exception as exc:  # missing repo, revision or file; no network
        raise ModelLoadError(f"model {spec!r}: cannot resolve {HUB_CONFIG_FILE}{where}: "
                             f"{type(exc).__name__}: {exc}") from exc
    # the cache keeps every file of a commit under snapshots/<commit hash>/
    revision = config.parent.name
    if not _COMMIT_RE.match(revision):
        raise ModelLoadError(f"model {spec!r}: {config} is not in a hub cache snapshot folder")
    for name in HUB_WEIGHTS_FILES:
        try:
            weights = Path(hf_hub_download(repo_id, name, revision=revision, local_files_only=offline))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            continue
        except Exception as exc:  # gated repo, network failure mid-way, ...
            raise ModelLoadError(f"model {spec!r}: cannot fetch {name} of {revision}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        return HubSnapshot(repo_id, requested, revision, config, weights)
    raise ModelLoadError(
        f"model {spec!r}: snapshot {revision} has {HUB_CONFIG_FILE} but no weights file "
        f"({' or '.join(HUB_WEIGHTS_FILES)}){where}; refusing to score with a randomly initialised network"
    )


def _load_config_and_weights(spec: str, config: Path, weights: Path, device: str) -> tuple[Any, Any, Any]:
    """Model, transform and tokenizer from an open_clip_config.json and one weights file.

    A private folder holding just those two files is given to open_clip as 'local-dir:', so the
    file loaded is the file hashed, whatever else the snapshot or folder holds.
    """
    import open_clip

    with tempfile.TemporaryDirectory(prefix="harness-model-") as tmp:
        os.symlink(config.resolve(), Path(tmp) / HUB_CONFIG_FILE)
        os.symlink(weights.resolve(), Path(tmp) / weights.name)
        arch = f"{LOCAL_DIR_PREFIX}{tmp}"
        model, preprocess = _create(spec, arch, None, weights, device, label=f"{config.name} ({config})")
        tokenizer = open_clip.get_tokenizer(arch)
    return model, preprocess, tokenizer


def _load_hub(spec: str, device: str) -> LoadedClip:
    snap = resolve_hub(spec)
    model, preprocess, tokenizer = _load_config_and_weights(spec, snap.config, snap.weights, device)
    files = {HUB_CONFIG_FILE: sha256_file(snap.config), snap.weights.name: sha256_file(snap.weights)}
    identity = {"source": "hf-hub", "spec": spec, "repo_id": snap.repo_id, "requested_revision": snap.requested,
                "revision": snap.revision, "sha256": files}
    fingerprint = _digest({"hf-hub": snap.repo_id, "revision": snap.revision, "sha256": files})
    model.eval()
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer, name=spec,
                      fingerprint=fingerprint, device=device, config=spec, identity=identity)


def _load_local_dir(spec: str, device: str) -> LoadedClip:
    folder = Path(spec[len(LOCAL_DIR_PREFIX):])
    config = folder / HUB_CONFIG_FILE
    if not config.is_file():
        raise ModelLoadError(f"model {spec!r}: {config} is missing")
    weights = next((folder / n for n in LOCAL_WEIGHTS_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"model {spec!r}: {folder} has {HUB_CONFIG_FILE} but no weights file "
                             f"({', '.join(LOCAL_WEIGHTS_FILES)})")
    model, preprocess, tokenizer = _load_config_and_weights(spec, config, weights, device)
    files = {HUB_CONFIG_FILE: sha256_file(config), weights.name: sha256_file(weights)}
    identity = {"source": "local-dir", "path": str(folder.resolve()), "sha256": files}
    model.eval()
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer, name=spec,
                      fingerprint=_digest({"sha256": files}), device=device, config=spec, identity=identity)


def _snapshot_revision(path: Path) -> str | None:
    """The commit of a file in a hub cache snapshot (.../snapshots/<commit>/file), else None."""
    if path.parent.parent.name == "snapshots" and _COMMIT_RE.match(path.parent.name):
        return path.parent.name
    return None


def spec_fingerprint(spec: str | Path) -> str:
    """The content fingerprint of whatever a model spec names, without loading a model: for stage keys
    (a moved hub ref or rewritten weights file changes it). A spec that does not resolve is an error."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        snap = resolve_hub(text)
        return _digest({"hf-hub": snap.repo_id, "revision": snap.revision,
                        "sha256": [sha256_file(snap.config), sha256_file(snap.weights)]})
    path = Path(text[len(LOCAL_DIR_PREFIX):]) if text.startswith(LOCAL_DIR_PREFIX) else Path(text)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():  # a world model directory or a local-dir folder: every file, by relative name
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return _digest({str(p.relative_to(path)): sha256_file(p) for p in files})
    arch, sep, tag = text.partition(":")
    if sep and Path(tag).is_file():
        return _digest({"config": arch, "sha256": sha256_file(tag)})
    if sep:
        import open_clip

        register_configs()
        cfg = open_clip.get_pretrained_cfg(arch, tag) if arch in open_clip.list_models() else None
        if cfg:
            return _digest({"config": arch, "sha256": sha256_file(open_clip.download_pretrained(cfg))})
    raise ModelLoadError(f"model {text!r}: not a file, a folder, 'hf-hub:ORG/NAME[@REVISION]' or "
                         "'<arch>:<pretrained tag or file>'")


# --- the loader --------------------------------------------------------------------------------------

def load_clip(spec: str | Path, device: str = "cpu") -> LoadedClip:
    """Load a CLIP model (see the module docstring for the accepted specs); eval mode, on `device`."""
    import open_clip

    register_configs()
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        return _load_hub(text, device)
    if text.startswith(LOCAL_DIR_PREFIX):
        return _load_local_dir(text, device)
    path = Path(spec)
    if path.is_dir():
        meta = _read_model_json(path)
        if meta.get("kind", "clip") != "clip":
            raise ValueError(f"{path}: model kind {meta.get('kind')!r} is not a CLIP model "
                             "(hyperbolic MERU models are loaded by harness.baselines.hype)")
        weights = path / meta.get("weights", "model.pt")
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: weights file {weights.name} is missing")
        config = meta["model_name"]
        model, preprocess = _create(text, config, str(weights), weights, device)
        name, fingerprint = meta.get("name", path.name), sha256_file(weights)
        identity = {"source": "world-model", "path": str(path.resolve()), "config": config, "sha256": fingerprint}
    elif path.is_file():
        config = _config_from_params(path)
        if config is None:
            raise ValueError(f"{path}: cannot tell the architecture of this checkpoint (no params.txt "
                             "beside its checkpoints folder); pass '<open_clip config>:<checkpoint path>'")
        model, preprocess = _create(text, config, str(path), path, device)
        name, fingerprint = path.stem, sha256_file(path)
        identity = {"source": "checkpoint", "path": str(path.resolve()), "config": config, "sha256": fingerprint}
    else:
        arch, sep, tag = text.partition(":")
        if sep and Path(tag).is_file():
            config = arch
            model, preprocess = _create(text, arch, tag, tag, device)
            name, fingerprint = f"{arch}:{Path(tag).name}", sha256_file(tag)
            identity = {"source": "checkpoint", "path": str(Path(tag).resolve()), "config": arch,
                        "sha256": fingerprint}
        elif sep and arch in open_clip.list_models():
            config = arch
            pretrained_cfg = open_clip.get_pretrained_cfg(arch, tag)
            if not pretrained_cfg:
                raise ModelLoadError(f"model {text!r}: open_clip has no pretrained tag {tag!r} for {arch} "
                                     f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(arch))})")
            # the file open_clip loads for the tag (downloaded here once, then read from its cache)
            ckpt = Path(open_clip.download_pretrained(pretrained_cfg))
            model, preprocess = _create(text, arch, tag, ckpt, device)
            name, fingerprint = text, sha256_file(ckpt)
            identity = {"source": "open_clip", "config": arch, "pretrained": tag, "path": str(ckpt),
                        "revision": _snapshot_revision(ckpt), "sha256": fingerprint}
        else:
            raise ValueError(f"cannot load CLIP model {text!r}: not a model directory, a checkpoint file, "
                             "'<arch>:<pretrained tag or file>', 'hf-hub:<repo>[@<revision>]' or 'local-dir:<path>'")
    model.eval()
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=open_clip.get_tokenizer(config),
                      name=name, fingerprint=fingerprint, device=device, config=config, identity=identity)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (rows are L2-normalised by LoadedClip)."""
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
