from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ClusterFallbackConfig_ClusterConfig(_message.Message):
    __slots__ = ("RoutingCluster", "FallbackCluster")
    ROUTINGCLUSTER_FIELD_NUMBER: _ClassVar[int]
    FALLBACKCLUSTER_FIELD_NUMBER: _ClassVar[int]
    RoutingCluster: str
    FallbackCluster: str
    def __init__(self, RoutingCluster: _Optional[str] = ..., FallbackCluster: _Optional[str] = ...) -> None: ...
