//! A connection that gives up on a client that stops taking its answer. hyper bounds how long
//! a request's headers may take (and the serve loop how long a body may stall), but nothing in
//! it bounds a write: a client that asks for a pack and never reads would hold its connection
//! slot and the answer's memory for as long as it likes. [`Stalling`] fails a write that has
//! made no progress for its timeout, which closes the connection and frees both.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, whose writes fail once one has waited `timeout` without progress.
#[derive(Debug)]
pub struct Stalling<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write waits; reset whenever one makes progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Stalling<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Stalling { inner, timeout, deadline: None }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// After a write returned `Pending`: fails once the deadline (armed now if it was not)
    /// passes.
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let deadline =
            self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, format!("the client took nothing for {timeout:?}")))
    }

    fn progressed<T>(&mut self, result: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => match self.waited(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

use std::future::Future;

impl<S: AsyncRead + Unpin> AsyncRead for Stalling<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalling<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progressed(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progressed(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_takes_fails_after_the_timeout_and_one_taken_does_not() {
        // A pipe with room for 1 KiB: the second KiB waits for a reader.
        let (client, server) = tokio::io::duplex(1024);
        let mut stalling = Stalling::new(server, Duration::from_secs(30));
        stalling.write_all(&[7; 1024]).await.unwrap();
        let stalled = stalling.write_all(&[7; 1024]).await.unwrap_err();
        assert_eq!(stalled.kind(), io::ErrorKind::TimedOut);

        // A reader that drains: every write goes through, however long in all.
        let (mut client2, server2) = tokio::io::duplex(1024);
        let mut stalling = Stalling::new(server2, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                match client2.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        stalling.write_all(&[9; 8192]).await.unwrap();
        stalling.shutdown().await.unwrap();
        drop(stalling);
        assert_eq!(reader.await.unwrap(), vec![9; 8192]);
        drop(client);
    }
}
