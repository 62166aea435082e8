from google.protobuf import struct_pb2 as _struct_pb2
from predmesh.v1 import common_pb2 as _common_pb2
from predmesh.v1 import health_pb2 as _health_pb2
from predmesh.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("request_id", "model", "version", "entity_id", "context", "entities", "priority", "plain_context")
    class ContextEntry(_message.Message):
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
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PLAIN_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    version: str
    entity_id: str
    context: _containers.MessageMap[str, _common_pb2.Value]
    entities: _containers.ScalarMap[str, str]
    priority: _jobs_pb2.Priority
    plain_context: _struct_pb2.Struct
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., entity_id: _Optional[str] = ..., context: _Optional[_Mapping[str, _common_pb2.Value]] = ..., entities: _Optional[_Mapping[str, str]] = ..., priority: _Optional[_Union[_jobs_pb2.Priority, str]] = ..., plain_context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "model", "model_version", "prediction", "degraded", "degraded_reason", "defaulted_features", "timings", "entity_id", "arm", "missing_features", "stale_features", "cached")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    MISSING_FEATURES_FIELD_NUMBER: _ClassVar[int]
    STALE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    model_version: str
    prediction: _common_pb2.Prediction
    degraded: bool
    degraded_reason: str
    defaulted_features: _containers.RepeatedScalarFieldContainer[str]
    timings: _common_pb2.Timings
    entity_id: str
    arm: str
    missing_features: _containers.RepeatedScalarFieldContainer[str]
    stale_features: _containers.RepeatedScalarFieldContainer[str]
    cached: bool
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., prediction: _Optional[_Union[_common_pb2.Prediction, _Mapping]] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., defaulted_features: _Optional[_Iterable[str]] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ..., entity_id: _Optional[str] = ..., arm: _Optional[str] = ..., missing_features: _Optional[_Iterable[str]] = ..., stale_features: _Optional[_Iterable[str]] = ..., cached: _Optional[bool] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("request_id", "model", "version", "items", "priority")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    version: str
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    priority: _jobs_pb2.Priority
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., priority: _Optional[_Union[_jobs_pb2.Priority, str]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("entity_id", "context", "entities", "plain_context")
    class ContextEntry(_message.Message):
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
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PLAIN_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    context: _containers.MessageMap[str, _common_pb2.Value]
    entities: _containers.ScalarMap[str, str]
    plain_context: _struct_pb2.Struct
    def __init__(self, entity_id: _Optional[str] = ..., context: _Optional[_Mapping[str, _common_pb2.Value]] = ..., entities: _Optional[_Mapping[str, str]] = ..., plain_context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("request_id", "results", "timings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[PredictResponse]
    timings: _common_pb2.Timings
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[PredictResponse, _Mapping]]] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ...) -> None: ...

class PredictAsyncRequest(_message.Message):
    __slots__ = ("request", "callback_target")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_TARGET_FIELD_NUMBER: _ClassVar[int]
    request: PredictRequest
    callback_target: str
    def __init__(self, request: _Optional[_Union[PredictRequest, _Mapping]] = ..., callback_target: _Optional[str] = ...) -> None: ...

class PredictAsyncResponse(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class CallbackDelivery(_message.Message):
    __slots__ = ("request_id", "response", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    response: PredictResponse
    error_code: str
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., response: _Optional[_Union[PredictResponse, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class CallbackAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPredictionResponse(_message.Message):
    __slots__ = ("request_id", "state", "response", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    state: _jobs_pb2.PredictionState
    response: PredictResponse
    error_code: str
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., state: _Optional[_Union[_jobs_pb2.PredictionState, str]] = ..., response: _Optional[_Union[PredictResponse, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...
