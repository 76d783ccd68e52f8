"""Lazy Adam's row update, written once for every framework: ``torch.optim.SparseAdam``'s rule.

Text hashed into 2^18-2^22 features makes the first layer's kernel (V, H) huge, while one step's
batches touch a few thousand of its rows. Exact Adam still reads and writes all V×H weights and
moments every step; lazy Adam updates only the touched rows, so a step costs what its batches hold,
not what the vocabulary holds. The rows touched by a step are the columns holding a non-zero input
value in any of its batches; each gets its summed gradient g (the dense gradient's row) and

    m <- m + (1 - b1) (g - m)        v <- v + (1 - b2) (g² - v)
    w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) · m / (sqrt(v) + eps)

with t the optimiser's step count on the kernel (this step included: 1 on the first). Untouched rows
keep their weights *and* moments. That is SparseAdam's update (eps added to sqrt(v), not to
sqrt(v̂) as in dense Adam). Every other parameter gets dense Adam. Each backend gathers the rows,
calls ``row_update`` on them and scatters the result: torch_ref.lazy_adam, jax_impl.lazy_adam.
"""

from __future__ import annotations

from mtl_core.checkpoint import AdamHyper

LAZY_ADAM = "lazy_adam"  # the optimiser's name in checkpoints and on the command line


def row_update(xp, weights, exp_avg, exp_avg_sq, grads, step, hyper: AdamHyper):
    """(weights, exp_avg, exp_avg_sq) of the touched rows after one update; ``step`` counts from 1.

    Arrays of any framework whose module is ``xp`` (numpy, jax.numpy, torch), all (rows, H); ``step``
    a Python number or a scalar array of that framework.
    """
    exp_avg = exp_avg + (1 - hyper.b1) * (grads - exp_avg)
    exp_avg_sq = exp_avg_sq + (1 - hyper.b2) * (grads * grads - exp_avg_sq)
    step_size = hyper.lr * xp.sqrt(1 - hyper.b2**step) / (1 - hyper.b1**step)
    return weights - step_size * exp_avg / (xp.sqrt(exp_avg_sq) + hyper.eps), exp_avg, exp_avg_sq
