from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_REALTIME: _ClassVar[Priority]
    PRIORITY_ASYNC: _ClassVar[Priority]
    PRIORITY_BATCH: _ClassVar[Priority]

class PredictionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREDICTION_STATE_UNSPECIFIED: _ClassVar[PredictionState]
    PREDICTION_STATE_PENDING: _ClassVar[PredictionState]
    PREDICTION_STATE_DONE: _ClassVar[PredictionState]
    PREDICTION_STATE_FAILED: _ClassVar[PredictionState]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_REALTIME: Priority
PRIORITY_ASYNC: Priority
PRIORITY_BATCH: Priority
PREDICTION_STATE_UNSPECIFIED: PredictionState
PREDICTION_STATE_PENDING: PredictionState
PREDICTION_STATE_DONE: PredictionState
PREDICTION_STATE_FAILED: PredictionState

class GetPredictionRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...
