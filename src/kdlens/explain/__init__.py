"""Explanations of a run: dark knowledge, attributions, faithfulness, disagreements, and
readable students (soft decision trees, scikit-learn surrogates)."""

from kdlens.explain.compute import compute_explanations, metrics_keys
from kdlens.explain.inputs import ExplainInputs, from_context, from_run_dir

__all__ = ["ExplainInputs", "compute_explanations", "from_context", "from_run_dir", "metrics_keys"]
