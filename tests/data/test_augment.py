import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax.data import IMAGENET_MEAN, IMAGENET_STD, augment, normalize

OFF = {"rotation_degrees": 0.0, "horizontal_flip": False, "vertical_flip": False}


def _images(dtype=np.uint8, shape=(3, 16, 20, 3)):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.integers(0, 256, shape).astype(dtype))


def test_normalize_matches_imagenet_statistics():
    x = jnp.full((2, 4, 4, 3), 255, jnp.uint8)
    got = normalize(x)
    assert got.dtype == jnp.float32 and got.shape == x.shape
    expected = (1.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(got[0, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(normalize(x.astype(jnp.float32)), got)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_no_rotation_no_flip_is_identity(dtype):
    x = _images(dtype)
    got = jax.jit(lambda key, images: augment(key, images, OFF))(jax.random.PRNGKey(0), x)
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(x), atol=1e-4)


def test_rotation_by_zero_degrees_is_exact_for_uint8():
    x = _images()
    got = augment(jax.random.PRNGKey(3), x, {"rotation_degrees": 0.0})
    np.testing.assert_array_equal(np.asarray(got), np.asarray(x))


def test_flip_only_flips_and_twice_is_identity():
    x = _images()
    config = {"horizontal_flip": True, "vertical_flip": True}
    key = jax.random.PRNGKey(1)
    once = np.asarray(augment(key, x, config))
    for image, out in zip(np.asarray(x), once, strict=True):
        candidates = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
        assert any(np.array_equal(out, c) for c in candidates)
    twice = np.asarray(augment(key, jnp.asarray(once), config))
    np.testing.assert_array_equal(twice, np.asarray(x))


def test_rotation_is_a_rotation():
    # A bright dot right of the centre moves on a circle; the image centre stays.
    x = np.zeros((1, 33, 33, 1), np.float32)
    x[0, 16, 26] = 1.0
    x[0, 16, 16] = 1.0
    out = np.asarray(augment(jax.random.PRNGKey(0), jnp.asarray(x), {"rotation_degrees": 90.0}))
    assert out[0, 16, 16, 0] == pytest.approx(1.0, abs=1e-5)
    ys, xs = np.nonzero(out[0, ..., 0] > 0.05)
    weights = out[0, ys, xs, 0]
    far = np.hypot(ys - 16, xs - 16) > 3
    radius = np.average(np.hypot(ys[far] - 16, xs[far] - 16), weights=weights[far])
    assert radius == pytest.approx(10.0, abs=0.6)
    assert weights[far].sum() == pytest.approx(1.0, abs=0.05)  # bilinear keeps the mass


def test_deterministic_per_key_and_different_across_keys():
    x = _images()
    config = {"rotation_degrees": 25.0, "horizontal_flip": True, "vertical_flip": True}
    a = np.asarray(augment(jax.random.PRNGKey(5), x, config))
    b = np.asarray(augment(jax.random.PRNGKey(5), x, config))
    c = np.asarray(augment(jax.random.PRNGKey(6), x, config))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Each image gets its own transformation.
    same = np.repeat(x[:1], 3, axis=0)
    out = np.asarray(augment(jax.random.PRNGKey(0), same, config))
    assert not np.array_equal(out[0], out[1]) or not np.array_equal(out[1], out[2])


def test_jit_inside_a_step_with_configdict():
    import ml_collections

    config = ml_collections.ConfigDict(
        {"rotation_degrees": 25.0, "horizontal_flip": True, "vertical_flip": False}
    )

    @jax.jit
    def step(key, images):
        return normalize(augment(key, images, config)).mean()

    value = step(jax.random.PRNGKey(0), _images())
    assert np.isfinite(float(value))
