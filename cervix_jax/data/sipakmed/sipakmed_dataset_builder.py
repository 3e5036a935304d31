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

import dataclasses
import io
import os
import re
import shutil
import warnings
import zipfile
from collections.abc import Iterator

import numpy as np
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
ARCHIVE_NAMES: tuple[str, ...] = tuple(f"im_{c}.zip" for c in CLASS_NAMES)
OFFICIAL_COUNTS = {
    "full": dict(zip(CLASS_NAMES, (223, 238, 271, 108, 126), strict=True)),
    "cropped": dict(zip(CLASS_NAMES, (813, 825, 793, 787, 831), strict=True)),
}
HOMEPAGE = "https://www.cs.uoi.gr/~marina/sipakmed.html"
SYNTHETIC_MARKER = "SYNTHETIC_SIPAKMED.txt"

_MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the five SIPaKMeD archives from {HOMEPAGE}:
  {", ".join(ARCHIVE_NAMES)}
and put them in the manual directory (`manual_dir`), either still zipped or extracted
(one folder `im_<Class>` per archive; nested copies such as `im_X/im_X/` are fine: each class
folder is found through its `CROPPED/` sub-folder). For example:
  MANUAL_DIR/im_Dyskeratotic.zip   or   MANUAL_DIR/im_Dyskeratotic/im_Dyskeratotic/CROPPED/...
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
    max_shorter_side: int = 384


class _Archive:
    """The files of one class, in a folder or a zip file, addressed by relative posix paths."""

    def __init__(self, path: str):
        self.path = path
        self._zip = None
        if os.path.isdir(path):
            names = []
            for root, _, files in os.walk(path):
                for f in files:
                    rel = os.path.relpath(os.path.join(root, f), path)
                    names.append(rel.replace(os.sep, "/"))
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(
                    f"{path}: cannot be opened as a zip archive ({e}). Download it again from "
                    f"{HOMEPAGE}, or extract it into a folder of the same name."
                ) from None
            names = [n for n in self._zip.namelist() if not n.endswith("/")]
        # Archives made on macOS carry resource forks that are not images.
        self.names = sorted(
            n
            for n in names
            if "__MACOSX" not in n.split("/") and not n.rsplit("/", 1)[-1].startswith("._")
        )

    def describe(self, name: str) -> str:
        if self._zip is not None:
            return f"{self.path}:{name}"
        return os.path.join(self.path, *name.split("/"))

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            with open(self.describe(name), "rb") as f:
                return f.read()
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(
                f"{self.describe(name)}: cannot be read ({e}). Re-extract or download the "
                "archive again."
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
                f"{self.path}: expected exactly one 'CROPPED/' folder (the cropped cells), "
                f"found {found}. Each class folder or archive must hold the full images "
                "(NNN.bmp, NNN_cytKK.dat, NNN_nucKK.dat) next to a CROPPED/ sub-folder.\n"
                + _MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        return parents[0]


def _locate_class(manual_dir: str, class_name: str, max_depth: int = 3) -> _Archive:
    """The folder ``im_<class>`` or archive ``im_<class>.zip`` closest to ``manual_dir``.

    Copies are often extracted one level down (``MANUAL_DIR/SIPaKMeD/im_X/...``), so the search
    goes ``max_depth`` folders deep; a folder wins over a zip file at the same depth.
    """
    wanted = f"im_{class_name}".lower()
    for root, dirs, files in os.walk(manual_dir):
        dirs.sort()
        depth = os.path.relpath(root, manual_dir).count(os.sep) + (root != manual_dir)
        for d in dirs:
            if d.lower() == wanted:
                return _Archive(os.path.join(root, d))
        for f in sorted(files):
            if f.lower() == wanted + ".zip":
                return _Archive(os.path.join(root, f))
        if depth >= max_depth - 1:
            dirs[:] = []
    present = sorted(os.listdir(manual_dir)) if os.path.isdir(manual_dir) else []
    raise ManualDownloadError(
        f"SIPaKMeD class {class_name!r} not found in the manual directory {manual_dir}: "
        f"expected the folder im_{class_name}/ or the archive im_{class_name}.zip there (or up "
        f"to {max_depth - 1} folders below); found {present[:12]}.\n"
        + _MANUAL_DOWNLOAD_INSTRUCTIONS
    )


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
        """As TFDS's, but a failed build leaves nothing behind in the data directory."""
        root = os.path.join(os.fspath(self._data_dir_root), self.name)
        config_dir = os.path.join(root, self.builder_config.name)
        download_dir = kwargs.get("download_dir") or os.path.join(
            os.fspath(self._data_dir_root), "downloads"
        )
        created = [p for p in (root, config_dir, os.fspath(download_dir)) if not os.path.exists(p)]
        try:
            return super().download_and_prepare(*args, **kwargs)
        except BaseException:
            for path in created:
                if os.path.isdir(path) and (
                    path != os.fspath(download_dir)
                    or not any(files for _, _, files in os.walk(path))
                ):
                    shutil.rmtree(path, ignore_errors=True)
            raise

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        archives = [_locate_class(manual_dir, c) for c in CLASS_NAMES]  # fail before writing
        synthetic = os.path.exists(os.path.join(manual_dir, SYNTHETIC_MARKER))
        return {"train": self._generate_examples(archives, synthetic)}

    def _generate_examples(self, archives, synthetic=False) -> Iterator[tuple[str, dict]]:
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
                    f"{archive.path}, the official release has {expected}{note}.",
                    stacklevel=1,
                )
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
        shorter = min(height, width)
        if shorter > config.max_shorter_side:
            new_w = max(1, round(width * config.max_shorter_side / shorter))
            new_h = max(1, round(height * config.max_shorter_side / shorter))
            # BOX averages whole source pixels: the right filter for a large integer reduction.
            image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BOX))
            cytoplasm = annotations.scale_polygons(cytoplasm, new_w / width, new_h / height)
            nuclei = annotations.scale_polygons(nuclei, new_w / width, new_h / height)
        h, w = image.shape[:2]
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
