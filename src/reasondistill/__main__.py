"""``python -m reasondistill`` (and ``accelerate launch -m reasondistill``)."""

from reasondistill.cli import main

if __name__ == "__main__":
    main()
