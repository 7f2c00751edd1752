"""Where an output lives: a local folder, or a prefix in S3-compatible object storage.

The tile store's appender (`io/store.py`) and predict's outputs (`predict/output.py`) write
through a :class:`Location`, so the same commit protocol serves both: whole objects put when
complete (an object appears whole or not at all), a lock for the store's short commits
(``flock`` on a file; on S3 an object created only if absent, the conditional put every
S3-compatible service has), and a local scratch folder where pixels are written first.

S3 is configured as the AWS tools configure it: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` and, for a service other than AWS (MinIO, Ceph, a
test server), ``AWS_ENDPOINT_URL``; GDAL, which reads ``s3://`` inputs in place, is told the
same endpoint (:func:`configure_gdal`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from cloudkit.errors import CloudkitError, OptionError, OutputError, StoreError
from cloudkit.files.locks import LOCK_FILE, FileLock

#: a lock older than this was left by a writer that died holding it (a commit takes moments)
STALE_LOCK_SECONDS = 900.0
_LOCK = LOCK_FILE  # the lock object's key in a store's prefix
#: where a writer uploads a scene's chunks before its commit, in a store's prefix
_STAGING = ".staging"
#: staged objects this old belong to a writer that died before its commit
ABANDONED_STAGING_SECONDS = 86400.0
#: object uploads (and copies) in flight at once in a commit
UPLOADS_AT_ONCE = 32


def is_url(value: object) -> bool:
    """Whether ``value`` names object storage or a web server rather than a local path."""
    return str(value).startswith(("s3://", "http://", "https://"))


def location_of(target: str | Path) -> Location:
    """The Location of a local path or an ``s3://bucket/prefix`` URL."""
    text = str(target)
    if text.startswith("s3://"):
        return S3Location(text)
    if is_url(text):
        raise OptionError(f"{text}: outputs go to a local path or s3://BUCKET/PREFIX")
    return Location(Path(target))


