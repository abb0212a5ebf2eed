"""A stand-in for a hub loading script (written for this test): images in a zip, rows in a JSON file."""
import json
import os

import datasets


class Winogavil(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIGS = [datasets.BuilderConfig(name="TEST", version=datasets.Version("1.1.0"))]

    def _info(self):
        return datasets.DatasetInfo(features=datasets.Features({
            "cue": datasets.Value("string"),
            "candidates": datasets.Sequence(datasets.Value("string")),
            "associations": datasets.Sequence(datasets.Value("string")),
            "candidate_images": datasets.Sequence(datasets.Image()),
            "num_associations": datasets.Value("int64"),
        }))

    def _split_generators(self, dl_manager):
        images = dl_manager.download_and_extract(os.environ["GEN28_ZIP"])
        return [datasets.SplitGenerator(name=datasets.Split.TEST,
                                        gen_kwargs={"rows": os.environ["GEN28_ROWS"], "images": images})]

    def _generate_examples(self, rows, images):
        with open(rows) as f:
            for i, r in enumerate(json.load(f)):
                yield i, {**{k: v for k, v in r.items() if k != "candidate_files"},
                          "candidate_images": [os.path.join(images, "imgs", n) for n in r["candidate_files"]]}
