"""Miniature copies of the DataComp eval tasks in their upstream formats, plus a lookup-table model.

The fake model makes every prediction known in advance:
- an image is a 1-pixel-high RGB strip of width DIM; its embedding is the red channel (normalised);
- a text's embedding is the sum of one-hot vectors at every "#<n>" in it (normalised).
So class "#j" has classifier e_j and an image ranks classes by its pixel values. Images are written
losslessly (webp / png) so the pixel values survive the round trip.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

DIM = 48


class LookupEncoder:
    """Duck-typed encoder (see harness/evaluation/encoders.py)."""

    def __init__(self):
        self.texts_seen: list[str] = []

    @staticmethod
    def preprocess(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB"), dtype=np.float32)[0, :, 0]

    def encode_image_batch(self, items, amp=False):
        x = np.stack(items).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_texts(self, texts, amp=True):
        out = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            ids = [int(m) for m in re.findall(r"#(\d+)", t)]
            if not ids:
                raise ValueError(f"fake text encoder: no #<n> in {t!r}")
            out[i, ids] = 1.0
        self.texts_seen.extend(texts)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def strip(values: dict[int, int] | np.ndarray) -> Image.Image:
    """An image whose embedding direction is ``values`` (dim -> 0..255)."""
    row = np.zeros(DIM, np.uint8)
    if isinstance(values, dict):
        for d, v in values.items():
            row[d] = v
    else:
        row[:] = values
    px = np.zeros((1, DIM, 3), np.uint8)
    px[0, :, 0] = row
    return Image.fromarray(px)


def ranking_image(ranking: list[int]) -> Image.Image:
    """An image whose class scores follow ``ranking`` (first = top-1); other classes score 0."""
    return strip({c: 250 - 20 * m for m, c in enumerate(ranking)})


def image_bytes(img: Image.Image, fmt: str = "webp") -> bytes:
    buf = io.BytesIO()
    if fmt == "webp":
        img.save(buf, format="WEBP", lossless=True)
    else:
        img.save(buf, format=fmt.upper())
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def write_wds(root: Path, samples: list[dict], classnames: list[str] | None, templates: list[str] | None,
              dataset_type: str | None = None, per_shard: int = 5) -> None:
    """clip_benchmark layout: samples are {"image": PIL, "cls"?: int, "txt"?: str, "npy"?: array}."""
    (root / "test").mkdir(parents=True, exist_ok=True)
    if classnames is not None:
        (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    if templates is not None:
        (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    if dataset_type:
        (root / "dataset_type.txt").write_text(dataset_type + "\n")
    shards = [samples[i : i + per_shard] for i in range(0, len(samples), per_shard)]
    for si, chunk in enumerate(shards):
        with tarfile.open(root / "test" / f"{si}.tar", "w") as tar:
            for j, s in enumerate(chunk):
                key = f"s{si * per_shard + j:07d}"
                _add(tar, f"{key}.webp", image_bytes(s["image"]))
                if "cls" in s:
                    _add(tar, f"{key}.cls", str(int(s["cls"])).encode())
                if "txt" in s:
                    _add(tar, f"{key}.txt", s["txt"].encode())
                if "npy" in s:
                    _add(tar, f"{key}.npy", npy_bytes(np.asarray(s["npy"])))
    (root / "test" / "nshards.txt").write_text(f"{len(shards)}\n")


# ---------------------------------------------------------------- expected values, computed plainly


@dataclass
class Expect:
    main: float | None  # the main metric in the default compat mode ("datacomp")
    extra: dict[str, float] = field(default_factory=dict)
    corrected: float | None = None  # the main metric with --compat corrected, where it differs

    def main_in(self, compat: str) -> float | None:
        return self.corrected if compat == "corrected" and self.corrected is not None else self.main


def plain_acc(labels, rankings, k):
    return sum(1 for y, r in zip(labels, rankings, strict=True) if y in r[:k]) / len(labels)


def plain_balanced(labels, preds):
    recalls = []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        recalls.append(sum(1 for i in idx if preds[i] == c) / len(idx))
    return sum(recalls) / len(recalls)


def plain_macro_f1(labels, preds):
    f1s = []
    for c in sorted(set(labels)):
        tp = sum(1 for y, p in zip(labels, preds, strict=True) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, preds, strict=True) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, preds, strict=True) if y == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def plain_worst_group(hits, groups, skip=()):
    accs = {}
    for g in sorted(set(groups)):
        if g in skip:
            continue
        idx = [i for i, x in enumerate(groups) if x == g]
        accs[g] = sum(hits[i] for i in idx) / len(idx)
    return min(accs.values())


# ---------------------------------------------------------------- the 40 tasks


def class_spec(seed: int, n: int, n_classes: int):
    """Labels and rankings with a seed-dependent mix of top-1 hits, top-5 hits and misses."""
    rng = np.random.default_rng(seed)
    labels = [int(i % n_classes) for i in range(n)]
    rankings = []
    for y in labels:
        others = [c for c in rng.permutation(n_classes).tolist() if c != y]
        pos = min(int(rng.geometric(0.5)) - 1, n_classes - 1)  # where the true class lands in the ranking
        rankings.append(others[:pos] + [y] + others[pos:])
    return labels, rankings


TEMPLATES = ["a photo of a {c}.", "itap of a {c}."]


def classnames(n_classes: int, offset: int = 0) -> list[str]:
    return [f"thing #{offset + j}" for j in range(n_classes)]


def fabricate_classification(root: Path, seed: int, n_classes: int = 6, n: int = 9, meta=None) -> dict:
    labels, rankings = class_spec(seed, n, n_classes)
    samples = []
    for i, (y, r) in enumerate(zip(labels, rankings, strict=True)):
        s = {"image": ranking_image(r), "cls": y}
        if meta is not None:
            s["npy"] = meta(i, y)
        samples.append(s)
    write_wds(root, samples, classnames(n_classes), TEMPLATES)
    preds = [r[0] for r in rankings]
    return {"labels": labels, "rankings": rankings, "preds": preds, "n_classes": n_classes,
            "meta": [s.get("npy") for s in samples]}


def fabricate_fairface(root: Path, seed: int, n: int = 12) -> dict:
    rng = np.random.default_rng(seed)
    sizes = {"race": 7, "gender": 2, "age": 9, "toxic": 20}
    offsets, off = {}, 0
    for h, k in sizes.items():
        offsets[h] = off
        off += k
    cls = [f"{h}:person #{offsets[h] + j}" for h, k in sizes.items() for j in range(k)]
    tmpl = [f"{h}:{t}" for h in sizes for t in ("a photo of a {c}.", "a face of a {c}.")]
    samples, preds, metas = [], {h: [] for h in sizes}, []
    for _ in range(n):
        race = int(rng.integers(0, 7))
        md = np.array([int(rng.integers(0, 9)), int(rng.integers(0, 2)), race, int(race != 1)], np.int64)
        vals = {}
        for h, k in sizes.items():
            p = int(rng.integers(0, k))
            preds[h].append(p)
            vals[offsets[h] + p] = 200
        samples.append({"image": strip(vals), "npy": md})
        metas.append(md)
    write_wds(root, samples, cls, tmpl)
    return {"preds": preds, "meta": np.stack(metas)}


def write_hf_cache(cache_dir: Path, repo_id: str, features, columns: dict[str, list], image_files: bool = False,
                   hash_: str = "0" * 16) -> Path:
    """Prepare ``repo_id``'s test split in a ``datasets`` cache, written by datasets itself (a builder
    with the repo id, as ``load_dataset(repo_id, split="test", cache_dir=cache_dir)`` leaves it):
    ``<cache_dir>/<namespace>___<name>/default/0.0.0/<hash>/<name>-test.arrow``.

    ``image_files``: store each image of an ``image`` column as a file under
    ``<cache_dir>/downloads/extracted/<hash>/`` and its path in the table, as a loading script that
    extracts an image archive does (nlphuji's scripts); otherwise the image bytes are embedded.
    """
    import datasets

    n = len(next(iter(columns.values())))
    if image_files and "image" in columns:
        folder = Path(cache_dir) / "downloads" / "extracted" / ("e" * 64) / "images"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, img in enumerate(columns["image"]):
            img.save(folder / f"{i}.png")
            paths.append(str(folder / f"{i}.png"))
        columns = {**columns, "image": paths}

    class _Prepared(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=features)

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name="test")]

        def _generate_examples(self):
            for i in range(n):
                yield i, {k: v[i] for k, v in columns.items()}

    builder = _Prepared(cache_dir=str(cache_dir), dataset_name=repo_id.split("/")[1], repo_id=repo_id, hash=hash_)
    builder.download_and_prepare()
    return Path(builder.cache_dir)


def _save_hf(root: Path, ds, layout: str, repo_id: str, columns: dict, features) -> None:
    """``layout``: "save_to_disk", "parquet" (the hub's export) or "hf_cache" (``root`` is the cache dir)."""
    import datasets

    if layout == "parquet":
        (root / "test").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "test" / "0000.parquet"))
    elif layout == "save_to_disk":
        datasets.DatasetDict({"test": ds}).save_to_disk(str(root))
    elif layout in ("hf_cache", "hf_cache_files"):
        write_hf_cache(root, repo_id, features, columns, image_files=layout == "hf_cache_files")
    else:  # pragma: no cover
        raise ValueError(layout)


