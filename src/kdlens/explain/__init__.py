"""Explanations of what was distilled: readable students (surrogates, soft trees), ..."""
