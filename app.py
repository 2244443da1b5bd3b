"""Entry point of the Newleaf app (locally and on a Hugging Face Space). The UI lands with the app issue;
until then this runs the command line."""
import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["train", "--preset", "micro", "--max-time", "180", "--out", "runs/quickstart"]))
