//! The crash-point matrix: every command that changes the repository is killed (SIGKILL, in a
//! child process: the suite's `cairn-killable`, `cairn` with kill points, honours `CAIRN_TEST_KILL_AT`) at each of
//! its storage writes in turn, and the rerun is killed too (double crashes, from another slot
//! kind). After each crash: every slot opens and lists every snapshot, `check --read-data` finds
//! nothing worse than before (notices about orphaned packs are fine), every snapshot finished
//! before the crash restores byte for byte, and the rerun of the command completes (then all of
//! it again).
//!
//! `CAIRN_CRASH_POINTS=all` runs every single crash point and a dense grid of double ones (the
//! full matrix, `scripts/crash-matrix.sh`); otherwise a sample (every `CAIRN_CRASH_STRIDE`-th
//! point, default 5, each command starting at another offset) runs with the suite.
//! `CAIRN_CRASH_JOBS` (default 2) crash points run at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::support::*;

mod regressions;
mod world;

use world::*;

/// A repository (and the cache of the client that made it) each crash point starts from.
struct Base {
    root: PathBuf,
    /// Snapshot id -> the source it was made from.
    snapshots: BTreeMap<String, PathBuf>,
    /// Snapshots the command removes on purpose (it may have done so before the crash).
    may_vanish: BTreeSet<String>,
    /// `check --read-data` errors (object: problem) present before the command ran.
    known_errors: BTreeSet<String>,
    /// The second password slot.
    pw2_slot: String,
}

/// One command of the matrix.
struct Scenario {
    name: &'static str,
    base: usize,
    args: Vec<String>,
    /// The slot the command runs through.
    slot: Slot,
    /// Slots a rerun runs through after a crash (double crashes: the rerun is killed too).
    rerun_from: Vec<Slot>,
    /// The command removes the second password slot.
    removes_pw2: bool,
    /// Key rotations: after a double crash, a snapshot through the second run's slot and a
    /// rotation attempt through the first password (the sequence of issue 19, defect 1).
    rotation: bool,
}

/// What one crash point came to.
#[derive(Debug, Default, Clone)]
struct Tally {
    single: u64,
    double: u64,
    /// Kill points a run finished (or was refused) before reaching: no crash there.
    not_reached: u64,
    lost_snapshots: u64,
    unopenable: u64,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.single += o.single;
        self.double += o.double;
        self.not_reached += o.not_reached;
        self.lost_snapshots += o.lost_snapshots;
        self.unopenable += o.unopenable;
        self.failures.extend(o.failures.iter().cloned());
    }
}

struct Matrix {
    world: World,
    bases: Vec<Base>,
    work: tempfile::TempDir,
    next: AtomicUsize,
}

