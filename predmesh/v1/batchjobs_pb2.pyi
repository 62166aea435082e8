from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_JOB_STATE_UNSPECIFIED: _ClassVar[BatchJobState]
    BATCH_JOB_STATE_QUEUED: _ClassVar[BatchJobState]
    BATCH_JOB_STATE_RUNNING: _ClassVar[BatchJobState]
    BATCH_JOB_STATE_DONE: _ClassVar[BatchJobState]
    BATCH_JOB_STATE_FAILED: _ClassVar[BatchJobState]
    BATCH_JOB_STATE_CANCELLED: _ClassVar[BatchJobState]
BATCH_JOB_STATE_UNSPECIFIED: BatchJobState
BATCH_JOB_STATE_QUEUED: BatchJobState
BATCH_JOB_STATE_RUNNING: BatchJobState
BATCH_JOB_STATE_DONE: BatchJobState
BATCH_JOB_STATE_FAILED: BatchJobState
BATCH_JOB_STATE_CANCELLED: BatchJobState

class SubmitBatchJobRequest(_message.Message):
    __slots__ = ("model", "version", "input", "output", "chunk_rows", "entity_column", "job_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ROWS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMN_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    input: str
    output: str
    chunk_rows: int
    entity_column: str
    job_id: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., chunk_rows: _Optional[int] = ..., entity_column: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class GetBatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelBatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class BatchJob(_message.Message):
    __slots__ = ("job_id", "state", "model", "version", "input", "output", "chunk_rows", "rows_total", "rows_done", "rows_failed", "rows_per_s", "eta_s", "chunks_total", "chunks_done", "error", "created_ms", "finished_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_DONE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FAILED_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_S_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: BatchJobState
    model: str
    version: str
    input: str
    output: str
    chunk_rows: int
    rows_total: int
    rows_done: int
    rows_failed: int
    rows_per_s: float
    eta_s: float
    chunks_total: int
    chunks_done: int
    error: str
    created_ms: int
    finished_ms: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[BatchJobState, str]] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., chunk_rows: _Optional[int] = ..., rows_total: _Optional[int] = ..., rows_done: _Optional[int] = ..., rows_failed: _Optional[int] = ..., rows_per_s: _Optional[float] = ..., eta_s: _Optional[float] = ..., chunks_total: _Optional[int] = ..., chunks_done: _Optional[int] = ..., error: _Optional[str] = ..., created_ms: _Optional[int] = ..., finished_ms: _Optional[int] = ...) -> None: ...
