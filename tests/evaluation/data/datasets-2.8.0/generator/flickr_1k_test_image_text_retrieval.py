"""A stand-in for a hub loading script (written for this test): images in a zip, rows in a JSON file."""
import json
import os

import datasets


class FlickrStandIn(datasets.GeneratorBasedBuilder):
    VERSION = datasets.Version("1.0.0")

    def _info(self):
        return datasets.DatasetInfo(features=datasets.Features({
            "image": datasets.Image(),
            "caption": datasets.Sequence(datasets.Value("string")),
            "filename": datasets.Value("string"),
        }))

    def _split_generators(self, dl_manager):
        images = dl_manager.download_and_extract(os.environ["GEN28_ZIP"])
        return [datasets.SplitGenerator(name=datasets.Split.TEST,
                                        gen_kwargs={"rows": os.environ["GEN28_ROWS"], "images": images})]

    def _generate_examples(self, rows, images):
        with open(rows) as f:
            for i, r in enumerate(json.load(f)):
                yield i, {"image": os.path.join(images, "imgs", r["filename"]), "caption": r["caption"],
                          "filename": r["filename"]}
