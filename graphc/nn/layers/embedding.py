"""Embedding: integer ids to learned vectors (a row lookup; its gradient a scatter-add)."""

from graphc.errors import DTypeError, where
from graphc.ir import dtypes
from graphc.ir.location import user_location
from graphc.nn.layers.base import Layer, check_int
from graphc.nn.layers.dense import check_init
from graphc.ops import api as F

__all__ = ["Embedding"]


class Embedding(Layer):
    """ids (any shape, int32/int64, values in [0, vocab)) -> vectors (*ids.shape, dim).

    Parameter `<scope>/w` (vocab, dim): row i is the vector of id i (init "uniform": U(-0.05, 0.05),
    as in Keras). The lookup is the `take` op, whose gradient (`take_grad`) adds each output
    row's gradient into the row of its id, so repeated ids accumulate. An id outside [0, vocab),
    negative ones included, raises IndexRangeError naming this layer and the id when run, on
    every backend.
    """

    def __init__(self, vocab: int, dim: int, init="uniform", dtype: str = "float32", name: str | None = None):
        self.vocab = check_int("Embedding", "vocab", vocab)
        self.dim = check_int("Embedding", "dim", dim)
        self.init = check_init("Embedding", "init", init)
        self.dtype = dtypes.canonical(dtype)
        super().__init__(name)

    def signature(self, x):
        return (x.dtype,)

    def build(self, x):
        if not dtypes.is_int(x.dtype):
            raise DTypeError(
                f"{self._what()} needs integer ids (int32 or int64), got {x.type_str}; build the model with "
                "input_dtype='int32' for token ids" + where(user_location())
            )
        self.w = self.add_param("w", (self.vocab, self.dim), self.init, self.dtype)

    def forward(self, x, training):
        return F.take(self.w, x, 0, negative=False, caller=self._what())
