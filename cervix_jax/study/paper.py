"""The paper's own results, printed beside the study's as a reference (never compared by test).

Source: Wang, Armin, Denman, Petersson, Ahmedt-Aristizabal, "Towards Interpretable Attention
Networks for Cervical Cancer Analysis", results table (test-set top-1 accuracy of one split per
variant), as recorded in the project's paper notes. One seeded per-class 70/20/10 split: 101 test
images of the 966 full images (so one image is about one point of accuracy). The masked variant
is the same 966 images with the background removed, hence the same 101. The paper does not state
the number of test cells of the cropped variant (10% per class of the 4,049 cells).
"""

from __future__ import annotations

CITATION = (
    "Wang, Armin, Denman, Petersson, Ahmedt-Aristizabal: Towards Interpretable Attention "
    "Networks for Cervical Cancer Analysis (single 70/20/10 split, test accuracy)"
)

# Paper's name of each of our architectures (tiny variants are not in the paper).
PAPER_MODEL_NAMES: dict[str, str] = {
    "resnet50": "ResNet-50",
    "attention92": "Residual Attention Network (92)",
    "densenet121": "DenseNet-121",
    "densenet121_rca": "DenseNet-121 + channel attention",
}

# model -> variant -> test accuracy (fraction); a missing variant was not reported.
PAPER_ACCURACY: dict[str, dict[str, float]] = {
    "resnet50": {"full": 0.8515, "cropped": 0.9511, "masked": 0.8613},
    "attention92": {"full": 0.8416},
    "densenet121": {"full": 0.8911, "cropped": 0.9584, "masked": 0.9010},
    "densenet121_rca": {"full": 0.9109, "cropped": 0.9633, "masked": 0.8713},
}

# variant -> number of test images behind each of the paper's numbers (None: not stated).
PAPER_TEST_IMAGES: dict[str, int | None] = {"full": 101, "masked": 101, "cropped": None}


def paper_reference(model: str, variant: str) -> dict | None:
    """The paper's number for ``model`` on ``variant``, or None when it reported none.

    ``_tiny`` variants map to their full-size model (the study demo shows where the paper's
    number goes; tiny models on synthetic data are not comparable to it).

    Returns:
      ``{"accuracy", "num_test_images" (None: not stated), "splits": 1, "model_name",
      "citation"}``.
    """
    base = model.removesuffix("_tiny")
    accuracy = PAPER_ACCURACY.get(base, {}).get(variant)
    if accuracy is None:
        return None
    return {
        "accuracy": accuracy,
        "num_test_images": PAPER_TEST_IMAGES[variant],
        "splits": 1,
        "model_name": PAPER_MODEL_NAMES[base],
        "citation": CITATION,
    }
