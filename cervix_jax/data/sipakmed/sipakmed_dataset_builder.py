"""SIPaKMeD (Plissiti et al., ICIP 2018) as a TFDS dataset, stored as ArrayRecord (no TensorFlow).

Configs:
  * ``full``: the 966 multi-cell images, stored with the shorter side resized to at most 384
    pixels (the originals are 2048x1536) so decoding never limits training; the original size
    is recorded and polygons are scaled to the stored image.
  * ``cropped``: the 4,049 isolated-cell crops.
  * ``masked``: the full images with every pixel outside the union of the cytoplasm polygons set
    to a constant; ground-truth contours replace the paper's Otsu threshold.

Everything is in one ``train`` split; cross-validation folds are computed by
`cervix_jax.data.splits` from the stored labels and groups.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator

import numpy as np
import py7zr
import tensorflow_datasets as tfds
from PIL import Image

from cervix_jax.data import annotations
from cervix_jax.data.errors import DataError, ManualDownloadError

CLASS_NAMES: tuple[str, ...] = (
    "Dyskeratotic",
    "Koilocytotic",
    "Metaplastic",
    "Parabasal",
    "Superficial-Intermediate",
)
# The official form: one 7-Zip archive per class on the SIPaKMeD page.
ARCHIVE_NAMES: tuple[str, ...] = tuple(f"im_{c}.7z" for c in CLASS_NAMES)
OFFICIAL_COUNTS = {
    "full": dict(zip(CLASS_NAMES, (223, 238, 271, 108, 126), strict=True)),
    "cropped": dict(zip(CLASS_NAMES, (813, 825, 793, 787, 831), strict=True)),
}
HOMEPAGE = "https://www.cs.uoi.gr/~marina/sipakmed.html"
SYNTHETIC_MARKER = "SYNTHETIC_SIPAKMED.txt"
# Full images are stored with their shorter side at most this long (the originals: 1536 px).
STORED_SHORTER_SIDE = 384

_MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the five SIPaKMeD image archives from {HOMEPAGE}:
  {", ".join(ARCHIVE_NAMES[:3])},
  {", ".join(ARCHIVE_NAMES[3:])}
and put them, as they are, in the manual directory (`manual_dir`): each .7z is extracted in turn
into a temporary folder of the TFDS download directory and removed once read. Also accepted, in
any mix: .zip archives, extracted folders (`im_X/` or nested `im_X/im_X/`: a class is found
through its `CROPPED/` sub-folder), and a mirror holding all five classes in one archive or
folder (`.../im_X/im_X/CROPPED/...`). Each class must be there once. Other files, such as
Features_CELL.7z or Description_of_Features.pdf, are ignored. For example:
  MANUAL_DIR/im_Dyskeratotic.7z   or   MANUAL_DIR/im_Dyskeratotic/im_Dyskeratotic/CROPPED/...
No download? `python tools/make_synthetic_sipakmed.py --out=NEW_FOLDER` writes a synthetic
replica in the same format into a new folder (never into one holding other files).
"""

_FULL_IMAGE = re.compile(r"^(\d+)\.bmp$", re.IGNORECASE)
_FULL_CONTOUR = re.compile(r"^(\d+)_(cyt|nuc)(\d+)\.dat$", re.IGNORECASE)
_CROP_IMAGE = re.compile(r"^(\d+)_(\d+)\.bmp$", re.IGNORECASE)


@dataclasses.dataclass(eq=False)
class SipakmedConfig(tfds.core.BuilderConfig):
    """A SIPaKMeD variant.

    Attributes:
      cells: 'full' (multi-cell images) or 'cropped' (isolated cells).
      background_value: if not None, pixels outside every cytoplasm polygon get this value.
      max_shorter_side: images whose shorter side is longer are stored downsized to it.
    """

    cells: str = "full"
    background_value: int | None = None
    max_shorter_side: int = STORED_SHORTER_SIDE


_ARCHIVE_SUFFIXES = (".7z", ".zip")


def _is_junk(name: str) -> bool:
    # Archives made on macOS carry resource forks that are not images.
    return "__MACOSX" in name.split("/") or name.rsplit("/", 1)[-1].startswith("._")


