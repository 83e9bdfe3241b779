"""A real S3-compatible server on loopback for tests and benchmarks: moto's standalone server.

The parent side (``S3ServerProcess``) needs nothing but the standard library; the child
(``python -m tools.s3server``) needs ``moto[s3]``, ``flask`` and ``flask-cors``
(the ``dev`` extra; ``make test`` installs them)::

    with S3ServerProcess(enforce_iam=True) as s3:
        s3.endpoint_url                       # http://127.0.0.1:PORT (path-style addressing)
        s3.admin.environ()                    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY ...
        s3.read_only.environ()                # a user allowed s3:Get* and s3:List* only

The server runs in a process of its own, so it does not share the caller's GIL. With
``enforce_iam`` every request must be signed (SigV4) by a known access key, and IAM policies
are evaluated: a wrong secret is ``SignatureDoesNotMatch``, an unknown key
``InvalidAccessKeyId``, a read-only user's ``PutObject`` is ``AccessDenied``. The users are
made by the child before it starts enforcing; their keys are moto's own, for this server only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

from .launcher import STOP_TIMEOUT_S, ServerProcess

__all__ = ["S3Key", "S3ServerError", "S3ServerProcess"]

START_TIMEOUT_S: Final = 60.0
REGION: Final = "us-east-1"
READ_ONLY_ACTIONS: Final = ("s3:Get*", "s3:List*")
_ROOT: Final = Path(__file__).resolve().parents[1]  # the checkout (tools/ is in it)


class S3ServerError(RuntimeError):
    """The S3 server is not installed, or did not start."""


@dataclass(frozen=True, slots=True)
class S3Key:
    """An access key of the test server (not a secret anywhere else)."""

    access_key_id: str
    secret_access_key: str

    def environ(self, region: str = REGION) -> dict[str, str]:
        """The standard AWS variables for this key (the chain the S3 sink reads)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": region,
        }


class S3ServerProcess(ServerProcess[dict[str, Any]]):
    """One moto server child process on loopback; ``port=0`` picks a free port."""

    what = "the S3 test server"
    error = S3ServerError
    prefix = "s3server-"
    stdin_pipe = True  # the child stops when the parent goes

    def __init__(
        self,
        *,
        enforce_iam: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        super().__init__(
            host=host, port=port, start_timeout_s=start_timeout_s, stop_timeout_s=STOP_TIMEOUT_S
        )
        self.enforce_iam = enforce_iam
        self.endpoint_url = ""
        self.admin = S3Key("test", "test")
        self.read_only = S3Key("test", "test")

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "tools.s3server", self.host, str(self.port)]
        return [*args, "--enforce-iam"] if self.enforce_iam else args

    def environ(self) -> dict[str, str]:
        # moto reads AWS_*/MOTO_* and TEST_SERVER_MODE variables; the child gets none of ours.
        # It runs in a temporary folder: the checkout's root on its path finds ``tools``.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        return env

    def ready(self, out: str) -> dict[str, Any] | None:
        for line in out.splitlines():
            if line.startswith("{"):
                found: dict[str, Any] = json.loads(line)
                return found
        return None

    def failure(self, state: str, out: str, err: str) -> str:
        output = err.strip()
        hint = ""
        if "No module named" in output:
            hint = " (install the dev extra: `make install`, it brings moto[s3] and flask)"
        return f"{self.what} {state}{hint}; its output:\n{output[-2000:] or '(none)'}"

    def start(self) -> Self:
        ready = self.launch()
        self.endpoint_url = ready["endpoint_url"]
        self.port = int(ready["port"])
        self.admin = S3Key(*ready["admin"])
        self.read_only = S3Key(*ready["read_only"])
        return self


# --- the child ----------------------------------------------------------------------------------


def _bootstrap_users(endpoint_url: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """An admin user and a read-only user with access keys, made through the server's own IAM
    API while it still accepts unsigned requests."""
    import botocore.session  # noqa: PLC0415 - only the child needs the server's dependencies

    iam: Any = botocore.session.get_session().create_client(
        "iam",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",  # noqa: S106 - moto accepts anything until enforcing
    )
    keys: list[tuple[str, str]] = []
    for user, actions in (("admin", ("s3:*",)), ("read-only", READ_ONLY_ACTIONS)):
        iam.create_user(UserName=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys.append((key["AccessKeyId"], key["SecretAccessKey"]))
    return keys[0], keys[1]


def _serve(host: str, port: int, *, enforce_iam: bool) -> None:
    from moto import settings  # noqa: PLC0415
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound = server.get_host_and_port()[1]
    endpoint_url = f"http://{host}:{bound}"
    admin, read_only = ("test", "test"), ("test", "test")
    if enforce_iam:
        admin, read_only = _bootstrap_users(endpoint_url)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on every request is authorized
    ready = {"endpoint_url": endpoint_url, "port": bound, "admin": admin, "read_only": read_only}
    print(json.dumps(ready), flush=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # leaves the blocking read below

    signal.signal(signal.SIGTERM, on_term)
    with contextlib.suppress(KeyboardInterrupt):
        while sys.stdin.buffer.read(1):  # the parent gone, stdin closes
            pass
    server.stop()


def main(argv: list[str]) -> int:
    host = argv[0] if argv else "127.0.0.1"
    port = int(argv[1]) if len(argv) > 1 else 0
    _serve(host, port, enforce_iam="--enforce-iam" in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
