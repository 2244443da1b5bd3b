"""Run every benchmark: `python -m bench` (about 15 minutes on a 2-core CPU; `--quick` skips the 2 x 3-minute
time-to-quality runs). Each prints `NAME: ours X, peer Y, ratio Z` lines; BENCHMARKS.md records them."""

import sys

from bench import hostile, responsiveness, sampling, time_to_quality, training

if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    training.main([])
    sampling.main([])
    responsiveness.main([])
    hostile.main([])
    if not quick:
        time_to_quality.main([])
