"""Loaded by worker subprocesses in tests (PYTHONPATH): makes training slow, so a test can kill or time it out mid-run."""
import os
import time

delay = float(os.environ.get("VOLTAXE_TEST_TRAINING_DELAY", "0"))
if delay:
    import axon.detector.training

    _train = axon.detector.training.train

    def slow_train(*args, **kwargs):
        time.sleep(delay)
        return _train(*args, **kwargs)

    axon.detector.training.train = slow_train
