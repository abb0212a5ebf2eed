"""Zero-shot evaluation: suites as data (tasks/*.yaml), loaders, metrics, the evaluator, aggregation."""

from .aggregate import MissingTasksError, aggregate, aggregate_file, read_results
from .evaluator import RESULTS_FILE, SUMMARY_FILE, evaluate
from .suites import Suite, SuiteError, Task, load_suite

__all__ = [
    "RESULTS_FILE", "SUMMARY_FILE", "MissingTasksError", "Suite", "SuiteError", "Task", "aggregate",
    "aggregate_file", "evaluate", "load_suite", "read_results",
]
