"""A train step in its own process (the test SIGKILLs it mid-run, as a preemption does).

python -m tests.support.preempt_worker JSON_KWARGS
"""

import json
import sys

from gmpo_kfp.workflow import stages

if __name__ == "__main__":
    stages.train_stage(**json.loads(sys.argv[1]))
