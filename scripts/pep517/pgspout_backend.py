"""pgspout_backend - the PEP 517 build backend named in pyproject.toml.

scikit-build-core (scikit_build_core.build) for everything, except that an
sdist built in a git checkout holds exactly the files git tracks
(``git ls-files``). scikit-build-core alone takes every file that .gitignore
does not ignore, so an untracked build or scratch directory would be
shipped; here every untracked path git reports (``git ls-files --others
--directory``: ignored or not, whole directories collapsed to one entry) is
added to sdist.exclude for this build.

Outside a git checkout (e.g. building again from an unpacked sdist, which
holds only tracked files anyway) scikit-build-core's own selection applies.
scripts/test.sh's sdist stage checks the result against ``git ls-files``.
"""

import os
import re
import subprocess
import sys

import scikit_build_core.build as _skbuild

# Every hook scikit-build-core offers, under the same names.
__all__ = list(_skbuild.__all__)
globals().update({name: getattr(_skbuild, name) for name in __all__})


def _git(*args):
    return subprocess.run(["git", *args], capture_output=True, check=True).stdout


def _untracked_paths():
    """Untracked project-relative paths (directories end with "/"), or None
    when the current directory is not the top of a git checkout."""
    try:
        top = _git("rev-parse", "--show-toplevel").decode().strip()
        if os.path.realpath(top) != os.path.realpath(os.getcwd()):
            return None  # e.g. an unpacked sdist inside some other repository
        out = _git("ls-files", "-z", "--others", "--directory")
    except (OSError, subprocess.CalledProcessError):
        return None
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


def _literal_pattern(path):
    """A gitignore pattern matching exactly this path, anchored at the top
    (a trailing "/" keeps it a directory pattern)."""
    return "/" + re.sub(r"([\\*?\[\]!# ])", r"\\\1", path)


def build_sdist(sdist_directory, config_settings=None):
    settings = dict(config_settings or {})
    untracked = _untracked_paths()
    if untracked is None:
        print("pgspout_backend: not at the top of a git checkout: "
              "scikit-build-core selects the sdist's files", file=sys.stderr)
    else:
        extra = settings.get("sdist.exclude", [])
        if isinstance(extra, str):
            extra = [extra]
        settings["sdist.exclude"] = list(extra) + [_literal_pattern(p) for p in untracked]
        print(f"pgspout_backend: sdist of tracked files only "
              f"({len(untracked)} untracked paths left out)", file=sys.stderr)
    return _skbuild.build_sdist(sdist_directory, settings)
