import sys

from vsconf.cli import main

sys.exit(main())
