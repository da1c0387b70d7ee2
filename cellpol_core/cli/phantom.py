"""`cellpol phantom`."""


def register(sub):
    p = sub.add_parser("phantom", help="(not yet available)")
    p.set_defaults(func=lambda args: 1)
