//! A bound on open connections: each accepted connection holds a slot until it closes; one
//! accepted while every slot is taken is closed at once, before a byte of it is read. A
//! connection whose first byte does not arrive within the header timeout is closed too (the
//! HTTP layer's own header timer starts only once it has a byte to tell the protocol by).

use std::future::{Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

#[derive(Clone)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    first_byte_timeout: Duration,
}

impl ConnectionLimit {
    pub fn new(max_connections: usize, first_byte_timeout: Duration) -> ConnectionLimit {
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            first_byte_timeout,
        }
    }
}

impl<I, S> Accept<I, S> for ConnectionLimit {
    type Stream = Counted<I>;
    type Service = S;
    type Future = Ready<io::Result<(Counted<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok((
                Counted {
                    stream,
                    _slot: slot,
                    first_byte_deadline: Some(Box::pin(tokio::time::sleep(
                        self.first_byte_timeout,
                    ))),
                },
                service,
            )),
            Err(_) => {
                tracing::warn!(
                    "connection refused: every connection slot is taken (--max-connections)"
                );
                Err(io::Error::other("too many open connections"))
            }
        })
    }
}

/// A connection and the slot it holds until it is dropped.
pub struct Counted<I> {
    stream: I,
    _slot: OwnedSemaphorePermit,
    /// Until the first byte arrives.
    first_byte_deadline: Option<Pin<Box<Sleep>>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => self.first_byte_deadline = None,
            Poll::Pending => {
                if let Some(deadline) = self.first_byte_deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client sent nothing within the header timeout",
                        )));
                    }
                }
            }
            _ => {}
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
