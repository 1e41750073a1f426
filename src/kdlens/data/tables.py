"""Your own tables: ``data.name: csv:PATH`` or ``parquet:PATH`` (pandas; pyarrow for parquet).

``data.target`` names the label column: its values become the classes (sorted; numbers in numeric
order). Every other column is a feature: numbers as they are, text, category and bool columns
one-hot encoded ("color=red") with categories learned from the training split only, so a category
first seen in val or test encodes as all zeros. Missing values are refused, naming the column,
unless ``data.impute: median`` fills numbers with the training split's median (a missing category
encodes as all zeros). ``data.drop_columns`` leaves columns out (ids, notes); ``data.text`` names
a text column instead, for a Hugging Face text teacher: then the other columns are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlens.data.base import Dataset
from kdlens.data.registry import register_source
from kdlens.errors import DataError

# A text column with more distinct values than this (and than half its rows) is an id or free
# text, not a category: one-hot encoding it would make a feature per row.
MAX_CATEGORIES = 1000


def _pandas():
    try:
        import pandas
    except ImportError:
        raise DataError("tables need pandas: pip install 'kdlens[tables]'") from None
    return pandas


@register_source("csv", help="<file> Your table as CSV; data.target names the label column.")
def load_csv(
    path: str,
    target: str | None = None,
    text: str | None = None,
    impute: str = "none",
    drop_columns: Sequence[str] = (),
) -> Dataset:
    pd = _pandas()
    file = _existing(path)
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"data file {file} is not a readable CSV ({_first_line(e)})") from None
    return table_dataset(frame, f"csv:{path}", target, text, impute, drop_columns)


@register_source(
    "parquet", help="<file> Your table as Parquet; data.target names the label column."
)
def load_parquet(
    path: str,
    target: str | None = None,
    text: str | None = None,
    impute: str = "none",
    drop_columns: Sequence[str] = (),
) -> Dataset:
    pd = _pandas()
    file = _existing(path)
    try:
        frame = pd.read_parquet(file)
    except ImportError:
        raise DataError("parquet files need pyarrow: pip install 'kdlens[tables]'") from None
    except Exception as e:  # pyarrow's ArrowInvalid and OSError variants for a file it cannot read
        raise DataError(
            f"data file {file} is not a readable Parquet file ({_first_line(e)})"
        ) from None
    return table_dataset(frame, f"parquet:{path}", target, text, impute, drop_columns)


def _existing(path: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data file not found: {file}")
    return file


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def table_dataset(
    frame,
    name: str,
    target: str | None,
    text: str | None = None,
    impute: str = "none",
    drop_columns: Sequence[str] = (),
) -> Dataset:
    """A ``Dataset`` from a pandas DataFrame; its features wait for :meth:`Dataset.prepare`."""
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if target is None:
        raise DataError(f"{name}: set data.target to the label column (columns: {columns})")
    named = [("target", target), ("text", text), *(("drop_columns", c) for c in drop_columns)]
    for field, col in named:
        if col is not None and col not in columns:
            raise DataError(f"{name}: no column {col!r} for data.{field} (columns: {columns})")
    y, classes = encode_labels(frame[target], f"{name}: target column {target!r}")
    n = len(frame)
    if text is not None:
        _refuse_missing(frame, [text], name, impute="none")
        return Dataset(
            name, torch.zeros(n, 0), y, "text", classes, texts=frame[text].astype(str).tolist()
        )
    features = frame.drop(columns=[target, *drop_columns])
    if features.shape[1] == 0:
        raise DataError(f"{name}: no feature columns besides the target {target!r}")
    encoder = TableEncoder(features, name, impute)
    return Dataset(name, torch.zeros(n, 0), y, "tabular", classes, preparer=encoder)


def encode_labels(values, where: str) -> tuple[torch.Tensor, list[str]]:
    """A label column -> (N,) class indices and sorted class names; one class is an error."""
    pd = _pandas()
    series = pd.Series(values)
    missing = series.isna()
    if missing.any():
        raise DataError(
            f"{where} has {int(missing.sum())} missing labels (first in row {_first(missing)})"
        )
    if pd.api.types.is_float_dtype(series):
        if not np.all(np.mod(series.to_numpy(), 1) == 0):
            raise DataError(f"{where} holds fractional numbers: kdlens needs class labels")
        series = series.astype(np.int64)
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        series = series.astype(str)
    codes, uniques = pd.factorize(series, sort=True)
    classes = [str(u) for u in uniques]
    if len(classes) < 2:
        raise DataError(f"{where} has one class ({classes[0]!r}); a classifier needs two or more")
    return torch.as_tensor(codes, dtype=torch.long), classes


def _first(mask) -> int:
    """1-based data row of the first True (the header is not a row)."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def _refuse_missing(frame, columns: list[str], name: str, impute: str) -> None:
    for col in columns:
        missing = frame[col].isna()
        if missing.any() and impute == "none":
            k = int(missing.sum())
            raise DataError(
                f"{name}: column {col!r} has {k} missing value{'s' * (k != 1)} (first in row "
                f"{_first(missing)}); fill {'them' if k != 1 else 'it'} or set data.impute: median"
            )


