import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportMetadataRequest(_message.Message):
    __slots__ = ("app_name", "node", "service_metadata")
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_METADATA_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    node: Node
    service_metadata: _containers.RepeatedCompositeFieldContainer[ServiceMetadata]
    def __init__(self, app_name: _Optional[str] = ..., node: _Optional[_Union[Node, _Mapping]] = ..., service_metadata: _Optional[_Iterable[_Union[ServiceMetadata, _Mapping]]] = ...) -> None: ...

class ReportMetadataReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceMetadata(_message.Message):
    __slots__ = ("listening_addresses", "protocols", "service_contract")
    LISTENING_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CONTRACT_FIELD_NUMBER: _ClassVar[int]
    listening_addresses: _containers.RepeatedCompositeFieldContainer[SocketAddress]
    protocols: _containers.RepeatedScalarFieldContainer[str]
    service_contract: ServiceContract
    def __init__(self, listening_addresses: _Optional[_Iterable[_Union[SocketAddress, _Mapping]]] = ..., protocols: _Optional[_Iterable[str]] = ..., service_contract: _Optional[_Union[ServiceContract, _Mapping]] = ...) -> None: ...

class ServiceContract(_message.Message):
    __slots__ = ("services", "types")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceDescriptor]
    types: _containers.RepeatedCompositeFieldContainer[TypeDescriptor]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceDescriptor, _Mapping]]] = ..., types: _Optional[_Iterable[_Union[TypeDescriptor, _Mapping]]] = ...) -> None: ...

