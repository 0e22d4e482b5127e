//! Spec: format-spec/SPEC.md#repository-tree
//!
//! The repository's object namespace: which directory holds each kind of object and how an
//! object's name is made from its id. Every name the engine writes, reads, lists or deletes
//! comes from here, so the layout of SPEC §3 is spelled in one place.

use crate::id::{ObjectId, PackId};

/// The name of the repository's config object.
pub const CONFIG: &str = "config";

/// A directory of objects of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// `keys/<slot id>`: key slots.
    Keys,
    /// `keyring/<name>`: sealed keyrings.
    Keyring,
    /// `data/<xx>/<pack id>`: packs.
    Data,
    /// `index/<segment id>`: index segments.
    Index,
    /// `snapshots/<snapshot id>`: snapshots.
    Snapshots,
    /// `locks/<id>`: locks.
    Locks,
    /// `audit/<seq>-<mac>`: audit entries.
    Audit,
    /// `marks/<id>`: prune's deletion marks.
    Marks,
}

impl Dir {
    /// Every directory, in the order of SPEC §3.
    pub const ALL: [Dir; 8] =
        [Dir::Keys, Dir::Keyring, Dir::Data, Dir::Index, Dir::Snapshots, Dir::Locks, Dir::Audit, Dir::Marks];

    /// The listing prefix, with its trailing `/`.
    pub const fn prefix(self) -> &'static str {
        match self {
            Dir::Keys => "keys/",
            Dir::Keyring => "keyring/",
            Dir::Data => "data/",
            Dir::Index => "index/",
            Dir::Snapshots => "snapshots/",
            Dir::Locks => "locks/",
            Dir::Audit => "audit/",
            Dir::Marks => "marks/",
        }
    }

    /// The object named `file` in this directory (`file` is an id in hex, or an audit entry's
    /// `seq-mac`); not for packs, which sit one level deeper ([`pack`]).
    pub fn join(self, file: &str) -> String {
        format!("{}{file}", self.prefix())
    }

    /// The object of id `id` in this directory (keys, index, snapshots, locks, marks).
    pub fn object(self, id: &ObjectId) -> String {
        self.join(&id.to_hex())
    }

    /// What follows this directory's prefix in `name`, if `name` is in it.
    pub fn file_of(self, name: &str) -> Option<&str> {
        name.strip_prefix(self.prefix())
    }

    /// The id that `name` (an object of this directory) carries; `None` for names of other
    /// directories and for names that are not an id (temporary files, strays).
    pub fn id_of(self, name: &str) -> Option<ObjectId> {
        self.file_of(name).and_then(|hex| ObjectId::from_hex(hex).ok())
    }

    /// The ids of the objects among `names` (a listing of this directory), in listing order.
    pub fn ids(self, names: &[String]) -> Vec<ObjectId> {
        names.iter().filter_map(|n| self.id_of(n)).collect()
    }
}

/// The name of pack `id`: `data/<first two hex digits>/<hex>`.
pub fn pack(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("{}{}/{}", Dir::Data.prefix(), hex.get(..2).unwrap_or("00"), hex)
}

/// The pack id `name` carries, if it is a pack's name (`data/xx/<hex>` with `xx` its first
/// two digits).
pub fn pack_id(name: &str) -> Option<PackId> {
    let (dir, hex) = Dir::Data.file_of(name)?.split_once('/')?;
    let id = PackId::from_hex(hex).ok()?;
    (hex.get(..2) == Some(dir)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_layout() {
        let id = ObjectId([0xab; 32]);
        assert_eq!(Dir::Snapshots.object(&id), format!("snapshots/{}", "ab".repeat(32)));
        assert_eq!(Dir::Snapshots.id_of(&Dir::Snapshots.object(&id)), Some(id));
        assert_eq!(Dir::Index.id_of(&Dir::Snapshots.object(&id)), None, "another directory");
        assert_eq!(Dir::Locks.id_of("locks/.tmp-123"), None, "not an id");
        let p = PackId([0x3c; 32]);
        assert_eq!(pack(&p), format!("data/3c/{}", "3c".repeat(32)));
        assert_eq!(pack_id(&pack(&p)), Some(p));
        assert_eq!(pack_id(&format!("data/00/{}", "3c".repeat(32))), None, "wrong fan-out directory");
        assert_eq!(pack_id("data/3c"), None);
        assert_eq!(Dir::ALL.iter().map(|d| d.prefix()).collect::<Vec<_>>().len(), 8);
        assert!(Dir::ALL.iter().all(|d| d.prefix().ends_with('/') && d.join("x").len() == d.prefix().len() + 1));
    }
}
