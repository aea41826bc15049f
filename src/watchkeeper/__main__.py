"""``python -m watchkeeper`` is the ``watchkeeper`` command."""

from watchkeeper.cli.app import main

if __name__ == "__main__":
    main()
