"""A progress bar while the run goes: tqdm where installed, one plain line per measurement otherwise."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="measurement", file=sys.stderr, dynamic_ncols=True)

    def start(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_description(label)
        elif self.enabled:
            print(f"[{self.done + 1}/{self.total}] {label}", file=sys.stderr, flush=True)

    def finish(self, note: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(note)
            self.bar.update(1)

    def warn(self, message: str) -> None:
        (self.bar.write if self.bar is not None else lambda m: print(m, file=sys.stderr))(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
