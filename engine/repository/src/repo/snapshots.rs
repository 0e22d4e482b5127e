//! Snapshots: listed, loaded (damaged ones told apart), named by id prefix or `latest`, and
//! stored (announced in the audit log first when an actor is set), deleted.

use super::*;
use crate::format::snapshot::Writer;

impl Repository {
    /// Ids of all snapshots.
    pub fn snapshot_ids(&self) -> Result<Vec<ObjectId>> {
        Ok(Dir::Snapshots.ids(&self.storage.list(Dir::Snapshots.prefix())?))
    }

    /// Loads one snapshot and establishes its writer: one sealed under a data key comes from a
    /// full key; one sealed to the reader key from the write-only slot its proof names. One
    /// sealed to the reader key whose proof is missing or does not verify is a forgery
    /// ([`Error::Corrupt`]), as is a proof under a data key.
    pub fn load_snapshot(&self, id: &ObjectId) -> Result<Snapshot> {
        let name = snapshot_name(id);
        let (plain, to_reader) = self.load_object_sealed_how(ObjectKind::Snapshot, &name)?;
        let (mut snapshot, attestation) = Snapshot::decode_any(&plain, &name)?;
        snapshot.writer = match (to_reader, attestation) {
            (false, None) => Writer::Full,
            (false, Some(_)) => {
                return Err(Error::corrupt(&name, "sealed under a data key yet claiming a write-only writer"));
            }
            (true, None) => {
                return Err(Error::corrupt(&name, "sealed to the reader key without its writer's proof"));
            }
            (true, Some(proof)) => {
                proof.verify(&plain, &name, &self.keyring()?.slot_audit_key(proof.slot))?;
                Writer::WriteOnly(proof.slot)
            }
        };
        Ok(snapshot)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(ObjectId, Snapshot)>> {
        Ok(self.load_snapshots(false)?.0)
    }

    /// Every snapshot that can be read, oldest first, and those that could not, each with why
    /// (damaged, or sealed under an epoch this client's keyring lacks during an unfinished
    /// rotation). For the commands that can do without some snapshots: listing, browsing,
    /// a backup's parent, forget, repair. Storage errors still fail.
    pub fn readable_snapshots(&self) -> Result<SnapshotsRead> {
        self.load_snapshots(true)
    }

    /// Loads every snapshot in parallel, oldest first; with `skip_unreadable`, snapshots that
    /// are damaged or cannot be opened are returned apart instead of failing the whole load.
    fn load_snapshots(&self, skip_unreadable: bool) -> Result<SnapshotsRead> {
        let ids = self.snapshot_ids()?;
        let loaded: Vec<std::result::Result<(ObjectId, Snapshot), (ObjectId, Error)>> = self.with_io_pool(|| {
            ids.par_iter()
                .map(|id| match self.load_snapshot(id) {
                    Ok(s) => Ok(Ok((*id, s))),
                    Err(e @ (Error::Corrupt { .. } | Error::Missing(_) | Error::UnsupportedVersion { .. }))
                        if skip_unreadable =>
                    {
                        Ok(Err((*id, e)))
                    }
                    Err(e) => Err(e),
                })
                .collect::<Result<_>>()
        })?;
        let mut all = Vec::new();
        let mut unreadable = Vec::new();
        for l in loaded {
            match l {
                Ok(s) => all.push(s),
                // Listed, then gone before it was read (forgotten meanwhile): not damage.
                Err((_, Error::Missing(_))) => {}
                Err(u) => unreadable.push(u),
            }
        }
        all.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        unreadable.sort_by_key(|u| u.0);
        Ok((all, unreadable))
    }

    /// Resolves `latest` (the newest snapshot that can be read), a full id, or a unique id
    /// prefix, and loads it.
    pub fn find_snapshot(&self, spec: &str) -> Result<(ObjectId, Snapshot)> {
        if spec == "latest" {
            return self
                .readable_snapshots()?
                .0
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound("the repository has no snapshots that can be read".into()));
        }
        let id = self.resolve_snapshot_id(spec)?;
        Ok((id, self.load_snapshot(&id)?))
    }