def _members(path: str) -> list[str]:
    """The file names (posix paths) in a .7z or .zip archive, read from its index only."""
    kind = os.path.splitext(path)[1].lower()[1:]
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                return [n for n in archive.namelist() if not n.endswith("/")]
        with py7zr.SevenZipFile(path) as archive:
            return [f.filename for f in archive.list() if not f.is_directory]
    except Exception as e:  # zipfile, py7zr and lzma raise many types for damaged archives
        raise DataError(
            f"{path}: cannot be opened as a {kind} archive ({type(e).__name__}: {e}). The file "
            f"is damaged or incomplete: download it again from {HOMEPAGE}, or extract it into "
            "a folder of the same name."
        ) from None


class _Archive:
    """The files of one class, addressed by posix paths relative to its class folder.

    The class is a folder, a .zip (read in place: zip members have random access), a .7z
    (extracted by `extracted`: a solid 7z block only decompresses from its start), or the
    ``prefix`` sub-folder of a mirror archive that holds all five classes.
    """

    def __init__(self, path: str, prefix: str = "", members: list[str] | None = None):
        self.path, self.prefix = path, prefix
        self.location = f"{path}:{prefix}/" if prefix else path  # for messages
        self._zip = None
        self._root = None  # the folder files are read from: the class folder, or a 7z's copy
        if os.path.isdir(path):
            self._root = path
            members = []
            for root, _, files in os.walk(path):
                for f in files:
                    rel = os.path.relpath(os.path.join(root, f), path)
                    members.append(rel.replace(os.sep, "/"))
        elif members is None:
            members = _members(path)
        if path.lower().endswith(".zip"):
            self._zip = zipfile.ZipFile(path)
        start = prefix + "/" if prefix else ""
        self.names = sorted(
            n[len(start) :] for n in members if n.startswith(start) and not _is_junk(n)
        )

    @property
    def needs_extraction(self) -> bool:
        return self.path.lower().endswith(".7z")

    def _member(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self, name: str) -> str:
        if os.path.isdir(self.path):
            return os.path.join(self.path, *name.split("/"))
        return f"{self.path}:{self._member(name)}"

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(self._member(name))
            if self._root is None:
                raise RuntimeError(f"{self.path} is read inside `extracted` only")
            with open(os.path.join(self._root, *self._member(name).split("/")), "rb") as f:
                return f.read()
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(
                f"{self.describe(name)}: cannot be read ({e}). Re-extract or download the "
                "archive again."
            ) from None

    @contextlib.contextmanager
    def extracted(self, scratch: str | None, names: list[str]):
        """Makes ``names`` readable: a .7z's members are extracted into a new folder under
        ``scratch``, removed on exit (disk holds one class at a time); others are read in place.
        """
        if not self.needs_extraction:
            yield
            return
        target = tempfile.mkdtemp(prefix="class-", dir=scratch)
        try:
            self._extract(target, [self._member(n) for n in names])
            self._root = target
            yield
        finally:
            self._root = None
            shutil.rmtree(target, ignore_errors=True)

    def _extract(self, target: str, members: list[str]) -> None:
        try:
            with py7zr.SevenZipFile(self.path) as archive:
                wanted = set(members)
                size = sum(f.uncompressed for f in archive.list() if f.filename in wanted)
                free = shutil.disk_usage(target).free
                if size > free:
                    raise DataError(
                        f"{self.location}: extracting it needs {size / 1e9:.1f} GB in {target}, "
                        f"where {free / 1e9:.1f} GB are free. Free some space, or give a TFDS "
                        "data_dir on a larger disk (--config.data.tfds_data_dir)."
                    )
                archive.extract(target, targets=members)
        except DataError:
            raise
        except OSError as e:  # the disk, not the archive
            raise DataError(f"{self.location}: extracting it into {target} failed ({e}).") from None
        except Exception as e:  # py7zr and lzma raise many types for damaged archives
            raise DataError(
                f"{self.path}: cannot be extracted ({type(e).__name__}: {e}). The file is "
                f"damaged: download it again from {HOMEPAGE}, or extract it with 7-Zip into a "
                "folder of the same name."
            ) from None

    def image_folder(self) -> str:
        """Relative path ('' for the root) of the folder holding the full images: the parent of
        the single `CROPPED/` folder, whatever the nesting."""
        parents = sorted(
            {
                "/".join(parts[:i])
                for parts in (n.split("/") for n in self.names)
                for i, part in enumerate(parts[:-1])
                if part.upper() == "CROPPED"
            }
        )
        if len(parents) != 1:
            found = "none" if not parents else ", ".join(p + "/CROPPED" for p in parents)
            raise DataError(
                f"{self.location}: expected exactly one 'CROPPED/' folder (the cropped cells), "
                f"found {found}. Each class folder or archive must hold the full images "
                "(NNN.bmp, NNN_cytKK.dat, NNN_nucKK.dat) next to a CROPPED/ sub-folder.\n"
                + _MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        return parents[0]


def _class_folders_in(members: list[str], wanted: dict[str, str]) -> set[tuple[str, str]]:
    """(class, prefix) for each outermost ``.../im_<class>`` folder among an archive's files."""
    found = set()
    for name in (n for n in members if not _is_junk(n)):
        parts = name.split("/")
        for i, part in enumerate(parts[:-1]):
            if part.lower() in wanted:
                found.add((wanted[part.lower()], "/".join(parts[: i + 1])))
                break
    return found


def _candidates(manual_dir: str, max_depth: int) -> tuple[dict[str, list], list[str]]:
    """Every place a class may come from, up to ``max_depth`` levels below ``manual_dir``.

    Returns ({class: [(path, prefix, members or None)]}, [messages of unreadable archives that
    are not named after a class]). Folders and archives named ``im_<class>`` are that class;
    any other .7z/.zip is looked into for ``im_<class>/`` folders (a mirror of all five).
    """
    wanted = {f"im_{c}".lower(): c for c in CLASS_NAMES}
    found: dict[str, list] = {c: [] for c in CLASS_NAMES}
    unreadable = []
    for root, dirs, files in os.walk(manual_dir):
        depth = os.path.relpath(root, manual_dir).count(os.sep) + (root != manual_dir)
        # Hidden folders and macOS resource forks (`__MACOSX/im_X/._*`) hold no classes.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for d in [d for d in dirs if d.lower() in wanted]:
            found[wanted[d.lower()]].append((os.path.join(root, d), "", None))
            dirs.remove(d)
        for f in sorted(files):
            stem, suffix = os.path.splitext(f)
            if suffix.lower() not in _ARCHIVE_SUFFIXES:
                continue  # feature tables (.rar), PDFs, notes: not ours
            path = os.path.join(root, f)
            if stem.lower() in wanted:
                found[wanted[stem.lower()]].append((path, "", _members(path)))
                continue
            try:
                members = _members(path)
            except DataError as e:
                unreadable.append(str(e))
                continue
            for class_name, prefix in sorted(_class_folders_in(members, wanted)):
                found[class_name].append((path, prefix, members))
        if depth >= max_depth - 1:
            dirs[:] = []
    return found, unreadable


def _locate_classes(manual_dir: str, max_depth: int = 3) -> list[_Archive]:
    """The five classes (in `CLASS_NAMES` order), each found exactly once in ``manual_dir``.

    Copies are often extracted one level down (``MANUAL_DIR/SIPaKMeD/im_X/...``), so the search
    goes ``max_depth`` folders deep. A class found twice (say ``im_X.7z`` and its extraction
    ``im_X/``) is an error rather than a silent choice: the two may differ.
    """
    found, unreadable = _candidates(manual_dir, max_depth)
    missing = [c for c in CLASS_NAMES if not found[c]]
    if missing:
        class_name = missing[0]
        present = sorted(os.listdir(manual_dir)) if os.path.isdir(manual_dir) else []
        others = f" (nor {', '.join(map(repr, missing[1:]))})" if missing[1:] else ""
        notes = "".join(f"\nSkipped, unreadable: {u}" for u in unreadable)
        raise ManualDownloadError(
            f"SIPaKMeD class {class_name!r} not found in the manual directory {manual_dir}"
            f"{others}: expected the archive im_{class_name}.7z (official) or "
            f"im_{class_name}.zip, the folder im_{class_name}/, or an archive holding "
            f"im_{class_name}/, there or up to "
            f"{max_depth - 1} folders below; found {present[:12]}.{notes}\n"
            + _MANUAL_DOWNLOAD_INSTRUCTIONS
        )
    for class_name in CLASS_NAMES:
        if len(found[class_name]) > 1:
            places = " and ".join(
                f"{p}:{prefix}/" if prefix else p for p, prefix, _ in found[class_name]
            )
            raise DataError(
                f"SIPaKMeD class {class_name!r} found more than once: {places}. Keep one of "
                f"them in the manual directory {manual_dir} and move the others out."
            )
    return [_Archive(*found[c][0]) for c in CLASS_NAMES]


def downsize_for_storage(
    image: np.ndarray, max_shorter_side: int = STORED_SHORTER_SIDE
) -> np.ndarray:
    """``image`` ``[H, W, C]`` as the dataset stores it: its shorter side reduced to
    ``max_shorter_side`` (aspect kept) when longer, unchanged otherwise.

    The first step of what a model is trained on (then the pipeline's `resize_and_crop`), so
    that ``cervix_jax.data.model_input`` gives a full-resolution file exactly that input.
    """
    height, width = image.shape[:2]
    shorter = min(height, width)
    if shorter <= max_shorter_side:
        return image
    new_w = max(1, round(width * max_shorter_side / shorter))
    new_h = max(1, round(height * max_shorter_side / shorter))
    # BOX averages whole source pixels: the right filter for a large integer reduction.
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BOX))


