"""Text reports of a test set: the classification report, the confusion matrix, the misclassified.

Files written (atomically) by :func:`write_text_reports`: ``classification_report.txt`` and
``.json`` (precision, recall, F1, support per class; scikit-learn's numbers, imported here only),
``confusion_matrix.txt`` (rows: true class, columns: predicted) and ``misclassified.json`` (the
test indices with their true and predicted labels).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ._checkpoint import atomic_write_text

__all__ = ["classification_report_text", "confusion_matrix", "confusion_text", "short_name", "write_text_reports"]


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``m[true, predicted]`` counts (int64)."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def confusion_text(matrix: torch.Tensor, classes: Sequence[str]) -> str:
    """The matrix as an aligned table: rows are true classes, columns predicted ones."""
    names = [short_name(c) for c in classes]
    width = max(5, *(len(n) for n in names), len(str(int(matrix.max()) if matrix.numel() else 0)))
    lines = ["rows: true class, columns: predicted class", " " * width + " " + " ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, matrix.tolist(), strict=True):
        lines.append(name.rjust(width) + " " + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines) + "\n"


def short_name(name: str) -> str:
    """A class name cut to 10 characters, for table columns and picture labels."""
    return name if len(name) <= 10 else name[:9] + "."


def classification_report_text(
    labels: torch.Tensor, preds: torch.Tensor, classes: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """scikit-learn's classification report as text and as a dict."""
    from sklearn.metrics import classification_report

    ids = list(range(len(classes)))
    y, p = labels.numpy(), preds.numpy()
    kwargs: dict[str, Any] = {"labels": ids, "target_names": list(classes), "digits": 4, "zero_division": 0}
    text = classification_report(y, p, **kwargs)
    table = classification_report(y, p, output_dict=True, **kwargs)
    return str(text), dict(table)


def write_text_reports(
    out_dir: Path, labels: torch.Tensor, preds: torch.Tensor, classes: Sequence[str]
) -> tuple[dict[str, str], torch.Tensor, torch.Tensor]:
    """classification_report.txt/.json, confusion_matrix.txt, misclassified.json; (written, matrix, wrong)."""
    report, table = classification_report_text(labels, preds, classes)
    matrix = confusion_matrix(labels, preds, len(classes))
    wrong = (labels != preds).nonzero().squeeze(1)  # (N,) -> (wrong,) test indices
    atomic_write_text(out_dir / "classification_report.txt", report)
    atomic_write_text(out_dir / "confusion_matrix.txt", confusion_text(matrix, classes))
    listing = {
        "count": len(wrong),
        "of": len(labels),
        "indices": wrong.tolist(),
        "true": labels[wrong].tolist(),
        "predicted": preds[wrong].tolist(),
    }
    atomic_write_text(out_dir / "misclassified.json", json.dumps(listing) + "\n")
    atomic_write_text(out_dir / "classification_report.json", json.dumps(table, indent=2) + "\n")
    written = {
        "report": str(out_dir / "classification_report.txt"),
        "confusion_text": str(out_dir / "confusion_matrix.txt"),
        "misclassified_indices": str(out_dir / "misclassified.json"),
    }
    return written, matrix, wrong
