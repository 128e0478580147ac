"""``python -m siamese_cd.cli``: the same as the `siamese-cd` command."""

import sys

from siamese_cd.cli import main

sys.exit(main())
