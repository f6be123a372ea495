"""``imagefolder:PATH``: the file index of an ImageFolder in a folder, a ``.zip`` or an uncompressed
``.tar``, read in place (never extracted).

Layout: one subfolder per class; or ``train/`` and ``val/`` (or ``test/``) folders of class subfolders,
possibly inside one wrapping folder (``cifar10/train/<class>/``). Files that are not images (by
extension) and hidden entries are ignored and counted; broken images are found when decoded
(streaming.py). The index holds numpy arrays, not Python objects: DataLoader workers fork with it, and
per-object reference counts would copy its pages into every worker.

Reading is bounded: an archive whose image members would expand past ``MAX_MEMBER_BYTES`` each,
``MAX_TOTAL_BYTES`` in all, or by more than ``MAX_RATIO`` times is refused when indexed; a member is
inflated in chunks and never past the size its archive declares (a member that lies is a broken image);
a folder's files are read only when they are regular files under the cap. Symlinks to folders are not
followed (a link to ``..`` would loop, or count the same images twice under other labels); symlinks to
image files are read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
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
# What one image may expand to (a 16-bit 8K x 8K TIFF is 400 MB; photos are a few MB), what a whole
# archive may (ImageNet's training set is 140 GB), and by how much deflate may expand the image members
# (JPEG and PNG do not compress further: about 1:1; a zip bomb is about 1000:1). The ratio applies to the
# archive and to each member over RATIO_FLOOR (a tiny flat image may compress well).
MAX_MEMBER_BYTES = 512 * 2 ** 20
MAX_TOTAL_BYTES = 2 ** 40
MAX_RATIO = 100
RATIO_FLOOR = 2 ** 20
CHUNK = 2 ** 20  # compressed bytes inflated at a time


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
    expanded: np.ndarray | None = None  # zip members: the size the archive declares once inflated
    stamps: dict | None = None       # source_stamps, taken when the source was listed
    _fd: int | None = field(default=None, repr=False)
    _pid: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> bytes:
        """Member ``i``'s bytes. Archives are read with pread on a descriptor opened once per process
        (a forked worker must not share the parent's file offset)."""
        if self.kind == "folder":
            return _read_file(os.path.join(self.source, self.names[i].decode()))
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.source, os.O_RDONLY), os.getpid()
        size, offset = int(self.sizes[i]), int(self.offsets[i])
        if self.deflated is not None and self.deflated[i]:
            declared = int(self.expanded[i]) if self.expanded is not None else None  # None: an index made elsewhere
            return _inflate(self._fd, offset, size, declared)
        if size > MAX_MEMBER_BYTES:  # checked when indexed; a tampered index must not read gigabytes
            raise ValueError(f"member of {size} bytes is over {MAX_MEMBER_BYTES}")
        return os.pread(self._fd, size, offset)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": 0}

    def name(self, i: int) -> str:
        return self.names[i].decode()

    def identity(self) -> dict:
        """What the images are, for a cache built from them (cache.py): the index's digest (names,
        labels, split, and an archive's member sizes and offsets) and the size and modification time of
        the source file, or of a folder's directories (adding, removing or renaming an image changes
        its directory's), which tell cheaply that nothing changed."""
        h = hashlib.sha256(repr((self.kind, self.classes, self.val_folder)).encode())
        for a in (self.names, self.labels, self.is_val, self.offsets, self.sizes, self.expanded):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        return {"path": self.source, "kind": self.kind, "images": len(self), "digest": h.hexdigest(),
                "stamps": self.stamps or source_stamps(self.source, self.kind, self.names)}


def source_stamps(source: str, kind: str, names: np.ndarray) -> dict[str, list[int] | None]:
    """(size, mtime in ns) of an archive, or of a folder and every directory that holds its images
    (``open_imagefolder`` takes a folder's while it lists it, of every directory that is not hidden)."""
    if kind != "folder":
        folders = [""]
    else:
        folders = sorted({""} | {os.path.dirname(n.decode()) for n in names})
    return {f: stamp(os.path.join(source, f) if f else source) for f in folders}


def stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_file(path: str) -> bytes:
    """A folder's image, read only if it is a regular file under the cap (a link to /dev/zero or a FIFO
    named like an image must not hang or fill the memory)."""
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = f.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise ValueError(f"{path} is over {MAX_MEMBER_BYTES} bytes")
    return data


def _inflate(fd: int, offset: int, size: int, declared: int | None) -> bytes:
    """A deflated member, inflated a chunk at a time, never past the ``declared`` size its archive
    gives (ValueError when the data expand further or stop short), nor past the cap."""
    if declared is not None and declared > MAX_MEMBER_BYTES:
        raise ValueError(f"member expands to {declared} bytes, over {MAX_MEMBER_BYTES}")
    expected = MAX_MEMBER_BYTES if declared is None else declared
    inflater, out, pos, end = zlib.decompressobj(-15), bytearray(), offset, offset + size
    while pos < end and not inflater.eof:
        chunk = os.pread(fd, min(CHUNK, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        out += inflater.decompress(chunk, expected - len(out) + 1)  # max_length >= 1 (0 means unbounded)
        if len(out) > expected:
            raise ValueError(f"member expands past the {expected} bytes its archive declares")
    if not inflater.eof or declared is not None and len(out) != declared:
        raise ValueError(f"member is truncated ({len(out)} of {expected} bytes)")
    return bytes(out)


def open_imagefolder(path: str) -> ImageIndex:
    """List the images of a folder, zip or tar and assign classes (one line per problem found)."""
    p = Path(path)
    links: list[str] = []
    if p.is_dir():
        files, dirs, links, stamps = _list_folder(p)
        extra, kind = None, "folder"
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
    if links:
        log.warning("%s: %d symlink(s) to folders not followed, e.g. %s", p, len(links), ", ".join(links[:3]))
    index = _classify(p, kind, files, dirs, links)
    if extra is not None:
        where = {name: k for k, name in enumerate(files)}
        rows = [where[n.decode()] for n in index.names]
        index.offsets, index.sizes = extra[0][rows], extra[1][rows]
        index.deflated = extra[2][rows] if kind == "zip" else None
        index.expanded = extra[3][rows] if kind == "zip" else index.sizes
        _check_expansion(p, index, p.stat().st_size)
    index.stamps = stamps if kind == "folder" else source_stamps(index.source, kind, index.names)
    log.info("indexed %s (%s): %d images in %d classes, %d other files ignored", p, kind, len(index),
             len(index.classes), index.ignored)
    return index


def _check_expansion(path: Path, index: ImageIndex, archive_size: int) -> None:
    """Refuse an archive whose image members would expand past the caps (sizes as declared: reading
    never goes past them, see ``_inflate``)."""
    expanded, packed = index.expanded.astype(np.float64), index.sizes.astype(np.float64)
    how = "Image archives never do: re-create the archive, or extract the images to a folder"
    big = np.flatnonzero(expanded > MAX_MEMBER_BYTES)
    if len(big):
        raise MnasError(f"{path}: member {index.name(int(big[0]))} expands to {_mb(expanded[big[0]])}, over the "
                        f"limit of {_mb(MAX_MEMBER_BYTES)} per image. {how}")
    ratio = expanded / np.maximum(packed, 1)
    steep = np.flatnonzero((ratio > MAX_RATIO) & (expanded > RATIO_FLOOR))
    if len(steep):
        k = int(steep[0])
        raise MnasError(f"{path}: member {index.name(k)} expands {ratio[k]:.0f} times ({_mb(packed[k])} to "
                        f"{_mb(expanded[k])}), over the limit of {MAX_RATIO} (a zip bomb?). {how}")
    total = float(expanded.sum())
    if total > MAX_TOTAL_BYTES or total > RATIO_FLOOR and total > MAX_RATIO * max(archive_size, 1):
        raise MnasError(f"{path}: its {len(index)} images expand to {_mb(total)} from an archive of "
                        f"{_mb(archive_size)}, over the limit of {_mb(MAX_TOTAL_BYTES)} or {MAX_RATIO} times "
                        f"(a zip bomb?). {how}")


def _mb(n: float) -> str:
    return f"{n / 2 ** 20:,.1f} MiB"


def _list_folder(root: Path) -> tuple[list[str], set[str], list[str], dict[str, list[int] | None]]:
    """Files and directories under ``root``, the symlinks to directories (not followed), and each
    visible directory's ``stamp`` as it was listed."""
    files, dirs, links, stamps = [], set(), [], {}
    for dirpath, dirnames, filenames in os.walk(root):  # never descends into a symlinked directory
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel == "." else f"{rel}/"
        if not _hidden(prefix):
            stamps[prefix.rstrip("/")] = stamp(dirpath)
        files += [prefix + f for f in filenames]
        for d in dirnames:
            (links.append if os.path.islink(os.path.join(dirpath, d)) else dirs.add)(prefix + d)
    return files, dirs, sorted(links), stamps


def _list_zip(path: Path) -> tuple[list[str], set[str], tuple[np.ndarray, ...]]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, OverflowError, NotImplementedError) as e:
        raise MnasError(f"{path}: not a readable zip archive ({e})") from None
    files, dirs, offsets, sizes, deflated, expanded = [], set(), [], [], [], []
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
            at = info.header_offset
            header = os.pread(f.fileno(), ZIP_LOCAL_HEADER.size, at) if at >= 0 else b""
            if len(header) < ZIP_LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise MnasError(f"{path}: damaged zip archive (bad local header for {info.filename})")
            name_len, extra_len = ZIP_LOCAL_HEADER.unpack(header)[-2:]
            files.append(info.filename)
            offsets.append(info.header_offset + ZIP_LOCAL_HEADER.size + name_len + extra_len)
            sizes.append(info.compress_size)
            deflated.append(info.compress_type == zipfile.ZIP_DEFLATED)
            expanded.append(info.file_size if deflated[-1] else info.compress_size)
    return files, dirs, (np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64),
                         np.array(deflated, dtype=bool), np.array(expanded, dtype=np.int64))


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
    except (tarfile.TarError, OSError, ValueError, EOFError, OverflowError) as e:
        raise MnasError(f"{path}: not a readable tar archive ({e})") from None
    return files, dirs, (np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64), np.zeros(0, bool))


