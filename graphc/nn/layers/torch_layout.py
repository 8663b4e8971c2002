"""Weights in PyTorch's layout: load an nn.RNN / nn.LSTM / nn.GRU state dict into a built layer.

PyTorch keeps, per layer k and direction (`_reverse` for the second), weight_ih_l{k}
(G*units, in), weight_hh_l{k} (G*units, units), bias_ih_l{k} and bias_hh_l{k} (G*units,),
with the gates in the order graphc uses (LSTM i, f, g, o; GRU r, z, n). graphc's kernels are
those matrices transposed (x @ w_ih); SimpleRNN and LSTM keep one bias, bias_ih + bias_hh,
and GRU both (its reset gate multiplies h @ w_hn + b_hn, exactly PyTorch's equation).
"""

import numpy as np

from graphc.errors import AttributeValueError, GraphStructureError, ShapeError, where
from graphc.ir.location import user_location
from graphc.nn.layers.recurrent import Recurrent

__all__ = ["load_torch_weights", "torch_state_dict"]


def _array(v):
    if hasattr(v, "detach"):  # a torch tensor, should one be passed
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def load_torch_weights(layer: Recurrent, state_dict) -> None:
    """Set a built SimpleRNN/LSTM/GRU's parameters from a PyTorch state dict of NumPy arrays
    (`{k: v.numpy() for k, v in torch_module.state_dict().items()}`), in place in the layer's
    graph's values: compile (or re-compile) afterwards. Every key and shape is checked before
    anything is written; a missing, unexpected or mis-shaped entry is an error naming it. A
    module made with bias=False may omit all the bias entries (they load as zeros)."""
    loc = user_location()
    what = "load_torch_weights"
    if isinstance(layer, Recurrent):
        what += f": {type(layer).__name__} {layer.scope or layer.name!r}"
    if not isinstance(layer, Recurrent):
        raise AttributeValueError(f"{what}: expects a SimpleRNN, LSTM or GRU layer, got {layer!r}" + where(loc))
    if not layer.built:
        raise GraphStructureError(f"{what} is not built yet: call it on an input first" + where(loc))
    if not hasattr(state_dict, "items"):
        raise AttributeValueError(f"{what}: state_dict must be a mapping of names to arrays" + where(loc))
    arrays = {str(k): _array(v) for k, v in state_dict.items()}
    has_bias = any(k.startswith("bias_") for k in arrays)
    values, used = {}, set()
    for (k, d), w in layer.weights.items():
        s = layer.suffix(k, d)
        n_in, gh = w["w_ih"].shape[0], w["w_ih"].shape[1]
        wanted = {f"weight_ih{s}": (gh, n_in), f"weight_hh{s}": (gh, layer.units)}
        if has_bias:
            wanted.update({f"bias_ih{s}": (gh,), f"bias_hh{s}": (gh,)})
        got = {}
        for key, shape in wanted.items():
            if key not in arrays:
                raise AttributeValueError(f"{what}: the state dict has no {key!r} (shape {shape})" + where(loc))
            a = arrays[key]
            if a.shape != shape:
                raise ShapeError(f"{what}: {key!r} has shape {a.shape}, expected {shape} for this layer" + where(loc))
            if a.dtype.kind not in "biuf":
                raise AttributeValueError(f"{what}: {key!r} holds {a.dtype}, not numbers" + where(loc))
            got[key] = a.astype(np.float64)
            used.add(key)
        zeros = np.zeros(gh)
        b_ih, b_hh = got.get(f"bias_ih{s}", zeros), got.get(f"bias_hh{s}", zeros)
        values[w["w_ih"]] = got[f"weight_ih{s}"].T
        values[w["w_hh"]] = got[f"weight_hh{s}"].T
        if "b_hh" in w:
            values[w["b_in"]], values[w["b_hh"]] = b_ih, b_hh
        else:
            values[w["b_in"]] = b_ih + b_hh
    extra = sorted(set(arrays) - used)
    if extra:
        raise AttributeValueError(
            f"{what}: unexpected entries {extra} (a {type(layer).__name__} with num_layers={layer.num_layers}, "
            f"bidirectional={layer.bidirectional} and no projection has none)" + where(loc)
        )
    for node, value in values.items():
        layer.graph.values[node.name] = np.ascontiguousarray(value, dtype=node.dtype)


def torch_state_dict(layer: Recurrent) -> dict[str, np.ndarray]:
    """The layer's current parameters as a PyTorch state dict of NumPy arrays (the inverse of
    load_torch_weights; SimpleRNN's and LSTM's one bias goes to bias_ih, bias_hh is zeros)."""
    if not isinstance(layer, Recurrent) or not layer.built:
        raise GraphStructureError(f"torch_state_dict: expects a built SimpleRNN, LSTM or GRU layer, got {layer!r}")
    values, out = layer.graph.values, {}
    for (k, d), w in layer.weights.items():
        s = layer.suffix(k, d)
        out[f"weight_ih{s}"] = values[w["w_ih"].name].T.copy()
        out[f"weight_hh{s}"] = values[w["w_hh"].name].T.copy()
        out[f"bias_ih{s}"] = values[w["b_in"].name].copy()
        out[f"bias_hh{s}"] = values[w["b_hh"].name].copy() if "b_hh" in w else np.zeros_like(out[f"bias_ih{s}"])
    return out
