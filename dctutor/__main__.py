"""``python -m dctutor train|probe ...`` (see :mod:`dctutor.cli`)."""
import sys

from .cli import main

sys.exit(main())
