"""Platform-certificate mode: the shop downloads, decrypts and verifies /v3/certificates, keeps
verifying through rotations, and accepts either key during the switch-over, in both directions.
"""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import select

from conftest import LiveServer, Shopper, wait_for
from storefront.extensions import db
from storefront.models import NotificationRecord
from storefront.sandbox.control import certificates_answer
from storefront.sandbox.models import SandboxApiCall, SandboxDelivery
from storefront.wechatpay import DecryptError, SignatureError, Verifier, aead
from storefront.wechatpay.certificates import CertificateStore, TokenBucket, parse_certificates
from storefront.wechatpay.client import json_body
from storefront.wechatpay.signing import sign_response


def _server(make_app, tmp_path, **config) -> LiveServer:
    return LiveServer(make_app(SANDBOX_NOTIFIER=True, **config))


@pytest.fixture
def cert_server(make_app, tmp_path):
    """The shop with no WeChat Pay public key at all: certificate mode, nothing else to trust."""
    server = _server(make_app, tmp_path, WECHATPAY_PUBLIC_KEY_FILE=str(tmp_path / "absent" / "pub_key.pem"))
    yield server
    server.stop()


def pay_once(shopper: Shopper) -> str:
    order = shopper.buy(product_id=3)
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    return payment["out_trade_no"]


def records(server: LiveServer) -> list[tuple[str | None, str]]:
    with server.app.app_context():
        return [(r.event_type, r.outcome) for r in db.session.scalars(select(NotificationRecord))]


def serials_used(server: LiveServer) -> tuple[list[str | None], list[str | None]]:
    """(Wechatpay-Serial of every answer, of every notification delivery), in order."""
    with server.app.app_context():
        answers = list(db.session.scalars(select(SandboxApiCall.response_serial).order_by(SandboxApiCall.id)))
        deliveries = list(db.session.scalars(select(SandboxDelivery.signed_serial).order_by(SandboxDelivery.id)))
    return answers, deliveries


def test_rotation_while_the_shop_takes_payments(cert_server):
    """Two rotations in the middle of a run of payments: not one verification failure."""
    app = cert_server.app
    shopper = Shopper(cert_server.url)
    gateway = app.extensions["wechatpay"]
    assert gateway.credentials.key_mode == "certificate" and gateway.credentials.public_key is None
    runner = app.test_cli_runner()
    paid = []
    for round_ in range(6):
        if round_ in (2, 4):
            result = runner.invoke(args=["sandbox-rotate-cert", "--overlap-hours", "1"])
            assert result.exit_code == 0 and "new platform certificate" in result.output, result.output
        paid.append(pay_once(shopper))
    # Every notification verified (duplicate: the page's active query applied it first).
    wait_for(lambda: len(records(cert_server)) == 6)
    wait_for(lambda: len(serials_used(cert_server)[1]) == 6)
    assert {r for r in records(cert_server)} <= {("TRANSACTION.SUCCESS", "applied"), ("TRANSACTION.SUCCESS", "duplicate")}
    answers, deliveries = serials_used(cert_server)
    platform = app.extensions["sandbox"].platform
    certificates = [c.serial for c in platform.certificates.all()]
    assert len(certificates) == 3
    pub = platform.merchant.public_key_id
    assert pub not in answers and pub not in deliveries  # certificate mode all along
    assert [s for s in dict.fromkeys(answers)] == certificates  # each certificate signed in turn
    assert set(deliveries) == set(certificates) and all(d is not None for d in deliveries)
    store = gateway.certificates
    assert store.downloads == 3 and store.refused_downloads == 0  # one download per new serial
    assert sorted(c.serial for c in store.certificates) == sorted(certificates)
    # The overlap ends on the simulator clock: old certificates are no longer listed; still no failure.
    assert requests.post(f"{cert_server.url}/sandbox/control/clock", json={"advance_seconds": 7200},
                         timeout=10).status_code == 200
    listed = requests.get(f"{cert_server.url}/sandbox/control/certificates", timeout=10).json()
    assert [c["listed"] for c in listed["certificates"]] == [False, False, True]
    pay_once(shopper)
    wait_for(lambda: len(records(cert_server)) == 7)
    assert "rejected" not in [o for _, o in records(cert_server)]
    # Cached on disk, as wechatpay_<SERIAL>.pem: a restarted shop trusts them without a download.
    cached = sorted(p.name for p in (cert_server.app.extensions["wechatpay"].certificates._cache_dir).glob("*.pem"))
    assert cached == sorted(f"wechatpay_{s}.pem" for s in certificates)


def test_certificate_mode_requests_name_no_key(cert_server):
    pay_once(Shopper(cert_server.url))
    with cert_server.app.app_context():
        calls = list(db.session.scalars(select(SandboxApiCall).order_by(SandboxApiCall.id)))
    assert calls[0].path == "/v3/pay/transactions/native" or calls[0].path == "/v3/certificates"
    assert any(c.path == "/v3/certificates" for c in calls)
    assert all(c.wechatpay_serial is None and c.auth_ok for c in calls)


