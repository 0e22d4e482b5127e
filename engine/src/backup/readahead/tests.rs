//! Tests of the small-file read-ahead: whole files in order, the budgets, batches, and what
//! is left to the walker.

use super::*;

fn dir_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Arc<OwnedFd>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let fd = Arc::new(hostfs::open_dir(dir.path()).unwrap());
    (dir, fd)
}

/// Files come back whole and in the order asked, with what the walker checks.
#[test]
fn files_are_read_whole_with_their_stats() {
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let contents: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i * 100]).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(contents.iter().map(Vec::as_slice)).collect();
    let (_dir, fd) = dir_with(&files);
    let ahead = ReadAhead::start();
    let tickets: Vec<Ticket> = names.iter().map(|n| ahead.submit(&fd, n.as_bytes(), 5000).unwrap()).collect();
    for (ticket, want) in tickets.into_iter().zip(&contents) {
        match ticket.wait() {
            Fetched::Read(read) => {
                let ReadFile { content, after, .. } = *read;
                assert_eq!(content.unwrap().unwrap(), *want);
                assert_eq!(after.size, want.len() as u64);
                assert_eq!(after.file_type(), FileType::RegularFile);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(lock(&ahead.shared.queue).files, 0, "every ticket's room freed");
}

/// A file that grew since it was listed is read on to its end (the first read asked only
/// for the size listed); one that shrank ends where it ends.
#[test]
fn files_that_grew_or_shrank_since_listed_come_back_whole() {
    let grown: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let (_dir, fd) = dir_with(&[("grown", &grown), ("shrunk", b"tail"), ("empty", b"")]);
    let ahead = ReadAhead::start();
    for (name, listed, want) in [("grown", 10, &grown[..]), ("shrunk", 4000, b"tail"), ("empty", 0, b"")] {
        match ahead.submit(&fd, name.as_bytes(), listed).unwrap().wait() {
            Fetched::Read(read) => {
                assert_eq!(read.content.unwrap().unwrap(), want, "{name}");
                assert_eq!(read.after.size, want.len() as u64);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A missing file is reported as unopened; a file past SMALL is left to the walker; the
/// budget refuses what it has no room for, and frees it when tickets are dropped.
#[test]
fn failures_large_files_and_the_budget() {
    let big = vec![1u8; SMALL as usize + 1];
    let (_dir, fd) = dir_with(&[("big", &big), ("small", b"x")]);
    let ahead = ReadAhead::start();
    assert!(
        matches!(ahead.submit(&fd, b"gone", 1).unwrap().wait(), Fetched::Unopened(e) if e.kind() == io::ErrorKind::NotFound)
    );
    // Larger when stat'ed: primed only, the walker reads it (at once, never waiting).
    assert!(matches!(ahead.submit(&fd, b"big", SMALL + 1).unwrap().wait(), Fetched::Left));
    let primed: Vec<Ticket> = (0..MAX_PRIMED / PRIMED).map(|_| ahead.submit(&fd, b"big", 1 << 30).unwrap()).collect();
    assert!(ahead.submit(&fd, b"big", SMALL + 1).is_none(), "no room past MAX_PRIMED");
    assert!(ahead.submit(&fd, b"small", 1).is_some(), "small files have a budget of their own");
    drop(primed);
    assert_eq!(lock(&ahead.shared.queue).primed, 0);
    match ahead.submit(&fd, b"big", 10).unwrap().wait() {
        Fetched::Read(read) => assert!(read.content.unwrap().is_none(), "grew past SMALL"),
        other => panic!("{other:?}"),
    }
    let held: Vec<Ticket> = (0..MAX_FILES).map(|_| ahead.submit(&fd, b"small", 1).unwrap()).collect();
    assert!(ahead.submit(&fd, b"small", 1).is_none(), "no room past MAX_FILES");
    drop(held);
    assert!(ahead.submit(&fd, b"small", 1).is_some(), "room again once the tickets are dropped");
    let fit = (MAX_BYTES / SMALL) as usize;
    let held: Vec<Ticket> = (0..fit).map(|_| ahead.submit(&fd, b"small", SMALL).unwrap()).collect();
    assert!(ahead.submit(&fd, b"small", SMALL).is_none(), "no room past MAX_BYTES");
    drop(held);
}

/// Fewer files than a batch, never started: no reader is woken for them, and the walker
/// reads each itself when it comes to it rather than wait.
#[test]
fn files_no_reader_started_are_read_by_the_walker_without_waking_one() {
    let (_dir, fd) = dir_with(&[("a", b"first"), ("b", b"second")]);
    let ahead = ReadAhead::with_batch(BATCH); // not fewer under a low open-file limit
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lock(&ahead.shared.queue).sleepers.all_idle(THREADS) {
        assert!(std::time::Instant::now() < deadline, "the readers never went to sleep");
        std::thread::yield_now();
    }
    let notified = || lock(&ahead.shared.queue).sleepers.notified();
    let tickets = [ahead.submit(&fd, b"a", 5).unwrap(), ahead.submit(&fd, b"b", 6).unwrap()];
    assert_eq!(notified(), 0, "no reader woken for less than a batch");
    for (ticket, want) in tickets.into_iter().zip([&b"first"[..], b"second"]) {
        match ticket.wait() {
            Fetched::Read(read) => assert_eq!(read.content.unwrap().unwrap(), want),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(notified(), 0);
    assert!(lock(&ahead.shared.queue).jobs.is_empty());
    // Once a directory's first files are queued, the walker starts the readers: one per batch.
    let tickets: Vec<Ticket> = (0..3).map(|_| ahead.submit(&fd, b"a", 5).unwrap()).collect();
    ahead.start_reading();
    assert_eq!(notified(), 1);
    for ticket in tickets {
        assert!(matches!(ticket.wait(), Fetched::Read(_)));
    }
}

/// A batch opens what it may and leaves the rest: a cancelled file is not opened, a
/// missing one is its own error, and the others come back in order, whole.
#[test]
fn a_batch_opens_each_file_once_and_skips_the_cancelled() {
    let (_dir, fd) = dir_with(&[("a", b"first"), ("c", b"third")]);
    let job = |name: &str, cancelled: bool| Job {
        dir: Arc::clone(&fd),
        name: name.as_bytes().to_vec(),
        size: 5,
        slot: Arc::new(Slot { cancelled: AtomicBool::new(cancelled), ..Slot::default() }),
    };
    let jobs = [job("a", false), job("b", false), job("c", true), job("c", false)];
    let opened = open_ahead(&jobs);
    assert_eq!(opened.len(), 4);
    assert!(matches!(&opened[1], Some(Err(e)) if e.kind() == io::ErrorKind::NotFound));
    assert!(opened[2].is_none(), "cancelled: not opened");
    let mut opened: Vec<_> = opened.into_iter().map(|o| o.and_then(Result::ok)).collect();
    for (i, want) in [(0, b"first"), (3, b"third")] {
        let file = opened[i].take().unwrap();
        assert!(want.starts_with(&file.content), "what the page cache gave is the file's start");
        match fetch(Ok(file), 5) {
            Fetched::Read(read) => assert_eq!(read.content.unwrap().unwrap(), want),
            other => panic!("{other:?}"),
        }
    }
    // Through the readers: tickets dropped before their turn are skipped, the rest kept.
    let ahead = ReadAhead::start();
    let tickets: Vec<(usize, Ticket)> =
        (0..200).map(|i| (i, ahead.submit(&fd, if i % 3 == 0 { b"a" } else { b"c" }, 5).unwrap())).collect();
    for (i, ticket) in tickets {
        if i % 2 == 1 {
            drop(ticket);
            continue;
        }
        match ticket.wait() {
            Fetched::Read(read) => {
                assert_eq!(read.content.unwrap().unwrap(), if i % 3 == 0 { b"first" } else { b"third" })
            }
            other => panic!("{i}: {other:?}"),
        }
    }
}
