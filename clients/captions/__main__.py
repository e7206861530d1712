"""`python -m dictated.clients.captions`: the dictated-captions command."""

import sys

from .cli import main

if __name__ == "__main__":  # importing this module (e.g. to check its imports) runs nothing
    sys.exit(main())
