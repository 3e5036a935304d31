"""A synthetic SIPaKMeD: same on-disk format, classes that differ by cell morphology.

Layout written (``layout='nested'``, as in most copies of the real archives)::

    OUT/im_Dyskeratotic/im_Dyskeratotic/001.bmp, 001_cyt01.dat, 001_nuc01.dat, ...
    OUT/im_Dyskeratotic/im_Dyskeratotic/CROPPED/001_01.bmp, 001_01_cyt.dat, 001_01_nuc.dat
    ...

``layout='flat'`` drops the inner folder; ``archive='7z'`` (the official form) or ``'zip'``
writes ``OUT/im_<Class>.7z`` or ``.zip`` instead.

What separates the classes is what separates the real ones: cell size and shape, the
nucleus-to-cytoplasm ratio, the perinuclear halo and bi-nucleation of koilocytes, dense clusters of
small cells for dyskeratotic, large flat polygonal cells with small pyknotic nuclei for
superficial-intermediate, small round cells with large nuclei for parabasal, and mid-sized cells
with cytoplasmic processes for metaplastic. Stain colour, background and brightness are drawn per
image from one distribution shared by all classes, and each finished image is affinely recoloured
to a per-channel mean and standard deviation drawn independently of its class, so global colour
statistics carry no class information; only the cells do.

Rendering is Beer-Lambert absorption (optical densities add, overlaps darken), which keeps
overlapping cells and the bright halo plausible with a few array operations per cell.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass

import numpy as np
import py7zr
from PIL import Image, ImageDraw

from cervix_jax.data import annotations
from cervix_jax.data.errors import DataError
from cervix_jax.data.sipakmed.sipakmed_dataset_builder import CLASS_NAMES, SYNTHETIC_MARKER

MARKER_FILE = SYNTHETIC_MARKER
_INCOMPLETE = "Incomplete: generation was interrupted."
_ZIP_DATE = (2018, 1, 1, 0, 0, 0)  # fixed timestamp: same seed, same bytes
# LZMA2 as in 7-Zip's archives; preset 1 wrote 2.5x faster than py7zr's default, 10% larger.
_7Z_FILTERS = [{"id": py7zr.FILTER_LZMA2, "preset": 1}]


@dataclass(frozen=True)
class _Morphology:
    """Per-class cell geometry, in pixels of a 384-pixel-high image."""

    num_cells: tuple[int, int]  # inclusive range
    radius: tuple[float, float]
    aspect: tuple[float, float]  # major/minor axis ratio
    irregularity: float  # amplitude of low-frequency boundary harmonics
    nucleus_ratio: tuple[float, float]  # nucleus radius / cell radius
    nucleus_irregularity: float
    thickness: tuple[float, float]  # cytoplasm optical-density multiplier
    shape: str  # 'round' | 'polygonal' | 'processes'
    clustered: bool = False
    halo: bool = False
    binucleate_probability: float = 0.0
    min_separation: float = 0.8  # centre distance / (r1 + r2) below which a cell is rejected


_MORPHOLOGY = {
    "Dyskeratotic": _Morphology(
        num_cells=(9, 15),
        radius=(12.0, 17.0),
        aspect=(1.3, 2.0),
        irregularity=0.10,
        nucleus_ratio=(0.28, 0.36),
        nucleus_irregularity=0.12,
        thickness=(1.5, 1.9),
        shape="round",
        clustered=True,
        min_separation=0.55,
    ),
    "Koilocytotic": _Morphology(
        num_cells=(2, 4),
        radius=(44.0, 58.0),
        aspect=(1.0, 1.35),
        irregularity=0.08,
        nucleus_ratio=(0.20, 0.26),
        nucleus_irregularity=0.15,
        thickness=(0.9, 1.2),
        shape="round",
        halo=True,
        binucleate_probability=0.5,
    ),
    "Metaplastic": _Morphology(
        num_cells=(3, 6),
        radius=(30.0, 38.0),
        aspect=(1.0, 1.3),
        irregularity=0.05,
        nucleus_ratio=(0.30, 0.38),
        nucleus_irregularity=0.05,
        thickness=(1.2, 1.5),
        shape="processes",
    ),
    "Parabasal": _Morphology(
        num_cells=(5, 9),
        radius=(21.0, 28.0),
        aspect=(1.0, 1.12),
        irregularity=0.02,
        nucleus_ratio=(0.50, 0.60),
        nucleus_irregularity=0.02,
        thickness=(1.1, 1.4),
        shape="round",
    ),
    "Superficial-Intermediate": _Morphology(
        num_cells=(2, 4),
        radius=(58.0, 76.0),
        aspect=(1.0, 1.3),
        irregularity=0.0,
        nucleus_ratio=(0.07, 0.09),
        nucleus_irregularity=0.02,
        thickness=(0.55, 0.8),
        shape="polygonal",
        min_separation=0.6,
    ),
}


@dataclass
class _Cell:
    cytoplasm: np.ndarray  # [N, 2] (x, y)
    nucleus: np.ndarray  # [M, 2] outline of the nucleus (or both nuclei)
    nuclei_parts: list  # one polygon per nucleus, for rendering
    halo: np.ndarray | None  # [K, 2] clear perinuclear zone, or None
    thickness: float


def _star_polygon(rng, center, radius, aspect, rotation, irregularity, num_vertices=48):
    """A smooth star-shaped closed curve: an ellipse with random low-frequency harmonics."""
    phi = np.linspace(0.0, 2 * np.pi, num_vertices, endpoint=False)
    r = np.ones_like(phi)
    for k in range(2, 6):
        r += rng.normal(0.0, irregularity / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.6, 1.4)
    return _place(
        r * np.cos(phi) * np.sqrt(aspect), r * np.sin(phi) / np.sqrt(aspect), center, rotation
    )


def _place(x, y, center, rotation):
    c, s = np.cos(rotation), np.sin(rotation)
    return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], -1).astype(np.float32)


def _polygonal(rng, center, radius, aspect, rotation):
    """A flat, angular cell: 5-7 corners joined by straight edges (densified like a tracing)."""
    corners = int(rng.integers(5, 8))
    angles = np.sort((np.arange(corners) + rng.uniform(-0.25, 0.25, corners)) * 2 * np.pi / corners)
    radii = radius * rng.uniform(0.85, 1.12, corners)
    pts = np.stack(
        [radii * np.cos(angles) * np.sqrt(aspect), radii * np.sin(angles) / np.sqrt(aspect)], -1
    )
    t = np.linspace(0.0, 1.0, 8, endpoint=False)[:, None]
    dense = np.concatenate([pts[i] + t * (pts[(i + 1) % corners] - pts[i]) for i in range(corners)])
    return _place(dense[:, 0], dense[:, 1], center, rotation)


def _with_processes(rng, center, radius, aspect, rotation, num_vertices=72):
    """A metaplastic cell: a rounded body with 3-5 tapering cytoplasmic processes."""
    phi = np.linspace(0.0, 2 * np.pi, num_vertices, endpoint=False)
    r = np.full_like(phi, 0.82)
    for _ in range(int(rng.integers(3, 6))):
        center_angle = rng.uniform(0, 2 * np.pi)
        bump = np.cos(phi - center_angle).clip(0.0, None) ** 12
        r += rng.uniform(0.35, 0.6) * bump
    r *= radius
    return _place(
        r * np.cos(phi) * np.sqrt(aspect), r * np.sin(phi) / np.sqrt(aspect), center, rotation
    )


def _disc_union_outline(center, offsets, radius, num_vertices=48):
    """Outline of the union of discs (radius) around centre+offset, star-shaped about centre."""
    phi = np.linspace(0.0, 2 * np.pi, num_vertices, endpoint=False)
    u = np.stack([np.cos(phi), np.sin(phi)], -1)
    best = np.zeros_like(phi)
    for d in offsets:
        ud = u @ d
        disc = ud**2 - d @ d + radius**2
        best = np.maximum(best, np.where(disc >= 0, ud + np.sqrt(np.maximum(disc, 0)), 0))
    return (np.asarray(center) + u * best[:, None]).astype(np.float32)


def _make_cell(rng, m: _Morphology, center, radius) -> _Cell:
    aspect = rng.uniform(*m.aspect)
    rotation = rng.uniform(0, np.pi)
    if m.shape == "polygonal":
        cyt = _polygonal(rng, center, radius, aspect, rotation)
    elif m.shape == "processes":
        cyt = _with_processes(rng, center, radius, aspect, rotation)
    else:
        cyt = _star_polygon(rng, center, radius, aspect, rotation, m.irregularity)
    # The nucleus must sit inside the cytoplasm: bound it by the closest boundary point.
    inner = float(np.min(np.linalg.norm(cyt - np.asarray(center, np.float32), axis=1)))
    n_radius = min(radius * rng.uniform(*m.nucleus_ratio), 0.75 * inner)
    offset = rng.uniform(-1, 1, 2) * 0.15 * max(inner - n_radius / 0.75, 0.0)
    n_center = np.asarray(center) + offset
    if rng.uniform() < m.binucleate_probability:
        direction = rng.normal(size=2)
        direction *= 0.6 * n_radius / np.linalg.norm(direction)
        parts_offsets = [direction, -direction]
        n_radius *= 0.85
        nucleus = _disc_union_outline(n_center, parts_offsets, n_radius)
        parts = [
            _star_polygon(rng, n_center + d, n_radius, 1.0, 0.0, m.nucleus_irregularity, 32)
            for d in parts_offsets
        ]
    else:
        nucleus = _star_polygon(
            rng,
            n_center,
            n_radius,
            rng.uniform(1.0, 1.25),
            rng.uniform(0, np.pi),
            m.nucleus_irregularity,
        )
        parts = [nucleus]
    halo = None
    if m.halo:
        halo_radius = min(0.8 * inner, max(2.2 * n_radius, radius * rng.uniform(0.5, 0.62)))
        halo = _star_polygon(
            rng, n_center, halo_radius, rng.uniform(1.0, 1.3), rng.uniform(0, np.pi), 0.12
        )
    return _Cell(cyt, nucleus, parts, halo, float(rng.uniform(*m.thickness)))


def _layout_cells(rng, m: _Morphology, width, height, scale) -> list[_Cell]:
    n = int(rng.integers(m.num_cells[0], m.num_cells[1] + 1))
    # Keep cells in the central square that resize-and-centre-crop keeps.
    side = min(width, height)
    x_lo, x_hi = (width - side) / 2, (width + side) / 2
    y_lo, y_hi = (height - side) / 2, (height + side) / 2
    if m.clustered:
        cluster_r = scale * rng.uniform(38, 52)
        cluster_c = np.array(
            [
                rng.uniform(x_lo + cluster_r + 25 * scale, x_hi - cluster_r - 25 * scale),
                rng.uniform(y_lo + cluster_r + 25 * scale, y_hi - cluster_r - 25 * scale),
            ]
        )
    cells: list[_Cell] = []
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(60 * n):
        if len(cells) == n:
            break
        radius = scale * rng.uniform(*m.radius)
        if m.clustered:
            center = cluster_c + rng.normal(0.0, 0.5, 2) * cluster_r
        else:
            center = np.array([rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)])
        if any(np.linalg.norm(center - c) < m.min_separation * (radius + r) for c, r in placed):
            continue
        cell = _make_cell(rng, m, center, radius)
        lo, hi = cell.cytoplasm.min(0), cell.cytoplasm.max(0)
        if lo[0] < 1 or lo[1] < 1 or hi[0] > width - 1 or hi[1] > height - 1:
            continue
        cells.append(cell)
        placed.append((center, radius))
    return cells


def _smooth_noise(rng, height, width, cells_per_side):
    small = rng.normal(size=(cells_per_side, cells_per_side)).astype(np.float32)
    image = Image.fromarray(small, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(image)


def _fill(polygon, height, width):
    return annotations.rasterize([polygon], height, width).astype(bool)


def render_full_image(
    rng: np.random.Generator, class_name: str, width: int = 512, height: int = 384
) -> tuple[np.ndarray, list[_Cell]]:
    """Renders one multi-cell image of ``class_name``: ([H, W, 3] uint8, cells)."""
    m = _MORPHOLOGY[class_name]
    scale = min(width, height) / 384.0
    cells = _layout_cells(rng, m, width, height, scale)
    # Stain and illumination: per image, identical distributions for every class.
    cyan, pink = np.array([0.9, 0.35, 0.3]), np.array([0.2, 0.55, 0.45])
    mix = rng.uniform()
    cyt_od = ((mix * cyan + (1 - mix) * pink) * rng.uniform(0.5, 0.8)).astype(np.float32)
    nuc_od = (
        np.array([1.1, 1.3, 0.6]) * rng.uniform(0.8, 1.3) + rng.uniform(-0.15, 0.15, 3)
    ).astype(np.float32)
    texture = 1.0 + 0.15 * _smooth_noise(rng, height, width, 24)
    grain = 1.0 + 0.12 * rng.standard_normal((height, width), dtype=np.float32)
    od = np.zeros((height, width, 3), np.float32)
    for cell in cells:
        # Work inside the cell's bounding box: full-frame operations per cell were most of
        # the generation time.
        lo = np.maximum(np.floor(cell.cytoplasm.min(0)) - 3, 0).astype(int)
        hi = np.minimum(np.ceil(cell.cytoplasm.max(0)) + 4, [width, height]).astype(int)
        (x0, y0), (x1, y1) = lo, hi
        h, w = y1 - y0, x1 - x0
        shift = np.asarray([x0, y0], np.float32)
        cyt = _fill(cell.cytoplasm - shift, h, w)
        edge = Image.new("L", (w, h), 0)
        outline = cell.cytoplasm - shift
        ImageDraw.Draw(edge).line(
            [tuple(p) for p in outline] + [tuple(outline[0])],
            fill=1,
            width=max(1, round(2 * scale)),
        )
        density = cyt * cell.thickness + 0.5 * np.asarray(edge, np.float32)
        if cell.halo is not None:
            halo = _fill(cell.halo - shift, h, w) & cyt
            density = np.where(halo, 0.12, density)
        box = (slice(y0, y1), slice(x0, x1))
        od[box] += (density * texture[box])[..., None] * cyt_od
        for part in cell.nuclei_parts:
            nuc = _fill(part - shift, h, w)
            od[box] += (nuc * grain[box])[..., None] * nuc_od
    tint = rng.uniform(0.85, 1.0, 3).astype(np.float32)
    illumination = 1.0 + 0.04 * _smooth_noise(rng, height, width, 4)
    image = np.exp(-od) * tint * illumination[..., None]
    # Recolour to a per-channel mean and spread drawn independently of the class.
    mean = rng.uniform(150, 205) + rng.uniform(-12, 12, 3)
    std = rng.uniform(20, 36) * rng.uniform(0.9, 1.1, 3)
    flat = image.reshape(-1, 3)
    gain = (std / (flat.std(0, dtype=np.float64) + 1e-6)).astype(np.float32)
    image = (image - flat.mean(0, dtype=np.float64).astype(np.float32)) * gain + mean.astype(
        np.float32
    )
    image += 2.0 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), cells


def _bmp_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="BMP")
    return buffer.getvalue()


def _class_files(rng, class_name, images_per_class, width, height):
    """Yields (relative path, bytes) for one class folder."""
    for index in range(1, images_per_class + 1):
        stem = f"{index:03d}"
        image, cells = render_full_image(rng, class_name, width, height)
        yield f"{stem}.bmp", _bmp_bytes(image)
        for k, cell in enumerate(cells, start=1):
            yield f"{stem}_cyt{k:02d}.dat", annotations.format_dat(cell.cytoplasm).encode()
            yield f"{stem}_nuc{k:02d}.dat", annotations.format_dat(cell.nucleus).encode()
            lo, hi = cell.cytoplasm.min(0), cell.cytoplasm.max(0)
            margin = 0.12 * (hi - lo) + 3
            x0, y0 = np.maximum(np.floor(lo - margin), 0).astype(int)
            x1, y1 = np.minimum(np.ceil(hi + margin), [width, height]).astype(int)
            offset = np.array([x0, y0], np.float32)
            crop = f"CROPPED/{stem}_{k:02d}"
            yield f"{crop}.bmp", _bmp_bytes(image[y0:y1, x0:x1])
            yield f"{crop}_cyt.dat", annotations.format_dat(cell.cytoplasm - offset).encode()
            yield f"{crop}_nuc.dat", annotations.format_dat(cell.nucleus - offset).encode()


def is_complete(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a finished replica written by `write_synthetic_sipakmed`."""
    marker = os.path.join(os.fspath(out_dir), MARKER_FILE)
    if not os.path.isfile(marker):
        return False
    with open(marker) as f:
        return _INCOMPLETE not in f.read()


