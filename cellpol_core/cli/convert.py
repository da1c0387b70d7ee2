"""`cellpol convert`."""


def register(sub):
    p = sub.add_parser("convert", help="(not yet available)")
    p.set_defaults(func=lambda args: 1)
