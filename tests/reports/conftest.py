"""A tiny trained and explained workdir for the page tests (made once per session)."""

import shutil

import pytest


@pytest.fixture(scope="session")
def explained_workdir(tmp_path_factory, tiny_trained_workdir):
    """A copy of ``tiny_trained_workdir`` with an IG explanation of its whole test split in
    ``attributions/`` and its ``report.html``."""
    from cervix_jax import reports
    from cervix_jax.explain import batch

    workdir = tmp_path_factory.mktemp("explained") / "run"
    shutil.copytree(tiny_trained_workdir, workdir)
    settings = batch.Settings(method="ig", steps=4, baseline="black", deletion_steps=4)
    batch.attribute_split(workdir, workdir / "attributions", settings, progress=False)
    reports.write_run_report(workdir)
    return workdir
