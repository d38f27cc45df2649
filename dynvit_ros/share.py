# SPDX-License-Identifier: Apache-2.0
"""Where the package's data files are: msg/, config/ and models/.

Installed with colcon they live in the ament share directory; a pip install or
a source checkout has them next to the Python package. Pure Python, no ROS
import unless ament_index_python is there to ask.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "dynvit_ros"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dirs() -> list[Path]:
    """Roots to look in, first match wins: the ament share directory, a
    ``<prefix>/share/dynvit_ros`` above this module, then the source tree.
    """
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # no ament index, or the package is not in it: a source or pip install
        pass
    here = Path(__file__).resolve()
    dirs.extend(p / "share" / PACKAGE for p in here.parents if (p / "share" / PACKAGE).is_dir())
    dirs.append(SOURCE_ROOT)
    return list(dict.fromkeys(dirs))


def data_dirs(relative: str) -> list[Path]:
    """Every existing ``<root>/relative`` folder, in lookup order."""
    return [root / relative for root in share_dirs() if (root / relative).is_dir()]


def resolve_path(path: str | os.PathLike) -> Path:
    """A user-given path: absolute, relative to the working directory, or relative to the
    package's share directory (``models/...``, ``config/...``). Unfound paths come back as given.
    """
    candidate = Path(os.path.expanduser(str(path)))
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for root in share_dirs():
        if (root / candidate).exists():
            return root / candidate
    return candidate
