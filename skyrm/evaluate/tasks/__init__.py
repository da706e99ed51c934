"""One module per benchmark, each a ``Task`` (``skyrm.evaluate.task``); ``skyrm.evaluate.benchmarks`` loads them by name."""
