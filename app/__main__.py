import sys


def main(argv=None):
    from .main import main as _main

    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
