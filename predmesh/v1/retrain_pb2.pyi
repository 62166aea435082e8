import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrainWebhookRecord(_message.Message):
    __slots__ = ("delivery_id", "model", "version", "detected_at", "finished_at", "psi_alert", "score_psi", "feature_psi", "drifted", "attempts", "status", "http_status", "error")
    class FeaturePsiEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PSI_ALERT_FIELD_NUMBER: _ClassVar[int]
    SCORE_PSI_FIELD_NUMBER: _ClassVar[int]
    FEATURE_PSI_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    model: str
    version: str
    detected_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    psi_alert: float
    score_psi: float
    feature_psi: _containers.ScalarMap[str, float]
    drifted: _containers.RepeatedScalarFieldContainer[str]
    attempts: int
    status: str
    http_status: int
    error: str
    def __init__(self, delivery_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., psi_alert: _Optional[float] = ..., score_psi: _Optional[float] = ..., feature_psi: _Optional[_Mapping[str, float]] = ..., drifted: _Optional[_Iterable[str]] = ..., attempts: _Optional[int] = ..., status: _Optional[str] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
