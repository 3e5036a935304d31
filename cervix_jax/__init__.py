"""cervix_jax: interpretable classification of Pap-smear cytology (SIPaKMeD) in JAX/Flax.

Four wings, data flowing one way: ``data`` (TFDS builder, splits, grain pipeline), ``models``
(pure Flax modules), ``train`` (mesh, jitted step, Orbax checkpoints, reports) and ``explain``
(integrated gradients, Grad-CAM, attribution metrics). Importing the package changes nothing in
the process; entry points call ``cervix_jax.runtime.setup()`` first (XLA flags).
"""

__version__ = "0.1.0"
