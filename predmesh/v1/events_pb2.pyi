import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from predmesh.v1 import common_pb2 as _common_pb2
from predmesh.v1 import outcomes_pb2 as _outcomes_pb2
from predmesh.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionEvent(_message.Message):
    __slots__ = ("request_id", "model", "model_version", "arm", "entity_id", "features_hash", "prediction", "latency_ms", "degraded", "degraded_reason", "trace_id", "timestamp", "defaulted_features", "features", "traceparent", "stale_features", "cached", "entities", "outcome", "priority")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_HASH_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    STALE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    model_version: str
    arm: str
    entity_id: str
    features_hash: str
    prediction: _common_pb2.Prediction
    latency_ms: float
    degraded: bool
    degraded_reason: str
    trace_id: str
    timestamp: _timestamp_pb2.Timestamp
    defaulted_features: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.MessageMap[str, _common_pb2.Value]
    traceparent: str
    stale_features: _containers.RepeatedScalarFieldContainer[str]
    cached: bool
    entities: _containers.ScalarMap[str, str]
    outcome: _outcomes_pb2.Outcome
    priority: _jobs_pb2.Priority
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., arm: _Optional[str] = ..., entity_id: _Optional[str] = ..., features_hash: _Optional[str] = ..., prediction: _Optional[_Union[_common_pb2.Prediction, _Mapping]] = ..., latency_ms: _Optional[float] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., trace_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., defaulted_features: _Optional[_Iterable[str]] = ..., features: _Optional[_Mapping[str, _common_pb2.Value]] = ..., traceparent: _Optional[str] = ..., stale_features: _Optional[_Iterable[str]] = ..., cached: _Optional[bool] = ..., entities: _Optional[_Mapping[str, str]] = ..., outcome: _Optional[_Union[_outcomes_pb2.Outcome, _Mapping]] = ..., priority: _Optional[_Union[_jobs_pb2.Priority, str]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("sequence", "events")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    events: _containers.RepeatedCompositeFieldContainer[PredictionEvent]
    def __init__(self, sequence: _Optional[int] = ..., events: _Optional[_Iterable[_Union[PredictionEvent, _Mapping]]] = ...) -> None: ...

class PublishAck(_message.Message):
    __slots__ = ("sequence", "accepted")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    accepted: int
    def __init__(self, sequence: _Optional[int] = ..., accepted: _Optional[int] = ...) -> None: ...
