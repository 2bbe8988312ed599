"""Micro-benchmark of ``SigV4Signer.sign``: µs per signature, best of several repeats, for
Chime's fast path (no query, no extra headers) and the general path (a query string, an
``X-Amz-Target`` header). In-process and CPU-bound: seconds, not minutes.

    python -m benchmarks.signing            # 100,000 signatures per repeat, 7 repeats
    python -m benchmarks.signing --quick    # 20,000 per repeat, 3 repeats
"""

from __future__ import annotations

import functools
import sys
import timeit
from typing import Any

from async_updater.aws.credentials import Credentials
from async_updater.aws.sigv4 import SigV4Signer
from benchmarks.common import bench_parser

_BODY = b'{"UserSettings": {"Telephony": {"InboundCalling": true, "OutboundCalling": false}}}'
_PATH = "/accounts/a1/users/u123/settings"
_AT = 1_700_000_000.0


def cases() -> dict[str, tuple[SigV4Signer, dict[str, Any]]]:
    chime = SigV4Signer(host="127.0.0.1:8080", region="us-east-1", service="chime")
    cognito = SigV4Signer(host="127.0.0.1:8080", region="us-east-1", service="cognito-idp")
    plain = Credentials("AKIDEXAMPLE", "secret")
    session = Credentials("AKIDEXAMPLE", "secret", "token" * 40)
    target = (("X-Amz-Target", "AWSCognitoIdentityProviderService.AdminUpdateUserAttributes"),)
    return {
        "fast path (Chime PUT)": (chime, {"credentials": plain}),
        "fast path, session token": (chime, {"credentials": session}),
        "general: X-Amz-Target header": (cognito, {"credentials": plain, "headers": target}),
        "general: query string": (chime, {"credentials": plain, "query": "b=2&a=1%20x"}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("signing", __doc__, "fewer signatures, fewer repeats")
    args = parser.parse_args(argv)
    number, repeat = (20_000, 3) if args.quick else (100_000, 7)
    for label, (signer, kw) in cases().items():
        sign = functools.partial(
            signer.sign, "PUT", _PATH, _BODY, "application/json", now=_AT, **kw
        )
        best = min(timeit.repeat(sign, number=number, repeat=repeat)) / number
        print(f"{label:32s} {best * 1e6:6.2f} µs/signature")
    return 0


if __name__ == "__main__":
    sys.exit(main())
