"""`cellpol predict`."""


def register(sub):
    p = sub.add_parser("predict", help="(not yet available)")
    p.set_defaults(func=lambda args: 1)
