"""Phase tags: whether a node belongs to the forward pass, the backward pass or the updates."""

import enum


class Phase(enum.Enum):
    """What part of a training step a node belongs to (drawings, the text form and files read it).

    FORWARD: declared by the user (and every source). BACKWARD: built by autodiff; such a node
    also carries `grad_of`, the label of the forward value it differentiates. UPDATE: built by
    an optimizer to compute a variable's next value.
    """

    FORWARD = "forward"
    BACKWARD = "backward"
    UPDATE = "update"
