//! Account addresses and their checksummed text form.

use super::{Hash, PublicKey};
use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

const HRP: Hrp = Hrp::parse_unchecked("aergo");

/// 20 bytes of `blake3("aergo/address" ‖ public key)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 20]);

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("address {text:?} is not valid bech32m (mistyped or truncated?): {reason}")]
    Encoding { text: String, reason: String },
    #[error("address {text:?} has prefix {found:?}; AERGO addresses start with \"aergo1\"")]
    Prefix { text: String, found: String },
    #[error("address {text:?} holds {len} bytes, an address is 20")]
    Length { text: String, len: usize },
}

impl Address {
    pub fn from_public_key(key: &PublicKey) -> Address {
        let hash = Hash::domain("aergo/address", &key.0);
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&hash.0[..20]);
        Address(bytes)
    }

    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let (hrp, data) = bech32::decode(text)
            .map_err(|e| AddressError::Encoding { text: text.to_string(), reason: e.to_string() })?;
        if hrp != HRP {
            return Err(AddressError::Prefix { text: text.to_string(), found: hrp.to_string() });
        }
        // bech32::decode accepts both bech32 and bech32m; only the m variant is ours.
        let canonical = bech32::encode::<Bech32m>(HRP, &data).unwrap_or_default();
        if !canonical.eq_ignore_ascii_case(text) {
            return Err(AddressError::Encoding {
                text: text.to_string(),
                reason: "checksum is not bech32m".to_string(),
            });
        }
        let bytes: [u8; 20] = data
            .clone()
            .try_into()
            .map_err(|_| AddressError::Length { text: text.to_string(), len: data.len() })?;
        Ok(Address(bytes))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = bech32::encode::<Bech32m>(HRP, &self.0).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        Address::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The contract address of a deploy: from the deployer and its nonce, like an account address
/// (20 bytes of a domain-separated blake3).
pub fn contract_address(deployer: &Address, nonce: u64) -> Address {
    let mut h = blake3::Hasher::new();
    h.update(b"aergo/contract\0");
    h.update(&deployer.0);
    h.update(&nonce.to_le_bytes());
    let mut a = [0u8; 20];
    a.copy_from_slice(&h.finalize().as_bytes()[..20]);
    Address(a)
}
