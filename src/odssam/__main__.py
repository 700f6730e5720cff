import sys

from odssam.cli.main import main

sys.exit(main())
