"""The instrument and attribute names the control plane understands (public home of
:mod:`opensergo.common.metric_names`, where the SDK and the control plane both read them)."""

from opensergo.common.metric_names import *  # noqa: F403
from opensergo.common.metric_names import __all__ as __all__
