from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class TimeUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[TimeUnit]
    MILLISECOND: _ClassVar[TimeUnit]
    SECOND: _ClassVar[TimeUnit]
    MINUTE: _ClassVar[TimeUnit]
    HOUR: _ClassVar[TimeUnit]
    DAY: _ClassVar[TimeUnit]
UNKNOWN: TimeUnit
MILLISECOND: TimeUnit
SECOND: TimeUnit
MINUTE: TimeUnit
HOUR: TimeUnit
DAY: TimeUnit
