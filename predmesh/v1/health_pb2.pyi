from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetModelHealthRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelVersionHealth(_message.Message):
    __slots__ = ("version", "weight_percent", "roles", "loaded", "kind", "breaker", "error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    version: str
    weight_percent: float
    roles: _containers.RepeatedScalarFieldContainer[str]
    loaded: bool
    kind: str
    breaker: str
    error: str
    def __init__(self, version: _Optional[str] = ..., weight_percent: _Optional[float] = ..., roles: _Optional[_Iterable[str]] = ..., loaded: _Optional[bool] = ..., kind: _Optional[str] = ..., breaker: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class BreakerState(_message.Message):
    __slots__ = ("dependency", "state")
    DEPENDENCY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    dependency: str
    state: str
    def __init__(self, dependency: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ModelHealthResponse(_message.Message):
    __slots__ = ("model", "healthy", "versions", "feature_store_reachable", "feature_store_error", "last_inference_ms", "p99_inference_ms", "requests_in_window", "degraded_ratio", "window_s", "breakers", "fallback")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_STORE_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_STORE_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    P99_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_RATIO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    model: str
    healthy: bool
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersionHealth]
    feature_store_reachable: bool
    feature_store_error: str
    last_inference_ms: float
    p99_inference_ms: float
    requests_in_window: int
    degraded_ratio: float
    window_s: float
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerState]
    fallback: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., healthy: _Optional[bool] = ..., versions: _Optional[_Iterable[_Union[ModelVersionHealth, _Mapping]]] = ..., feature_store_reachable: _Optional[bool] = ..., feature_store_error: _Optional[str] = ..., last_inference_ms: _Optional[float] = ..., p99_inference_ms: _Optional[float] = ..., requests_in_window: _Optional[int] = ..., degraded_ratio: _Optional[float] = ..., window_s: _Optional[float] = ..., breakers: _Optional[_Iterable[_Union[BreakerState, _Mapping]]] = ..., fallback: _Optional[_Iterable[str]] = ...) -> None: ...
