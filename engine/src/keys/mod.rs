//! Key material: the repository key K, the keyring it unseals, and the key slots that wrap K.
//! This module is the only holder of plaintext key material; everything it hands out zeroizes
//! on drop.

#[cfg(feature = "repository")]
mod hsm;
mod keyring;
mod recovery;
#[cfg(feature = "repository")]
mod slots;

#[cfg(feature = "repository")]
pub use hsm::{HsmConfig, HsmSession};
pub use keyring::Keyring;
pub use recovery::RecoveryCode;
#[cfg(feature = "repository")]
pub use slots::{NewSlotSecret, OpenSecret, create_slot, open_slot, reseal_slot, slot_info};

use crate::crypto::{Key32, context, derive};

/// Object name of the keyring that K opens: `keyring/<first 16 bytes of derive(K), hex>`.
/// Deriving the name from K lets a slot find its keyring without storing the name in clear.
pub fn keyring_name(k: &Key32) -> String {
    let d = derive(context::KEYRING_NAME, k.expose());
    format!("keyring/{}", hex::encode(d.expose().get(..16).unwrap_or_default()))
}

/// The key that seals the keyring.
pub fn keyring_seal_key(k: &Key32) -> Key32 {
    derive(context::KEYRING_SEAL, k.expose())
}
