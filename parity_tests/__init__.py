"""Property-based tests that torch_ref and jax_impl are one model (see README.md)."""
