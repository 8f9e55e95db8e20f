"""Whether the Hugging Face hub can be used now, and making the libraries fail at once when it cannot.

The floor below ``utils.models``, ``utils.data`` and ``utils.online``: it imports nothing of the
package. ``HF_HUB_OFFLINE`` is read at every call (not at import, as the libraries do), and the
hub's reachability is probed once per process with a short timeout.

Public names: ``offline_reason``, ``hub_offline``, ``hub_offline_set``, ``hub_reachable``,
``HUB_HOST``, ``OFFLINE_ENV``, ``REACH_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

__all__ = [
    "HUB_HOST",
    "OFFLINE_ENV",
    "REACH_TIMEOUT_S",
    "hub_offline",
    "hub_offline_set",
    "hub_reachable",
    "offline_reason",
]

HUB_HOST = "huggingface.co"
REACH_TIMEOUT_S = 1.5
OFFLINE_ENV = "HF_HUB_OFFLINE"
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads its flags


def hub_offline_set() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now (read at every call, not at import)."""
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in TRUE_VALUES


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether a TCP connection to the hub opens within REACH_TIMEOUT_S (checked once per process)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((HUB_HOST, 443), timeout=REACH_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)  # name lookup has no timeout of its own
    worker.start()
    worker.join(REACH_TIMEOUT_S)
    return bool(result and result[0])


def offline_reason() -> str | None:
    """Why nothing can be downloaded now (``HF_HUB_OFFLINE`` set, or hub unreachable), or None."""
    if hub_offline_set():
        return f"{OFFLINE_ENV} is set"
    if not hub_reachable():
        return f"{HUB_HOST} is unreachable (no network)"
    return None


@contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """Make huggingface_hub, transformers and datasets use local caches only inside the block.

    These libraries read ``HF_HUB_OFFLINE`` once at import; this sets their flags for the call, so
    an offline load fails at once instead of retrying connections.
    """
    if not active:
        yield
        return
    # imported here: `datasets` takes seconds to import, and only a load from the hub needs it
    import datasets.config
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved
