"""Run every benchmark: `python -m bench`. Each prints `NAME: ours X, peer Y, ratio Z` lines."""
from bench import sampling, training

if __name__ == "__main__":
    training.main([])
    sampling.main([])
