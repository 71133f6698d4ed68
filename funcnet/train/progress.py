"""A progress bar that is there on a terminal and quiet elsewhere."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(enabled: bool | None, total: int, initial: int = 0, **kwargs: Any) -> Any:
    """A tqdm bar, or None when ``enabled`` is False or tqdm is not installed.

    ``enabled=None`` is tqdm's own ``disable=None``: a bar on a terminal, nothing otherwise.

    Args:
        enabled: True, False, or None (on a terminal only).
        total: the bar's total.
        initial: where it starts.
        **kwargs: passed to tqdm (``unit``, ``desc``...).

    Returns:
        The bar, or None.

    Examples:
        >>> from funcnet.train import progress_bar
        >>> progress_bar(False, 10) is None
        True
    """
    if enabled is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # mininterval: a log file (not a terminal) gets a few lines, not one per update
    return tqdm(total=total, initial=initial, leave=True, mininterval=0.5,
                disable=None if enabled is None else False, **kwargs)
