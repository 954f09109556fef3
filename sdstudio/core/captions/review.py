"""A person's review of a captioning pass: one image at a time, accept, edit, reject or skip.

Plain state, no UI: the studio's review view drives it by keys, and the tests drive it directly.
Only accepted captions (as accepted, or as edited) ever reach `runner.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sdstudio.core.captions.runner import Proposal

ACCEPTED, REJECTED, PENDING = "accepted", "rejected", "pending"


@dataclass
class Review:
    proposals: list[Proposal]
    index: int = 0
    decisions: dict[int, str] = field(default_factory=dict)
    edits: dict[int, str] = field(default_factory=dict)

    @property
    def current(self) -> Proposal | None:
        return self.proposals[self.index] if self.proposals else None

    def text(self, i: int | None = None) -> str:
        """The caption that would be written for proposal `i` (the current one by default)."""
        i = self.index if i is None else i
        return self.edits.get(i, self.proposals[i].new)

    def state(self, i: int | None = None) -> str:
        return self.decisions.get(self.index if i is None else i, PENDING)

    def counts(self) -> dict[str, int]:
        states = [self.state(i) for i in range(len(self.proposals))]
        return {s: states.count(s) for s in (ACCEPTED, REJECTED, PENDING)}

    def move(self, step: int) -> None:
        if self.proposals:
            self.index = max(0, min(len(self.proposals) - 1, self.index + step))

    def next_pending(self) -> None:
        """Go to the next undecided image after this one (stay when there is none)."""
        n = len(self.proposals)
        for k in range(1, n + 1):
            i = (self.index + k) % n
            if self.state(i) == PENDING:
                self.index = i
                return

    def accept(self, text: str | None = None) -> None:
        """Accept the current caption, as edited when `text` differs from the proposal."""
        if self.current is None:
            return
        if text is not None and text.strip() != self.current.new:
            self.edits[self.index] = " ".join(text.split())
        self.decisions[self.index] = ACCEPTED
        self.next_pending()

    def reject(self) -> None:
        if self.current is not None:
            self.decisions[self.index] = REJECTED
            self.next_pending()

    def accept_all(self) -> int:
        """Accept every undecided caption; returns how many."""
        pending = [i for i in range(len(self.proposals)) if self.state(i) == PENDING]
        for i in pending:
            self.decisions[i] = ACCEPTED
        return len(pending)

    def accepted(self) -> list[Proposal]:
        """The proposals to write, each with the caption as accepted."""
        return [replace(p, new=self.text(i)) for i, p in enumerate(self.proposals) if self.state(i) == ACCEPTED]
