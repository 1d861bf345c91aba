"""`emtwin keys DIR`: create CurveZMQ key pairs for `emtwin serve --keys DIR`."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keys",
        help="create CurveZMQ keys for an authenticated, encrypted `emtwin serve`",
        description="Write DIR/server.key(_secret), one pair per client and DIR/authorized/ "
        "(the client public keys the server accepts).",
    )
    p.add_argument("dir", metavar="DIR", help="folder to write the keys into")
    p.add_argument("--client", action="append", default=None, metavar="NAME",
                   help="client key pair name; repeat for several (default: client)")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from drivers.remote.keys import generate_keys

    clients = tuple(args.client or ("client",))
    try:
        paths = generate_keys(args.dir, clients=clients, force=args.force)
    except FileExistsError as exc:
        from agent.cli import UsageError

        raise UsageError(str(exc)) from None
    print(f"server key pair: {paths['server']} (keep the secret on the instrument PC)")
    for name in clients:
        print(f"client key pair: {paths[name]} (copy to the client, with server.key)")
    print(f"authorised client keys: {paths['authorized']}/*.key")
    print(f"serve:   emtwin serve --keys {args.dir} --bind tcp://0.0.0.0:5555")
    print(f"connect: RemoteMicroscope('tcp://HOST:5555', client_keys='{args.dir}')")
    return 0
