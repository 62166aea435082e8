"""protobuf <-> gateway domain conversions (the only place that knows both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

from predmesh.common.values import scalar_from_value, scalar_to_value
from predmesh.v1 import common_pb2, prediction_pb2
from services.gateway.core.degradation import check_context_value
from services.gateway.core.types import Arm, PredictInput, PredictOutput, Scalar, Score, Timings
from services.gateway.errors import InvalidArgument


def value_to_scalar(value: common_pb2.Value, name: str) -> Scalar:
    """The Value's scalar; InvalidArgument naming feature `name` when it has no value set."""
    scalar = scalar_from_value(value)
    if scalar is None:
        raise InvalidArgument(f"feature {name!r} has no value set")
    return scalar


def row_scalars(values: Sequence[common_pb2.Value], names: Sequence[str]) -> tuple[Scalar, ...]:
    """`value_to_scalar` of each value (named by `names`, same length), as one tuple."""
    out: list[Scalar] = []
    append = out.append
    for value, name in zip(values, names, strict=True):
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            append(value.number_value)
        elif kind == "string_value":
            append(value.string_value)
        elif kind == "bool_value":
            append(value.bool_value)
        else:
            raise InvalidArgument(f"feature {name!r} has no value set")
    return tuple(out)


def set_value(target: common_pb2.Value, value: Scalar) -> None:
    """Write `value` into `target` as `scalar_to_value` would build it (bool, then str, else a float)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    else:
        target.number_value = float(value)


def add_values(container: Any, row: Sequence[Scalar]) -> None:
    """Append `row` to a repeated `Value` field, each as `scalar_to_value` builds it (in place: no copies)."""
    add = container.add
    for value in row:
        if isinstance(value, bool):
            add(bool_value=value)
        elif isinstance(value, str):
            add(string_value=value)
        else:
            add(number_value=float(value))


# Per-field limits, checked before anything is converted (a caller cannot make the gateway
# copy megabytes of context into every request it fans out).
MAX_CONTEXT_FIELDS = 256
MAX_CONTEXT_KEY_CHARS = 128
MAX_STRING_VALUE_CHARS = 4096


# A plain-context value written the typed way ({"number_value": 50}): how HTTP/JSON callers wrote
# context before plain JSON scalars were accepted; still read as that scalar.
_TYPED_KINDS = ("number_value", "string_value", "bool_value")


def plain_value(value: struct_pb2.Value, name: str) -> common_pb2.Value:
    """A google.protobuf.Value (plain JSON) as our Value; InvalidArgument naming `name` unless it is a
    number, string, bool or a typed object {"number_value" | "string_value" | "bool_value": scalar}."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return common_pb2.Value(number_value=value.number_value)
    if kind == "string_value":
        return common_pb2.Value(string_value=value.string_value)
    if kind == "bool_value":
        return common_pb2.Value(bool_value=value.bool_value)
    if kind == "struct_value" and len(value.struct_value.fields) == 1:
        ((typed, inner),) = value.struct_value.fields.items()
        if typed in _TYPED_KINDS and inner.WhichOneof("kind") == typed:
            return plain_value(inner, name)
    shown = {"null_value": "null", "list_value": "a list", "struct_value": "an object"}.get(kind or "", "nothing")
    raise InvalidArgument(f"context[{name!r}]: expected a number, string or boolean, got {shown}")


def context_from_pb(
    context: Mapping[str, common_pb2.Value], plain: struct_pb2.Struct | None = None
) -> dict[str, Scalar]:
    """Caller context (typed map + plain JSON struct); InvalidArgument naming the field for an oversize
    value, no kind, NaN or inf, a plain value that is not a scalar, or a name given in both."""
    plain_fields = plain.fields if plain is not None else {}
    if len(context) + len(plain_fields) > MAX_CONTEXT_FIELDS:
        raise InvalidArgument(f"more than {MAX_CONTEXT_FIELDS} context features")
    if not plain_fields:  # the usual request: typed context only
        return {name: _context_scalar(name, value) for name, value in context.items()}
    both = sorted(set(context) & set(plain_fields))
    if both:
        raise InvalidArgument(f"context[{both[0]!r}] given both as a typed and as a plain value")
    items = [*context.items(), *((n, plain_value(v, n)) for n, v in plain_fields.items())]
    return {name: _context_scalar(name, value) for name, value in items}


