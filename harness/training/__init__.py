"""The fixed CLIP training recipe (DataComp's scales + `tiny`) driven through open_clip_train."""

from harness.training.driver import TrainingError, TrainPlan, plan_run, read_record, train, train_data_pattern
from harness.training.recipe import SCALES, Recipe, RecipeError, get_recipe, open_clip_args

__all__ = [
    "SCALES", "Recipe", "RecipeError", "TrainPlan", "TrainingError", "get_recipe", "open_clip_args",
    "plan_run", "read_record", "train", "train_data_pattern",
]
