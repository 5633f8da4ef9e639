"""``python -m encoderlab.train`` = ``encoderlab-train`` (the command lives in :mod:`encoderlab.cli.train`)."""

from encoderlab.cli.train import main

if __name__ == "__main__":
    main()
