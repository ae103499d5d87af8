"""``python -m orchestrack``: the same as the ``orchestrack`` command."""

from orchestrack.cli import main

if __name__ == "__main__":
    main()
