"""The layer on top: ``fb.trace`` records a step once and replays or compiles it after.

It reads the op registry (:mod:`fastbp.core.registry`) and its own table of compiled
forms (:mod:`fastbp.jit.forms`), and watches the engine through the one observer hook
(:mod:`fastbp.core.observer`). Nothing below this package imports it.
"""

from .tracing import TracedFunction, TracerWarning, trace

__all__ = ["trace", "TracedFunction", "TracerWarning"]
