"""The predmesh model spec (`<repo>/<name>/<version>/model.yaml`): schema, parsing and validation.

A spec says which features a model consumes (in model input order) and how each is
turned into float32 columns, which ONNX tensors to feed and fetch, and how raw model
output becomes a `Prediction`. Example::

    name: fraud
    version: "1"
    kind: xgboost                # free-form family: xgboost, mlp, ...
    task: classifier             # classifier | regressor
    entity_type: user
    class_labels: [legit, fraud]
    inputs:                      # ORDER = column order of the model input
      - {name: amount, transform: identity}
      - {name: account_age_days, transform: log1p}
      - {name: txn_count_7d, transform: {type: standardize, mean: 6.0, std: 2.4}}
      - {name: country, transform: {type: onehot, categories: [US, GB, other], other: other}}
      - {name: channel, transform: {type: onehot, categories: [web, app, pos]}}
      - {name: is_verified, transform: bool}
    onnx: {input: input, output: probabilities}
    postprocess:
      positive_class: fraud      # score = P(positive_class); default: last class label
      threshold: 0.5             # optional, binary only: label = positive iff score >= threshold
      # regressor instead: {clip_min: 0.0, clip_max: 1.0} (both optional)
    metadata: {holdout_auc: 0.83}  # free-form, informational
    device: cpu                  # optional placement hint: cpu | gpu (see below)
    backend: ort_worker          # optional: local | ort_worker | triton (overrides device)

Placement: `backend` names where the model runs; without it `device: gpu` means the
Triton target and `device: cpu` (or nothing) the CPU default (the ORT worker pool
when configured, else in-process ONNX Runtime). A named backend that is not
configured falls back to in-process ONNX Runtime with a warning
(services/inference/backends/select.py).

Transforms (each input contributes one column, except onehot: one per category):
  identity         number -> number
  log1p            number (> -1) -> log(1 + x)
  standardize      number -> (x - mean) / std          (std > 0)
  onehot           string -> one column per category. A value outside `categories`
                   maps to the `other` category's column when `other` is set (it must
                   be one of the categories), else to all zeros.
  bool             bool -> 0.0 / 1.0 (numbers and strings are rejected)

Numbers must be finite. Validation errors name the file and the offending field.

Ensembles (`kind: ensemble`, no model.onnx, no inputs, no device/backend: they run
their members, each on its own backend, concurrently)::

    name: fraud_ens
    version: "1"
    kind: ensemble
    task: classifier             # members must have the same task ...
    entity_type: user
    class_labels: [legit, fraud] # ... and (classifiers) the same set of class labels
    ensemble:
      members:                   # pinned model versions; an ensemble may be a member
        - {model: fraud, version: "1", weight: 0.5}      # weight > 0 (weighted_average)
        - {model: fraud_nn, version: "1", weight: 0.5}
      combine: weighted_average  # or stacking
      # stacking: {coef: [2.1, 3.4], bias: -2.7}   one coef per member, applied to each
      #   member's score (P(positive_class), or the value of a regressor):
      #   z = bias + sum(coef_i * score_i); classifier (binary): P(positive) = sigmoid(z)
    postprocess: {positive_class: fraud, threshold: 0.5}

Each member gets its own preprocessed matrix from the same request rows; the
ensemble's features are the union of its members' (first-seen order over the members);
the combined class probabilities go through the ensemble's own postprocess.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from predmesh.models.errors import ModelSpecError

SPEC_FILE = "model.yaml"
ONNX_FILE = "model.onnx"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_RE = re.compile(r"^[0-9]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Identity(_Strict):
    type: Literal["identity"] = "identity"


class Log1p(_Strict):
    type: Literal["log1p"] = "log1p"


class BoolToFloat(_Strict):
    type: Literal["bool"] = "bool"


class Standardize(_Strict):
    type: Literal["standardize"] = "standardize"
    mean: float
    std: float = Field(gt=0)

    @model_validator(mode="after")
    def _finite(self) -> Standardize:
        if not (math.isfinite(self.mean) and math.isfinite(self.std)):
            raise ValueError("mean and std must be finite")
        return self


class OneHot(_Strict):
    type: Literal["onehot"] = "onehot"
    categories: tuple[str, ...] = Field(min_length=1)
    # Category whose column receives unknown values; None = unknown -> all zeros.
    other: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OneHot:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be unique")
        if self.other is not None and self.other not in self.categories:
            raise ValueError(f"other={self.other!r} must be one of the categories")
        return self


Transform = Annotated[Identity | Log1p | BoolToFloat | Standardize | OneHot, Field(discriminator="type")]


class InputSpec(_Strict):
    name: str = Field(min_length=1)
    transform: Transform = Field(default_factory=Identity)

    @field_validator("transform", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `transform: log1p` is shorthand for `transform: {type: log1p}`.
        return {"type": value} if isinstance(value, str) else value

    @property
    def width(self) -> int:
        """Columns this input contributes to the model matrix."""
        return len(self.transform.categories) if isinstance(self.transform, OneHot) else 1


class OnnxSpec(_Strict):
    input: str = Field("input", min_length=1, description="Name of the float32 [N, D] input tensor.")
    output: str = Field("probabilities", min_length=1, description="Name of the output tensor to fetch.")


class PostprocessSpec(_Strict):
    positive_class: str | None = None
    threshold: float | None = Field(None, gt=0, lt=1)
    clip_min: float | None = None
    clip_max: float | None = None


ENSEMBLE_KIND = "ensemble"


class EnsembleMember(_Strict):
    model: str = Field(min_length=1)
    version: str
    weight: float = Field(1.0, gt=0)

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> EnsembleMember:
        if not _VERSION_RE.fullmatch(self.version):
            raise ValueError(f"member version {self.version!r} must be a non-negative integer string")
        if not math.isfinite(self.weight):
            raise ValueError("weight must be finite")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)


class StackingSpec(_Strict):
    coef: tuple[float, ...] = Field(min_length=1)
    bias: float = 0.0

    @model_validator(mode="after")
    def _finite(self) -> StackingSpec:
        if not all(math.isfinite(v) for v in (*self.coef, self.bias)):
            raise ValueError("coef and bias must be finite")
        return self


class EnsembleSpec(_Strict):
    members: tuple[EnsembleMember, ...] = Field(min_length=1)
    combine: Literal["weighted_average", "stacking"] = "weighted_average"
    stacking: StackingSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> EnsembleSpec:
        keys = [m.key for m in self.members]
        if len(set(keys)) != len(keys):
            raise ValueError("members must be distinct model versions")
        if self.combine == "stacking":
            if self.stacking is None:
                raise ValueError("combine: stacking needs a stacking block {coef, bias}")
            if len(self.stacking.coef) != len(self.members):
                raise ValueError(f"stacking.coef has {len(self.stacking.coef)} values for {len(self.members)} members")
        elif self.stacking is not None:
            raise ValueError("a stacking block needs combine: stacking")
        return self


class ModelSpec(_Strict):
    name: str
    version: str
    kind: str = Field(min_length=1)
    task: Literal["classifier", "regressor"]
    entity_type: str = Field(min_length=1)
    description: str = ""
    class_labels: tuple[str, ...] = ()
    inputs: tuple[InputSpec, ...] = ()
    ensemble: EnsembleSpec | None = None
    onnx: OnnxSpec = Field(default_factory=OnnxSpec)
    postprocess: PostprocessSpec = Field(default_factory=PostprocessSpec)
    metadata: dict[str, Any] = Field(default_factory=dict)
    device: Literal["cpu", "gpu"] | None = None
    backend: Literal["local", "ort_worker", "triton"] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> Any:
        # YAML reads `version: 1` as an int; accept it, store the string.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} must match {_NAME_RE.pattern}")
        if not _VERSION_RE.fullmatch(self.version):
            raise ValueError(f"version {self.version!r} must be a non-negative integer string")
        if self.kind == ENSEMBLE_KIND:
            if self.ensemble is None:
                raise ValueError("kind: ensemble needs an ensemble block (members, combine)")
            if self.inputs:
                raise ValueError("an ensemble takes no inputs: its features are its members'")
            if self.device is not None or self.backend is not None:
                raise ValueError("an ensemble has no device/backend: its members are placed")
            if self.ensemble.combine == "stacking" and self.task == "classifier" and len(self.class_labels) != 2:
                raise ValueError("stacking needs exactly 2 class_labels")
            if any(m.key == (self.name, self.version) for m in self.ensemble.members):
                raise ValueError("an ensemble cannot be its own member")
        else:
            if self.ensemble is not None:
                raise ValueError("an ensemble block needs kind: ensemble")
            if not self.inputs:
                raise ValueError("inputs: a model needs at least 1 input")
        names = [spec.name for spec in self.inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate inputs: {duplicates}")
        post = self.postprocess
        if self.task == "classifier":
            if len(self.class_labels) < 2:
                raise ValueError("a classifier needs at least 2 class_labels")
            if len(set(self.class_labels)) != len(self.class_labels):
                raise ValueError("class_labels must be unique")
            if post.positive_class is not None and post.positive_class not in self.class_labels:
                raise ValueError(f"postprocess.positive_class {post.positive_class!r} is not in class_labels")
            if post.threshold is not None and len(self.class_labels) != 2:
                raise ValueError("postprocess.threshold needs exactly 2 class_labels")
            if post.clip_min is not None or post.clip_max is not None:
                raise ValueError("postprocess.clip_min/clip_max apply to regressors only")
        else:
            if self.class_labels:
                raise ValueError("a regressor has no class_labels")
            if post.positive_class is not None or post.threshold is not None:
                raise ValueError("postprocess.positive_class/threshold apply to classifiers only")
            if post.clip_min is not None and post.clip_max is not None and post.clip_min > post.clip_max:
                raise ValueError("postprocess.clip_min must be <= clip_max")
        return self

    # -- derived -----------------------------------------------------------
    @property
    def is_ensemble(self) -> bool:
        return self.ensemble is not None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def input_width(self) -> int:
        """D, the number of float32 columns the model input expects."""
        return sum(spec.width for spec in self.inputs)

    @property
    def positive_index(self) -> int:
        """Index in class_labels of the class whose probability is the score (classifiers)."""
        positive = self.postprocess.positive_class
        return self.class_labels.index(positive) if positive is not None else len(self.class_labels) - 1

    def to_yaml(self) -> str:
        """The spec as `model.yaml` text (None-valued optional fields left out)."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _describe(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<root>"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def parse_spec(data: Any, source: str = "<spec>") -> ModelSpec:
    """Validate a spec given as plain data; raises ModelSpecError naming `source` and the field."""
    if not isinstance(data, dict):
        raise ModelSpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as err:
        raise ModelSpecError(f"{source}: invalid model spec: {_describe(err)}") from err


def load_spec(path: Path) -> ModelSpec:
    """Read and validate one `model.yaml` (blocking file I/O)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ModelSpecError(f"{path}: cannot read model spec: {err}") from err
    except yaml.YAMLError as err:
        raise ModelSpecError(f"{path}: invalid YAML: {err}") from err
    return parse_spec(data, str(path))
