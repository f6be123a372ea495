"""``imagefolder:PATH``: the file index of an ImageFolder in a folder, a ``.zip`` or an uncompressed
``.tar``, read in place (never extracted).

Layout: one subfolder per class; or ``train/`` and ``val/`` (or ``test/``) folders of class subfolders,
possibly inside one wrapping folder (``cifar10/train/<class>/``). Files that are not images (by
extension) and hidden entries are ignored and counted; broken images are found when decoded
(streaming.py). The index holds numpy arrays, not Python objects: DataLoader workers fork with it, and
per-object reference counts would copy its pages into every worker.
"""

from __future__ import annotations

import logging
import os
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from mnas import MnasError

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VAL_FOLDERS = ("val", "test")
ZIP_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # PKWARE APPNOTE 4.3.7; the last two are name and extra lengths


@dataclass(eq=False)
class ImageIndex:
    source: str                      # the resolved path
    kind: str                        # folder | zip | tar
    classes: tuple[str, ...]
    names: np.ndarray                # member paths inside the source (bytes)
    labels: np.ndarray               # int64
    is_val: np.ndarray               # bool: in the source's own val/ or test/ folder
    val_folder: str | None           # that folder's name, None when the source has none
    ignored: int                     # files that are not images
    offsets: np.ndarray | None = None  # archives: where each member's bytes start
    sizes: np.ndarray | None = None
    deflated: np.ndarray | None = None  # zip members stored with deflate
    _fd: int | None = field(default=None, repr=False)
    _pid: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> bytes:
        """Member ``i``'s bytes. Archives are read with pread on a descriptor opened once per process
        (a forked worker must not share the parent's file offset)."""
        if self.kind == "folder":
            with open(os.path.join(self.source, self.names[i].decode()), "rb") as f:
                return f.read()
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.source, os.O_RDONLY), os.getpid()
        data = os.pread(self._fd, int(self.sizes[i]), int(self.offsets[i]))
        return zlib.decompress(data, -15) if self.deflated is not None and self.deflated[i] else data

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": 0}

    def name(self, i: int) -> str:
        return self.names[i].decode()


def open_imagefolder(path: str) -> ImageIndex:
    """List the images of a folder, zip or tar and assign classes (one line per problem found)."""
    p = Path(path)
    if p.is_dir():
        (files, dirs), extra = _list_folder(p), None
        kind = "folder"
    elif p.suffix.lower() == ".zip" or (p.suffix.lower() != ".tar" and zipfile.is_zipfile(p)):
        files, dirs, extra = _list_zip(p)
        kind = "zip"
    elif p.suffix.lower() == ".tar" or _is_tar(p):
        files, dirs, extra = _list_tar(p)
        kind = "tar"
    else:
        raise MnasError(f"{p} is neither a folder, a .zip nor a .tar archive (imagefolder:PATH)")
    files = [_relative(f) for f in files]
    dirs = {_relative(d) for d in dirs} - {""}
    index = _classify(p, kind, files, dirs)
    if extra is not None:
        where = {name: k for k, name in enumerate(files)}
        rows = [where[n.decode()] for n in index.names]
        index.offsets, index.sizes = extra[0][rows], extra[1][rows]
        index.deflated = extra[2][rows] if kind == "zip" else None
    log.info("indexed %s (%s): %d images in %d classes, %d other files ignored", p, kind, len(index),
             len(index.classes), index.ignored)
    return index


def _list_folder(root: Path) -> tuple[list[str], set[str]]:
    files, dirs = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel == "." else f"{rel}/"
        files += [prefix + f for f in filenames]
        dirs.update(prefix + d for d in dirnames)
    return files, dirs


