"""EIP-4361 (Sign-In with Ethereum) messages, signed as EIP-191 personal messages.

Pure: no ORM. The server writes the message; the wallet signs its exact text. (The ``siwe``
package pins web3 < 8 and eth-account < 0.14, so the small grammar we need lives here.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address, to_checksum_address

STATEMENT = "Sign in to the ccp clearing house."

_PATTERN = re.compile(
    r"\A(?P<domain>[^\s]+) wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9a-fA-F]{40})\n"
    r"\n"
    r"(?P<statement>[^\n]*)\n"
    r"\n"
    r"URI: (?P<uri>[^\s]+)\n"
    r"Version: (?P<version>1)\n"
    r"Chain ID: (?P<chain_id>[0-9]+)\n"
    r"Nonce: (?P<nonce>[A-Za-z0-9]{8,})\n"
    r"Issued At: (?P<issued_at>[0-9T:\-\.]+Z)\n"
    r"Expiration Time: (?P<expiration_time>[0-9T:\-\.]+Z)\Z"
)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class SignInMessage:
    domain: str
    address: str  # EIP-55 checksummed, as the standard requires
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime
    statement: str = STATEMENT

    def text(self) -> str:
        return (
            f"{self.domain} wants you to sign in with your Ethereum account:\n"
            f"{to_checksum_address(self.address)}\n\n"
            f"{self.statement}\n\n"
            f"URI: {self.uri}\n"
            f"Version: 1\n"
            f"Chain ID: {self.chain_id}\n"
            f"Nonce: {self.nonce}\n"
            f"Issued At: {_iso(self.issued_at)}\n"
            f"Expiration Time: {_iso(self.expiration_time)}"
        )

    @classmethod
    def parse(cls, text: str) -> SignInMessage:
        """Read a message in the layout above; ValueError if it is not one."""
        match = _PATTERN.match(text)
        if not match:
            raise ValueError("not an EIP-4361 sign-in message in the expected layout")
        if not is_checksum_address(match["address"]):
            raise ValueError("the address in the message is not EIP-55 checksummed")
        return cls(
            domain=match["domain"], address=match["address"], uri=match["uri"], chain_id=int(match["chain_id"]),
            nonce=match["nonce"], issued_at=_parse_iso(match["issued_at"]),
            expiration_time=_parse_iso(match["expiration_time"]), statement=match["statement"],
        )


def signer_recover(message: str, signature: str) -> str:
    """The lower-case address whose key made an EIP-191 ``signature`` of ``message``; ValueError if malformed."""
    try:
        signature_bytes = bytes.fromhex(signature.removeprefix("0x"))
        if len(signature_bytes) != 65:
            raise ValueError("a signature is 65 bytes")
        return Account.recover_message(encode_defunct(text=message), signature=signature_bytes).lower()
    except Exception as exc:  # eth_keys raises several types for a bad signature
        raise ValueError(f"signature cannot be verified: {exc}") from exc
