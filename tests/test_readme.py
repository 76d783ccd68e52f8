"""The README's usage examples run as written and print what the README shows after them.

A ```python block followed directly by a ```text block must print exactly that text; the blocks
run in order in one namespace, as a reader pasting them into one session would.
"""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", flags=re.S)


def examples() -> list[tuple[str, str | None]]:
    """[(python code, the text it must print or None)] in the README's order."""
    text = README.read_text()
    fences = list(FENCE.finditer(text))
    found = []
    for fence, following in zip(fences, fences[1:] + [None]):
        if fence.group(1) != "python":
            continue
        shown = None
        if following is not None and following.group(1) == "text" and not text[fence.end() : following.start()].strip():
            shown = following.group(2)
        found.append((fence.group(2), shown))
    return found


def test_readme_python_examples_print_what_the_readme_shows():
    blocks = examples()
    assert len(blocks) >= 4 and sum(shown is not None for _, shown in blocks) >= 4
    namespace: dict = {}
    first_history = None  # the six-epoch torch fit; later examples train shorter and rebind the name
    for number, (code, shown) in enumerate(blocks):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{README}:python block {number}", "exec"), namespace)
        if shown is not None:
            assert printed.getvalue() == shown, f"python block {number} printed:\n{printed.getvalue()}"
        first_history = first_history or namespace.get("history")
    assert set(namespace["losses"]) == {"movie", "total"}
    final_f1 = [scores[-1] for scores in first_history["f1"].values()]
    assert min(final_f1) > 0.6  # trained long enough to mean something