def _list_zip(path: Path) -> tuple[list[str], set[str], tuple[np.ndarray, ...]]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise MnasError(f"{path}: not a readable zip archive ({e})") from None
    files, dirs, offsets, sizes, deflated = [], set(), [], [], []
    with open(path, "rb") as f:
        for info in infos:
            if info.is_dir():
                dirs.add(info.filename.rstrip("/"))
                continue
            if info.flag_bits & 0x1:
                raise MnasError(f"{path}: {info.filename} is encrypted; imagefolder reads plain zip archives")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise MnasError(f"{path}: {info.filename} uses zip compression method {info.compress_type}; "
                                "re-create the archive stored or deflated")
            # the data start after the member's local header, whose extra field may differ from the
            # central directory's: read its lengths once here
            f.seek(info.header_offset)
            header = f.read(ZIP_LOCAL_HEADER.size)
            if len(header) < ZIP_LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise MnasError(f"{path}: damaged zip archive (bad local header for {info.filename})")
            name_len, extra_len = ZIP_LOCAL_HEADER.unpack(header)[-2:]
            files.append(info.filename)
            offsets.append(info.header_offset + ZIP_LOCAL_HEADER.size + name_len + extra_len)
            sizes.append(info.compress_size)
            deflated.append(info.compress_type == zipfile.ZIP_DEFLATED)
    return files, dirs, (np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64),
                         np.array(deflated, dtype=bool))


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _list_tar(path: Path) -> tuple[list[str], set[str], tuple[np.ndarray, ...]]:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic[:6] == b"\xfd7zXZ\x00":
        raise MnasError(f"{path} is a compressed tar: members cannot be read in place; use an uncompressed "
                        ".tar or a .zip")
    files, dirs, offsets, sizes = [], set(), [], []
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:  # one pass over the headers: the index is built once per process
                if m.isdir():
                    dirs.add(m.name.rstrip("/"))
                elif m.isfile():
                    files.append(m.name)
                    offsets.append(m.offset_data)
                    sizes.append(m.size)
    except (tarfile.TarError, OSError) as e:
        raise MnasError(f"{path}: not a readable tar archive ({e})") from None
    return files, dirs, (np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64), np.zeros(0, bool))


def _relative(name: str) -> str:
    """A member name relative to the root: tar members may start with ./ (and the root itself is .)."""
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name


def _parents(name: str) -> list[str]:
    return [str(p) for p in PurePosixPath(name).parents if str(p) != "."]


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


def _classify(source: Path, kind: str, all_files: list[str], all_dirs: set[str]) -> ImageIndex:
    files = [f for f in all_files if not _hidden(f)]
    dirs = {d for d in all_dirs | {p for f in files for p in _parents(f)} if not _hidden(d)}
    root = ""
    while True:  # descend through wrapping folders (a zip of "imagenet/..."): one subfolder, no files
        subdirs = _children(dirs, root)
        if len(subdirs) != 1 or "train" in subdirs or any(_parent(f) == root for f in files):
            break
        root = _join(root, subdirs[0])
    val_folder = next((v for v in VAL_FOLDERS if v in subdirs), None) if "train" in subdirs else None
    train_root = _join(root, "train") if "train" in subdirs else root
    val_root = _join(root, val_folder) if val_folder else None
    where = f"{source}" + (f" ({train_root}/)" if train_root else "")
    classes = _children(dirs, train_root)
    if not classes:
        raise MnasError(f"{where} has no class folders (imagefolder: one folder of images per class, "
                        "or train/ and val/ folders of them)")
    extra = sorted(set(_children(dirs, val_root)) - set(classes)) if val_root else []
    if extra:
        raise MnasError(f"{source}: class folder(s) {', '.join(extra[:5])} in {val_root}/ but not in "
                        f"{train_root}/")
    label = {c: i for i, c in enumerate(classes)}
    names, labels, is_val, counts, ignored = [], [], [], dict.fromkeys(classes, 0), len(all_files) - len(files)
    for f in sorted(files):
        part, cls = _place(f, train_root, val_root)
        if cls is None or PurePosixPath(f).suffix.lower() not in IMAGE_EXTS:
            ignored += 1
            continue
        names.append(f.encode())
        labels.append(label[cls])
        is_val.append(part == "val")
        counts[cls] += part == "train"
    if not names:
        raise MnasError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {where}")
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise MnasError(f"{where}: class folder(s) with no images: {', '.join(empty[:5])}")
    return ImageIndex(str(source), kind, tuple(classes), np.array(names, dtype=bytes),
                      np.array(labels, dtype=np.int64), np.array(is_val, dtype=bool), val_folder, ignored)


def _place(name: str, train_root: str, val_root: str | None) -> tuple[str, str | None]:
    """Which split and class folder a file is in (class None: not inside a class folder)."""
    for part, root in (("val", val_root), ("train", train_root)):
        if root is None:
            continue
        if root and not name.startswith(root + "/"):
            continue
        pieces = (name[len(root) + 1:] if root else name).split("/")
        return part, pieces[0] if len(pieces) > 1 else None
    return "train", None


def _children(dirs: set[str], root: str | None) -> list[str]:
    if root is None:
        return []
    return sorted(d[len(root) + 1:] if root else d for d in dirs if _parent(d) == root)


def _parent(name: str) -> str:
    parent = str(PurePosixPath(name).parent)
    return "" if parent == "." else parent


def _join(root: str, name: str) -> str:
    return f"{root}/{name}" if root else name
