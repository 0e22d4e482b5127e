//! The storage is the adversary (SPEC §15). Every test here attacks a repository the way a
//! malicious bucket, NAS or hosting provider could: by reading, writing, replacing, deleting,
//! hiding and rolling back objects, never by knowing a secret. Each shows the attack refused
//! or reported. `adversary` holds the tools: a storage wrapper that hides or replays objects,
//! and helpers that copy and edit objects in a local repository directory.

mod adversary;
mod keys;
mod padding;
