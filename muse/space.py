"""Deploy the playground to a Hugging Face Space: `python -m muse.space deploy OWNER/NAME [--dry-run]`.

  python -m muse.space deploy me/muse --dry-run   # list the files and their sizes, check the front matter
  python -m muse.space deploy me/muse             # create the Space (if new) and upload exactly those files

`space_files` decides what a Space needs, once, for both: app.py, the `muse/` sources, `weights/` as it
is, requirements.txt, README.md (and the images it shows), LICENSE if present, .gitattributes; never
tests, benchmarks, training runs or data. The upload goes through the Hub's API, which stores large and
binary files with LFS/Xet by itself, and removes what an earlier deploy left that is no longer part of
the set. The checks (`check_space`) are those the Space builder and a `git push` would fail on; the dry
run needs no network.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
APP_FILE = "app.py"
TOP_FILES = (APP_FILE, "requirements.txt", "README.md", "LICENSE", ".gitattributes")  # each if present
FOLDERS = ("muse", "weights")  # all of each, but what `_kept` leaves out
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo", ".pyi"}  # Python's caches, and the type stubs Gradio writes at import
SKIPPED_NAMES = {".gitignore"}
README_IMAGE_SUFFIXES = {".png", ".gif", ".jpg", ".jpeg", ".webp", ".svg"}
PYTHON_VERSION = "3.11"  # every figure in the README was measured on it; Spaces default to 3.10
LFS_OVER_BYTES = 10 * 1000 * 1000  # the Hub refuses larger files pushed with git unless stored with LFS/Xet
# Markdown image or link targets, and HTML src attributes: where README.md points at its own files.
README_LINK = re.compile(r"\]\(([^)\s]+)\)|\bsrc=[\"']([^\"']+)[\"']")
GRADIO_PIN = re.compile(r"^\s*gradio(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


@dataclass(frozen=True)
class SpaceFile:
    """One file of the Space: its path in the repo (POSIX, relative to the root) and its size in bytes."""

    path: str
    size: int


def _kept(path: Path, root: Path) -> bool:
    return (path.is_file() and path.suffix not in SKIPPED_SUFFIXES and path.name not in SKIPPED_NAMES
            and not SKIPPED_DIRS & set(path.relative_to(root).parts))


def readme_images(root: Path) -> list[str]:
    """The image files of this checkout that README.md shows (relative links only), as repo paths."""
    readme = root / "README.md"
    if not readme.is_file():
        return []
    found = []
    for match in README_LINK.finditer(readme.read_text(encoding="utf-8")):
        target = (match.group(1) or match.group(2)).split("#")[0]
        if ":" in target or target.startswith("/") or Path(target).suffix.lower() not in README_IMAGE_SUFFIXES:
            continue  # a URL, an absolute path or not an image
        file = (root / target).resolve()
        if file.is_file() and file.is_relative_to(root.resolve()):
            found.append(file.relative_to(root.resolve()).as_posix())
    return found


def space_files(root: Path = ROOT) -> list[SpaceFile]:
    """Exactly the files a Space of the playground needs, sorted by path: what the dry run lists and the
    deploy uploads."""
    paths = {name for name in TOP_FILES if (root / name).is_file()}
    for folder in FOLDERS:
        paths |= {p.relative_to(root).as_posix() for p in (root / folder).rglob("*") if _kept(p, root)}
    paths |= set(readme_images(root))
    return [SpaceFile(path, (root / path).stat().st_size) for path in sorted(paths)]


# ----- checks: what the Space builder or a git push would refuse ---------------------------------------

def front_matter(readme: Path) -> dict[str, Any]:
    """README.md's YAML front matter (the Space's settings); {} when there is none; a ValueError when it is
    not a YAML mapping."""
    import yaml
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(readme) if readme.is_file() else None
    except yaml.YAMLError as err:
        raise ValueError(f"README.md's front matter is not valid YAML: {err}") from None
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("README.md's front matter must be a YAML mapping of key: value lines")
    return meta or {}


def pinned_gradio(requirements: Path) -> Optional[str]:
    """The version requirements.txt pins gradio to with ==; None when it does not pin it."""
    if not requirements.is_file():
        return None
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = GRADIO_PIN.match(line)
        if match:
            return match.group(1)
    return None


def lfs_patterns(gitattributes: Path) -> list[str]:
    """The patterns .gitattributes sends through Git LFS (filter=lfs)."""
    if not gitattributes.is_file():
        return []
    lines = (line.split() for line in gitattributes.read_text(encoding="utf-8").splitlines())
    return [parts[0] for parts in lines if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]]


def marked_for_lfs(path: str, patterns: Sequence[str]) -> bool:
    """Whether git would store `path` with LFS: a pattern without a slash matches the file name at any
    depth, one with a slash the path from the root (gitattributes' own rule, without `**`)."""
    return any(fnmatch.fnmatchcase(path if "/" in p else path.rsplit("/", 1)[-1], p.lstrip("/")) for p in patterns)


def is_binary(file: Path) -> bool:
    """Git's test: a NUL byte in the first 8,000 bytes."""
    with open(file, "rb") as handle:
        return b"\0" in handle.read(8000)


def check_space(root: Path, files: Sequence[SpaceFile]) -> list[str]:
    """Everything about `files` that would keep the Space from building or from being pushed with git, one
    sentence each; [] when it is ready."""
    from huggingface_hub import SpaceHardware

    problems = []
    names = {f.path for f in files}
    try:
        meta = front_matter(root / "README.md")
    except ValueError as err:
        return [str(err)]
    if not meta:
        return ["README.md has no front matter (the YAML block between --- lines that configures the Space)"]
    pin = pinned_gradio(root / "requirements.txt")
    if meta.get("sdk") != "gradio":
        problems.append(f"front matter: sdk must be gradio, not {meta.get('sdk')!r}")
    if pin is None:
        problems.append("requirements.txt does not pin gradio (gradio==VERSION, the front matter's sdk_version)")
    elif str(meta.get("sdk_version")) != pin:
        problems.append(f"front matter: sdk_version {meta.get('sdk_version')!r} differs from requirements.txt's "
                        f"gradio=={pin}")
    if meta.get("app_file") not in names:
        problems.append(f"front matter: app_file {meta.get('app_file')!r} is not among the files uploaded")
    if meta.get("python_version") != PYTHON_VERSION:
        problems.append(f"front matter: python_version must be the string \"{PYTHON_VERSION}\" (quoted: YAML reads "
                        f"3.10 as 3.1), not {meta.get('python_version')!r}")
    if not meta.get("license"):
        problems.append("front matter: no license")
    hardware = {h.value for h in SpaceHardware}
    if meta.get("suggested_hardware") not in hardware:
        problems.append(f"front matter: suggested_hardware {meta.get('suggested_hardware')!r} is not a Space "
                        "hardware name (cpu-basic, zero-a10g, t4-small, ...: huggingface_hub.SpaceHardware)")
    if not (meta.get("models") or meta.get("tags")):
        problems.append("front matter: neither models nor tags (how the Hub links and finds the Space)")
    patterns = lfs_patterns(root / ".gitattributes")
    if ".gitattributes" not in names:
        problems.append("no .gitattributes: a git push of the binary files below would be refused")
    unmarked = [f.path for f in files if (f.size > LFS_OVER_BYTES or is_binary(root / f.path))
                and not marked_for_lfs(f.path, patterns)]
    if unmarked:
        problems.append(f".gitattributes does not mark {len(unmarked)} binary or large (over 10 MB) file(s) for "
                        f"LFS: {', '.join(unmarked[:5])}{' ...' if len(unmarked) > 5 else ''}")
    return problems


def human_size(size: int) -> str:
    """Bytes as B, kB or MB (powers of 1000, as the Hub shows them)."""
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def listing(root: Path, files: Sequence[SpaceFile]) -> str:
    """The dry run's table: size, path, and LFS where git would store the file so."""
    patterns = lfs_patterns(root / ".gitattributes")
    rows = [f"{human_size(f.size):>10}  {f.path}{'  (LFS)' if marked_for_lfs(f.path, patterns) else ''}"
            for f in files]
    return "\n".join(rows + [f"{human_size(sum(f.size for f in files)):>10}  total, {len(files)} files"])


# ----- the upload ------------------------------------------------------------------------------------

def deploy(repo_id: str, root: Path, files: Sequence[SpaceFile], token: Optional[str] = None,
           private: Optional[bool] = None) -> str:
    """Create the Space if it does not exist and make its files exactly `files`, in one commit; returns the
    Space's URL. Needs the network."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    names = {f.path for f in files}
    stale = [p for p in api.list_repo_files(repo_id, repo_type="space") if p not in names]
    operations = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=root / f.path) for f in files]
    operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
    api.create_commit(repo_id, operations, commit_message="Deploy with python -m muse.space deploy",
                      repo_type="space")
    if stale:
        print(f"removed {len(stale)} file(s) no longer part of the Space: {', '.join(stale)}")
    return str(url)


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m muse.space", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    dep = sub.add_parser("deploy", help="upload the playground to a Space (or check it with --dry-run)")
    dep.add_argument("repo_id", metavar="OWNER/NAME", help="the Space's repo id")
    dep.add_argument("--dry-run", action="store_true", help="list and check the files; upload nothing")
    dep.add_argument("--token", help="a Hugging Face token with write access (default: HF_TOKEN or `hf auth login`)")
    dep.add_argument("--private", action="store_true", default=None, help="create the Space private")
    dep.add_argument("--root", type=Path, default=ROOT, help="the checkout to deploy (default: this one)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; 0 when done, 1 when a check or the upload failed, 2 for a usage error."""
    from huggingface_hub.errors import HFValidationError, HTTPError
    from huggingface_hub.utils import validate_repo_id

    from .hub import offline

    a = parse(argv)
    try:
        if a.repo_id.count("/") != 1:
            raise HFValidationError("give the owner (a user or an organisation) and the name")
        validate_repo_id(a.repo_id)
    except HFValidationError as err:
        print(f"error: {a.repo_id!r} is not a Space id of the form OWNER/NAME: {err}", file=sys.stderr)
        return 2
    files = space_files(a.root)
    dry = " (dry run: nothing is uploaded)" if a.dry_run else ""
    print(f"Space {a.repo_id}: {len(files)} files from {a.root}{dry}")
    print(listing(a.root, files))
    problems = check_space(a.root, files)
    if problems:
        print("error: the Space would not build or push as it is:\n" + "\n".join(f"  - {p}" for p in problems),
              file=sys.stderr)
        return 1
    print(f"checks passed: front matter (sdk gradio {pinned_gradio(a.root / 'requirements.txt')} as requirements.txt "
          f"pins it, python {PYTHON_VERSION}, app_file, license, suggested_hardware, models/tags); every binary or "
          "large file is marked for LFS in .gitattributes")
    if a.dry_run:
        return 0
    if offline():
        print("error: deploying uploads to the Hugging Face Hub and needs the network, but HF_HUB_OFFLINE is set "
              "(the Makefile sets it): run it with HF_HUB_OFFLINE=0, or add --dry-run to check without uploading",
              file=sys.stderr)
        return 2
    try:
        url = deploy(a.repo_id, a.root, files, token=a.token, private=a.private)
    except (HTTPError, OSError) as err:  # HfHubHTTPError (auth, not found) and network errors are both
        print(f"error: the upload to {a.repo_id} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"deployed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
