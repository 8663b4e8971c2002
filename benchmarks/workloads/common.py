"""Helpers shared by the workloads: initialisation, losses and training steps per system."""

import math

import numpy as np


def uniform(rng, shape, fan_in):
    """PyTorch's default Linear/Conv init range: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), float32."""
    lim = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-lim, lim, shape).astype(np.float32)


def graphc_cross_entropy(gc, logits, labels, classes):
    """Mean softmax cross-entropy with integer labels, in graphc ops.

    gc.cross_entropy when the build has it (so the compiler's softmax-cross-entropy rewrites
    apply); otherwise the same math from core ops.
    """
    if hasattr(gc, "cross_entropy"):
        return gc.cross_entropy(logits, labels)
    onehot = gc.cast(gc.equal(gc.reshape(labels, (-1, 1)), gc.constant(np.arange(classes), labels.dtype)), "float32")
    return -gc.mean(gc.sum(onehot * gc.log_softmax(logits, axis=-1), axis=1))


def graphc_sgd(gc, g, loss, lr):
    """Add `p <- p - lr * dloss/dp` updates for every trainable parameter of g."""
    with g:
        for name, grad in gc.gradients(loss).items():
            g.update(name, g.params[name] - lr * grad)


def jax_cross_entropy(jax, logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jax.numpy.mean(jax.numpy.take_along_axis(logp, labels[:, None], axis=1))


def torch_train_step(torch, params, loss_fn, lr):
    """Eager step: zero grads, forward, backward, SGD; returns the loss."""
    opt = torch.optim.SGD(params, lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def jax_train_step(jax, params, loss_fn, args, lr):
    """jit(value_and_grad + SGD), parameters donated (updated in place by XLA); step() blocks."""

    def sgd(p, *a):
        loss, grads = jax.value_and_grad(loss_fn)(p, *a)
        return jax.tree_util.tree_map(lambda w, dw: w - lr * dw, p, grads), loss

    fn = jax.jit(sgd, donate_argnums=0)
    state = {"p": jax.device_put(params)}
    args = [jax.device_put(a) for a in args]

    def step():
        state["p"], loss = fn(state["p"], *args)
        return loss.block_until_ready()

    return step
