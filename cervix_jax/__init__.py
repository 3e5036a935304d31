"""cervix_jax: interpretable classification of Pap-smear cytology (SIPaKMeD) in JAX/Flax.

Four wings, data flowing one way: ``data`` (TFDS builder, splits, grain pipeline), ``models``
(pure Flax modules), ``train`` (mesh, jitted step, Orbax checkpoints, reports) and ``explain``
(integrated gradients, Grad-CAM, attribution metrics).
"""

from cervix_jax import _xla_flags  # noqa: F401  (must run before JAX creates a backend)

__version__ = "0.1.0"
