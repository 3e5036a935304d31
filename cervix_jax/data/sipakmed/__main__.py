"""``python -m cervix_jax.data.sipakmed build [tfds build options]``: TFDS's own ``build``.

The stock ``tfds`` command of tensorflow-datasets 4.9.10 imports TensorFlow at start-up (for its
``convert_format`` sub-command), so it fails in this TensorFlow-free environment. Its ``build``
sub-command does not need TensorFlow; this entry point runs exactly that command. With TensorFlow
installed, ``tfds build cervix_jax/data/sipakmed`` works as usual.

Example (from the repository root)::

    python -m cervix_jax.data.sipakmed build cervix_jax/data/sipakmed --config=full \\
        --manual_dir=/path/to/sipakmed_archives --data_dir=/path/to/tensorflow_datasets
"""

from __future__ import annotations

import sys

from absl import app
from tensorflow_datasets.scripts.cli import build, cli_utils


def main() -> None:
    argv = list(sys.argv)
    if len(argv) > 1 and argv[1] == "build":
        del argv[1]
    parser = cli_utils.make_flags_parser(build.Args, description="tfds build (no TensorFlow)")
    sys.argv = argv
    app.run(lambda args: args.execute(), flags_parser=parser)


if __name__ == "__main__":
    main()
