#!/usr/bin/env python3
"""Sign a Sigil request with a possession proof, independently of Sigil's Rust code.

Usage: sigil_proof.py CREDENTIAL_BUNDLE OPERATION < request.json > signed.json

CREDENTIAL_BUNDLE is a PEM bundle as Sigil writes one (`Credential::to_pem_bundle`,
e.g. `admin.cred`): CERTIFICATE blocks, leaf first, and the leaf's PKCS#8
`PRIVATE KEY`. Only classical ECDSA P-256 credentials are handled (a hybrid
credential would also need an ML-DSA `alt_signature`). OPERATION is the endpoint's
subject, e.g. `sigil.issuer.v1.issue`. The request comes on stdin as any JSON object;
it goes to stdout with a `proof` member set.

What is signed (docs/events.md, crates/contracts/src/auth.rs):
    "sigil-proof-v1" NUL operation NUL signed_at NUL nonce NUL digest
where digest = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the
request object without its top-level "proof". Nothing here imitates serde: the body
is written by Python's json module, in its own key order and spacing, with whatever
optional fields the caller left out still left out.

The digest is also written to stderr (`digest <hex>`), for diagnostics.

Needs: cryptography (pyca) and rfc8785 (`pip install cryptography rfc8785`).
"""

import base64
import hashlib
import json
import os
import re
import sys
from datetime import datetime, timezone

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PROOF_CONTEXT = "sigil-proof-v1"
PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


def load_credential(path):
    """The chain (leaf first) as PEM strings, and the leaf's P-256 private key."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    certs, keys = [], []
    for block in PEM_BLOCK.finditer(text):
        label, pem = block.group(1), block.group(0).encode("ascii")
        if label == "CERTIFICATE":
            certs.append(x509.load_pem_x509_certificate(pem))
        elif label == "PRIVATE KEY":
            keys.append(serialization.load_pem_private_key(pem, password=None))
        else:
            sys.exit(f"{path}: unexpected PEM block {label!r}")
    if not certs or len(keys) != 1:
        sys.exit(f"{path}: need certificates and exactly one PRIVATE KEY")
    key = keys[0]
    if not (
        isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, ec.SECP256R1)
    ):
        sys.exit(f"{path}: only ECDSA P-256 credentials are supported")
    # The key must be the leaf's, or the proof could never verify.
    if key.public_key() != certs[0].public_key():
        sys.exit(f"{path}: the private key does not belong to the first certificate")
    chain_pem = [
        c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs
    ]
    return chain_pem, key


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    bundle, operation = sys.argv[1], sys.argv[2]
    chain_pem, key = load_credential(bundle)

    request = json.load(sys.stdin)
    if not isinstance(request, dict):
        sys.exit("the request must be a JSON object")
    request.pop("proof", None)  # whatever was there is replaced, and never signed

    # Fresh single-use nonce (16 random bytes, base64url without padding: 22
    # characters) and the signing time in UTC to the second.
    nonce = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
    signed_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    # digest = hex SHA-256 of the RFC 8785 form of the request without "proof".
    digest = hashlib.sha256(rfc8785.dumps(request)).hexdigest()
    print(f"digest {digest}", file=sys.stderr)

    message = "\0".join([PROOF_CONTEXT, operation, signed_at, nonce, digest])
    # ECDSA P-256 with SHA-256; pyca returns the DER (X9.62 Ecdsa-Sig-Value) form.
    signature = key.sign(message.encode("utf-8"), ec.ECDSA(hashes.SHA256()))

    # `Proof` is internally tagged (`"type": "possession"`) with the
    # `PossessionProof` fields beside the tag; their order does not matter.
    proof = {
        "signature": base64.b64encode(signature).decode("ascii"),
        "nonce": nonce,
        "signed_at": signed_at,
        "chain_pem": chain_pem,
        "type": "possession",
    }
    # Proof first (Rust declares it last), then the caller's members in the order
    # given; indented, unlike serde's compact output.
    json.dump({"proof": proof, **request}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
