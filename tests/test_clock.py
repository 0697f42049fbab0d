"""The suite's pinned clock is one clock: every process a test starts reads the same "now" (issue 24)."""
import os
import subprocess
import sys
import time

from tests.conftest import REPO

# Import the test settings (which start the pinned clock), wait as a gunicorn worker importing
# scikit-learn on a loaded machine does, and only then read the time for the first time.
LATE_READER = "import time, voltaxe.settings_test; time.sleep(2); print(repr(time.time()))"


def test_a_process_that_reads_the_clock_late_still_reads_the_suites_now():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = time.time()
    child = subprocess.run([sys.executable, "-c", LATE_READER], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=60, check=True)
    after = time.time()
    reported = float(child.stdout.strip().splitlines()[-1])
    # The child's clock ran through its two seconds of sleep: it is not two seconds behind ours.
    assert before + 2 <= reported + 0.05, (reported - before, "seconds after the test's clock at the start")
    assert reported <= after + 0.05, (reported - after, "seconds ahead of the test's clock at the end")