def _claim(out_dir: str) -> None:
    """Makes ``out_dir`` ours: created empty, or already marked as a replica we wrote.

    The generator replaces its own class folders; a folder it did not write may hold a user's
    real SIPaKMeD (or anything else), so it is never written into.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"{out_dir} is a file; give the synthetic replica a new or empty folder.")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, MARKER_FILE)):
            raise DataError(
                f"{out_dir} is not empty and holds no {MARKER_FILE}, so it was not written by the "
                "synthetic generator; refusing to write there so that nothing in it is "
                "overwritten. Give a new or empty folder (for a demo run, leave "
                "config.data.manual_dir empty: the replica then goes into the workdir)."
            )
    os.makedirs(out_dir, exist_ok=True)


def write_synthetic_sipakmed(
    out_dir: str | os.PathLike,
    images_per_class: int = 40,
    seed: int = 0,
    *,
    image_size: tuple[int, int] = (512, 384),
    layout: str = "nested",
    archive: str | None = None,
) -> dict[str, dict[str, int]]:
    """Writes a synthetic SIPaKMeD into ``out_dir``: a new or empty folder, or one this function
    wrote before (recognised by its marker file, whose class folders it then replaces).

    Args:
      out_dir: destination ("manual dir" of the TFDS builder).
      images_per_class: full images per class.
      seed: same seed, same bytes (for .7z files: same files, the archive records when it was
        written).
      image_size: (width, height) of full images; the real ones are 2048x1536.
      layout: 'nested' (im_X/im_X/...) or 'flat' (im_X/...).
      archive: None (folders), '7z' (im_X.7z, as on the SIPaKMeD page) or 'zip' (im_X.zip).
        A class's other forms written before into ``out_dir`` are removed.

    Returns:
      {class name: {'full': count, 'cropped': count}}.

    Raises:
      DataError: ``out_dir`` is a file, or a non-empty folder without the marker file.
    """
    if layout not in ("nested", "flat"):
        raise ValueError(f"layout must be 'nested' or 'flat', got {layout!r}")
    if archive not in (None, "7z", "zip"):
        raise ValueError(f"archive must be None, '7z' or 'zip', got {archive!r}")
    width, height = image_size
    out_dir = os.fspath(out_dir)
    _claim(out_dir)
    description = (
        f"Synthetic SIPaKMeD replica (cervix_jax.data.synthetic), seed={seed}, "
        f"images_per_class={images_per_class}, image_size={width}x{height}. Not real data.\n"
    )
    # The marker comes first: an interrupted run leaves a folder that is recognisably ours (and
    # incomplete), which the next run may replace.
    _write_marker(out_dir, description + _INCOMPLETE + "\n")
    counts = {}
    for class_index, class_name in enumerate(CLASS_NAMES):
        rng = np.random.default_rng([seed, class_index])
        files = list(_class_files(rng, class_name, images_per_class, width, height))
        counts[class_name] = {
            "full": sum(1 for p, _ in files if "/" not in p and p.endswith(".bmp")),
            "cropped": sum(1 for p, _ in files if p.startswith("CROPPED/") and p.endswith(".bmp")),
        }
        _write_class(out_dir, f"im_{class_name}", files, layout, archive)
    _write_marker(out_dir, description)
    return counts


def _write_marker(out_dir: str, text: str) -> None:
    tmp = os.path.join(out_dir, f".{MARKER_FILE}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(out_dir, MARKER_FILE))


def _write_class(out_dir: str, folder: str, files, layout: str, archive: str | None) -> None:
    """One class as ``im_X/``, ``im_X.7z`` or ``im_X.zip``, written into a temporary sibling and
    renamed, so an interrupted run leaves nothing partial. The class's other forms are removed
    (ours: _claim checked the marker): the builder refuses a class found twice."""
    prefix = f"{folder}/{folder}" if layout == "nested" else folder
    name = f"{folder}.{archive}" if archive else folder
    tmp = tempfile.mkdtemp(prefix=f".{folder}.", dir=out_dir)
    try:
        staged = os.path.join(tmp, name)
        if archive == "zip":
            with zipfile.ZipFile(staged, "w", zipfile.ZIP_STORED) as zf:
                for path, data in files:
                    zf.writestr(zipfile.ZipInfo(f"{prefix}/{path}", _ZIP_DATE), data)
        elif archive == "7z":
            with py7zr.SevenZipFile(staged, "w", filters=_7Z_FILTERS) as sz:
                for path, data in files:
                    sz.writestr(data, f"{prefix}/{path}")
        else:
            for path, data in files:
                full = os.path.join(tmp, prefix, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "wb") as f:
                    f.write(data)
        for other in (folder, f"{folder}.7z", f"{folder}.zip"):
            target = os.path.join(out_dir, other)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        os.replace(staged, os.path.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
