"""`cellpol evaluate`."""


def register(sub):
    p = sub.add_parser("evaluate", help="(not yet available)")
    p.set_defaults(func=lambda args: 1)
