"""`emtwin serve`: expose an instrument (the twin, the null backend or a vendor adapter) over ZeroMQ."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve an instrument over ZeroMQ for `emtwin run --driver tcp://HOST:PORT`",
        description="Serve one instrument to remote clients. Without --keys only loopback or ipc "
        "endpoints are allowed unless --insecure is given.",
    )
    p.add_argument("--driver", default="twin", help="twin | null | autoscript | tescan (default: twin)")
    p.add_argument("--scenario", default=None, help="twin scenario name or TOML path (default: default)")
    p.add_argument("--seed", type=int, default=None, help="twin seed (default: the scenario's seed)")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="control endpoint (default: tcp://127.0.0.1:5555)")
    p.add_argument("--stream", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                   help="frame stream endpoint, or 'none' (default: tcp://127.0.0.1:5556)")
    p.add_argument("--keys", default=None, metavar="DIR",
                   help="CurveZMQ key folder from `emtwin keys DIR`: require authorised clients")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback bind without keys (anyone on the network gets control)")
    p.add_argument("--lease-s", type=float, default=30.0,
                   help="seconds a client keeps control after its last command (default: 30)")
    p.add_argument("--host", default=None, help="vendor adapter: instrument host")
    p.add_argument("--port", type=int, default=None, help="vendor adapter: instrument port")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.connect import open_driver
    from drivers.remote import MicroscopeServer
    from drivers.remote.keys import load_server_keys
    from drivers.remote.server import check_exposure

    stream = None if args.stream.lower() == "none" else args.stream
    endpoints = [args.bind] + ([stream] if stream else [])
    if args.keys is not None:
        load_server_keys(args.keys)  # missing files: fail before the instrument is opened
    check_exposure(endpoints, secured=args.keys is not None, insecure=args.insecure)
    if args.insecure and args.keys is None:
        print(f"emtwin serve: WARNING: {', '.join(endpoints)} without authentication or encryption; "
              "anyone who can reach this port can drive the instrument", file=sys.stderr)
    options = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    driver = open_driver(args.driver, scenario=args.scenario, seed=args.seed, **options)
    try:
        server = MicroscopeServer(driver, control=args.bind, stream=stream, keys=args.keys,
                                  insecure=args.insecure, lease_s=args.lease_s, name=args.driver)
        server.start()
        try:
            print(f"emtwin serve: {args.driver} on {server.control_endpoint}"
                  f"{f', frames on {server.stream_endpoint}' if stream else ''}; CurveZMQ "
                  f"{'on' if args.keys else 'off'}; Ctrl-C stops", flush=True)
            server.serve_forever()
        finally:
            server.stop()
    finally:
        driver.close()
    print("emtwin serve: stopped", flush=True)
    return 0
