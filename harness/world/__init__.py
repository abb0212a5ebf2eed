"""The generated tiny DataComp world (see README.md in this folder).

Public API:
  build_world(out, seed=0, profile="default", models=None, knobs=None, workers=None) -> dict   (world.json)
  world_fingerprint(world_dir) -> str                            (content hash of a built world, 16 hex)
  training_pairs(seed, n, kind="clean"|"web", size=None) -> Pairs                (model training data)
  heldout_pairs(seed, n, noise="clean", detail=None, size=None) -> Pairs         (fresh, labelled samples)
  caption_levels(scene, rng) -> (generic, medium, detailed)
  sample_scene(rng, **fixed) -> Scene; render_scene(scene) -> PIL image
  NOISE_TYPES, DEFAULT_MIX, PROFILES, MODEL_BUILDERS, TASKS
"""

from .build import DEFAULT_MODELS, WorldMismatchError, build_world, model_done
from .captions import LEVELS, caption_at, caption_levels, translated_caption
from .data import STREAM_OTHERS, Pairs, heldout_pairs, training_pairs
from .eval_suite import TASKS, suite_yaml
from .fingerprint import world_fingerprint
from .profiles import PROFILES, profile_knobs
from .reference_models import MODEL_BUILDERS, MissingBuilderError, train_clip, world_knobs
from .samples import DEFAULT_MIX, NOISE_TYPES, WEB_MIX, fit_square
from .scenes import Scene, render_scene, sample_scene

__all__ = [
    "DEFAULT_MIX", "DEFAULT_MODELS", "LEVELS", "MODEL_BUILDERS", "NOISE_TYPES", "PROFILES", "STREAM_OTHERS",
    "TASKS", "WEB_MIX", "MissingBuilderError", "Pairs", "Scene", "WorldMismatchError", "build_world",
    "caption_at", "caption_levels", "fit_square", "heldout_pairs", "model_done",
    "profile_knobs", "render_scene", "sample_scene", "suite_yaml", "train_clip", "training_pairs",
    "translated_caption", "world_fingerprint", "world_knobs",
]
