"""The upstream wire forms of our kinds: the messages the official SDKs and consumers decode.

The models in :mod:`opensergo.spec` know nothing of protobuf or Envoy; this package translates:

* :mod:`~opensergo.spec.upstream.faulttolerance`: the five fault-tolerance kinds <->
  ``io.opensergo.proto.fault_tolerance.v1`` messages.
* :mod:`~opensergo.spec.upstream.traffic`: TrafficRouter <-> Envoy ``RouteConfiguration``.
* :mod:`~opensergo.spec.upstream.codec`: any object <-> its upstream message <-> ``google.protobuf.Any``,
  dispatching through the :class:`~opensergo.spec.upstream.form.UpstreamForm` each kind registers
  in :mod:`opensergo.spec.kinds`.
"""
