"""TFDS builder folder for SIPaKMeD (``sipakmed/full``, ``sipakmed/cropped``, ``sipakmed/masked``).

Importing this package registers the builder with TFDS.
"""

from cervix_jax.data.sipakmed.sipakmed_dataset_builder import Builder  # noqa: F401
