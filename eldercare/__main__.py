"""`python -m eldercare` runs the same command line as the `eldercare` command."""

import sys

from eldercare.cli import main

sys.exit(main())
