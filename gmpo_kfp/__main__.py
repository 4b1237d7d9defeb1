import sys

from gmpo_kfp.cli import main

sys.exit(main())