def _context_scalar(name: str, value: common_pb2.Value) -> Scalar:
    """One context value's scalar, checked: key length, string length, a kind set, a finite number."""
    if len(name) > MAX_CONTEXT_KEY_CHARS:
        raise InvalidArgument(f"context key longer than {MAX_CONTEXT_KEY_CHARS} characters")
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return check_context_value(name, value.number_value)
    if kind == "string_value":
        text = value.string_value
        if len(text) > MAX_STRING_VALUE_CHARS:
            raise InvalidArgument(f"context value {name!r} longer than {MAX_STRING_VALUE_CHARS} characters")
        return text
    if kind == "bool_value":
        return value.bool_value
    raise InvalidArgument(f"feature {name!r} has no value set")


def predict_input(req: prediction_pb2.PredictRequest, priority: int = 0) -> PredictInput:
    """The domain input; `priority` is the resolved class (0: the request's own field)."""
    return PredictInput(
        request_id=req.request_id,
        model=req.model,
        version=req.version,
        entity_id=req.entity_id,
        context=context_from_pb(req.context, req.plain_context),
        entities=dict(req.entities),
        priority=priority or req.priority,
    )


def batch_inputs(
    req: prediction_pb2.PredictBatchRequest, max_items: int | None = None, priority: int = 0
) -> list[PredictInput]:
    """The batch's items; more than `max_items` is refused before any item is converted."""
    if max_items is not None and len(req.items) > max_items:
        raise InvalidArgument(f"PredictBatch takes at most {max_items} items, got {len(req.items)}")
    return [
        PredictInput(
            request_id=req.request_id,
            model=req.model,
            version=req.version,
            entity_id=item.entity_id,
            context=context_from_pb(item.context, item.plain_context),
            entities=dict(item.entities),
            priority=priority,
        )
        for item in req.items
    ]


def score_to_pb(score: Score) -> common_pb2.Prediction:
    return common_pb2.Prediction(score=score.score, scores=list(score.scores), label=score.label)


def score_from_pb(pred: common_pb2.Prediction) -> Score:
    return Score(score=pred.score, scores=tuple(pred.scores), label=pred.label)


def timings_to_pb(t: Timings) -> common_pb2.Timings:
    return common_pb2.Timings(features_ms=t.features_ms, inference_ms=t.inference_ms, total_ms=t.total_ms)


def predict_response(out: PredictOutput) -> prediction_pb2.PredictResponse:
    return prediction_pb2.PredictResponse(
        request_id=out.request_id,
        model=out.model,
        model_version=out.model_version,
        prediction=score_to_pb(out.score),
        degraded=out.degraded,
        degraded_reason=out.degraded_reason,
        defaulted_features=list(out.defaulted_features),
        timings=timings_to_pb(out.timings),
        entity_id=out.entity_id,
        arm=out.arm,
        missing_features=list(out.missing_features),
        stale_features=list(out.stale_features),
        cached=out.cached,
    )


def batch_response(request_id: str, outs: Sequence[PredictOutput]) -> prediction_pb2.PredictBatchResponse:
    timings = outs[0].timings if outs else Timings()
    return prediction_pb2.PredictBatchResponse(
        request_id=request_id or (outs[0].request_id.rsplit("/", 1)[0] if outs else ""),
        results=[predict_response(o) for o in outs],
        timings=timings_to_pb(timings),
    )


def predict_request(item: PredictInput, priority: int = 0) -> prediction_pb2.PredictRequest:
    """The request of a domain input (the durable async queue stores requests as protobuf)."""
    return prediction_pb2.PredictRequest(
        request_id=item.request_id,
        model=item.model,
        version=item.version,
        entity_id=item.entity_id,
        context={k: scalar_to_value(v) for k, v in item.context.items()},
        priority=priority,  # type: ignore[arg-type]
    )


def predict_output(resp: prediction_pb2.PredictResponse) -> PredictOutput:
    """The domain output of a stored response (async results read back from the store)."""
    t = resp.timings
    return PredictOutput(
        request_id=resp.request_id,
        model=resp.model,
        model_version=resp.model_version,
        entity_id=resp.entity_id,
        score=score_from_pb(resp.prediction),
        arm=Arm(resp.arm) if resp.arm in Arm._value2member_map_ else Arm.STABLE,
        timings=Timings(features_ms=t.features_ms, inference_ms=t.inference_ms, total_ms=t.total_ms),
        defaulted_features=tuple(resp.defaulted_features),
        degraded=resp.degraded,
        degraded_reason=resp.degraded_reason,
        missing_features=tuple(resp.missing_features),
    )
