"""A graph's variables resident on the device, read back only when the host asks for them.

`resident(graph)` gives the graph's variables a device copy shared by every CUDA step compiled
from it (a training step and its evaluation step see the same parameters), and makes
`graph.values` a `DeviceValues`: a dict whose reads (`values[name]`, `.get`, `.items()`,
`.values()`, `dict(values)`, `.copy()`) first copy a variable the device has changed back into
the host array, in place (the arrays keep their identity). Writes reach the device before its
next step: a new array set with `values[name] = a` is copied up; so is an array read and then
changed in place (`np.copyto(graph.values[k], v)`), which is found by comparing it with the
copy taken when it was read. An array read keeps the values of that moment: read it again
after later steps.

Nothing crosses per step for a variable the host does not read: the only copies are the first
upload, a read, and an upload after a host write (counted in `transfers`).
"""

import numpy as np

from graphc.backends.cuda import device

__all__ = ["DeviceValues", "resident"]


class DeviceValues(dict):
    """graph.values, with device copies of the variables (see the module doc)."""

    def __init__(self, host: dict):
        super().__init__(host)
        self.dev: dict = {}  # name -> device array
        self.device_newer: set = set()  # the device copy is newer than the host array
        self.host_set: set = set()  # a new host array was set: upload before the next step
        self.read: dict = {}  # name -> the host array's bytes when it was last handed out
        self.transfers = device.Transfers()

    # -- the host side ---------------------------------------------------------------------
    def _sync(self, name):
        host = dict.__getitem__(self, name)
        if name in self.device_newer:
            if host.flags.c_contiguous:
                self.dev[name].copy_to_host(ary=host.reshape(host.shape or (1,)))
            else:  # an array the user set: copied down, then into it
                np.copyto(host, self.dev[name].copy_to_host().reshape(host.shape))
            self.transfers.add("d2h", "variable", host.nbytes)
            self.device_newer.discard(name)
        if name in self.dev and name not in self.host_set:
            self.read[name] = host.tobytes()  # the caller may write it in place
        return host

    def __getitem__(self, name):
        return self._sync(name)

    def get(self, name, default=None):
        return self._sync(name) if dict.__contains__(self, name) else default

    def __iter__(self):  # makes dict(values) and {**values} read through __getitem__
        return iter(list(dict.keys(self)))

    def values(self):
        return [self._sync(k) for k in list(dict.keys(self))]

    def items(self):
        return [(k, self._sync(k)) for k in list(dict.keys(self))]

    def copy(self):
        return dict(self.items())

    def __setitem__(self, name, value):
        dict.__setitem__(self, name, value)
        self.device_newer.discard(name)
        self.read.pop(name, None)
        if name in self.dev:
            self.host_set.add(name)

    def __delitem__(self, name):
        dict.__delitem__(self, name)
        self._forget(name)

    def pop(self, name, *default):
        if dict.__contains__(self, name):
            value = self._sync(name)
            dict.__delitem__(self, name)
            self._forget(name)
            return value
        return dict.pop(self, name, *default)

    def _forget(self, name):
        self.dev.pop(name, None)
        self.device_newer.discard(name)
        self.host_set.discard(name)
        self.read.pop(name, None)

    def sync(self) -> None:
        """Copy every variable the device has changed back into its host array."""
        for name in list(self.device_newer):
            self._sync(name)

    # -- the device side -------------------------------------------------------------------
    def device_array(self, name):
        """The variable's device copy, current with every host write (uploaded if needed)."""
        host = dict.__getitem__(self, name)
        d = self.dev.get(name)
        if d is None or (name in self.host_set and (d.shape != (host.shape or (1,)) or d.dtype != host.dtype)):
            d = self.dev[name] = device.to_device(host)
            self.transfers.add("h2d", "variable", host.nbytes)
        elif name in self.host_set or (name in self.read and host.tobytes() != self.read[name]):
            d.copy_to_device(np.ascontiguousarray(host).reshape(d.shape))
            self.transfers.add("h2d", "variable", host.nbytes)
        self.host_set.discard(name)
        self.read.pop(name, None)
        return d

    def written(self, name) -> None:
        """A step wrote the variable's device copy."""
        self.device_newer.add(name)
        self.read.pop(name, None)


def resident(graph) -> DeviceValues:
    """graph.values as a DeviceValues (made once; graphs that share the dict share it after)."""
    vals = graph.values
    if not isinstance(vals, DeviceValues):
        vals = graph.values = DeviceValues(vals)
    return vals
