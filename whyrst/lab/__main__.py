import sys

from whyrst.lab import main

sys.exit(main())