class Location:
    """A local folder (the base class: every method is the file system's)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    @property
    def is_remote(self) -> bool:
        return False

    def zarr_store(self, *, read_only: bool = False):
        return str(self.root)

    def check_reachable(self) -> None:
        """Nothing to check up front: a local folder is created when first written."""

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def move_in(self, local: Path, key: str) -> None:
        """The file ``local`` becomes ``key`` (a rename: scratch is on this file system)."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)

    def stage(self, files: list[Path]) -> list:
        """Make ``files`` ready to :meth:`place` before taking the store's lock; here they
        are ready where they are (a rename is instant)."""
        return list(files)

    def place(self, staged: list, keys: list[str]) -> None:
        """Each staged file becomes its key (under the store's lock: this is quick)."""
        for local, key in zip(staged, keys, strict=True):
            self.move_in(local, key)

    def unstage(self, staged: list) -> None:
        """What :meth:`stage` left after :meth:`place` (here nothing)."""

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (files and folders)."""
        folder = self.root / prefix
        return [entry.name for entry in folder.iterdir()] if folder.is_dir() else []

    def keys(self, prefix: str) -> set[str]:
        """Every file under ``prefix``, as keys (one listing, for `check` and the appender's
        look for lost chunks: a request per chunk would cost a round trip each in S3)."""
        folder = self.root / prefix
        return {
            (Path(top) / name).relative_to(self.root).as_posix()
            for top, _, names in os.walk(folder)
            for name in names
        }

    def delete(self, key: str) -> None:
        """The file or the whole folder ``key``."""
        target = self.root / key
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def scratch_folder(self, name: str) -> Path:
        """A local folder for the scratch stores of the store ``name`` here: beside it, on
        the same file system, so a commit renames chunk files rather than copy them."""
        return self.root.parent / f".{name}.scratch"

    @contextlib.contextmanager
    def lock(self, wait: float) -> Iterator[None]:
        """Exclusive with every other writer (on a shared file system too); OutputError
        after ``wait`` seconds."""
        held: list[FileLock] = []

        def take() -> bool:
            lock = FileLock.take(self.root / LOCK_FILE)
            held.extend([lock] if lock else [])
            return lock is not None

        _poll(take, wait, self)
        try:
            yield
        finally:
            held[0].release()


def _s3_errors(method):
    """obstore's errors (a refused credential, an unreachable endpoint, a bucket that does
    not exist) as one line that says what is wrong (:func:`_s3_problem`)."""

    def wrapped(self, *args, **kwargs):
        from obstore.exceptions import BaseError

        try:
            return method(self, *args, **kwargs)
        except CloudkitError:
            raise
        except (BaseError, FileNotFoundError) as err:  # obstore raises the builtin for a 404
            raise OutputError(f"{self.url}: {_s3_problem(self.url, err)}") from None

    return wrapped


#: where obstore asks for credentials when none are configured (the cloud's metadata service)
_METADATA_ADDRESS = "169.254.169.254"
#: what configures S3 credentials besides the metadata service (the AWS tools' names)
_CREDENTIAL_SETTINGS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _s3_problem(url: str, err: BaseException) -> str:
    """What an obstore error means, in words: its raw text is a retry trace of requests."""
    text = " ".join(str(err).split())
    bucket = urlsplit(url).netloc
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if "NoSuchBucket" in text:
        where = f"at {endpoint}" if endpoint else "in AWS S3 (AWS_ENDPOINT_URL is not set)"
        return f"bucket {bucket} does not exist {where} (NoSuchBucket); create it or fix the URL"
    if not any(os.environ.get(k) for k in _CREDENTIAL_SETTINGS):
        # obstore then asks the cloud's metadata service, and reports that request's failure
        asked = "the cloud metadata service" if _METADATA_ADDRESS in text else "obstore"
        return (
            f"no S3 credentials are configured (AWS_ACCESS_KEY_ID is not set; {asked} "
            f"said: {text[:100]}...): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and "
            "AWS_ENDPOINT_URL for a service other than AWS (MinIO, Ceph)"
        )
    if any(word in text for word in ("error sending request", "Connection refused", "dns error")):
        where = endpoint or "AWS S3 (AWS_ENDPOINT_URL is not set)"
        return f"cannot reach {where} ({type(err).__name__}); check AWS_ENDPOINT_URL"
    if isinstance(err, FileNotFoundError):
        return f"not found ({text[:200]})"
    return f"{type(err).__name__}: {text[:300]}"


class S3Location(Location):
    """``s3://bucket/prefix`` through obstore (the Rust object_store crate)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise OptionError(f"{url}: expected s3://BUCKET/PREFIX")
        self.url = url.rstrip("/")
        self.root = Path(parts.netloc + parts.path)  # for names only; nothing local is there
        self._store = _s3_store(self.url)
        self._staging_checked = False

    def __str__(self) -> str:
        return self.url

    @property
    def is_remote(self) -> bool:
        return True

    def zarr_store(self, *, read_only: bool = False):
        from zarr.storage import ObjectStore

        return ObjectStore(self._store, read_only=read_only)

    @_s3_errors
    def check_reachable(self) -> None:
        """The one line of :func:`_s3_problem` now, before any work, when the bucket does
        not exist or credentials or the endpoint are missing. A listing of the prefix (one
        page): a HEAD of a key in a missing bucket is a bare 404, which names no bucket."""
        import obstore

        next(iter(obstore.list(self._store, chunk_size=1)), None)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    @_s3_errors
    def head(self, key: str) -> dict | None:
        """The object's ``e_tag`` and ``size``, or None when there is none."""
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            meta = obstore.head(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return None
        return {"e_tag": meta["e_tag"], "size": meta["size"]}

    @_s3_errors
    def read(self, key: str) -> bytes | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return bytes(obstore.get(self._store, key).bytes())
        except (NotFoundError, FileNotFoundError):
            return None

    @_s3_errors
    def put(self, key: str, data: bytes | Path, *, create: bool = False) -> bool:
        """Upload (one object, visible when whole); with ``create`` only when absent:
        False then."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self._store, key, Path(data) if isinstance(data, Path) else data,
                        mode="create" if create else "overwrite")  # fmt: skip
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    def move_in(self, local: Path, key: str) -> None:
        self.put(key, local)
        local.unlink()

    @_s3_errors
    def upload(self, local: Path, key: str) -> dict:
        """The file ``local`` becomes the object ``key`` (and is removed); its ``e_tag`` and
        ``size`` as :meth:`head` reads them back for as long as nobody replaces it."""
        import obstore

        size = local.stat().st_size
        result = obstore.put(self._store, key, local)
        local.unlink()
        return {"e_tag": result["e_tag"], "size": size}

    def stage(self, files: list[Path]) -> list:
        """Upload ``files``, :data:`UPLOADS_AT_ONCE` at a time, under ``.staging/`` in the
        prefix: the data travels before the store's lock is taken, and :meth:`place` only
        copies each object inside the bucket."""
        self._remove_abandoned_staging()
        prefix = f"{_STAGING}/{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        keys = [f"{prefix}/{i}" for i in range(len(files))]
        self._each(lambda local, key: self.move_in(local, key), list(zip(files, keys, strict=True)))
        return keys

    def place(self, staged: list, keys: list[str]) -> None:
        import obstore

        self._each(lambda src, dst: obstore.copy(self._store, src, dst),
                   list(zip(staged, keys, strict=True)))  # fmt: skip

    @_s3_errors
    def _remove_abandoned_staging(self) -> None:
        """Objects staged by writers killed before their commit, a day ago or more (a
        commit follows its upload within minutes)."""
        import obstore

        if self._staging_checked:
            return
        self._staging_checked = True
        old = time.time() - ABANDONED_STAGING_SECONDS
        keys = [
            o["path"]
            for batch in obstore.list(self._store, _STAGING + "/")
            for o in batch
            if o["last_modified"].timestamp() < old
        ]
        if keys:
            obstore.delete(self._store, keys)

    @_s3_errors
    def unstage(self, staged: list) -> None:
        import obstore

        if staged:
            obstore.delete(self._store, staged)

    @_s3_errors
    def _each(self, function, pairs: list[tuple]) -> None:

        with ThreadPoolExecutor(UPLOADS_AT_ONCE) as pool:
            list(pool.map(lambda pair: function(*pair), pairs))

    @_s3_errors
    def children(self, prefix: str) -> list[str]:
        import obstore

        listed = obstore.list_with_delimiter(self._store, prefix.rstrip("/") + "/")
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in listed["common_prefixes"]]
        return names + [o["path"].rsplit("/", 1)[-1] for o in listed["objects"]]

    @_s3_errors
    def keys(self, prefix: str) -> set[str]:
        import obstore

        return {o["path"] for batch in obstore.list(self._store, prefix + "/") for o in batch}

    @_s3_errors
    def delete(self, key: str) -> None:
        import obstore

        keys = [o["path"] for batch in obstore.list(self._store, key + "/") for o in batch]
        obstore.delete(self._store, [*keys, key])

    def scratch_folder(self, name: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.url.removeprefix("s3://"))
        return Path(tempfile.gettempdir()) / "cloudkit-scratch" / f"{safe}.scratch"

    @contextlib.contextmanager
    def lock(self, wait: float) -> Iterator[None]:
        token = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": secrets.token_hex(8),
                "time": time.time(),
            }  # fmt: skip
        ).encode()

        holder: list[dict] = []  # the last holder seen, for the message if we give up

        def take() -> bool:
            if self.put(_LOCK, token, create=True):
                return True
            held = self.read(_LOCK)
            if held is None:
                return False  # released meanwhile: try again
            lock = _lock_body(held)
            if lock is None:  # never released by anyone: say so now, not after the wait
                raise StoreError(
                    f"{self.url}/{_LOCK}: the store's lock holds {held[:40]!r}, not a lock "
                    "cloudkit writes, so no cloudkit run will release it; if no other program "
                    f"writes this store, delete it (aws s3 rm {self.url}/{_LOCK}) and run again"
                )
            holder[:] = [lock]
            if time.time() - lock["time"] > STALE_LOCK_SECONDS:
                self.delete(_LOCK)  # its writer died holding it
            return False

        def who() -> str:
            if not holder:
                return ""
            lock = holder[0]
            age = time.time() - lock["time"]
            return (
                f" (cloudkit on {lock.get('host')}, process {lock.get('pid')}, for {age:.0f} s; "
                f"taken over as stale after {STALE_LOCK_SECONDS:.0f} s)"
            )

        _poll(take, wait, self, who)
        try:
            yield
        finally:
            if self.read(_LOCK) == token:  # never release a lock taken over as stale
                self.delete(_LOCK)


def _s3_store(url: str):
    try:
        from obstore.store import S3Store
    except ImportError:
        raise OptionError(
            f"{url}: object storage needs obstore: pip install 'cloudkit[cloud]'"
        ) from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and endpoint.startswith("http://"):  # MinIO, a test server: no TLS
        return S3Store.from_url(url, client_options={"allow_http": True})
    return S3Store.from_url(url)


def configure_gdal() -> None:
    """Point GDAL's ``/vsis3/`` at ``AWS_ENDPOINT_URL`` when it is set and GDAL's own
    ``AWS_S3_ENDPOINT`` is not (GDAL reads only its own name)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint or "AWS_S3_ENDPOINT" in os.environ:
        return
    parts = urlsplit(endpoint)
    os.environ["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
    os.environ.setdefault("AWS_HTTPS", "NO" if parts.scheme == "http" else "YES")
    os.environ.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")


def _lock_body(held: bytes) -> dict | None:
    """The lock object as cloudkit writes it (``time`` a number), or None for anything else."""
    try:
        lock = json.loads(held)
    except ValueError:  # not JSON, not UTF-8
        return None
    if not isinstance(lock, dict) or not isinstance(lock.get("time"), (int, float)):
        return None
    return lock


def _poll(take, wait: float, where: Location, holder=lambda: "") -> None:
    deadline = time.monotonic() + wait
    pause = 0.02
    while not take():
        if time.monotonic() > deadline:
            raise StoreError(
                f"{where}: another program has held the store's lock for {wait:.0f} s"
                f"{holder()}; is a run writing it outside cloudkit?"
            )
        time.sleep(pause)
        pause = min(0.5, pause * 1.5)
