//! What a request needs: every request is an operation on one object name (or a listing of a
//! directory) of SPEC §3, and this module says which permission allows it. The server decides
//! here and nowhere else, before it touches the storage.
//!
//! The policy protects the backups' existence, not their secrecy: contents, names and sizes
//! are sealed by the clients' keys, so reading gives an identity nothing its key does not.
//! `append` therefore reads too (an incremental backup reads its parent snapshot, the index
//! and the locks), creates objects that do not exist, and deletes only locks it created; it
//! never deletes or overwrites anything else. `read` also takes and drops its own locks, since
//! check and restore lock the repository, and every identity appends audit entries (each
//! command logs itself). `delete` holds `append` as well: prune writes what it repacks. Overwrites are for key management (`keys`: slots and
//! keyrings) and `admin` (key rotation re-seals every metadata object); deletions of data are
//! `delete`'s.

use cairn_format::audit;
use cairn_format::names::{self, Dir};

use crate::identities::{Identity, Permission};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GET or HEAD of an object, ranged or whole.
    Read,
    /// A listing of a directory (`name` is the directory, `data/`).
    List,
    /// A PUT that must not replace an existing object.
    Create,
    /// A PUT that replaces whatever is there.
    Overwrite,
    /// A DELETE.
    Delete,
}

/// The server's answer to a request, before the storage is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead if the lock was created by this identity (the server's owner record says).
    AllowOwnLock,
    /// Refused: the identity lacks this permission (403, naming it).
    Refuse(Permission),
    /// Not an object name of a repository (400).
    BadName,
}

/// The kinds of object a name can denote, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    Audit,
    Marks,
}

/// The kind of the object `name`, if it is a well-formed object name (SPEC §3): the
/// canonical spelling only, so one object has one name.
fn kind_of(name: &str) -> Option<Kind> {
    cairn_storage::validate_name(name).ok()?;
    if name == names::CONFIG {
        return Some(Kind::Config);
    }
    let canonical_id = |dir: Dir| dir.id_of(name).is_some_and(|id| dir.object(&id) == name);
    let kind = Dir::ALL.into_iter().find(|dir| dir.file_of(name).is_some())?;
    match kind {
        Dir::Data => names::pack_id(name).is_some_and(|id| names::pack(&id) == name).then_some(Kind::Pack),
        Dir::Audit => audit::parse_entry_name(name).map(|_| Kind::Audit),
        Dir::Keyring => kind.file_of(name).is_some_and(|f| !f.contains('/')).then_some(Kind::Key),
        Dir::Keys => canonical_id(kind).then_some(Kind::Key),
        Dir::Index => canonical_id(kind).then_some(Kind::Index),
        Dir::Snapshots => canonical_id(kind).then_some(Kind::Snapshot),
        Dir::Locks => canonical_id(kind).then_some(Kind::Lock),
        Dir::Marks => canonical_id(kind).then_some(Kind::Marks),
    }
}