class ServiceDescriptor(_message.Message):
    __slots__ = ("name", "methods", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    methods: _containers.RepeatedCompositeFieldContainer[MethodDescriptor]
    description: str
    def __init__(self, name: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[MethodDescriptor, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class MethodDescriptor(_message.Message):
    __slots__ = ("name", "input_types", "output_types", "client_streaming", "server_streaming", "description", "http_paths", "http_methods")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TYPES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_STREAMING_FIELD_NUMBER: _ClassVar[int]
    SERVER_STREAMING_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HTTP_PATHS_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHODS_FIELD_NUMBER: _ClassVar[int]
    name: str
    input_types: _containers.RepeatedScalarFieldContainer[str]
    output_types: _containers.RepeatedScalarFieldContainer[str]
    client_streaming: bool
    server_streaming: bool
    description: str
    http_paths: _containers.RepeatedScalarFieldContainer[str]
    http_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., input_types: _Optional[_Iterable[str]] = ..., output_types: _Optional[_Iterable[str]] = ..., client_streaming: _Optional[bool] = ..., server_streaming: _Optional[bool] = ..., description: _Optional[str] = ..., http_paths: _Optional[_Iterable[str]] = ..., http_methods: _Optional[_Iterable[str]] = ...) -> None: ...

class TypeDescriptor(_message.Message):
    __slots__ = ("name", "fields", "options", "reserved_range", "reserved_name")
    class ReservedRange(_message.Message):
        __slots__ = ("start", "end")
        START_FIELD_NUMBER: _ClassVar[int]
        END_FIELD_NUMBER: _ClassVar[int]
        start: int
        end: int
        def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_RANGE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldDescriptor]
    options: MessageOptions
    reserved_range: _containers.RepeatedCompositeFieldContainer[TypeDescriptor.ReservedRange]
    reserved_name: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldDescriptor, _Mapping]]] = ..., options: _Optional[_Union[MessageOptions, _Mapping]] = ..., reserved_range: _Optional[_Iterable[_Union[TypeDescriptor.ReservedRange, _Mapping]]] = ..., reserved_name: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldDescriptor(_message.Message):
    __slots__ = ("name", "number", "label", "type", "type_name", "description")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[FieldDescriptor.Type]
        TYPE_DOUBLE: _ClassVar[FieldDescriptor.Type]
        TYPE_FLOAT: _ClassVar[FieldDescriptor.Type]
        TYPE_INT64: _ClassVar[FieldDescriptor.Type]
        TYPE_UINT64: _ClassVar[FieldDescriptor.Type]
        TYPE_INT32: _ClassVar[FieldDescriptor.Type]
        TYPE_FIXED64: _ClassVar[FieldDescriptor.Type]
        TYPE_FIXED32: _ClassVar[FieldDescriptor.Type]
        TYPE_BOOL: _ClassVar[FieldDescriptor.Type]
        TYPE_STRING: _ClassVar[FieldDescriptor.Type]
        TYPE_GROUP: _ClassVar[FieldDescriptor.Type]
        TYPE_MESSAGE: _ClassVar[FieldDescriptor.Type]
        TYPE_BYTES: _ClassVar[FieldDescriptor.Type]
        TYPE_UINT32: _ClassVar[FieldDescriptor.Type]
        TYPE_ENUM: _ClassVar[FieldDescriptor.Type]
        TYPE_SFIXED32: _ClassVar[FieldDescriptor.Type]
        TYPE_SFIXED64: _ClassVar[FieldDescriptor.Type]
        TYPE_SINT32: _ClassVar[FieldDescriptor.Type]
        TYPE_SINT64: _ClassVar[FieldDescriptor.Type]
    TYPE_UNSPECIFIED: FieldDescriptor.Type
    TYPE_DOUBLE: FieldDescriptor.Type
    TYPE_FLOAT: FieldDescriptor.Type
    TYPE_INT64: FieldDescriptor.Type
    TYPE_UINT64: FieldDescriptor.Type
    TYPE_INT32: FieldDescriptor.Type
    TYPE_FIXED64: FieldDescriptor.Type
    TYPE_FIXED32: FieldDescriptor.Type
    TYPE_BOOL: FieldDescriptor.Type
    TYPE_STRING: FieldDescriptor.Type
    TYPE_GROUP: FieldDescriptor.Type
    TYPE_MESSAGE: FieldDescriptor.Type
    TYPE_BYTES: FieldDescriptor.Type
    TYPE_UINT32: FieldDescriptor.Type
    TYPE_ENUM: FieldDescriptor.Type
    TYPE_SFIXED32: FieldDescriptor.Type
    TYPE_SFIXED64: FieldDescriptor.Type
    TYPE_SINT32: FieldDescriptor.Type
    TYPE_SINT64: FieldDescriptor.Type
    class Label(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LABEL_UNSPECIFIED: _ClassVar[FieldDescriptor.Label]
        LABEL_OPTIONAL: _ClassVar[FieldDescriptor.Label]
        LABEL_REQUIRED: _ClassVar[FieldDescriptor.Label]
        LABEL_REPEATED: _ClassVar[FieldDescriptor.Label]
    LABEL_UNSPECIFIED: FieldDescriptor.Label
    LABEL_OPTIONAL: FieldDescriptor.Label
    LABEL_REQUIRED: FieldDescriptor.Label
    LABEL_REPEATED: FieldDescriptor.Label
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    number: int
    label: FieldDescriptor.Label
    type: FieldDescriptor.Type
    type_name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., number: _Optional[int] = ..., label: _Optional[_Union[FieldDescriptor.Label, str]] = ..., type: _Optional[_Union[FieldDescriptor.Type, str]] = ..., type_name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("identifier", "locality", "tag", "cluster", "env")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    identifier: NodeIdentifier
    locality: Locality
    tag: str
    cluster: str
    env: str
    def __init__(self, identifier: _Optional[_Union[NodeIdentifier, _Mapping]] = ..., locality: _Optional[_Union[Locality, _Mapping]] = ..., tag: _Optional[str] = ..., cluster: _Optional[str] = ..., env: _Optional[str] = ...) -> None: ...

class NodeIdentifier(_message.Message):
    __slots__ = ("host_name", "pid", "start_timestamp")
    HOST_NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    START_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    host_name: str
    pid: int
    start_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, host_name: _Optional[str] = ..., pid: _Optional[int] = ..., start_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SocketAddress(_message.Message):
    __slots__ = ("address", "port_value")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_VALUE_FIELD_NUMBER: _ClassVar[int]
    address: str
    port_value: int
    def __init__(self, address: _Optional[str] = ..., port_value: _Optional[int] = ...) -> None: ...

class Locality(_message.Message):
    __slots__ = ("region", "zone")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    region: str
    zone: str
    def __init__(self, region: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...

class ServiceOptions(_message.Message):
    __slots__ = ("deprecated", "uninterpreted_option")
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    UNINTERPRETED_OPTION_FIELD_NUMBER: _ClassVar[int]
    deprecated: bool
    uninterpreted_option: _containers.RepeatedCompositeFieldContainer[UninterpretedOption]
    def __init__(self, deprecated: _Optional[bool] = ..., uninterpreted_option: _Optional[_Iterable[_Union[UninterpretedOption, _Mapping]]] = ...) -> None: ...

class MethodOptions(_message.Message):
    __slots__ = ("deprecated", "uninterpreted_option")
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    UNINTERPRETED_OPTION_FIELD_NUMBER: _ClassVar[int]
    deprecated: bool
    uninterpreted_option: _containers.RepeatedCompositeFieldContainer[UninterpretedOption]
    def __init__(self, deprecated: _Optional[bool] = ..., uninterpreted_option: _Optional[_Iterable[_Union[UninterpretedOption, _Mapping]]] = ...) -> None: ...

class OneofDescriptorProto(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class EnumDescriptorProto(_message.Message):
    __slots__ = ("name", "value", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: _containers.RepeatedCompositeFieldContainer[EnumValueDescriptorProto]
    options: MessageOptions
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Iterable[_Union[EnumValueDescriptorProto, _Mapping]]] = ..., options: _Optional[_Union[MessageOptions, _Mapping]] = ...) -> None: ...

class EnumValueDescriptorProto(_message.Message):
    __slots__ = ("name", "number", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    number: int
    options: EnumValueOptions
    def __init__(self, name: _Optional[str] = ..., number: _Optional[int] = ..., options: _Optional[_Union[EnumValueOptions, _Mapping]] = ...) -> None: ...

class EnumValueOptions(_message.Message):
    __slots__ = ("deprecated",)
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    deprecated: bool
    def __init__(self, deprecated: _Optional[bool] = ...) -> None: ...

class MessageOptions(_message.Message):
    __slots__ = ("deprecated",)
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    deprecated: bool
    def __init__(self, deprecated: _Optional[bool] = ...) -> None: ...

class FieldOptions(_message.Message):
    __slots__ = ("deprecated", "uninterpreted_option")
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    UNINTERPRETED_OPTION_FIELD_NUMBER: _ClassVar[int]
    deprecated: bool
    uninterpreted_option: _containers.RepeatedCompositeFieldContainer[UninterpretedOption]
    def __init__(self, deprecated: _Optional[bool] = ..., uninterpreted_option: _Optional[_Iterable[_Union[UninterpretedOption, _Mapping]]] = ...) -> None: ...

class UninterpretedOption(_message.Message):
    __slots__ = ("name", "identifier_value", "positive_int_value", "negative_int_value", "double_value", "string_value", "aggregate_value")
    class NamePart(_message.Message):
        __slots__ = ("name_part", "is_extension")
        NAME_PART_FIELD_NUMBER: _ClassVar[int]
        IS_EXTENSION_FIELD_NUMBER: _ClassVar[int]
        name_part: str
        is_extension: bool
        def __init__(self, name_part: _Optional[str] = ..., is_extension: _Optional[bool] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_VALUE_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: _containers.RepeatedCompositeFieldContainer[UninterpretedOption.NamePart]
    identifier_value: str
    positive_int_value: int
    negative_int_value: int
    double_value: float
    string_value: bytes
    aggregate_value: str
    def __init__(self, name: _Optional[_Iterable[_Union[UninterpretedOption.NamePart, _Mapping]]] = ..., identifier_value: _Optional[str] = ..., positive_int_value: _Optional[int] = ..., negative_int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., string_value: _Optional[bytes] = ..., aggregate_value: _Optional[str] = ...) -> None: ...
