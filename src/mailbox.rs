//! A channel whose receiving end is a file descriptor the event loop can poll: the sender
//! pushes a message and bumps an `eventfd`, so another thread (the Vault renewer) can wake the
//! single-threaded supervisor without it ever blocking on anything but `epoll_wait`.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// The sending half; cheap to clone, usable from any thread.
pub struct Mailbox<T> {
    tx: Sender<T>,
    wake: Arc<EventFd>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            wake: Arc::clone(&self.wake),
        }
    }
}

/// The receiving half, owned by the event loop.
pub struct Inbox<T> {
    rx: Receiver<T>,
    wake: Arc<EventFd>,
}

/// A new mailbox and its inbox.
pub fn channel<T>() -> nix::Result<(Mailbox<T>, Inbox<T>)> {
    let wake = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    let (tx, rx) = mpsc::channel();
    Ok((
        Mailbox {
            tx,
            wake: Arc::clone(&wake),
        },
        Inbox { rx, wake },
    ))
}

impl<T> Mailbox<T> {
    /// Delivers `message`; false when the inbox is gone (the supervisor is exiting).
    pub fn send(&self, message: T) -> bool {
        if self.tx.send(message).is_err() {
            return false;
        }
        // The counter cannot overflow in practice (2^64 - 2 wakes); a failed write only means
        // the loop wakes on the next message instead.
        let _ = self.wake.write(1);
        true
    }
}

impl<T> Inbox<T> {
    /// Every message waiting now; also resets the wake-up counter.
    pub fn drain(&self) -> Vec<T> {
        let _ = self.wake.read();
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(m) => out.push(m),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return out,
            }
        }
    }
}

impl<T> AsFd for Inbox<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_in_order_across_threads() {
        let (tx, rx) = channel::<u32>().unwrap();
        let t = std::thread::spawn(move || {
            for i in 0..100 {
                tx.send(i);
            }
        });
        t.join().unwrap();
        assert_eq!(rx.drain(), (0..100).collect::<Vec<_>>());
        assert!(rx.drain().is_empty());
    }
}