class TableEncoder:
    """Features of a table, encoded with what was learned from the training rows only.

    The state (``fit``) is plain JSON: the numeric columns' medians (with ``impute: median``) and
    each categorical column's categories, so a run folder can re-apply it (``transform``).
    """

    def __init__(self, features, name: str, impute: str = "none"):
        pd = _pandas()
        self.name = name
        self.impute = impute
        self.numeric: list[str] = []
        self.frame = features
        for col in features.columns:
            s = features[col]
            if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
                if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
                    raise DataError(
                        f"{name}: column {col!r} holds dates or times; convert it to numbers or "
                        "list it in data.drop_columns"
                    )
                count = s.nunique()
                if count > MAX_CATEGORIES or (count > 20 and count > len(s) / 2):
                    raise DataError(
                        f"{name}: column {col!r} has {count:,} distinct values in {len(s):,} rows, "
                        "too many to one-hot encode: list it in data.drop_columns (an id or free "
                        "text?) or make it numeric"
                    )
            else:
                self.numeric.append(col)
        _refuse_missing(features, list(features.columns), name, impute)

    def fit(self, train: Sequence[int]) -> dict[str, Any]:
        from sklearn.preprocessing import OneHotEncoder

        rows = self.frame.iloc[np.asarray(train, dtype=np.int64)]
        state: dict[str, Any] = {
            "columns": list(self.frame.columns),
            "medians": {},
            "categories": {},
        }
        for col in self.frame.columns:
            s = rows[col]
            if col in self.numeric:
                if self.impute == "median":
                    median = s.median()
                    if np.isnan(median):
                        raise DataError(
                            f"{self.name}: column {col!r} has no values in the training split "
                            "to take a median from"
                        )
                    state["medians"][col] = float(median)
            else:
                present = _as_text(s).dropna().to_numpy(dtype=object)[:, None]
                categories = OneHotEncoder().fit(present).categories_[0] if len(present) else []
                state["categories"][col] = [str(c) for c in categories]
        return state

    def transform(self, state: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
        from sklearn.preprocessing import OneHotEncoder

        if state["columns"] != list(self.frame.columns):
            raise DataError(
                f"{self.name}: the table's columns changed since its encoding was saved "
                f"(saved {state['columns']}, now {list(self.frame.columns)})"
            )
        blocks, names = [], []
        for col in self.frame.columns:
            if col in state["categories"]:
                categories = state["categories"][col]
                if not categories:  # never seen in training: nothing to encode
                    continue
                onehot = OneHotEncoder(
                    categories=[categories],
                    handle_unknown="ignore",  # unseen (and missing) categories: all zeros
                    sparse_output=False,
                    dtype=np.float32,
                    feature_name_combiner=lambda feature, category: f"{feature}={category}",
                )
                onehot.fit(np.asarray(categories, dtype=object)[:, None])
                values = _as_text(self.frame[col]).to_numpy(dtype=object)[:, None]
                blocks.append(onehot.transform(values))
                names += [str(n) for n in onehot.get_feature_names_out([col])]
            else:
                values = self.frame[col]
                if col in state["medians"]:
                    values = values.fillna(state["medians"][col])
                blocks.append(values.to_numpy(dtype=np.float32)[:, None])
                names.append(col)
        x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(self.frame), 0))
        return torch.as_tensor(x, dtype=torch.float32), names


def _as_text(series):
    """Categories as strings (``True``, ``red``); missing values become None."""
    return series.astype(str).astype(object).where(series.notna(), None)
