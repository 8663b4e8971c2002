"""Every user-facing op function, gathered from the op modules (graphc re-exports these)."""

# ruff: noqa: I001  (import order here is the registration order; keep appends at the end)

import sys

from graphc.ops.elementwise import *  # noqa: F403
from graphc.ops.activations import *  # noqa: F403
from graphc.ops.reductions import *  # noqa: F403
from graphc.ops.shape_ops import *  # noqa: F403
from graphc.ops.linalg import *  # noqa: F403
from graphc.ops.registry import constant  # noqa: F401
from graphc.ops.conv import *  # noqa: F403
from graphc.ops.pool import *  # noqa: F403
from graphc.ops.indexing import *  # noqa: F403
from graphc.ops.getitem import *  # noqa: F403
from graphc.ops.losses import *  # noqa: F403
from graphc.ops.random import *  # noqa: F403
from graphc.ops.collective import *  # noqa: F403
from graphc.ops.tuple_ops import *  # noqa: F403
from graphc.ops.control import *  # noqa: F403
from graphc.ops.sequence_mask import *  # noqa: F403
from graphc.ops import registry as _registry

# Gradient rules and builders reach the op functions through registry.F, bound here once every
# op module is loaded, so no op module imports this one (no import cycle through api).
_registry.F.bind(sys.modules[__name__])
