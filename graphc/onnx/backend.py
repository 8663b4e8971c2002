"""graphc as an onnx.backend.base.Backend: ONNX's backend tests run models through it.

`GraphcBackend.prepare(model, device, backend="reference")` imports the model and compiles it
on a graphc backend ("reference" or "numba"); `ReferenceBackend` and `NumbaBackend` fix it.

graphc's shapes are static: a model whose shapes, axes, pads or bounds are graph inputs (many
node tests give Reshape's shape or Slice's starts as inputs) is imported when it runs, with those
inputs fixed to the values given (and imported again for other values); every other input
stays an input of the compiled graph.
"""

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from graphc.errors import UnsupportedModelError
from graphc.onnx.importer import load


class GraphcRep(BackendRep):
    """A prepared model: call run(inputs) with the inputs in the model's order (or by name)."""

    def __init__(self, model: onnx.ModelProto, backend: str):
        self.model, self.backend = model, backend
        init = {t.name for t in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in init]
        self.output_names = [vi.name for vi in model.graph.output]
        self.fixed: set[str] = set()
        self._compiled: dict = {}
        try:  # fail at prepare for what no input value can fix (an unsupported op or dtype)
            load(model, trainable=False)
        except UnsupportedModelError as exc:
            if not all(p.needs_input in self.input_names for p in exc.problems):
                raise

    def _compile(self, feeds: dict):
        """The compiled graph for these feeds: imported with the inputs it needs at import fixed to them
        (found by importing: each NeedsValue names one, until none is left)."""
        from graphc.backends import compile

        while True:
            values = {name: np.asarray(feeds[name]) for name in sorted(self.fixed)}
            key = tuple((name, v.dtype.str, v.shape, v.tobytes()) for name, v in values.items())
            if key in self._compiled:
                return self._compiled[key]
            try:
                graph = load(self.model, trainable=False, input_values=values)
            except UnsupportedModelError as exc:
                needed = {p.needs_input for p in exc.problems}
                # Only values the model takes as graph inputs can be fixed; anything else is a real failure.
                if None in needed or not needed <= set(feeds) - self.fixed:
                    raise
                self.fixed |= needed
                continue
            self._compiled[key] = compile(graph, self.backend)
            return self._compiled[key]

    def run(self, inputs, **kwargs) -> tuple:
        feeds = dict(inputs) if isinstance(inputs, dict) else dict(zip(self.input_names, inputs))
        step = self._compile(feeds)
        needed = set(step.graph.inputs)
        out = step({k: v for k, v in feeds.items() if k in needed})
        return tuple(np.asarray(out[name]) for name in self.output_names)


class GraphcBackend(Backend):
    """ONNX models on graphc: `backend` names the graphc backend ("reference" or "numba")."""

    graphc_backend = "reference"

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        return device == "CPU"

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> GraphcRep:
        if isinstance(model, bytes | str):
            model = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        return GraphcRep(model, kwargs.get("backend", cls.graphc_backend))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


class ReferenceBackend(GraphcBackend):
    graphc_backend = "reference"


class NumbaBackend(GraphcBackend):
    graphc_backend = "numba"