def fabricate_hf_retrieval(root: Path, seed: int, n_images: int = 12, caps_per: int = 2, parquet: bool = False,
                           layout: str | None = None, repo_id: str = "nlphuji/flickr_1k_test_image_text_retrieval"):
    import datasets

    rng = np.random.default_rng(seed)
    vecs = rng.integers(1, 256, size=(n_images, DIM)).astype(np.uint8)
    dims = rng.permutation(DIM)[: n_images * caps_per].reshape(n_images, caps_per)
    for i in range(0, n_images, 2):  # half the images carry a strong match with their first caption
        vecs[i, dims[i, 0]] = 255
    images = [strip(v) for v in vecs]
    captions = [[f"a picture of #{d}" for d in row] for row in dims]
    feats = vecs.astype(np.float64) / np.linalg.norm(vecs.astype(np.float64), axis=1, keepdims=True)
    # plain recall@1: text query (one-hot dim d) -> best image; image query -> best caption
    img_hits = [int(np.argmax(feats[:, d]) == i) for i, row in enumerate(dims) for d in row]
    txt_hits = [int(dims.reshape(-1)[int(np.argmax(feats[i, dims.reshape(-1)]))] in dims[i]) for i in range(n_images)]
    expected = 0.5 * (sum(img_hits) / len(img_hits) + sum(txt_hits) / n_images)
    columns = {"image": images, "caption": captions, "img_id": [str(i) for i in range(n_images)]}
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Sequence(datasets.Value("string")),
                                  "img_id": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(columns, features=features)
    _save_hf(root, ds, layout or ("parquet" if parquet else "save_to_disk"), repo_id, columns, features)
    return expected


