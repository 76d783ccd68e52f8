"""The ``mtl`` command: the library's experiments from the shell."""
