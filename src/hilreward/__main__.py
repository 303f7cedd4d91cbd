"""``python -m hilreward <command> ...`` (also ``accelerate launch -m hilreward train ...``): the console script."""

import sys

from .cli import main

sys.exit(main())
