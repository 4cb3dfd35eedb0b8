"""``python -m dctutor train|probe|transfer ...`` (see :mod:`dctutor.cli`)."""
import sys

from .cli import main

sys.exit(main())
