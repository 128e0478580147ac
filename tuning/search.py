"""Keras Tuner search over depth, filter widths and training settings of the FC-Siam networks.

Run from the repository root (the package must be installed, e.g. ``pip install -e .``)::

    python tuning/search.py --data data/synthetic --tuner hyperband --max-epochs 20
    python tuning/search.py --data data/synthetic --tuner random --max-trials 30 \\
        --depth 3 5 --filters 8 16 --variant diff conc --loss bce

Rerunning the same command resumes the search in ``--directory/--project-name``. At the end
it prints the best trials and writes ``best_hyperparameters.json`` and ``best_model.keras``
into the project folder. ``--help`` lists every flag; ``siamese-cd tune`` is the same command.
The logic is in `siamese_cd.tuning.search`.
"""

import os
import sys

# Before TensorFlow is imported (through siamese_cd): keep its C++ start-up chatter quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from siamese_cd.tuning.search import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
