//! The storage is the adversary (SPEC §15). Every test here attacks a repository the way a
//! malicious bucket, NAS or hosting provider could: by reading, writing, replacing, deleting,
//! hiding and rolling back objects, never by knowing a secret. Each shows the attack refused
//! or reported. `adversary` holds the tools: storage wrappers that hide objects or record
//! every write, captures of objects served back later, and a repository driven through the
//! `cairn` binary.

mod adversary;
mod audit;
mod check;
mod keys;
mod padding;
mod prune;
mod resources;
