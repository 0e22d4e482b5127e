//! Every sealed thing a repository holds, with exactly what a full key opens it as (kind, the
//! name its associated data binds, the bytes), for the tests that then try other keys on each:
//! a wrong key must be the only reason an attempt fails. Tests only (feature `testing`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::error::Result;
use crate::format::envelope::{self, ObjectKind};
use crate::format::names::Dir;
use crate::format::pack;
use crate::keys;

use super::Repository;

/// One sealed envelope and what it opens as.
#[derive(Debug, Clone)]
pub struct SealedThing {
    /// The object (and for a blob, which one).
    pub what: String,
    /// Its kind.
    pub kind: ObjectKind,
    /// The name its associated data binds.
    pub ad_name: Vec<u8>,
    /// The envelope.
    pub sealed: Vec<u8>,
}

impl Repository {
    /// Every envelope in the repository (objects, and each pack's blobs, header and locator),
    /// each checked to open with this repository's keys. Key slots are not sealed.
    pub fn sealed_inventory_for_tests(&self) -> Result<Vec<SealedThing>> {
        let mut out = Vec::new();
        for name in self.storage.list("")? {
            let bytes = self.storage.get(&name)?;
            let kind = match Dir::ALL.into_iter().find(|d| name.starts_with(d.prefix())) {
                Some(Dir::Keys) => continue,
                Some(Dir::Keyring) => {
                    let seal_key = keys::keyring_seal_key(self.master()?);
                    if envelope::open(&bytes, ObjectKind::Keyring, name.as_bytes(), &name, |_| Ok(&seal_key)).is_ok() {
                        out.push(SealedThing {
                            what: name.clone(),
                            kind: ObjectKind::Keyring,
                            ad_name: name.clone().into_bytes(),
                            sealed: bytes,
                        });
                    }
                    continue;
                }
                Some(Dir::Data) => {
                    let mut parts = Vec::new();
                    let opened = pack::open(&bytes, &name, |kind, ad_name, sealed| {
                        parts.push((kind, ad_name.to_vec(), sealed.to_vec()));
                        envelope::open_sealed(sealed, kind, ad_name, &name, |to| {
                            self.keyring()?.open_pack_key(to, &name)
                        })
                    })?;
                    for (kind, ad_name, sealed) in parts {
                        out.push(SealedThing { what: format!("{name} ({kind:?})"), kind, ad_name, sealed });
                    }
                    for b in &opened.header.blobs {
                        let at = b.offset as usize;
                        let sealed = bytes.get(at..at + b.length as usize).expect("a blob inside its pack").to_vec();
                        let loc = crate::index::BlobLocation {
                            pack: opened.id,
                            kind: b.kind,
                            offset: b.offset,
                            length: b.length,
                            raw_length: b.raw_length,
                        };
                        self.open_blob(&b.id, &loc, &name, &sealed)?;
                        out.push(SealedThing {
                            what: format!("{name} (blob {})", b.id),
                            kind: b.kind.object_kind(),
                            ad_name: b.id.as_bytes().to_vec(),
                            sealed,
                        });
                    }
                    continue;
                }
                Some(Dir::Index) => ObjectKind::IndexSegment,
                Some(Dir::Snapshots) => ObjectKind::Snapshot,
                Some(Dir::Locks) => ObjectKind::Lock,
                Some(Dir::Audit) => ObjectKind::Audit,
                Some(Dir::Marks) => ObjectKind::PruneMarks,
                None if name == crate::format::config::CONFIG_NAME => ObjectKind::Config,
                None => continue,
            };
            envelope::open_sealed(&bytes, kind, name.as_bytes(), &name, |to| self.keyring()?.open_pack_key(to, &name))?;
            out.push(SealedThing { what: name.clone(), kind, ad_name: name.into_bytes(), sealed: bytes });
        }
        Ok(out)
    }
}