    /// The id `spec` names (`latest`, a full id or a unique prefix of at least one character),
    /// without reading the snapshot unless it is `latest`: a damaged snapshot can be named
    /// (to remove it).
    pub fn resolve_snapshot_id(&self, spec: &str) -> Result<ObjectId> {
        if spec == "latest" {
            return Ok(self.find_snapshot(spec)?.0);
        }
        if spec.is_empty() {
            return Err(Error::SnapshotNotFound(
                "no snapshot named: give an id (a prefix is enough) or `latest`".into(),
            ));
        }
        let spec_lc = spec.to_ascii_lowercase();
        let matches: Vec<ObjectId> =
            self.snapshot_ids()?.into_iter().filter(|id| id.to_hex().starts_with(&spec_lc)).collect();
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::SnapshotNotFound(format!("no snapshot matches {spec:?}"))),
            _ => Err(Error::SnapshotNotFound(format!(
                "{} snapshots match {spec:?}; give more characters",
                matches.len()
            ))),
        }
    }

    /// Stores a snapshot; returns its id and stored size. [`Error::LockLost`] (nothing
    /// written) when a lock this handle holds was lost: a prune may have run meanwhile.
    /// With an actor set, an audit entry announcing the snapshot (outcome
    /// [`crate::audit::INTENT`]) is appended first, and nothing is written when it cannot be.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(ObjectId, u64)> {
        // A stop asked for while the last data was stored (or while a stream sent nothing to
        // check it on) still means no snapshot: the data is indexed, and the rerun reuses it.
        self.check_interrupted(
            "stopped before writing the snapshot; what was stored is indexed and the next run reuses it",
        )?;
        self.check_locks()?;
        let id = ObjectId::random()?;
        let name = snapshot_name(&id);
        // Sealed before it is announced: a snapshot this repository cannot hold is refused
        // before the log names it.
        let sealed = match (self.sealing_kit(), snapshot.writer) {
            (Some(kit), _) => self.sealer()?.seal(
                ObjectKind::Snapshot,
                name.as_bytes(),
                &snapshot.encode_attested(&name, kit.slot(), kit.audit_key()),
            )?,
            (None, Writer::Full) => self.sealer()?.seal(ObjectKind::Snapshot, name.as_bytes(), &snapshot.encode())?,
            // A full key saving a write-only slot's snapshot again (`tag`, `rewrite`, `repair`,
            // `copy`) keeps it that slot's: sealed to the reader with the slot's proof, never
            // passed off as a full key's (SPEC §13).
            (None, Writer::WriteOnly(slot)) => {
                if self.config().format_version < crate::format::WRITE_ONLY_FORMAT_VERSION {
                    return Err(Error::InvalidInput(format!(
                        "snapshot of {} was written by write-only slot {}, and this repository (format {}) cannot \
                         hold write-only snapshots: add a write-only slot to it first (`key add --write-only`)",
                        snapshot.hostname,
                        slot.short(),
                        self.config().format_version
                    )));
                }
                let plain = snapshot.encode_attested(&name, slot, &self.keyring()?.slot_audit_key(slot));
                self.current_reader_sealer()?.seal(ObjectKind::Snapshot, name.as_bytes(), &plain)?
            }
        };
        if let Some(actor) = &self.actor {
            let intent = crate::audit::AuditRecord {
                outcome: crate::audit::INTENT.into(),
                snapshots_created: vec![id],
                detail: "about to write this snapshot".into(),
                ..crate::audit::AuditRecord::new("save snapshot")
            };
            self.audit(actor, &intent)?;
        }
        self.storage.put(&name, &sealed, PutMode::CreateNew)?;
        let size = sealed.len() as u64;
        if let Some(own) = self.own_record() {
            own.keep_parent(&id, snapshot);
            own.collect_garbage(|plain| self.chunk_id(plain));
        }
        Ok((id, size))
    }

    /// Deletes the snapshots `ids` after appending an audit entry (operation `operation`,
    /// outcome `intent`) that lists them; nothing is deleted when that entry cannot be written,
    /// so the log never says a snapshot exists that was deleted, whatever step a crash
    /// interrupts (`forget`, and `repair snapshots` replacing what it repaired).
    pub fn delete_snapshots_logged(
        &self,
        ids: &[ObjectId],
        actor: &crate::audit::Actor,
        operation: &str,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let intent = crate::audit::AuditRecord {
            outcome: crate::audit::INTENT.into(),
            snapshots_deleted: ids.to_vec(),
            detail: format!("about to delete {} snapshot(s)", ids.len()),
            ..crate::audit::AuditRecord::new(operation)
        };
        self.audit(actor, &intent)?;
        // Invariant: the intent is in the log before the first snapshot goes.
        for id in ids {
            self.delete_snapshot(id)?;
        }
        Ok(())
    }

    /// Deletes the snapshot `id` (through [`Repository::delete_snapshots_logged`] unless the
    /// caller logged it). Deleting one that is gone is not an error.
    pub fn delete_snapshot(&self, id: &ObjectId) -> Result<()> {
        self.storage.delete(&snapshot_name(id))
    }
}