def fabricate_winogavil(root: Path, seed: int, layout: str = "save_to_disk"):
    import datasets

    rng = np.random.default_rng(seed)
    rows = {"cue": [], "candidates": [], "associations": [], "candidate_images": [], "num_associations": []}
    scores, groups = [], []
    for n_cand, n_assoc in [(5, 2), (6, 3), (10, 3), (10, 4), (12, 4), (12, 5)]:
        d = int(rng.integers(0, DIM))
        names = [f"w{seed}_{n_cand}_{k}" for k in range(n_cand)]
        assoc = sorted(rng.choice(n_cand, size=n_assoc, replace=False).tolist())
        # cue similarity of each candidate: distinct values along dim d, other dims random
        sim_vals = rng.permutation(np.arange(60, 60 + 10 * n_cand, 10))[:n_cand]
        imgs, sims = [], []
        for k in range(n_cand):
            v = rng.integers(0, 40, size=DIM).astype(np.uint8)
            v[d] = sim_vals[k]
            imgs.append(strip(v))
            vf = v.astype(np.float64)
            sims.append(vf[d] / np.linalg.norm(vf))
        top = set(np.argsort(sims)[-n_assoc:].tolist())
        truth = set(assoc)
        scores.append(len(top & truth) / len(top | truth))
        groups.append(n_cand)
        cue = ("Apple #%d" if n_cand == 6 else "tree #%d") % d
        rows["cue"].append(cue)
        rows["candidates"].append(names)
        rows["associations"].append([names[a] for a in assoc])
        rows["candidate_images"].append(imgs)
        rows["num_associations"].append(n_assoc)
    features = datasets.Features({
        "cue": datasets.Value("string"), "candidates": datasets.Sequence(datasets.Value("string")),
        "associations": datasets.Sequence(datasets.Value("string")),
        "candidate_images": datasets.Sequence(datasets.Image()), "num_associations": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict(rows, features=features)
    _save_hf(root, ds, layout, "nlphuji/winogavil", rows, features)
    s, g = np.array(scores), np.array(groups)
    return float(s[g >= 10].mean()), float(s.mean())


def fabricate_suite(data_root: Path, suite, hf_layout: str = "harness") -> dict[str, Expect]:
    """Write every task of ``suite`` under ``data_root``; return the expected main metric per key.

    ``hf_layout="harness"``: Flickr as a save_to_disk copy, MSCOCO as hub parquet files, WinoGAViL as
    save_to_disk, each in its ``source.path``. ``"datacomp"``: the three in DataComp's datasets cache
    ``<data_root>/hf_cache`` (Flickr's images as extracted files, as a loading script leaves them).
    """
    expect: dict[str, Expect] = {}
    for i, task in enumerate(suite.tasks):
        root = task.data_dir(data_root)
        if task.source.format == "hf" and hf_layout == "datacomp":
            root = data_root / "hf_cache"
        seed = 1000 + i
        if task.task == "zeroshot_classification":
            n_classes = {"vtab/pcam": 2, "renderedsst2": 2, "vtab/kitti_closest_vehicle_distance": 4}.get(task.key, 6)
            s = fabricate_classification(root, seed, n_classes=n_classes)
            acc1 = plain_acc(s["labels"], s["rankings"], 1)
            extra = {"acc1": acc1, "mean_per_class_recall": plain_balanced(s["labels"], s["preds"])}
            if n_classes >= 5:
                extra["acc5"] = plain_acc(s["labels"], s["rankings"], 5)
            expect[task.key] = Expect(extra[task.main_metric], extra)
        elif task.task == "wilds_iwildcam":
            s = fabricate_classification(root, seed, n_classes=7, n=14,
                                         meta=lambda i, y: np.array([i % 3, i, 2013, 1, 2, 3, 4, 5, y], np.int64))
            expect[task.key] = Expect(plain_macro_f1(s["labels"], s["preds"]))
        elif task.task == "wilds_camelyon17":
            s = fabricate_classification(root, seed, n_classes=2, n=10,
                                         meta=lambda i, y: np.array([i % 2, i % 3, y], np.int64))
            hits = [int(p == y) for p, y in zip(s["preds"], s["labels"], strict=True)]
            expect[task.key] = Expect(plain_acc(s["labels"], s["rankings"], 1),
                                      {"acc_wg": plain_worst_group(hits, [i % 3 for i in range(10)])})
        elif task.task == "wilds_fmow":
            # regions 0, 1, 3 and 5 ("Other"), 2 and 4 empty; the first three misses go to region 5, so
            # "Other" is the worst region and the two compat modes disagree
            labels, rankings = class_spec(seed, 24, 6)
            misses = [i for i, (y, r) in enumerate(zip(labels, rankings, strict=True)) if r[0] != y][:3]
            rest = iter((0, 1, 3)[k % 3] for k in range(24))
            regions = [5 if i in misses else next(rest) for i in range(24)]
            s = fabricate_classification(root, seed, n_classes=6, n=24,
                                         meta=lambda i, y, r=regions: np.array([r[i], i % 3, y], np.int64))
            hits = [int(p == y) for p, y in zip(s["preds"], s["labels"], strict=True)]
            # DataComp counts region 5 ("Other"); the corrected mode skips it
            expect[task.key] = Expect(plain_worst_group(hits, regions),
                                      {"acc_worst_year": plain_worst_group(hits, [i % 3 for i in range(24)])},
                                      corrected=plain_worst_group(hits, regions, skip=(5,)))
        elif task.task == "dollar_street":
            s = fabricate_classification(root, seed, n_classes=12, n=24,
                                         meta=lambda i, y: np.array([i % 4, 100 * i, i % 2], np.int64))
            hits = [int(y in r[:5]) for y, r in zip(s["labels"], s["rankings"], strict=True)]
            expect[task.key] = Expect(plain_worst_group(hits, [i % 4 for i in range(24)]))
        elif task.task == "geode":
            s = fabricate_classification(root, seed, n_classes=6, n=24,
                                         meta=lambda i, y: np.array([i % 3, i % 5], np.int64))
            hits = [int(p == y) for p, y in zip(s["preds"], s["labels"], strict=True)]
            expect[task.key] = Expect(plain_worst_group(hits, [i % 3 for i in range(24)]))
        elif task.task == "fairface":
            f = fabricate_fairface(root, seed)
            md, p = f["meta"], f["preds"]
            race_ok = [int((p["race"][i] != 1) == bool(md[i, 3])) for i in range(len(md))]
            crime = [int(t >= 18) for t in p["toxic"]]
            expect[task.key] = Expect(None, {
                "acc_race_avg": sum(race_ok) / len(race_ok),
                "acc_gender_avg": float(np.mean(np.array(p["gender"]) == md[:, 1])),
                "toxicity_crime_wg": plain_worst_group(crime, md[:, 2].tolist()),
                "acc_gender_x_wg": plain_worst_group(
                    [int(p["gender"][i] == md[i, 1]) for i in range(len(md))],
                    [(md[i, 1], md[i, 2]) for i in range(len(md))]),
            })
        elif task.task == "zeroshot_retrieval":
            mscoco = "mscoco" in task.key  # MSCOCO as hub parquet files, Flickr as a save_to_disk copy
            layout = ("hf_cache" if mscoco else "hf_cache_files") if hf_layout == "datacomp" else \
                ("parquet" if mscoco else "save_to_disk")
            expect[task.key] = Expect(fabricate_hf_retrieval(root, seed, n_images=10 if mscoco else 12,
                                                             layout=layout, repo_id=task.source.hub))
        elif task.task == "winogavil":
            main, avg = fabricate_winogavil(root, seed, layout="hf_cache" if hf_layout == "datacomp" else "save_to_disk")
            expect[task.key] = Expect(main, {"avg_jaccard_score": avg})
        else:  # pragma: no cover
            raise AssertionError(task.task)
    (data_root / "expected.json").write_text(json.dumps({k: e.main for k, e in expect.items()}))
    return expect