@pytest.mark.parametrize("key_mode, notify_signing", [
    ("auto", "certificate"),  # the shop moved to the public key; notifications still come by certificate
    ("certificate", "public_key"),  # the shop still in certificate mode; WeChat Pay already notifies by key
    ("certificate", "switching"),  # during the switch-over notifications come signed either way
])
def test_switch_over_in_both_directions(make_app, tmp_path, key_mode, notify_signing):
    server = _server(make_app, tmp_path, WECHATPAY_KEY_MODE=key_mode, SANDBOX_NOTIFY_SIGNING=notify_signing)
    try:
        shopper = Shopper(server.url)
        rounds = 3 if notify_signing == "switching" else 1
        for _ in range(rounds):
            pay_once(shopper)
        wait_for(lambda: len(records(server)) == rounds)  # the notifications, after any active query
        wait_for(lambda: len(serials_used(server)[1]) == rounds)  # and the simulator's record of them
        with server.app.app_context():
            seen = [(r.outcome, r.reason) for r in db.session.scalars(select(NotificationRecord))]
        # duplicate: the page's active query was faster; either way the signature verified.
        assert seen and all(outcome in ("applied", "duplicate") for outcome, _ in seen), seen
        answers, deliveries = serials_used(server)
        pub = server.app.extensions["sandbox"].platform.merchant.public_key_id
        expected_answers = {pub} if key_mode == "auto" else {a for a in answers if a != pub}
        assert set(answers) == expected_answers  # answers follow the request's Wechatpay-Serial
        if notify_signing == "public_key":
            assert set(deliveries) == {pub}
        elif notify_signing == "certificate":
            assert pub not in deliveries
    finally:
        server.stop()


def test_answers_signed_either_way_by_configuration(make_app, tmp_path):
    """The simulator may pin answers to the certificate while the shop (public-key mode) names its key."""
    server = _server(make_app, tmp_path, SANDBOX_ANSWER_SIGNING="certificate")
    try:
        pay_once(Shopper(server.url))
        answers, _ = serials_used(server)
        pub = server.app.extensions["sandbox"].platform.merchant.public_key_id
        assert pub not in answers and None not in answers
    finally:
        server.stop()


# -- the certificates answer itself ------------------------------------------------------------------


@pytest.fixture
def platform(app):
    with app.app_context():
        yield app.extensions["sandbox"].platform


def _answer(platform):
    body = json_body(certificates_answer(platform)).encode()
    newest = platform.certificates.newest(platform.now())
    return sign_response(newest.private_key, newest.serial, body), body


def test_certificates_decrypt_then_verify(platform):
    headers, body = _answer(platform)
    found = parse_certificates(headers, body, platform.aes)
    assert [c.serial for c in found] == [platform.certificates.newest(platform.now()).serial]
    assert b"BEGIN CERTIFICATE" in found[0].pem


def test_certificates_answer_with_a_bad_signature_is_refused(platform):
    headers, body = _answer(platform)
    tampered = body.replace(b'"data"', b' "data"', 1)
    with pytest.raises(SignatureError):
        parse_certificates(headers, tampered, platform.aes)


def test_certificates_under_another_apiv3_key_do_not_decrypt(platform):
    headers, body = _answer(platform)
    with pytest.raises(DecryptError):
        parse_certificates(headers, body, aead.cipher("A" * 32))


def test_certificates_signed_by_a_key_not_in_the_answer_are_refused(platform):
    _headers, body = _answer(platform)
    headers = sign_response(platform.private_key, platform.merchant.public_key_id, body)  # the public key signed
    with pytest.raises(SignatureError):
        parse_certificates(headers, body, platform.aes)
    # ...unless that key is already trusted (a public-key-mode shop fetching certificates).
    trusted = Verifier({platform.merchant.public_key_id: platform.private_key.public_key()})
    assert parse_certificates(headers, body, platform.aes, trusted=trusted)


def test_unknown_serials_download_at_a_bounded_rate(platform):
    calls = []

    def download():
        calls.append(1)
        return _answer(platform)

    clock = [0.0]
    store = CertificateStore(platform.aes, download, burst=2, refill_seconds=60, clock=lambda: clock[0])
    for n in range(10):
        assert store.lookup(f"{n:040X}") is None  # forged serials
    assert len(calls) == 2 and store.refused_downloads == 8
    clock[0] += 60
    assert store.lookup(platform.certificates.newest(platform.now()).serial) is not None  # known by now
    assert store.lookup("ABCDEF") is None and len(calls) == 3
    assert store.lookup("PUB_KEY_ID_0000") is None and len(calls) == 3  # never a certificate


def test_token_bucket_refills():
    clock = [0.0]
    bucket = TokenBucket(1, 10, clock=lambda: clock[0])
    assert bucket.take() and not bucket.take()
    clock[0] += 10
    assert bucket.take()


def test_certificates_endpoint_over_http(live_server):
    from wechat_http import RawMerchant

    m = RawMerchant(live_server)
    answer = m.send("GET", "/v3/certificates", serial_header=None)  # verified by the newest certificate
    data = answer.json()["data"]
    assert answer.status_code == 200 and len(data) == 1
    entry = data[0]
    assert entry["encrypt_certificate"]["associated_data"] == "certificate"
    assert answer.headers["Wechatpay-Serial"] == entry["serial_no"]
    assert set(entry) == {"serial_no", "effective_time", "expire_time", "encrypt_certificate"}
    pub = m.send("GET", "/v3/certificates?algorithm_type=RSA")  # naming the public key: signed by it
    assert pub.headers["Wechatpay-Serial"] == m.credentials.public_key_id
    assert json.loads(pub.content)["data"][0]["serial_no"] == entry["serial_no"]
    bad = m.send("GET", "/v3/certificates?algorithm_type=DSA")
    assert bad.status_code == 400 and bad.json()["detail"]["field"] == "algorithm_type"
