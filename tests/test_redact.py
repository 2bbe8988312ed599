"""Redactor: credentials, signatures and Authorization echoes out of server text, plain values."""

from __future__ import annotations

from urllib.parse import quote

from async_updater.aws.credentials import Credentials
from async_updater.aws.redact import REDACTED, Redactor
from async_updater.aws.sigv4 import SigV4Signer
from async_updater.transport.base import Response

AK = "AKIDREDACTTEST01"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzRedactSecret"
TOKEN = "FwoGZXIvYXdzEXAMPLE+RedactToken/7b1e93c4d2aa0f=="
OLD_TOKEN = "IQoJb3JpZ2luX2VjEOLD+RotatedToken/99aa00bb=="
SIGNATURE = "a" * 32 + "0123456789abcdef" * 2


def redactor(*credentials: Credentials) -> Redactor:
    r = Redactor()
    for c in credentials or (Credentials(AK, SECRET, TOKEN),):
        r.remember(c)
    return r


def test_token_echoed_in_a_canonical_request_is_redacted() -> None:
    message = (
        "The Canonical String for this request should have been 'PUT /accounts/a/users/u "
        f"content-type:application/json host:h x-amz-date:20260101T000000Z "
        f"x-amz-security-token:{TOKEN} content-type;host;x-amz-date;x-amz-security-token'"
    )
    out = redactor().redact(message)
    assert TOKEN not in out
    assert f"x-amz-security-token:{REDACTED} content-type;host" in out
    assert out.startswith("The Canonical String for this request should have been 'PUT /acc")


def test_secret_key_in_an_error_code_is_redacted() -> None:
    response = Response(403, "rid-1", f"Bad{SECRET}Code", "denied")
    out = redactor().response(response, {})
    assert out == Response(403, "rid-1", f"Bad{REDACTED}Code", "denied")


def test_token_in_a_request_id_is_redacted() -> None:
    out = redactor().response(Response(500, f"rid {TOKEN}", "X", "m"), {})
    assert out.request_id == f"rid {REDACTED}"


def test_signature_of_the_request_is_redacted_even_without_its_name() -> None:
    headers = SigV4Signer(host="h", region="us-east-1", service="chime").sign(
        "PUT", "/x", b"{}", "application/json", Credentials(AK, SECRET, TOKEN), now=0
    )
    signature = headers["Authorization"].rpartition("Signature=")[2]
    message = f"The signature you provided: {signature}; expected another"
    out = redactor().response(Response(403, "rid", "InvalidSignatureException", message), headers)
    assert signature not in out.message
    assert out.message == f"The signature you provided: {REDACTED}; expected another"


def test_unremembered_authorization_signature_and_credential_echoes_are_redacted() -> None:
    r = Redactor()  # remembers nothing: the patterns alone must do
    echo = (
        "Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256 "
        f"Credential=AKIDUNKNOWN/20260101/us-east-1/chime/aws4_request, Signature={SIGNATURE}"
    )
    assert r.redact(echo) == f"Authorization header requires 'Signature' parameter. {REDACTED}"
    query = (
        f"X-Amz-Credential=AKIDUNKNOWN%2F20260101&X-Amz-Signature={SIGNATURE}"
        f"&X-Amz-Security-Token={OLD_TOKEN}&x=1"
    )
    assert r.redact(query) == (
        f"X-Amz-Credential={REDACTED}&X-Amz-{REDACTED}&X-Amz-Security-Token={REDACTED}&x=1"
    )
    assert r.redact(f"x-amz-security-token:{OLD_TOKEN}\nhost:h") == (
        f"x-amz-security-token:{REDACTED}\nhost:h"
    )


def test_a_rotated_credentials_old_token_stays_redacted() -> None:
    r = redactor(Credentials(AK, SECRET, OLD_TOKEN), Credentials(AK, SECRET, TOKEN))
    out = r.redact(f"old {OLD_TOKEN} new {TOKEN} key {SECRET}")
    assert out == f"old {REDACTED} new {REDACTED} key {REDACTED}"


def test_only_the_last_credential_sets_are_kept() -> None:
    r = Redactor(keep=2)
    tokens = [f"Token{n:04d}MarkerLongEnough" for n in range(3)]
    for token in tokens:
        r.remember(Credentials(AK, SECRET, token))
    assert r.redact(" ".join(tokens)) == " ".join([tokens[0], REDACTED, REDACTED])


def test_access_key_id_and_percent_encoded_token_are_redacted() -> None:
    out = redactor().redact(f"key {AK} token {quote(TOKEN, safe='')}&next")
    assert out == f"key {REDACTED} token {REDACTED}&next"


def test_a_message_cut_short_inside_a_token_loses_the_piece() -> None:
    cut = f"expected 'x-amz-date:20260101T000000Z {TOKEN[:20]}..."
    assert redactor().redact(cut) == f"expected 'x-amz-date:20260101T000000Z {REDACTED}..."


def test_normal_messages_are_untouched() -> None:
    r = redactor(Credentials("AKID0", "secret", None), Credentials(AK, SECRET, TOKEN))
    for message in (
        "Rate exceeded",
        "The security token included in the request is invalid.",
        "The request signature we calculated does not match the signature you provided.",
        "User is not authorized to perform this action; secret settings unchanged",
        "no such user: AKID0 u1",
        "",
    ):
        assert r.redact(message) == message
    response = Response(404, "rid-7", "NotFoundException", "no such user")
    assert r.response(response, {"Authorization": "AWS4-HMAC-SHA256 Signature=abc"}) == response
