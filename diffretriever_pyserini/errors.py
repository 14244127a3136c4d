"""One error type for failures a user can fix: bad input, a missing file, a full disk, a busy work folder.

Every command routes its failures through :class:`UserError` (the dataset, backbone, prompt and fine-tuned errors
are kinds of it); ``diffretriever-pyserini`` prints one line, ``diffretriever-pyserini: error: <file>:<line>:
<what>``, and exits with 2 (the traceback only with ``-v``).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class UserError(ValueError):
    """A failure the user can act on; ``path`` and ``line`` name the bad input when there is one.

    A ValueError, so code that guards against bad values keeps catching it.
    """

    def __init__(self, message: str, path=None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = f"{path}:{line}: " if path is not None and line is not None else f"{path}: " if path else ""
        super().__init__(where + message)


def disk_full_error(exc: OSError, path, needed_bytes: int | None = None) -> UserError | None:
    """A UserError for an out-of-space (or quota) OSError while writing ``path``, naming the space the step needs
    and what is free; None for any other OSError."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    path = Path(path)
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free
    need = f"about {needed_bytes / 1e6:.0f} MB; " if needed_bytes else ""
    return UserError(f"no space left on the device while writing ({need}{free / 1e6:.0f} MB free there); "
                     "nothing was left half-written: free space and run the same command again", path)
