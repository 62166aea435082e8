from predmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetFeaturesRequest(_message.Message):
    __slots__ = ("entity_type", "entities", "features", "related")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    RELATED_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    entities: _containers.RepeatedCompositeFieldContainer[EntityKey]
    features: _containers.RepeatedScalarFieldContainer[str]
    related: _containers.RepeatedCompositeFieldContainer[RelatedEntities]
    def __init__(self, entity_type: _Optional[str] = ..., entities: _Optional[_Iterable[_Union[EntityKey, _Mapping]]] = ..., features: _Optional[_Iterable[str]] = ..., related: _Optional[_Iterable[_Union[RelatedEntities, _Mapping]]] = ...) -> None: ...

class RelatedEntities(_message.Message):
    __slots__ = ("ids",)
    class IdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.ScalarMap[str, str]
    def __init__(self, ids: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EntityKey(_message.Message):
    __slots__ = ("entity_id", "context")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    context: _containers.MessageMap[str, _common_pb2.Value]
    def __init__(self, entity_id: _Optional[str] = ..., context: _Optional[_Mapping[str, _common_pb2.Value]] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("entity_id", "values", "missing", "invalid", "entity_unknown", "store_missing", "stale")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    STORE_MISSING_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.Value]
    missing: _containers.RepeatedScalarFieldContainer[str]
    invalid: _containers.RepeatedScalarFieldContainer[str]
    entity_unknown: bool
    store_missing: _containers.RepeatedScalarFieldContainer[str]
    stale: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entity_id: _Optional[str] = ..., values: _Optional[_Iterable[_Union[_common_pb2.Value, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., invalid: _Optional[_Iterable[str]] = ..., entity_unknown: _Optional[bool] = ..., store_missing: _Optional[_Iterable[str]] = ..., stale: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[FeatureVector]
    def __init__(self, vectors: _Optional[_Iterable[_Union[FeatureVector, _Mapping]]] = ...) -> None: ...

class DescribeGroupRequest(_message.Message):
    __slots__ = ("entity_type",)
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    def __init__(self, entity_type: _Optional[str] = ...) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ("name", "dtype", "source", "default", "has_min", "min", "has_max", "max", "categories")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    HAS_MIN_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    HAS_MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    source: str
    default: _common_pb2.Value
    has_min: bool
    min: float
    has_max: bool
    max: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., source: _Optional[str] = ..., default: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., has_min: _Optional[bool] = ..., min: _Optional[float] = ..., has_max: _Optional[bool] = ..., max: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureGroupInfo(_message.Message):
    __slots__ = ("entity_type", "features")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    def __init__(self, entity_type: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ...) -> None: ...
