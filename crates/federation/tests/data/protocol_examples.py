#!/usr/bin/env python3
"""Generates the worked examples in docs/federation.md with an independent implementation (Python `cryptography`,
JCS by json.dumps(sort_keys) — equivalent for these ASCII keys, integer numbers and strings).
tests/protocol_doc.rs then checks the examples in docs/federation.md with the Rust code: the document cannot
drift from the implementation, and two implementations agree.

The keys are derived from public strings: they are examples, never to be used for a real network."""
import base64, hashlib, json
from datetime import datetime, timezone
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def key(label):
    sk = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % b64u(pk)
    return sk, b64u(pk), b64u(hashlib.sha256(jwk.encode()).digest())
def jcs(v): return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

anchor, anchor_pub, anchor_kid = key("caravan example anchor")
a, a_pub, a_kid = key("caravan example hospital-a")
c, c_pub, c_kid = key("caravan example center-c")

def member(node, name, level, country, url, pub, kid, types):
    return {"node_id": node, "display_name": name, "level": level, "country": country, "base_url": url,
            "keys": [{"kid": kid, "public_key": pub, "status": "active",
                      "not_before": "2026-12-01T00:00:00Z", "not_after": None}],
            "message_types": types, "valid_from": "2026-12-01T00:00:00Z", "valid_until": None}

directory = {
    "network": "caravan-example", "serial": 42,
    "issued_at": "2026-12-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
    "anchors": [anchor_kid],
    "members": [
        member("hospital-a.fr", "Hôpital A", "hospital", "FR", "https://a.example", a_pub, a_kid,
               ["consult.packet", "consult.message", "consult.status"]),
        member("center-c.es", "Centro Nacional C", "national_center", "ES", "https://center-c.example", c_pub, c_kid,
               ["consult.report", "consult.message", "consult.invite", "consult.status", "catalogue.update"]),
    ],
}
directory["signatures"] = [{"kid": anchor_kid, "alg": "ed25519", "sig": b64u(anchor.sign(jcs(directory)))}]

envelope = {"v": 1, "id": "0193a6b2-7c3e-7a51-9b2f-3f1c2d4e5a6b", "from": "hospital-a.fr", "to": "center-c.es",
            "type": "consult.packet", "created": "2026-12-05T10:00:00.000Z",
            "body": {"case": "c-7f3a", "specialty": "cardiology", "question": "Second opinion on the ECG attached",
                     "patient": {"pseudonym": "p-91c2", "sex": "female", "age_years": 58}}}
envelope_canonical = jcs(envelope)
envelope["signature"] = {"alg": "ed25519", "kid": a_kid, "sig": b64u(a.sign(envelope_canonical))}
body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

created = int(datetime(2026, 12, 5, 10, 0, 1, tzinfo=timezone.utc).timestamp())
digest = "sha-256=:%s:" % base64.b64encode(hashlib.sha256(body).digest()).decode()
params = '("@method" "@target-uri" "@authority" "content-digest");created=%d;expires=%d;nonce="Xk3sV9qL2mN8pR4tW6yZ1a";alg="ed25519";keyid="%s"' % (created, created + 60, a_kid)
base = "\n".join([
    '"@method": POST',
    '"@target-uri": https://center-c.example/federation/v1/inbox',
    '"@authority": center-c.example',
    '"content-digest": ' + digest,
    '"@signature-params": ' + params,
])
sig = base64.b64encode(a.sign(base.encode())).decode()

print("ANCHOR PUBLIC KEY", anchor_pub)
print("--- directory"); print(json.dumps(directory, indent=2, ensure_ascii=False))
print("--- envelope canonical"); print(envelope_canonical.decode())
print("--- envelope"); print(json.dumps(envelope, indent=2, ensure_ascii=False))
print("--- body (compact, as sent)"); print(body.decode())
print("--- request")
print("POST /federation/v1/inbox HTTP/1.1\nHost: center-c.example\nContent-Type: application/json")
print("Content-Digest: " + digest)
print("Signature-Input: caravan=" + params)
print("Signature: caravan=:%s:" % sig)
print("--- base"); print(base)
