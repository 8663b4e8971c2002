"""Exception types. Every message names the op, the shapes or values, and the user's line."""


class GraphcError(Exception):
    """Base class for all graphc errors."""


class ShapeError(GraphcError, ValueError):
    """An op was declared with incompatible shapes."""


class DTypeError(GraphcError, TypeError):
    """An op was declared with incompatible dtypes, or with a value its dtype cannot hold."""


class AttributeValueError(GraphcError, ValueError):
    """An op attribute (axis, stride, probability, ...) has an invalid value."""


class InputError(GraphcError, ValueError):
    """A graph was run with a missing, extra, mis-shaped or mis-typed input."""


class IndexRangeError(GraphcError, IndexError):
    """An index or label is outside the axis it indexes (at declaration or at run time)."""


class GradientError(GraphcError, ValueError):
    """grad() was asked for something it cannot differentiate."""


class GraphFileError(GraphcError, ValueError):
    """A graph or checkpoint file is corrupt, from another version, or does not match."""


class UnsupportedModelError(GraphFileError):
    """A model file (ONNX) holds ops, attributes or dtypes graphc cannot import; the message lists every
    such node (name, op type, what is missing) and `.problems` holds them as (node, op type, reason)."""

    def __init__(self, msg, problems=()):
        super().__init__(msg)
        self.problems = list(problems)


class FileWriteError(GraphFileError, OSError):
    """A graph file, checkpoint or drawing could not be written (a file where a folder should be, no
    permission, a full disk); the message names the target, and a file that was there before is intact."""


class UnsupportedOpError(GraphcError, ValueError):
    """A graph holds ops that a target format has no form for (gradient ops in an ONNX export, say);
    the message lists every such node with its op, its line and why, in one error, and `.problems`
    holds them as (node, reason)."""

    def __init__(self, msg, problems=()):
        super().__init__(msg)
        self.problems = list(problems)


class GraphStructureError(GraphcError, ValueError):
    """Nodes from different graphs were mixed, or a name was declared twice."""


class SymbolicValueError(GraphcError, TypeError):
    """A graph node was used where Python or NumPy needs its value (`if node:`, `np.exp(node)`);
    a node has no value while the graph is declared."""


class OptionError(GraphcError, TypeError):
    """compile() or run() was given an option that the backend does not have."""


class TrainingError(GraphcError, RuntimeError):
    """Training stopped: the loss became NaN or inf. `.epoch`, `.step` and `.history` say where."""

    def __init__(self, msg, epoch=None, step=None, history=None):
        super().__init__(msg)
        self.epoch, self.step, self.history = epoch, step, history


class DistributedError(GraphcError, RuntimeError):
    """Data-parallel training cannot go on: the ranks differ (graphc version, model, initial
    parameters), MPI is missing under mpiexec, or a rank failed; the message names the ranks."""


def where(location: str | None) -> str:
    """The ' (declared at file:line)' suffix used by error messages."""
    return f" (declared at {location})" if location else ""
