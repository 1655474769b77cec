import sys

from artok.cli.main import main

sys.exit(main())
