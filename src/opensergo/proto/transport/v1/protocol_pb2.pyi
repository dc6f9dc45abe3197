from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeOpType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBSCRIBE: _ClassVar[SubscribeOpType]
    UNSUBSCRIBE: _ClassVar[SubscribeOpType]
SUBSCRIBE: SubscribeOpType
UNSUBSCRIBE: SubscribeOpType

class Status(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class SubscribeLabelKV(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class SubscribeRequestTarget(_message.Message):
    __slots__ = ("namespace", "app", "labels", "kinds")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app: str
    labels: _containers.RepeatedCompositeFieldContainer[SubscribeLabelKV]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., app: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[SubscribeLabelKV, _Mapping]]] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("target", "op_type", "response_ack", "attachments", "status", "identifier", "request_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ACK_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    target: SubscribeRequestTarget
    op_type: SubscribeOpType
    response_ack: str
    attachments: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    status: Status
    identifier: str
    request_id: str
    def __init__(self, target: _Optional[_Union[SubscribeRequestTarget, _Mapping]] = ..., op_type: _Optional[_Union[SubscribeOpType, str]] = ..., response_ack: _Optional[str] = ..., attachments: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., status: _Optional[_Union[Status, _Mapping]] = ..., identifier: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ControlPlaneDesc(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("status", "ack", "namespace", "app", "kind", "dataWithVersion", "control_plane", "response_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATAWITHVERSION_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PLANE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    status: Status
    ack: str
    namespace: str
    app: str
    kind: str
    dataWithVersion: DataWithVersion
    control_plane: ControlPlaneDesc
    response_id: str
    def __init__(self, status: _Optional[_Union[Status, _Mapping]] = ..., ack: _Optional[str] = ..., namespace: _Optional[str] = ..., app: _Optional[str] = ..., kind: _Optional[str] = ..., dataWithVersion: _Optional[_Union[DataWithVersion, _Mapping]] = ..., control_plane: _Optional[_Union[ControlPlaneDesc, _Mapping]] = ..., response_id: _Optional[str] = ...) -> None: ...

class DataWithVersion(_message.Message):
    __slots__ = ("data", "version")
    DATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    version: int
    def __init__(self, data: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...