/// `(n, killed before or after the n-th write)`.
type Kill = (u64, &'static str);

impl Matrix {
    fn new() -> Self {
        let world = World::new();
        let work = tempfile::tempdir().unwrap();
        let mut m = Matrix { world, bases: Vec::new(), work, next: AtomicUsize::new(0) };
        m.build_bases();
        m
    }

    fn snapshot(&self, root: &Path, slot: Slot, src: &Path) -> Result<String, String> {
        let mut c = self.world.cairn(root, slot);
        c.args(["--json", "snapshot"]).arg(src);
        let out = c.output().unwrap();
        ok(&out, &format!("snapshot through {slot:?}"))?;
        Ok(json(&out)["snapshot_id"].as_str().unwrap().to_string())
    }

    /// The bases: 0 plain (two snapshots, three slots), 1 one snapshot forgotten, 2 an epoch
    /// re-encrypted away, 3 a pack lost and the index repaired.
    fn build_bases(&mut self) {
        let w = &self.world;
        let root = w.p("base0");
        fs::create_dir_all(&root).unwrap();
        let mut init = w.cairn(&root, Slot::Pw);
        init.args(["init"]).args(KDF).arg("--recovery-code-out").arg(w.p("recovery"));
        must(init.output().unwrap(), "init");
        let mut add = w.cairn(&root, Slot::Pw);
        add.args(["key", "add", "--password", "--label", "second"])
            .args(KDF)
            .arg("--new-password-file")
            .arg(w.p("pw2"));
        must(add.output().unwrap(), "key add");
        let slots = json(&must(run(w.cairn(&root, Slot::Pw2), &["--json", "key", "list"]), "key list"));
        let pw2_slot =
            slots.as_array().unwrap().iter().find(|s| s["in_use"] == true).unwrap()["id"].as_str().unwrap().to_string();
        let mut snapshots = BTreeMap::new();
        let s1 = w.source("src1", 1);
        snapshots.insert(self.snapshot(&root, Slot::Pw, &s1).unwrap(), s1);
        let s2 = w.source("src2", 2);
        snapshots.insert(self.snapshot(&root, Slot::Recovery, &s2).unwrap(), s2);
        let plain = Base {
            root: root.clone(),
            snapshots: snapshots.clone(),
            may_vanish: BTreeSet::new(),
            known_errors: BTreeSet::new(),
            pw2_slot: pw2_slot.clone(),
        };

        // 1: the snapshot of src1 forgotten (prune has something to repack).
        let root1 = w.p("base1");
        copy_dir(&root, &root1);
        let s1_id = snapshots.iter().find(|(_, p)| p.ends_with("src1")).unwrap().0.clone();
        must(run(w.cairn(&root1, Slot::Pw), &["forget", &s1_id]), "forget");
        let mut forgotten = snapshots.clone();
        forgotten.remove(&s1_id);

        // 2: rotated, and epoch 0 re-encrypted away (retire-epoch 0 can run).
        let root2 = w.p("base2");
        copy_dir(&root, &root2);
        must(run(w.cairn(&root2, Slot::Pw), &["key", "rotate"]), "rotate");
        must(run(w.cairn(&root2, Slot::Pw), &["prune", "--reencrypt-epoch", "0"]), "reencrypt");

        // 3: a third snapshot whose only data pack is lost, the index repaired around it.
        let root3 = w.p("base3");
        copy_dir(&root, &root3);
        let packs = |r: &Path| -> BTreeSet<PathBuf> {
            walk_files(&r.join("repo/data")).into_iter().filter(|p| !p.to_string_lossy().contains(".tmp-")).collect()
        };
        let before = packs(&root3);
        let lost_src = w.p("src3");
        fs::create_dir_all(&lost_src).unwrap();
        fs::write(lost_src.join("lost.bin"), random_bytes(400_000, 1234)).unwrap();
        let lost = self.snapshot(&root3, Slot::Pw, &lost_src).unwrap();
        let new: Vec<PathBuf> = packs(&root3).difference(&before).cloned().collect();
        let biggest = new.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
        fs::remove_file(biggest).unwrap();
        must(run(w.cairn(&root3, Slot::Pw), &["repair", "index"]), "repair index");
        let check = run(w.cairn(&root3, Slot::Pw), &["--json", "check", "--read-data"]);
        let known_errors = check_errors(&check);
        assert!(!known_errors.is_empty(), "the lost pack must show in check");

        self.bases = vec![
            plain,
            Base {
                root: root1,
                snapshots: forgotten,
                may_vanish: BTreeSet::new(),
                known_errors: BTreeSet::new(),
                pw2_slot: pw2_slot.clone(),
            },
            Base {
                root: root2,
                snapshots: snapshots.clone(),
                may_vanish: BTreeSet::new(),
                known_errors: BTreeSet::new(),
                pw2_slot: pw2_slot.clone(),
            },
            Base { root: root3, snapshots: snapshots.clone(), may_vanish: [lost].into(), known_errors, pw2_slot },
        ];
    }

    fn scenarios(&self) -> Vec<Scenario> {
        let s = |name, base, args: &[&str], rerun_from: &[Slot]| Scenario {
            name,
            base,
            args: args.iter().map(|a| a.to_string()).collect(),
            slot: Slot::Pw,
            rerun_from: rerun_from.to_vec(),
            removes_pw2: false,
            rotation: false,
        };
        let src4 = self.world.source("src4", 4);
        let s1_id = self.bases[0].snapshots.iter().find(|(_, p)| p.ends_with("src1")).unwrap().0.clone();
        let pw3 = self.world.p("pw3");
        let mut v = vec![
            s("snapshot", 0, &["--json", "snapshot", src4.to_str().unwrap()], &[Slot::Recovery]),
            s("forget", 0, &["forget", &s1_id], &[Slot::Recovery]),
            s("prune (repack)", 1, &["prune", "--max-unused", "0", "--instant-delete"], &[Slot::Recovery]),
            s("prune (repack, marks)", 1, &["prune", "--max-unused", "0"], &[Slot::Recovery]),
            s(
                "key add",
                0,
                &[
                    "key",
                    "add",
                    "--password",
                    "--label",
                    "third",
                    KDF[0],
                    KDF[1],
                    KDF[2],
                    KDF[3],
                    "--new-password-file",
                    pw3.to_str().unwrap(),
                ],
                &[Slot::Recovery],
            ),
            s("key remove", 0, &["key", "remove", &self.bases[0].pw2_slot], &[Slot::Recovery]),
            s("key rotate", 0, &["key", "rotate"], &[Slot::Recovery, Slot::Pw2]),
            s("key rotate --reencrypt", 0, &["key", "rotate", "--reencrypt"], &[Slot::Recovery, Slot::Pw2]),
            s("key retire-epoch", 2, &["key", "retire-epoch", "0"], &[Slot::Recovery]),
            s("repair index", 0, &["repair", "index"], &[Slot::Recovery]),
            s("repair snapshots", 3, &["repair", "snapshots"], &[Slot::Recovery]),
        ];
        for sc in &mut v {
            sc.removes_pw2 = sc.name == "key remove";
            sc.rotation = sc.name.starts_with("key rotate");
        }
        v
    }

    /// A fresh copy of base `b` for one crash point.
    fn copy_base(&self, b: usize) -> PathBuf {
        let root = self.work.path().join(format!("pt-{}", self.next.fetch_add(1, Ordering::SeqCst)));
        copy_dir(&self.bases[b].root, &root);
        root
    }

    /// How many storage writes the command makes, run to the end on a copy.
    fn writes(&self, sc: &Scenario) -> u64 {
        let root = self.copy_base(sc.base);
        let log = root.join("writes.log");
        let mut c = self.world.cairn(&root, sc.slot);
        c.env("CAIRN_TEST_STORAGE_LOG", &log).args(&sc.args);
        must(c.output().unwrap(), sc.name);
        let n = fs::read_to_string(&log).unwrap_or_default().lines().count() as u64;
        assert!(
            n > 0,
            "{}: no storage write logged: build cairn-killable with `cargo build --workspace --all-targets`",
            sc.name
        );
        fs::remove_dir_all(&root).unwrap();
        n
    }

    /// Runs the command through `slot`, killed at `kill`: whether it was killed there (or
    /// ended first: finished, or refused).
    fn killed_run(&self, root: &Path, sc: &Scenario, slot: Slot, kill: Kill) -> bool {
        let mut c = self.world.cairn(root, slot);
        c.env("CAIRN_TEST_KILL_AT", format!("{}:{}", kill.0, kill.1)).args(&sc.args);
        c.output().unwrap().status.signal() == Some(9)
    }

    /// After a crash: every slot that must open lists every snapshot that must be there, check
    /// (reading every pack) finds nothing new, and with `restore`, every snapshot restores byte
    /// for byte. (After the rerun, `check --read-data` stands for the restores: it reads and
    /// verifies every blob the snapshots reach.)
    fn verify(
        &self,
        root: &Path,
        sc: &Scenario,
        extra: &BTreeMap<String, PathBuf>,
        restore: bool,
        t: &mut Tally,
    ) -> Vec<String> {
        let base = &self.bases[sc.base];
        let mut problems = Vec::new();
        let mut expected: BTreeMap<String, PathBuf> = base
            .snapshots
            .iter()
            .filter(|(id, _)| !base.may_vanish.contains(*id))
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        if sc.name == "forget" {
            expected.retain(|_, p| !p.ends_with("src1"));
        }
        expected.extend(extra.iter().map(|(a, b)| (a.clone(), b.clone())));
        let mut lost = BTreeSet::new();
        for slot in SLOTS {
            if slot == Slot::Pw2 && sc.removes_pw2 {
                continue;
            }
            let out = run(self.world.cairn(root, slot), &["--json", "snapshots"]);
            if let Err(e) = ok(&out, &format!("{slot:?} opens")) {
                t.unopenable += 1;
                problems.push(e);
                continue;
            }
            let listed: BTreeSet<String> =
                json(&out).as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
            for id in expected.keys().filter(|id| !listed.contains(*id)) {
                problems.push(format!("{slot:?} does not list snapshot {id}"));
                lost.insert(id.clone());
            }
        }
        let check = run(self.world.cairn(root, Slot::Pw), &["--json", "check", "--read-data"]);
        let errors = check_errors(&check);
        let new: Vec<_> = errors.difference(&base.known_errors).collect();
        if !new.is_empty() || (base.known_errors.is_empty() && !check.status.success()) {
            problems.push(format!(
                "check --read-data: {} {new:?} {}",
                check.status,
                String::from_utf8_lossy(&check.stderr).trim()
            ));
        }
        // Each snapshot restored through another slot, in turn.
        for (i, (id, src)) in expected.iter().enumerate().filter(|_| restore) {
            let slot = if sc.removes_pw2 { SLOTS[i % 2] } else { SLOTS[i % 3] };
            let target = root.join(format!("restore-{i}"));
            let mut c = self.world.cairn(root, slot);
            c.args(["restore", id, "--target"]).arg(&target);
            let restored = ok(&c.output().unwrap(), &format!("restore {id} through {slot:?}"))
                .and_then(|()| same_content(src, &restored_path(&target, src)));
            if let Err(e) = restored {
                problems.push(format!("snapshot {id}: {e}"));
                lost.insert(id.clone());
            }
            let _ = fs::remove_dir_all(&target);
        }
        t.lost_snapshots += lost.len() as u64;
        problems
    }

    /// One crash point: kills in turn (the first through the command's own slot, the next ones
    /// through `reruns`), checks after the crashes, finishes the command, checks again.
    fn crash_point(&self, sc: &Scenario, kills: &[(Slot, Kill)]) -> Tally {
        let mut t = Tally::default();
        let root = self.copy_base(sc.base);
        let label = format!(
            "{} killed at {}",
            sc.name,
            kills.iter().map(|(s, k)| format!("{}:{} through {s:?}", k.0, k.1)).collect::<Vec<_>>().join(", then ")
        );
        let mut last = sc.slot;
        let mut crashed = 0;
        for (slot, kill) in kills {
            if self.killed_run(&root, sc, *slot, *kill) {
                crashed += 1;
                last = *slot;
            }
        }
        if crashed < kills.len() {
            // A run ended before its kill point: nothing new to test here (the plain rerun is
            // tested by the point with one kill fewer).
            t.not_reached += 1;
            let _ = fs::remove_dir_all(&root);
            return t;
        }
        if kills.len() == 1 {
            t.single += 1;
        } else {
            t.double += 1;
        }
        let mut extra = BTreeMap::new();
        let mut problems = self.verify(&root, sc, &extra, true, &mut t);
        if sc.rotation && kills.len() > 1 {
            // Issue 19, defect 1: a snapshot through the slot of the second run, then a
            // rotation through the first password, which finishes the job or is refused.
            let src = self.world.p("src1");
            match self.snapshot(&root, last, &src) {
                Ok(id) => {
                    extra.insert(id, src);
                }
                // A slot the rotation left behind, after a moved one wrote (the checks above
                // append audit entries), is refused, writing nothing (README: Rotation).
                Err(e) if e.contains("a key rotation did not finish") => {}
                Err(e) => problems.push(e),
            }
            let out = run(self.world.cairn(&root, Slot::Pw), &sc.args.iter().map(String::as_str).collect::<Vec<_>>());
            if out.status.success() {
                last = Slot::Pw;
            } else if !String::from_utf8_lossy(&out.stderr).contains("did not finish") {
                problems
                    .push(format!("rotation through Pw after the crashes: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        // The rerun, through the slot of the last run killed, completes.
        let out = run(self.world.cairn(&root, last), &sc.args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A rerun of a command whose job the crashed run had done says so: the slot, the
        // snapshot or the epoch is gone already (checked below).
        let done_already = match sc.name {
            "key remove" => stderr.contains("no key slot"),
            "forget" => stderr.contains("no snapshot matches"),
            "key retire-epoch" => stderr.contains("holds no epoch 0"),
            _ => false,
        };
        if !out.status.success() && !done_already {
            problems.push(format!("the rerun through {last:?}: {} {}", out.status, stderr.trim()));
        }
        if sc.name == "snapshot" && out.status.success() {
            // The snapshot the rerun made restores too.
            extra.insert(json(&out)["snapshot_id"].as_str().unwrap().to_string(), self.world.p("src4"));
        }
        if sc.rotation {
            let keyrings = fs::read_dir(root.join("repo/keyring")).map(|d| d.count()).unwrap_or(0);
            if keyrings != 1 {
                problems.push(format!("{keyrings} keyrings after the rerun"));
            }
        }
        let after = self.verify(&root, sc, &extra, false, &mut t);
        problems.extend(after.into_iter().map(|p| format!("after the rerun: {p}")));
        if sc.removes_pw2 && run(self.world.cairn(&root, Slot::Pw2), &["snapshots"]).status.code() != Some(12) {
            problems.push("the removed slot still opens".into());
        }
        if sc.name == "forget" {
            let out = run(self.world.cairn(&root, Slot::Pw), &["--json", "snapshots"]);
            if json(&out).as_array().unwrap().iter().any(|s| s["id"].as_str() == Some(sc.args[1].as_str())) {
                problems.push("the forgotten snapshot is still there".into());
            }
        }
        if sc.name == "key retire-epoch" {
            let out = run(self.world.cairn(&root, Slot::Pw), &["--json", "key", "epochs"]);
            if json(&out).as_array().unwrap().iter().any(|e| e["epoch"] == 0) {
                problems.push("epoch 0 is still in the keyring".into());
            }
        }
        t.failures.extend(problems.into_iter().map(|p| format!("{label}: {p}")));
        if t.failures.is_empty() {
            let _ = fs::remove_dir_all(&root);
        }
        t
    }
}

/// The `check --read-data --json` errors, as `object: problem`.
fn check_errors(out: &Output) -> BTreeSet<String> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return [format!("no JSON from check: {}", String::from_utf8_lossy(&out.stderr))].into();
    };
    doc["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["severity"] == "error")
                .map(|f| format!("{}: {}", f["object"].as_str().unwrap_or(""), f["problem"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_else(|| [format!("check failed: {doc}")].into())
}

/// Which crash points run: all, or every `stride`-th.
struct Sample {
    all: bool,
    /// Only the double crash points of `key rotate` on the second grid (`(k + l) % 4 == 2`):
    /// what the full matrix adds to the first grid of every command, for a run split in two.
    supplement: bool,
    stride: u64,
}

impl Sample {
    fn from_env() -> Self {
        let points = std::env::var("CAIRN_CRASH_POINTS").unwrap_or_default();
        let (all, supplement) = (points == "all", points == "rotate-second-grid");
        let stride =
            std::env::var("CAIRN_CRASH_STRIDE").ok().and_then(|s| s.parse().ok()).filter(|s| *s > 0).unwrap_or(5);
        Sample { all: all || supplement, supplement, stride }
    }

    fn keep(&self, i: u64, offset: u64) -> bool {
        self.all || (i + offset).is_multiple_of(self.stride)
    }
}

/// Runs `jobs` on `CAIRN_CRASH_JOBS` threads, adding up their tallies.
fn run_all(m: &Matrix, jobs: Vec<(usize, Vec<(Slot, Kill)>)>, scenarios: &[Scenario]) -> BTreeMap<usize, Tally> {
    let threads = std::env::var("CAIRN_CRASH_JOBS").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(2);
    let next = AtomicUsize::new(0);
    let tallies = Mutex::new(BTreeMap::<usize, Tally>::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((sc, kills)) = jobs.get(i) else { break };
                    let t = m.crash_point(&scenarios[*sc], kills);
                    for f in &t.failures {
                        eprintln!("CRASH POINT FAILED: {f}");
                    }
                    tallies.lock().unwrap().entry(*sc).or_default().add(&t);
                }
            });
        }
    });
    tallies.into_inner().unwrap()
}

#[test]
fn crash_point_matrix() {
    let started = Instant::now();
    let sample = Sample::from_env();
    let m = Matrix::new();
    let scenarios = m.scenarios();
    let mut jobs = Vec::new();
    let mut writes = Vec::new();
    for (i, sc) in scenarios.iter().enumerate() {
        let n = m.writes(sc);
        writes.push(n);
        // Single crashes: before each write, and after the last.
        let points: Vec<Kill> = (1..=n).map(|k| (k, "before")).chain([(n, "after")]).collect();
        for (j, p) in points.iter().enumerate() {
            if sample.keep(j as u64, i as u64) && !sample.supplement {
                jobs.push((i, vec![(sc.slot, *p)]));
            }
        }
        // Double crashes: the first run killed before write k, the rerun (through each other
        // slot kind) killed before its write l (a rerun may write more than the first run:
        // it also deletes what the first left). All: every k, with l = k (issue 19's "same
        // point") and l on a grid of 4 shifted by k (for `key rotate`, two such grids);
        // sampled: l = k, every other stride.
        for (r, rerun) in sc.rerun_from.iter().enumerate() {
            for k in 1..=n {
                for l in 1..=n + 2 {
                    let second_half = sc.name == "key rotate" && l != k && (l + k) % 4 == 2;
                    let keep = if sample.supplement {
                        second_half
                    } else if sample.all {
                        l == k || (l + k).is_multiple_of(4) || second_half
                    } else {
                        l == k && (k + r as u64 + i as u64).is_multiple_of(2 * sample.stride)
                    };
                    if keep {
                        jobs.push((i, vec![(sc.slot, (k, "before")), (*rerun, (l, "before"))]));
                    }
                }
            }
        }
    }
    let planned = jobs.len();
    let tallies = run_all(&m, jobs, &scenarios);
    let mut total = Tally::default();
    eprintln!(
        "crash-point matrix ({}):",
        if sample.supplement {
            "key rotate, second grid".to_string()
        } else if sample.all {
            "all".to_string()
        } else {
            format!("every {}th point", sample.stride)
        }
    );
    eprintln!(
        "{:<24} {:>7} {:>7} {:>7} {:>12} {:>5} {:>10}",
        "command", "writes", "single", "double", "not reached", "lost", "unopenable"
    );
    for (i, sc) in scenarios.iter().enumerate() {
        let t = tallies.get(&i).cloned().unwrap_or_default();
        eprintln!(
            "{:<24} {:>7} {:>7} {:>7} {:>12} {:>5} {:>10}",
            sc.name, writes[i], t.single, t.double, t.not_reached, t.lost_snapshots, t.unopenable
        );
        total.add(&t);
    }
    eprintln!(
        "crash points: {} ({} single, {} double; {} planned kills not reached), snapshots lost: {}, \
         slots that could not open: {}, failures: {}, in {:.0} s",
        total.single + total.double,
        total.single,
        total.double,
        total.not_reached,
        total.lost_snapshots,
        total.unopenable,
        total.failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(planned > 0 && (total.single > 0 || sample.supplement) && total.double > 0, "no crash point ran");
    assert!(
        total.failures.is_empty(),
        "{} crash point problem(s):\n{}",
        total.failures.len(),
        total.failures.join("\n")
    );
}
