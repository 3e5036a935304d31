import numpy as np
import pytest
from PIL import Image

from cervix_jax.data import (
    ArraySource,
    ManualDownloadError,
    annotations,
    count_cells,
    eval_iterator,
    load_sipakmed,
    num_eval_batches,
    open_source,
    read_metadata,
    resize_and_crop,
    train_iterator,
)


@pytest.fixture(scope="module")
def source(prepared):
    return open_source("full", str(prepared))


@pytest.fixture(scope="module")
def metadata(source):
    return read_metadata(source, "full")


def test_metadata_lists_every_record(metadata, source):
    assert len(metadata) == len(source) == 10
    assert metadata.labels.dtype == np.int32
    assert sorted(np.bincount(metadata.labels)) == [2] * 5
    for label, group, image_id in zip(
        metadata.labels, metadata.groups, metadata.image_ids, strict=True
    ):
        assert group == image_id and group.startswith(metadata.class_names[label] + "/")


def test_resize_and_crop_geometry():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255  # the centre square of a 2:1 image
    out = resize_and_crop(image, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    # Antialiasing reaches one source pixel beyond the square, as in resize-then-crop.
    assert out[:, 1:-1].min() == 255 and out.min() > 200
    mask = np.zeros((40, 80, 1), np.uint8)
    mask[:20, 20:60] = 1
    small = resize_and_crop(mask, 10, nearest=True)
    assert small.shape == (10, 10, 1) and set(np.unique(small)) == {0, 1}
    assert small[:5].all() and not small[5:].any()


def test_training_batches_follow_the_contract(source, metadata):
    train = np.flatnonzero(metadata.labels != 4)  # 8 records
    it = train_iterator(source, train, image_size=32, global_batch_size=4, seed=0, with_masks=True)
    batch = next(it)
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int32
    assert batch["mask"].dtype == np.bool_ and batch["mask"].all()
    assert batch["cell_mask"].shape == (4, 32, 32) and batch["cell_mask"].dtype == np.uint8
    assert set(np.unique(batch["cell_mask"])) <= {0, 1} and batch["cell_mask"].any()
    assert (batch["nucleus_mask"] <= batch["cell_mask"]).mean() > 0.97
    assert batch["image_id"].shape == (4,) and batch["image_id"].dtype.kind == "U"
    np.testing.assert_array_equal(batch["label"], metadata.labels[batch["index"]])
    np.testing.assert_array_equal(batch["image_id"], metadata.image_ids[batch["index"]])
    # The image is the stored one, resized and centre-cropped on the host.
    record = source[int(batch["index"][0])]
    with Image.open(__import__("io").BytesIO(record["image"])) as png:
        expected = resize_and_crop(np.asarray(png.convert("RGB")), 32)
    np.testing.assert_array_equal(batch["image"][0], expected)
    assert set(batch["index"]) <= set(train)


def test_each_epoch_is_a_new_permutation_of_the_split(source, metadata):
    train = np.arange(10)
    it = train_iterator(source, train, image_size=16, global_batch_size=5, seed=3)
    epochs = [np.concatenate([next(it)["index"] for _ in range(2)]) for _ in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])
    again = train_iterator(source, train, image_size=16, global_batch_size=5, seed=3)
    np.testing.assert_array_equal(
        np.concatenate([next(again)["index"] for _ in range(2)]), epochs[0]
    )
    other = train_iterator(source, train, image_size=16, global_batch_size=5, seed=4)
    assert not np.array_equal(np.concatenate([next(other)["index"] for _ in range(2)]), epochs[0])


def test_restored_state_continues_at_the_same_example(source):
    kwargs = dict(image_size=16, global_batch_size=3, seed=1)
    it = train_iterator(source, np.arange(10), **kwargs)
    for _ in range(4):  # crosses an epoch boundary (3 batches per epoch)
        next(it)
    state = it.get_state()
    expected = [next(it)["index"] for _ in range(3)]
    resumed = train_iterator(source, np.arange(10), **kwargs)
    resumed.set_state(state)
    got = [next(resumed)["index"] for _ in range(3)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_processes_read_disjoint_shards(source):
    seen = []
    for p in range(2):
        it = train_iterator(
            source,
            np.arange(10),
            image_size=16,
            global_batch_size=4,
            seed=0,
            num_epochs=1,
            process_index=p,
            process_count=2,
        )
        batches = list(it)
        assert all(b["image"].shape[0] == 2 for b in batches)
        seen.append(np.concatenate([b["index"] for b in batches]))
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) == len(seen[1]) == 4  # 2 global batches of 4; 2 examples dropped
    # Together the processes see exactly the global batches of a single process.
    single = list(
        train_iterator(
            source,
            np.arange(10),
            image_size=16,
            global_batch_size=4,
            seed=0,
            num_epochs=1,
            process_index=0,
            process_count=1,
        )
    )
    np.testing.assert_array_equal(
        np.concatenate([b["index"] for b in single]),
        np.concatenate([np.concatenate([seen[0][k : k + 2], seen[1][k : k + 2]]) for k in (0, 2)]),
    )


def test_worker_processes_give_the_same_batches(source):
    kwargs = dict(image_size=16, global_batch_size=4, seed=2)
    inline = train_iterator(source, np.arange(10), **kwargs)
    workers = train_iterator(source, np.arange(10), num_workers=2, **kwargs)
    try:
        for _ in range(3):
            a, b = next(inline), next(workers)
            np.testing.assert_array_equal(a["index"], b["index"])
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["image_id"], b["image_id"])
        state = workers.get_state()
        expected = next(workers)["index"]
    finally:
        del workers  # stops the worker processes
    # grain checks that a state is restored with the worker count it was saved with.
    resumed = train_iterator(source, np.arange(10), num_workers=2, **kwargs)
    try:
        resumed.set_state(state)
        np.testing.assert_array_equal(next(resumed)["index"], expected)
    finally:
        del resumed


@pytest.mark.parametrize("process_count", [1, 2])
def test_evaluation_sees_every_example_once_with_padding(source, process_count):
    indices = np.asarray([9, 0, 3, 4, 5, 6, 7])
    batches = {}
    for p in range(process_count):
        batches[p] = list(
            eval_iterator(
                source,
                indices,
                image_size=16,
                global_batch_size=4,
                num_workers=2,
                process_index=p,
                process_count=process_count,
            )
        )
        assert len(batches[p]) == num_eval_batches(len(indices), 4) == 2
        assert all(b["image"].shape == (4 // process_count, 16, 16, 3) for b in batches[p])
    everything = [b for p in batches for b in batches[p]]
    real = np.concatenate([b["index"][b["mask"]] for b in everything])
    assert sorted(real) == sorted(indices)
    padding = np.concatenate([b["index"][~b["mask"]] for b in everything])
    assert len(padding) == 1 and padding[0] == -1
    pad_batch = next(b for b in everything if not b["mask"].all())
    assert not pad_batch["image"][~pad_batch["mask"]].any()
    assert pad_batch["image_id"][~pad_batch["mask"]][0] == ""
    # Deterministic: a second pass is identical.
    again = list(
        eval_iterator(
            source,
            indices,
            image_size=16,
            global_batch_size=4,
            process_index=0,
            process_count=process_count,
        )
    )
    for a, b in zip(batches[0], again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_batch_size_must_divide_over_processes(source):
    with pytest.raises(ValueError, match="not divisible by the number of processes 2"):
        train_iterator(
            source,
            np.arange(10),
            image_size=16,
            global_batch_size=3,
            seed=0,
            process_index=0,
            process_count=2,
        )


def test_load_sipakmed_without_data_explains_what_to_do(tmp_path):
    config = {"variant": "full", "tfds_data_dir": str(tmp_path), "manual_dir": ""}
    with pytest.raises(ManualDownloadError) as e:
        load_sipakmed(config)
    message = str(e.value)
    assert "--config.data.manual_dir=" in message
    assert "im_Superficial-Intermediate.7z" in message and "synthetic=True" in message


def test_load_sipakmed_prepares_an_existing_manual_dir(tmp_path, raw_dir):
    config = {"variant": "cropped", "tfds_data_dir": str(tmp_path), "manual_dir": str(raw_dir[0])}
    with pytest.warns(UserWarning, match="cropped images"):
        source, metadata = load_sipakmed(config)
    assert len(source) == sum(c["cropped"] for c in raw_dir[1].values())
    assert set(metadata.groups) == {f"{c}/{i:03d}" for c in metadata.class_names for i in (1, 2)}
    # Prepared once: loading again does not rebuild (and so does not warn).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = load_sipakmed(config)
    assert len(again) == len(source)


def test_load_sipakmed_synthetic_generates_and_builds(tmp_path):
    config = {
        "variant": "full",
        "tfds_data_dir": str(tmp_path),
        "synthetic": True,
        "synthetic_images_per_class": 2,
        "synthetic_seed": 0,
    }
    with pytest.warns(UserWarning):
        source, metadata = load_sipakmed(config)
    assert len(source) == 10 and metadata.data_dir.endswith("sipakmed_synthetic_n2_s0")
    assert source[0]["original_size"].tolist() == [384, 512]


def test_array_source_and_start_step():
    """In-memory records go through the same iterators; start_step=k begins at global batch k."""
    from cervix_jax.data.pipeline import ArraySource

    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8),
        "label": np.arange(10) % 5,
    }
    source = ArraySource(arrays)
    kwargs = dict(image_size=16, global_batch_size=3, seed=2)
    it = train_iterator(source, np.arange(10), **kwargs)
    batches = [next(it) for _ in range(7)]  # 3 batches per epoch: crosses two epochs
    for b in batches:  # S x S arrays are served as they are
        np.testing.assert_array_equal(b["image"], arrays["image"][b["index"]])
        assert list(b["image_id"]) == [str(i) for i in b["index"]]
    late = train_iterator(source, np.arange(10), start_step=4, **kwargs)
    for expected in batches[4:]:
        np.testing.assert_array_equal(next(late)["index"], expected["index"])
    # Another size is resized like a decoded PNG would be.
    (small,) = eval_iterator(source, np.arange(2), image_size=8, global_batch_size=2)
    np.testing.assert_array_equal(small["image"][1], resize_and_crop(arrays["image"][1], 8))
    with pytest.raises(ValueError, match="one length"):
        ArraySource({"image": arrays["image"], "label": np.arange(3)})


def test_cell_label_maps_match_the_polygons_scaled_by_hand(source, metadata):
    size = 32
    batch = next(
        eval_iterator(
            source, np.arange(len(source)), image_size=size, global_batch_size=12, with_masks=True
        )
    )
    assert batch["cell_labels"].shape == (12, size, size)
    assert batch["cell_labels"].dtype == batch["nucleus_labels"].dtype == np.int32
    for row in range(len(source)):
        record = source[int(batch["index"][row])]
        # Stored 128 x 96: the centre square is x in [16, 112], scaled by 32 / 96.
        by_hand = {
            name: [
                (p - np.asarray([16.0, 0.0])) * (size / 96.0)
                for p in annotations.unpack_polygons(
                    record[f"{name}_vertices"], record[f"{name}_lengths"]
                )
            ]
            for name in ("cytoplasm", "nucleus")
        }
        cytoplasm, nuclei = by_hand["cytoplasm"], by_hand["nucleus"]
        assert batch["num_cells"][row] == len(cytoplasm) == len(nuclei) > 0
        expected = np.zeros((size, size), np.int32)
        expected_nuclei = np.zeros((size, size), np.int32)
        for k, (cyt, nuc) in enumerate(zip(cytoplasm, nuclei, strict=True), start=1):
            expected[annotations.rasterize([cyt], size, size) > 0] = k
            expected_nuclei[annotations.rasterize([nuc], size, size) > 0] = k
        expected = np.where(expected_nuclei > 0, expected_nuclei, expected)
        np.testing.assert_array_equal(batch["cell_labels"][row], expected)
        np.testing.assert_array_equal(batch["nucleus_labels"][row], expected_nuclei)
    padding = batch["index"] < 0
    assert padding.sum() == 2 and not batch["cell_labels"][padding].any()
    assert not batch["num_cells"][padding].any()
    # Same geometry as the image: at 96 px the crop keeps the stored scale, and the union of
    # the label maps is the stored union mask, cropped.
    native = next(
        eval_iterator(
            source, np.arange(len(source)), image_size=96, global_batch_size=10, with_masks=True
        )
    )
    np.testing.assert_array_equal(native["cell_labels"] > 0, native["cell_mask"] > 0)
    np.testing.assert_array_equal(native["nucleus_labels"] > 0, native["nucleus_mask"] > 0)


def test_array_source_label_maps_are_resized_by_nearest_neighbour():
    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :4, :4], labels[0, 4:, 4:] = 1, 2
    arrays = dict(
        image=np.zeros((2, 8, 8, 3), np.uint8),
        label=np.zeros(2, np.int32),
        cell_mask=(labels > 0).astype(np.uint8),
        nucleus_mask=np.zeros((2, 8, 8), np.uint8),
        cell_labels=labels,
        nucleus_labels=np.zeros((2, 8, 8), np.int32),
    )
    batch = next(
        eval_iterator(
            ArraySource(arrays), np.arange(2), image_size=4, global_batch_size=2, with_masks=True
        )
    )
    np.testing.assert_array_equal(batch["cell_labels"][0], labels[0, ::2, ::2])
    assert list(batch["num_cells"]) == [2, 0]
    assert count_cells(arrays_row := {k: v[0] for k, v in arrays.items()}) == 2
    assert count_cells({"image": arrays_row["image"]}) == 0
