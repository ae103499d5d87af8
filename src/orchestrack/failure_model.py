"""The learned tier of failure diagnosis: a small linear model for text that no rule decides.

A multinomial logistic regression over words, word pairs and the parts of exception names, trained
on the tuning part of the failure corpus (``scripts/train-failure-model``) and shipped as data
(``failure_model.json``): no dependency, no network, the same answer every time. The classifier
asks it only when no rule and no orchestrator signal decided, and takes its label only at or above
the model's confidence threshold (chosen when it was trained so that its precision stays at or
above 95 %); below it the failure stays ``unknown``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

MODEL_FILE = "failure_model.json"

_WORD = re.compile(r"[a-z][a-z0-9]*(?:['_][a-z0-9]+)*")
_CAMEL = re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b")
_CAMEL_PART = re.compile(r"[A-Z][a-z0-9]*")
_STOP = frozenset({"the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "for", "is", "was", "be", "by", "with",
                   "it", "this", "that", "as", "from", "are", "s"})
#: The end of a log is where it failed; the model reads this many characters of it.
TEXT_LIMIT = 6000


def features(text: str, exit_code: int | None = None) -> set[str]:
    """The binary features of a failure text: words, adjacent word pairs, exception-name parts, exit code."""
    text = text[-TEXT_LIMIT:]
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) < 40]
    found = set(words)
    found.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    for name in _CAMEL.findall(text):  # ExecutorLostFailure -> executor, lost, failure
        found.update(f"~{part.lower()}" for part in _CAMEL_PART.findall(name))
    if exit_code is not None:
        found.add(f"exit:{exit_code}")
    return found


@dataclass(frozen=True)
class Prediction:
    """What the model says: the label, its probability, and the features that weighed most for it."""

    label: str
    confidence: float
    threshold: float
    top_features: tuple[tuple[str, float], ...]

    @property
    def confident(self) -> bool:
        """Whether the confidence reaches the threshold the model was shipped with (a threshold of
        1.0 means no precise enough threshold was found: the model only advises)."""
        return self.threshold < 1.0 and self.confidence >= self.threshold


@dataclass(frozen=True)
class FailureModel:
    """Weights of a trained model: one row of per-label weights per feature, plus per-label biases."""

    labels: tuple[str, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    threshold: float
    meta: dict[str, Any]

    def predict(self, text: str, exit_code: int | None = None) -> Prediction:
        """The most probable label of ``text`` with its probability and the strongest features for it."""
        present = [f for f in features(text, exit_code) if f in self.weights]
        scores = list(self.bias)
        for feature in present:
            for index, weight in enumerate(self.weights[feature]):
                scores[index] += weight
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        strongest = sorted(((f, self.weights[f][best]) for f in present), key=lambda item: (-item[1], item[0]))
        return Prediction(self.labels[best], exps[best] / sum(exps), self.threshold,
                          tuple((f, round(w, 3)) for f, w in strongest[:6] if w > 0))

    def to_json(self) -> dict[str, Any]:
        """The JSON document the model is shipped as."""
        weights = {f: [round(w, 4) for w in row] for f, row in sorted(self.weights.items())}
        return {"labels": list(self.labels), "bias": [round(b, 4) for b in self.bias], "threshold": self.threshold,
                "meta": self.meta, "weights": weights}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> FailureModel:
        """A model from the JSON document :meth:`to_json` wrote."""
        return cls(tuple(document["labels"]), tuple(document["bias"]),
                   {f: tuple(row) for f, row in document["weights"].items()}, float(document["threshold"]),
                   dict(document.get("meta", {})))


@functools.cache
def shipped_model() -> FailureModel | None:
    """The model shipped with orchestrack, read once; ``None`` if the data file is missing."""
    try:
        raw = resources.files("orchestrack").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return FailureModel.from_json(json.loads(raw))


def train(samples: list[tuple[str, int | None, str]], labels: tuple[str, ...], *, epochs: int = 40,
          l2: float = 1e-4, rate: float = 0.2, min_count: int = 2) -> FailureModel:
    """Fit the model to ``(text, exit_code, label)`` samples, deterministically (fixed order, no randomness).

    Features seen in fewer than ``min_count`` samples are dropped (they would only memorise one text).
    """
    rows = [(sorted(features(text, code)), labels.index(label)) for text, code, label in samples]
    counts: dict[str, int] = {}
    for feats, _ in rows:
        for feature in feats:
            counts[feature] = counts.get(feature, 0) + 1
    kept = {f for f, n in counts.items() if n >= min_count}
    rows = [([f for f in feats if f in kept], label) for feats, label in rows]
    width = len(labels)
    weights: dict[str, list[float]] = {f: [0.0] * width for f in sorted(kept)}
    bias = [0.0] * width
    # Interleave the samples by a fixed hash so that one file's texts do not come in a block.
    order = sorted(range(len(rows)), key=lambda i: (i * 2654435761) % 4294967296)
    for epoch in range(epochs):
        step = rate / (1 + epoch * 0.25)
        for index in order:
            feats, label = rows[index]
            scores = bias[:]
            for feature in feats:
                row = weights[feature]
                for k in range(width):
                    scores[k] += row[k]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            total = sum(exps)
            grads = [exps[k] / total - (1.0 if k == label else 0.0) for k in range(width)]
            scale = step / max(1.0, math.sqrt(len(feats)))
            for k in range(width):
                bias[k] -= step * grads[k] * 0.1
            for feature in feats:
                row = weights[feature]
                for k in range(width):
                    row[k] -= scale * (grads[k] + l2 * row[k])
    useful = {f: tuple(row) for f, row in weights.items() if max(abs(w) for w in row) >= 0.02}
    return FailureModel(labels, tuple(bias), useful, 1.0, {})