def _decode_bmp(data: bytes, source: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as e:  # PIL raises many types for corrupt files
        raise DataError(
            f"{source}: cannot be decoded as an image ({type(e).__name__}: {e}). Re-extract "
            "this file from its SIPaKMeD archive (or regenerate the synthetic data)."
        ) from None


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1 encoded the synthetic set ~3x faster than level 3 for 3% more bytes; decoding
    # (what training pays for) costs the same.
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _read_polygons(archive: _Archive, paths: list[str | None]) -> list[np.ndarray]:
    return [
        annotations.parse_dat(archive.read(p), archive.describe(p)) for p in paths if p is not None
    ]


def _full_entries(archive: _Archive, folder: str):
    """Yields (stem, image path, [cyt paths], [nuc paths]) for the full images of one class."""
    prefix = folder + "/" if folder else ""
    images, contours = {}, {}
    for name in archive.names:
        if not name.startswith(prefix) or "/" in name[len(prefix) :]:
            continue
        base = name[len(prefix) :]
        if match := _FULL_IMAGE.match(base):
            images[match.group(1)] = name
        elif match := _FULL_CONTOUR.match(base):
            stem, kind, k = match.groups()
            contours.setdefault(stem, {}).setdefault(int(k), {})[kind.lower()] = name
    for stem in sorted(images):
        cells = contours.get(stem, {})
        incomplete = [k for k in sorted(cells) if len(cells[k]) != 2]
        if not cells or incomplete:
            what = (
                "no contour files"
                if not cells
                else (f"cells {incomplete} lack a cytoplasm or nucleus contour")
            )
            warnings.warn(
                f"{archive.describe(images[stem])}: {what} (expected {stem}_cytKK.dat and "
                f"{stem}_nucKK.dat per cell); its masks will miss those cells.",
                stacklevel=1,
            )
        yield (
            stem,
            images[stem],
            [cells[k].get("cyt") for k in sorted(cells)],
            [cells[k].get("nuc") for k in sorted(cells)],
        )


def _crop_entries(archive: _Archive, folder: str):
    """Yields (stem, cell index, image path, [cyt path], [nuc path]) for one class's crops."""
    prefix = folder + "/" if folder else ""
    by_upper = {n.upper(): n for n in archive.names}
    for name in archive.names:
        parent, _, base = name.rpartition("/")
        if parent.upper() != (prefix + "CROPPED").upper():
            continue
        if match := _CROP_IMAGE.match(base):
            stem, k = match.groups()
            root = name[: -len(".bmp")]
            cyt = by_upper.get(f"{root}_cyt.dat".upper())
            nuc = by_upper.get(f"{root}_nuc.dat".upper())
            yield stem, k, name, [cyt], [nuc]


def _scratch_folder(download_dir: str, manual_dir: str) -> str:
    """A new folder in the TFDS download directory for extracting .7z archives."""
    real, manual = os.path.realpath(download_dir), os.path.realpath(manual_dir)
    if os.path.commonpath([real, manual]) == manual:
        # The manual directory holds the user's files: a build writes nothing there (what a
        # killed build left behind would otherwise sit next to the archives).
        raise DataError(
            f"The TFDS download directory {download_dir}, where the .7z archives are "
            f"extracted, is inside the manual directory {manual_dir}. Give a TFDS data_dir "
            "(--config.data.tfds_data_dir) outside the manual directory, or extract the "
            "archives there yourself."
        )
    os.makedirs(download_dir, exist_ok=True)
    return tempfile.mkdtemp(prefix="sipakmed-extract-", dir=download_dir)


class Builder(tfds.core.GeneratorBasedBuilder):
    """SIPaKMeD Pap-smear cytology, five classes; full, cropped and masked variants."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: ArrayRecord, PNG images, polygons and masks."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [
        SipakmedConfig(
            name="full",
            description="966 multi-cell images (shorter side stored at <= 384 px).",
            cells="full",
        ),
        SipakmedConfig(name="cropped", description="4,049 isolated-cell images.", cells="cropped"),
        SipakmedConfig(
            name="masked",
            description="Full images, pixels outside every cytoplasm polygon set to 0.",
            cells="full",
            background_value=0,
        ),
    ]

    def __init__(self, *, file_format=None, **kwargs):
        # ArrayRecord is what makes TensorFlow unnecessary (random access via tfds.data_source).
        super().__init__(file_format=file_format or "array_record", **kwargs)
        self._scratch = None  # the folder .7z archives are extracted into during a build

    def _info(self) -> tfds.core.DatasetInfo:
        polygon = dict(shape=(None, 2), dtype=np.float32)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                    "image_id": tfds.features.Text(doc="'<class>/<stem>', e.g. 'Parabasal/001_02'"),
                    "group_id": tfds.features.Text(doc="'<class>/<full-image stem>'"),
                    "original_size": tfds.features.Tensor(
                        shape=(2,), dtype=np.int32, doc="(height, width) before resizing"
                    ),
                    "cell_mask": tfds.features.Image(
                        shape=(None, None, 1),
                        encoding_format="png",
                        doc="union of cytoplasm polygons, {0,1}",
                    ),
                    "nucleus_mask": tfds.features.Image(
                        shape=(None, None, 1),
                        encoding_format="png",
                        doc="union of nucleus polygons, {0,1}",
                    ),
                    "cytoplasm_vertices": tfds.features.Tensor(
                        **polygon,
                        doc="all cytoplasm polygons concatenated, (x, y) in stored pixels",
                    ),
                    "cytoplasm_lengths": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "nucleus_vertices": tfds.features.Tensor(**polygon),
                    "nucleus_lengths": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=HOMEPAGE,
        )

    def download_and_prepare(self, *args, **kwargs):
        """As TFDS's, but a failed build leaves nothing behind in the data directory, and the
        folder that .7z archives were extracted into is removed in any case."""
        data_dir = os.fspath(self._data_dir_root)
        root = os.path.join(data_dir, self.name)
        config_dir = os.path.join(root, self.builder_config.name)
        download_dir = os.fspath(kwargs.get("download_dir") or os.path.join(data_dir, "downloads"))
        created = [p for p in (root, config_dir, download_dir) if not os.path.exists(p)]
        data_dir_created = not os.path.exists(data_dir)
        try:
            try:
                return super().download_and_prepare(*args, **kwargs)
            finally:
                if self._scratch is not None:
                    shutil.rmtree(self._scratch, ignore_errors=True)
                    self._scratch = None
        except BaseException:
            for path in created:
                if os.path.isdir(path) and (
                    path != download_dir or not any(files for _, _, files in os.walk(path))
                ):
                    shutil.rmtree(path, ignore_errors=True)
            if data_dir_created:
                with contextlib.suppress(OSError):
                    os.rmdir(data_dir)  # only if empty: another build may have started there
            raise

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        archives = _locate_classes(manual_dir)  # fail before writing
        if any(a.needs_extraction for a in archives):
            self._scratch = _scratch_folder(os.fspath(dl_manager.download_dir), manual_dir)
        synthetic = os.path.exists(os.path.join(manual_dir, SYNTHETIC_MARKER))
        return {"train": self._generate_examples(archives, synthetic, self._scratch)}

    def _generate_examples(
        self, archives, synthetic=False, scratch=None
    ) -> Iterator[tuple[str, dict]]:
        config = self.builder_config
        kind = "full" if config.cells == "full" else "cropped"
        for label, (class_name, archive) in enumerate(zip(CLASS_NAMES, archives, strict=True)):
            folder = archive.image_folder()
            if config.cells == "full":
                entries = [(stem, None, *rest) for stem, *rest in _full_entries(archive, folder)]
            else:
                entries = list(_crop_entries(archive, folder))
            expected = OFFICIAL_COUNTS[kind][class_name]
            if len(entries) != expected:
                note = (
                    " (expected for the synthetic replica)"
                    if synthetic
                    else ("; check that the archive was extracted completely")
                )
                warnings.warn(
                    f"SIPaKMeD class {class_name!r}: found {len(entries)} {kind} images in "
                    f"{archive.location}, the official release has {expected}{note}.",
                    stacklevel=1,
                )
            # Only the files this variant reads: `cropped` skips the large full images.
            needed = [p for _, _, image, cyt, nuc in entries for p in (image, *cyt, *nuc) if p]
            with archive.extracted(scratch, needed):
                for stem, k, image_path, cyt_paths, nuc_paths in entries:
                    image_id = f"{class_name}/{stem}" + (f"_{k}" if k is not None else "")
                    yield (
                        image_id,
                        self._example(
                            archive,
                            image_path,
                            cyt_paths,
                            nuc_paths,
                            label,
                            image_id,
                            f"{class_name}/{stem}",
                        ),
                    )

    def _example(self, archive, image_path, cyt_paths, nuc_paths, label, image_id, group_id):
        config = self.builder_config
        image = _decode_bmp(archive.read(image_path), archive.describe(image_path))
        cytoplasm = _read_polygons(archive, cyt_paths)
        nuclei = _read_polygons(archive, nuc_paths)
        height, width = image.shape[:2]
        image = downsize_for_storage(image, config.max_shorter_side)
        h, w = image.shape[:2]
        if (h, w) != (height, width):
            cytoplasm = annotations.scale_polygons(cytoplasm, w / width, h / height)
            nuclei = annotations.scale_polygons(nuclei, w / width, h / height)
        cell_mask = annotations.rasterize(cytoplasm, h, w)
        nucleus_mask = annotations.rasterize(nuclei, h, w)
        if config.background_value is not None:
            image = np.where(cell_mask[..., None] > 0, image, np.uint8(config.background_value))
        cyt_vertices, cyt_lengths = annotations.pack_polygons(cytoplasm)
        nuc_vertices, nuc_lengths = annotations.pack_polygons(nuclei)
        return {
            "image": _png(image),
            "label": label,
            "image_id": image_id,
            "group_id": group_id,
            "original_size": np.asarray([height, width], np.int32),
            "cell_mask": _png(cell_mask),
            "nucleus_mask": _png(nucleus_mask),
            "cytoplasm_vertices": cyt_vertices,
            "cytoplasm_lengths": cyt_lengths,
            "nucleus_vertices": nuc_vertices,
            "nucleus_lengths": nuc_lengths,
        }


# The dataset's variants (builder config names), in the order of BUILDER_CONFIGS.
VARIANTS: tuple[str, ...] = tuple(c.name for c in Builder.BUILDER_CONFIGS)
