"""Forward hooks held for the length of a ``with`` block: the base of the spike recorders."""

from __future__ import annotations

from typing import Self

from torch.utils.hooks import RemovableHandle


class ForwardHooks:
    """Context manager whose subclasses register hooks in :meth:`attach` through :meth:`keep`.

    Entering calls :meth:`attach`; leaving the block (or an error inside :meth:`attach`) removes
    every hook kept, so a model never carries a recorder's hooks past its ``with`` block.
    """

    _handles: list[RemovableHandle]

    def attach(self) -> None:
        """Register the hooks (on the model the subclass holds) and pass each handle to
        :meth:`keep`."""
        raise NotImplementedError

    def keep(self, handle: RemovableHandle) -> None:
        """Remove ``handle`` when the block ends."""
        self._handles.append(handle)

    def __enter__(self) -> Self:
        self._handles = []
        try:
            self.attach()
        except BaseException:
            self.remove_hooks()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_hooks()

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
