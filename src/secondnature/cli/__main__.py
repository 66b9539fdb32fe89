"""`python -m secondnature.cli ...`, the same as the `secondnature` console script."""
import sys

from . import main

sys.exit(main())
