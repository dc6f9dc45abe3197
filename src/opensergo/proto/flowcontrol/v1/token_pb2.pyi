from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenBatch(_message.Message):
    __slots__ = ("requests", "client_id")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TokenRequest]
    client_id: str
    def __init__(self, requests: _Optional[_Iterable[_Union[TokenRequest, _Mapping]]] = ..., client_id: _Optional[str] = ...) -> None: ...

class TokenBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[TokenResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[TokenResponse, _Mapping]]] = ...) -> None: ...

class FlowKey(_message.Message):
    __slots__ = ("namespace", "app", "resource", "strategy")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app: str
    resource: str
    strategy: str
    def __init__(self, namespace: _Optional[str] = ..., app: _Optional[str] = ..., resource: _Optional[str] = ..., strategy: _Optional[str] = ...) -> None: ...

class TokenRequest(_message.Message):
    __slots__ = ("id", "key", "lease", "give_back", "acquire", "release")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    GIVE_BACK_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    id: int
    key: FlowKey
    lease: Lease
    give_back: Lease
    acquire: Lease
    release: Lease
    def __init__(self, id: _Optional[int] = ..., key: _Optional[_Union[FlowKey, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., give_back: _Optional[_Union[Lease, _Mapping]] = ..., acquire: _Optional[_Union[Lease, _Mapping]] = ..., release: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("count", "bucket")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    count: int
    bucket: int
    def __init__(self, count: _Optional[int] = ..., bucket: _Optional[int] = ...) -> None: ...

class TokenResponse(_message.Message):
    __slots__ = ("id", "code", "granted", "valid_for_ms", "threshold", "interval_ms", "message", "owner", "bucket")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[TokenResponse.Code]
        NO_RULE: _ClassVar[TokenResponse.Code]
        BAD_REQUEST: _ClassVar[TokenResponse.Code]
        REDIRECT: _ClassVar[TokenResponse.Code]
    OK: TokenResponse.Code
    NO_RULE: TokenResponse.Code
    BAD_REQUEST: TokenResponse.Code
    REDIRECT: TokenResponse.Code
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    VALID_FOR_MS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    id: int
    code: TokenResponse.Code
    granted: int
    valid_for_ms: int
    threshold: int
    interval_ms: int
    message: str
    owner: str
    bucket: int
    def __init__(self, id: _Optional[int] = ..., code: _Optional[_Union[TokenResponse.Code, str]] = ..., granted: _Optional[int] = ..., valid_for_ms: _Optional[int] = ..., threshold: _Optional[int] = ..., interval_ms: _Optional[int] = ..., message: _Optional[str] = ..., owner: _Optional[str] = ..., bucket: _Optional[int] = ...) -> None: ...
