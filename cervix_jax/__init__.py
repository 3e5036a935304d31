"""cervix_jax: interpretable classification of Pap-smear cytology (SIPaKMeD) in JAX/Flax.

Four wings, data flowing one way: ``data`` (TFDS builder, splits, grain pipeline), ``models``
(pure Flax modules), ``train`` (mesh, jitted step, Orbax checkpoints, reports) and ``explain``
(integrated gradients, Grad-CAM, attribution metrics). Importing the package changes nothing in
the process; entry points call ``cervix_jax.runtime.setup()`` first (XLA flags).

``cervix_jax.load(workdir, which='best') -> TrainedModel`` (``cervix_jax.analysis``) analyses a
trained model from Python: ``predict``, ``explain`` and ``embed`` on image files, PIL images or
arrays. It is imported on first use, so that ``import cervix_jax`` stays light and
``runtime.setup()`` can still come first.
"""

__version__ = "0.1.0"

_LAZY = ("load", "TrainedModel", "Predictions", "Explanations")


def __getattr__(name: str):
    if name in _LAZY:
        from cervix_jax import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'cervix_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
