"""Property 9: the blog's network, written out as its recipe says, is torch_ref with the blog's settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import torch_ref
from parity_tests.backends import TORCH_DTYPES, torch_batches, torch_model, torch_weights
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.strategies import blog_problems
from parity_tests.tolerances import DTYPES, tolerance


class BlogNetwork(nn.Module):
    """One hidden layer of 200 sigmoid units shared by a movie head (1 logit) and a yelp head (3)."""

    def __init__(self, input_dim: int):
        super().__init__()
        self.hidden = nn.Linear(input_dim, 200)
        self.movie = nn.Linear(200, 1)
        self.yelp = nn.Linear(200, 3)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        h = torch.sigmoid(self.hidden(x))
        return self.movie(h) if task == "movie" else self.yelp(h)

    def canonical(self) -> dict[str, np.ndarray]:
        """Its weights in the canonical layout: nn.Linear kernels transposed to (in, out)."""
        layers = {"trunk.0": self.hidden, "heads.movie": self.movie, "heads.yelp": self.yelp}
        out = {}
        for name, layer in layers.items():
            out[f"{name}.kernel"] = layer.weight.detach().T.numpy().copy()
            out[f"{name}.bias"] = layer.bias.detach().numpy().copy()
        return out


def blog_network(problem, dtype=np.float32) -> BlogNetwork:
    with torch.random.fork_rng():
        torch.manual_seed(problem.seed)
        return BlogNetwork(problem.input_dim).to(TORCH_DTYPES[np.dtype(dtype)])


def blog_step(net: BlogNetwork, optimizer, batches) -> dict[str, float]:
    """The blog's training step: BCE-with-logits + cross-entropy, summed, one Adam step."""
    optimizer.zero_grad()
    movie, yelp = batches["movie"], batches["yelp"]
    movie_logits = net(torch.from_numpy(movie.x), "movie")
    losses = {  # BCEWithLogitsLoss computes in the target's dtype: the targets take the logits' one
        "movie": nn.BCEWithLogitsLoss()(movie_logits, torch.from_numpy(movie.y).to(movie_logits.dtype)),
        "yelp": nn.CrossEntropyLoss()(net(torch.from_numpy(yelp.x), "yelp"), torch.from_numpy(yelp.y).long()),
    }
    total = losses["movie"] + losses["yelp"]
    total.backward()
    optimizer.step()
    return {**{name: loss.item() for name, loss in losses.items()}, "total": total.item()}


@settings(max_examples=examples(4))
@given(problem=blog_problems())
def test_the_blog_network_and_torch_ref_give_the_same_logits(problem):
    net = blog_network(problem)
    model = torch_model(problem, net.canonical())
    batches = problem.batches()
    with torch.no_grad():
        blog = {name: net(torch.from_numpy(b.x), name) for name, b in batches.items()}
        ours = {name: model(b.csr(), task_id=name) for name, b in batches.items()}
    assert_close_trees(ours, blog, tolerance("blog_forward"), "blog network vs torch_ref")


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(4))
@given(problem=blog_problems(), steps=st.integers(1, 5))
def test_the_blog_training_loop_and_torch_ref_steps_agree(problem, steps, dtype):
    net = blog_network(problem, dtype)
    model = torch_model(problem, net.canonical())
    blog_optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    step = torch_ref.make_train_step(model, torch.optim.Adam(model.parameters(), lr=1e-3), "sum")
    blog_losses, our_losses = [], []
    for i in range(steps):
        batches = problem.batches(i, dtype=dtype)
        blog_losses.append(blog_step(net, blog_optimizer, batches))
        our_losses.append(step(torch_batches(problem, batches)))
    assert_close_trees(
        {"losses": our_losses, "weights": torch_weights(model)},
        {"losses": blog_losses, "weights": net.canonical()},
        tolerance("blog_training", dtype),
        f"{steps} steps of the blog's loop vs torch_ref",
    )