def _relative(name: str) -> str:
    """A member name relative to the root, without empty or . parts: tar members may start with ./ (and
    the root itself is .)."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _parents(name: str) -> list[str]:
    return [str(p) for p in PurePosixPath(name).parents if str(p) != "."]


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


def _classify(source: Path, kind: str, all_files: list[str], all_dirs: set[str],
              links: list[str] = ()) -> ImageIndex:
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
        note = f"; {len(links)} symlink(s) to folders are not followed: {', '.join(links[:3])}" if links else ""
        raise MnasError(f"{where} has no class folders (imagefolder: one folder of images per class, "
                        f"or train/ and val/ folders of them){note}")
    extra = sorted(set(_children(dirs, val_root)) - set(classes)) if val_root else []
    if extra:
        raise MnasError(f"{source}: class folder(s) {', '.join(extra[:5])} in {val_root}/ but not in "
                        f"{train_root}/")
    label = {c: i for i, c in enumerate(classes)}
    names, labels, is_val, counts, ignored = [], [], [], dict.fromkeys(classes, 0), len(all_files) - len(files)
    for f in sorted(files):
        part, cls = _place(f, train_root, val_root)
        if cls not in label or PurePosixPath(f).suffix.lower() not in IMAGE_EXTS:
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
    if len(classes) < 2:
        raise MnasError(f"{where} has one class folder ({classes[0]}): a classifier needs at least two classes "
                        "(one folder of images per class)")
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
