"""`cellpol info`."""


def register(sub):
    p = sub.add_parser("info", help="(not yet available)")
    p.set_defaults(func=lambda args: 1)
