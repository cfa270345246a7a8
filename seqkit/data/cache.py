"""Where datasets live and how a missing one is fetched (the project's data contract); catalog.py says what.

Layout: ``<data root>/<dataset>/<relpath>``, exactly as in ../shared/data. The data root may be
read-only, so nothing but a download ever writes there; derived files go to ``derived_root()``.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import tarfile
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

from tqdm import tqdm

from .catalog import DATASETS, DatasetSpec, Source

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file's sha256 differs from the catalog's."""


def data_root() -> Path:
    """``$SEQKIT_DATA`` if set, else ``~/.cache/seqkit/data``; may be read-only."""
    env = os.environ.get("SEQKIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqkit" / "data"


def derived_root() -> Path:
    """``$SEQKIT_CACHE`` if set, else ``~/.cache/seqkit/derived``: the writable cache, created."""
    env = os.environ.get("SEQKIT_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "seqkit" / "derived"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    return checksum(path, "")


def checksum(path: Path, like: str) -> str:
    """The digest of a file in the form of the catalog's ``like``: hex sha256, or
    "sha1:<hex>" where the catalog holds a digest published as sha1."""
    algorithm = like.rpartition(":")[0]
    digest = hashlib.new(algorithm or "sha256")
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return f"{algorithm}:{digest.hexdigest()}" if algorithm else digest.hexdigest()


def verify(name: str, root: Path | None = None) -> dict[str, bool]:
    """{relpath: the digest matches the catalog} for the files of ``name`` present under the root.

    Missing files are left out of the result; compare its keys with ``DATASETS[name].files``.
    """
    folder = Path(root or data_root()) / name
    return {rel: checksum(folder / rel, want) == want
            for rel, want in _spec(name).files.items() if (folder / rel).is_file()}


def dataset_file(name: str, relpath: str, root: Path | None = None) -> Path:
    """Path of ``<root>/<name>/<relpath>``, downloading it (and its siblings) if missing.

    Raises FileNotFoundError naming the files and the folder when it is missing and cannot be
    downloaded, ChecksumError when a download does not match the catalog, and ValueError for
    an unknown dataset or file.
    """
    spec = _spec(name)
    if relpath not in spec.files:
        raise ValueError(f"dataset {name!r} has no file {relpath!r}; it has {sorted(spec.files)}")
    folder = Path(root or data_root()) / name
    path = folder / relpath
    if path.is_file():
        return path
    source = spec.source_of(relpath)
    if source is None:
        raise _missing(name, folder, "no public download is known")
    try:
        _fetch(source, spec, folder)
    except ChecksumError as e:
        raise ChecksumError(f"{e}. Put good copies in {folder} yourself, or point SEQKIT_DATA "
                            f"at a folder holding {name}/.") from None
    except OSError as e:  # URLError, timeouts and a read-only folder are all OSErrors
        raise _missing(name, folder, f"downloading {source.url} failed ({e})") from e
    return path


def _missing(name: str, folder: Path, why: str) -> FileNotFoundError:
    absent = [rel for rel in _spec(name).files if not (folder / rel).is_file()]
    return FileNotFoundError(
        f"dataset {name!r} is missing {', '.join(absent)} in {folder}: {why}. Put the files "
        f"there (same names), or point SEQKIT_DATA at a folder holding {name}/.")


def _fetch(source: Source, spec: DatasetSpec, folder: Path) -> None:
    """Download ``source`` into ``folder``, extract its members, move each file into place."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / source.saves if source.saves else None
    if kept is not None and kept.is_file():  # e.g. the SST zip is here but trees/ is not
        _extract(kept, source, spec, folder)
        return
    tmp = _download(source.url, folder)
    try:
        if kept is not None:
            _check(tmp, spec.files[source.saves], source.url)
        _extract(tmp, source, spec, folder)
        if kept is not None:
            os.replace(tmp, kept)
    finally:
        tmp.unlink(missing_ok=True)


def _extract(archive: Path, source: Source, spec: DatasetSpec, folder: Path) -> None:
    """Install each missing member of a zip or tar archive, checked against the catalog."""
    if not source.members:
        return
    is_zip = zipfile.is_zipfile(archive)
    try:
        opened = zipfile.ZipFile(archive) if is_zip else tarfile.open(archive)
    except tarfile.TarError as e:
        raise ChecksumError(f"{source.url}: not a zip or tar archive ({e})") from e
    with opened:
        for member, rel in source.members.items():
            if (folder / rel).is_file():
                continue
            try:
                stream = opened.open(member) if is_zip else opened.extractfile(member)
            except KeyError:
                stream = None
            if stream is None:
                raise ChecksumError(f"{source.url}: the archive has no file {member!r}")
            with stream:
                _install(stream, folder / rel, spec.files[rel], f"{source.url}!{member}")


def _download(url: str, folder: Path) -> Path:
    """Stream ``url`` to a temp file in ``folder`` (same file system, so os.replace is atomic)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
            return _write_temp(response, folder, bar.update)


def replace_atomically(path: Path, write) -> Path:
    """``write(tmp)`` to a unique temporary file beside ``path``, then rename it into place:
    a reader never sees half a file, and concurrent writers (DDP ranks) do not collide. The
    file gets the user's umask (0644 under 022), as any file they create."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path.parent, path.name + ".")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    return replace_atomically(Path(path), lambda tmp: Path(tmp).write_text(text))


def _new_temp(folder: Path, prefix: str) -> Path:
    """An empty, new file in ``folder`` created with the umask's mode (``mkstemp`` makes 0600
    files, which other users could not read once renamed into place)."""
    while True:
        tmp = folder / f"{prefix}{secrets.token_hex(4)}.part"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _write_temp(stream: IO[bytes], folder: Path, progress=None) -> Path:
    name = _new_temp(folder, ".")
    try:
        with open(name, "wb") as out:
            while chunk := stream.read(_CHUNK):
                out.write(chunk)
                if progress:
                    progress(len(chunk))
    except BaseException:  # an interrupted download leaves nothing behind
        name.unlink(missing_ok=True)
        raise
    return name


def _check(path: Path, want: str, origin: str) -> None:
    got = checksum(path, want)
    if got != want:
        raise ChecksumError(f"{origin}: digest {got} differs from the catalog's {want}; "
                            "the remote file changed or the download was corrupted")


def _install(stream: IO[bytes], dest: Path, want: str, origin: str) -> None:
    """Copy ``stream`` to ``dest`` through a checked temp file, so ``dest`` is whole or absent."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(stream, dest.parent)
    try:
        _check(tmp, want, origin)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["ChecksumError", "DATASETS", "DatasetSpec", "Source", "data_root", "dataset_file",
           "derived_root", "checksum", "sha256", "verify"]
