"""Hypothesis profiles: ``ci`` (the default, derandomized) and ``thorough`` (20x the examples).

Tests state their example count for ``ci`` through ``examples(n)``, which scales it by the loaded
profile, so that ``--hypothesis-profile=thorough`` multiplies every test's count alike.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

CI_EXAMPLES = 10
THOROUGH_FACTOR = 20

# jax compiles per new shape, so an example's time is mostly compilation: no deadline, and no
# shrinking in ci (each shrink step recompiles; a derandomized failure reproduces as printed).
settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    derandomize=True,
    deadline=None,
    print_blob=True,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)
# Not derandomized: each thorough run explores new examples, shrinks failures and keeps them in .hypothesis/.
settings.register_profile(
    "thorough",
    parent=settings.get_profile("ci"),
    max_examples=CI_EXAMPLES * THOROUGH_FACTOR,
    derandomize=False,
    phases=tuple(Phase),
)


def examples(n: int) -> int:
    """``n`` examples under ``ci``, scaled by the loaded profile's max_examples."""
    return max(1, round(n * settings().max_examples / CI_EXAMPLES))
