//! A fixed set of pack-sized buffers, reused from pack to pack. It bounds the memory packs take
//! (a producer waits for a buffer rather than allocating another) and keeps it steady: with a
//! fresh 16 MiB allocation per pack, glibc's adaptive mmap threshold soon put pack buffers in
//! its arenas, where freed ones stayed resident, and every new one cost a page fault per 4 KiB.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Debug)]
struct Slots {
    /// Buffers given back, ready to be taken.
    free: Vec<Vec<u8>>,
    /// Buffers allocated so far (free or in use); never more than `limit`.
    allocated: usize,
    /// Callers of `take` waiting for a buffer to come back.
    waiting: usize,
}

/// The pool. Buffers are allocated on first need, up to `limit`.
#[derive(Debug)]
pub(crate) struct PackBuffers {
    limit: usize,
    capacity: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PackBuffers {
    /// At most `limit` buffers (at least one) of `capacity` bytes each.
    pub(crate) fn new(limit: usize, capacity: usize) -> Arc<Self> {
        Arc::new(PackBuffers {
            limit: limit.max(1),
            capacity,
            slots: Mutex::new(Slots { free: Vec::new(), allocated: 0, waiting: 0 }),
            freed: Condvar::new(),
        })
    }

    /// A free buffer, a new one while fewer than `limit` exist, or else the next one given
    /// back (blocking until then). Buffers come back when uploads end, which never wait for
    /// a caller of `take`, so a caller may hold its own locks while it waits.
    pub(crate) fn take(self: &Arc<Self>) -> PackBuf {
        let mut slots = lock(&self.slots);
        let buf = loop {
            if let Some(buf) = slots.free.pop() {
                break buf;
            }
            if slots.allocated < self.limit {
                slots.allocated += 1;
                break Vec::with_capacity(self.capacity);
            }
            slots.waiting += 1;
            slots = self.freed.wait(slots).unwrap_or_else(std::sync::PoisonError::into_inner);
            slots.waiting -= 1;
        };
        PackBuf { buf, pool: Some(Arc::clone(self)) }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        lock(&self.slots).free.push(buf);
        self.freed.notify_one();
    }
}

/// A buffer that goes back to its pool when dropped (after an upload, a failure or a panic
/// alike, so the pool cannot run dry), or a plain growable one (`PackBuf::default()`).
#[derive(Debug, Default)]
pub(crate) struct PackBuf {
    buf: Vec<u8>,
    pool: Option<Arc<PackBuffers>>,
}

impl Deref for PackBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for PackBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Drop for PackBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_the_buffers_and_reuses_them() {
        let pool = PackBuffers::new(2, 1024);
        let mut a = pool.take();
        a.extend_from_slice(b"pack bytes");
        let ptr = a.as_ptr();
        let b = pool.take();
        assert_eq!(lock(&pool.slots).allocated, 2);
        drop(a);
        let c = pool.take();
        assert!(c.is_empty(), "a reused buffer starts empty");
        assert_eq!(c.as_ptr(), ptr, "the freed buffer is reused, not a new allocation");
        assert!(c.capacity() >= 1024);
        assert_eq!(lock(&pool.slots).allocated, 2, "no third buffer beyond the limit");
        drop((b, c));
    }

    #[test]
    fn a_waiter_wakes_when_a_buffer_comes_back() {
        let pool = PackBuffers::new(1, 16);
        let mut held = pool.take();
        held.push(42);
        let ptr = held.as_ptr() as usize;
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.take().as_ptr() as usize)
        };
        // The waiter blocks in `take` (no buffer is free and none may be made) until one comes
        // back: wait until it is seen waiting, then give the buffer back.
        while lock(&pool.slots).waiting == 0 {
            assert!(!waiter.is_finished(), "took a buffer while every buffer was in use");
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(waiter.join().unwrap(), ptr, "the waiter got the buffer given back");
    }

    #[test]
    fn an_unpooled_buffer_just_drops() {
        let mut b = PackBuf::default();
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&b[..], &[1, 2, 3]);
    }
}