/// Whether `prefix` names a directory of SPEC §3 (with its trailing `/`), or one of the
/// packs' fan-out directories under it.
fn listable(prefix: &str) -> bool {
    Dir::ALL.iter().any(|d| d.prefix() == prefix)
        || Dir::Data
            .file_of(prefix)
            .and_then(|f| f.strip_suffix('/'))
            .is_some_and(|f| f.len() == 2 && f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// What `identity` may do with `name` in `repository`.
pub fn decide(identity: &Identity, repository: &str, op: Operation, name: &str) -> Decision {
    let may = |p: Permission| identity.may(repository, p);
    let any = |ps: &[Permission]| ps.iter().copied().find(|p| may(*p));
    let need = |p: Permission| if may(p) { Decision::Allow } else { Decision::Refuse(p) };
    let readers = [Permission::Read, Permission::Append];
    if op == Operation::List {
        if !listable(name) {
            return Decision::BadName;
        }
        return if any(&readers).is_some() { Decision::Allow } else { Decision::Refuse(Permission::Read) };
    }
    let Some(kind) = kind_of(name) else { return Decision::BadName };
    match (op, kind) {
        (Operation::Read, _) => {
            if any(&readers).is_some() {
                Decision::Allow
            } else {
                Decision::Refuse(Permission::Read)
            }
        }
        (Operation::List, _) => Decision::BadName,
        (_, Kind::Config) => need(Permission::Admin),
        (Operation::Create | Operation::Overwrite | Operation::Delete, Kind::Key) => need(Permission::Keys),
        (Operation::Create, Kind::Pack | Kind::Index | Kind::Snapshot) => need(Permission::Append),
        // Every command logs itself, key changes and reads included; the log only grows.
        (Operation::Create, Kind::Audit) => {
            if any(&[Permission::Read, Permission::Append, Permission::Keys]).is_some() {
                Decision::Allow
            } else {
                Decision::Refuse(Permission::Append)
            }
        }
        (Operation::Create, Kind::Lock) => {
            if any(&readers).is_some() {
                Decision::Allow
            } else {
                Decision::Refuse(Permission::Append)
            }
        }
        // A lock is refreshed by overwriting it, and dropped by deleting it: its owner may,
        // and `delete` may remove anyone's (`cairn unlock`).
        (Operation::Overwrite | Operation::Delete, Kind::Lock) => {
            if may(Permission::Delete) {
                Decision::Allow
            } else if any(&readers).is_some() {
                Decision::AllowOwnLock
            } else {
                Decision::Refuse(Permission::Append)
            }
        }
        (Operation::Create | Operation::Delete, Kind::Marks) => need(Permission::Delete),
        (Operation::Delete, Kind::Pack | Kind::Index | Kind::Snapshot) => need(Permission::Delete),
        // The audit log is append-only for everyone but an administrator.
        (Operation::Delete, Kind::Audit) => need(Permission::Admin),
        (Operation::Overwrite, _) => need(Permission::Admin),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use Decision::*;
    use Operation::{Create, List, Overwrite};
    use Permission::{Admin, Append, Keys};

    fn identity(perms: &[Permission]) -> Identity {
        Identity {
            name: "test".into(),
            token_blake3: None,
            certificate_sha256: None,
            repositories: BTreeMap::from([("main".to_string(), perms.to_vec())]),
        }
    }

    const PACK: &str = "data/ab/ab00000000000000000000000000000000000000000000000000000000000000";
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn names() -> Vec<String> {
        vec![
            "config".into(),
            format!("keys/{ID}"),
            PACK.into(),
            format!("index/{ID}"),
            format!("snapshots/{ID}"),
            format!("locks/{ID}"),
            format!("audit/000000000042-{ID}"),
            format!("marks/{ID}"),
        ]
    }

    #[test]
    fn append_creates_and_reads_but_never_deletes_or_overwrites_what_exists() {
        let host = identity(&[Append]);
        for name in names() {
            assert_eq!(decide(&host, "main", Operation::Read, &name), Allow, "{name}");
            let expected_delete = match name.split('/').next() {
                Some("locks") => AllowOwnLock,
                Some("audit") | Some("config") => Refuse(Admin),
                Some("keys") => Refuse(Keys),
                _ => Refuse(Permission::Delete),
            };
            assert_eq!(decide(&host, "main", Operation::Delete, &name), expected_delete, "{name}");
            let expected_overwrite = match name.split('/').next() {
                Some("locks") => AllowOwnLock,
                Some("keys") => Refuse(Keys),
                _ => Refuse(Admin),
            };
            assert_eq!(decide(&host, "main", Overwrite, &name), expected_overwrite, "{name}");
        }
        for name in
            [PACK.to_string(), format!("index/{ID}"), format!("snapshots/{ID}"), format!("audit/000000000007-{ID}")]
        {
            assert_eq!(decide(&host, "main", Create, &name), Allow, "{name}");
        }
        assert_eq!(decide(&host, "main", Create, "config"), Refuse(Admin));
        assert_eq!(decide(&host, "main", Create, &format!("marks/{ID}")), Refuse(Permission::Delete));
        assert_eq!(
            decide(&host, "other", Operation::Read, PACK),
            Refuse(Permission::Read),
            "permissions are per repository"
        );
    }

    #[test]
    fn each_permission_allows_its_own_operations_only() {
        let reader = identity(&[Permission::Read]);
        assert_eq!(decide(&reader, "main", List, "snapshots/"), Allow);
        assert_eq!(decide(&reader, "main", Create, PACK), Refuse(Append));
        assert_eq!(decide(&reader, "main", Create, &format!("locks/{ID}")), Allow, "check and restore lock");
        assert_eq!(decide(&reader, "main", Create, &format!("audit/000000000009-{ID}")), Allow, "reads log themselves");
        let pruner = identity(&[Permission::Read, Permission::Delete]);
        assert_eq!(decide(&pruner, "main", Create, PACK), Allow, "prune stores what it repacks");
        assert_eq!(decide(&pruner, "main", Operation::Delete, PACK), Allow);
        assert_eq!(decide(&pruner, "main", Operation::Delete, &format!("locks/{ID}")), Allow, "unlock another's lock");
        assert_eq!(decide(&pruner, "main", Create, &format!("marks/{ID}")), Allow);
        assert_eq!(decide(&pruner, "main", Overwrite, PACK), Refuse(Admin));
        let keys = identity(&[Keys]);
        assert_eq!(decide(&keys, "main", Create, &format!("keys/{ID}")), Allow);
        assert_eq!(decide(&keys, "main", Operation::Read, &format!("keys/{ID}")), Refuse(Permission::Read));
        let admin = identity(&[Admin]);
        for name in names() {
            for op in [Operation::Read, Create, Overwrite, Operation::Delete] {
                assert!(matches!(decide(&admin, "main", op, &name), Allow), "{op:?} {name}");
            }
        }
        let nobody = identity(&[]);
        for name in names() {
            for op in [Operation::Read, Create, Overwrite, Operation::Delete] {
                assert!(matches!(decide(&nobody, "main", op, &name), Refuse(_)), "{op:?} {name}");
            }
        }
    }

    #[test]
    fn names_outside_the_repository_layout_are_bad_names_whoever_asks() {
        let admin = identity(&[Admin]);
        for bad in [
            "",
            "../config",
            "data/ab/../../config",
            "data/cd/ab00000000000000000000000000000000000000000000000000000000000000",
            "data/ab/AB00000000000000000000000000000000000000000000000000000000000000",
            "index/short",
            "snapshots/x/y",
            "locks/.tmp-123",
            "audit/-ff",
            "audit/12-",
            "audit/42-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "keys/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "server/locks/owner",
            "config/x",
            "/config",
        ] {
            for op in [Operation::Read, Create, Overwrite, Operation::Delete] {
                assert_eq!(decide(&admin, "main", op, bad), BadName, "{op:?} {bad:?}");
            }
        }
        for bad in ["", "data", "data/zz/", "server/", "../", "keys"] {
            assert_eq!(decide(&admin, "main", List, bad), BadName, "{bad:?}");
        }
        assert_eq!(decide(&admin, "main", List, "data/0f/"), Allow);
    }
}
