//! Key material: the repository key K, the keyring it unseals, and the key slots that wrap K.
//! This module is the only holder of plaintext key material; everything it hands out zeroizes
//! on drop.

mod hsm;
mod keyfile;
mod keyring;
mod kit;
mod reader;
mod recovery;
mod slots;
mod write_only;

pub use hsm::{HsmConfig, HsmSession};
pub use keyfile::KeyFile;
pub use keyring::Keyring;
pub use kit::WriteKit;
#[cfg(feature = "fuzzing")]
pub use kit::fuzz_kit_decode;
pub use reader::{ReaderSealer, opening_key, reader_open_key, reader_public};
pub use recovery::RecoveryCode;
pub use slots::{NewSlotSecret, OpenSecret, OpenedSlot, create_slot, open_slot, reseal_slot, slot_info};
pub use write_only::{create_write_only_slot, open_write_only_slot, reissue_kit};

use crate::crypto::{Key32, context, derive};
use crate::names::Dir;

/// What a repository is, as only holders of its K_id can say: the hash of K_id and the
/// repository id ([`Keyring::identity`]). Every slot's wrapped secret carries it, authenticated
/// by the slot's own secret, so a slot opens only a keyring with the K_id it was made for;
/// clients pin it in their cache.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RepoIdentity(pub [u8; 32]);

impl RepoIdentity {
    /// Lower-case hex, as pinned in the cache.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for RepoIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoIdentity({}..)", hex::encode(self.0.get(..4).unwrap_or_default()))
    }
}

/// Object name of the keyring that K opens: `keyring/<first 16 bytes of derive(K), hex>`.
/// Deriving the name from K lets a slot find its keyring without storing the name in clear.
pub fn keyring_name(k: &Key32) -> String {
    let d = derive(context::KEYRING_NAME, k.expose());
    Dir::Keyring.join(&hex::encode(d.expose().get(..16).unwrap_or_default()))
}

/// The key that seals the keyring.
pub fn keyring_seal_key(k: &Key32) -> Key32 {
    derive(context::KEYRING_SEAL, k.expose())
}
