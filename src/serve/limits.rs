//! Admission control of `POST /v1/detect`: at most `concurrency` inferences run at once and at
//! most `queue` admitted requests wait for one of them; a request beyond that is refused at once
//! (429), and every request arriving once shutdown has begun is refused (503). Nothing here ever
//! waits without a bound on what it holds: the queue is a count of tickets, not a growable list.
//!
//! Two semaphores, both fixed-size:
//! * tickets (`concurrency + queue`): taken with `try_acquire` when the request's headers arrive,
//!   held until its answer is computed (body upload, decode, inference). Refusal is immediate.
//! * workers (`concurrency`): awaited by an admitted request once its body is read; the permit
//!   moves into the blocking task, so a client that disconnects mid-inference still counts until
//!   that inference ends (the work is never oversubscribed).
//!
//! Never: run inference, touch the HTTP layer (the router turns [`Refusal`]s into responses).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The bounds of one server.
#[derive(Debug)]
pub(super) struct Admission {
    tickets: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    shutting_down: AtomicBool,
    pub(super) concurrency: usize,
    pub(super) queue: usize,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Every inference slot and queue place is taken (429 + Retry-After).
    Overloaded,
    /// Shutdown has begun: in-flight requests finish, new ones go elsewhere (503 + Retry-After).
    ShuttingDown,
}

/// An admitted request's place; dropping it frees the place.
#[derive(Debug)]
pub(super) struct Ticket {
    _permit: OwnedSemaphorePermit,
}

/// The right to run one inference now; dropping it lets the next queued request run.
#[derive(Debug)]
pub(super) struct WorkerPermit {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// `concurrency` is at least 1 (a server that runs nothing would queue forever).
    pub(super) fn new(concurrency: usize, queue: usize) -> Admission {
        let concurrency = concurrency.max(1);
        Admission {
            tickets: Arc::new(Semaphore::new(concurrency + queue)),
            workers: Arc::new(Semaphore::new(concurrency)),
            shutting_down: AtomicBool::new(false),
            concurrency,
            queue,
        }
    }

    /// Admits a request or says why not, without waiting.
    pub(super) fn try_admit(&self) -> Result<Ticket, Refusal> {
        if self.is_shutting_down() {
            return Err(Refusal::ShuttingDown);
        }
        match Arc::clone(&self.tickets).try_acquire_owned() {
            Ok(permit) => Ok(Ticket { _permit: permit }),
            Err(TryAcquireError::NoPermits) => Err(Refusal::Overloaded),
            // The semaphore is never closed; treat it as shutdown should that change.
            Err(TryAcquireError::Closed) => Err(Refusal::ShuttingDown),
        }
    }

    /// Waits for an inference slot. Only admitted requests (at most `concurrency + queue`) ever
    /// wait here, which is what bounds the queue.
    pub(super) async fn worker(&self, _ticket: &Ticket) -> WorkerPermit {
        let permit = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed");
        WorkerPermit { _permit: permit }
    }

    pub(super) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_concurrency_plus_queue_then_refuses_and_frees_on_drop() {
        let a = Admission::new(2, 1);
        let held: Vec<Ticket> = (0..3).map(|_| a.try_admit().expect("admitted")).collect();
        assert_eq!(a.try_admit().unwrap_err(), Refusal::Overloaded);
        drop(held);
        assert!(a.try_admit().is_ok());
    }

    #[test]
    fn zero_queue_and_zero_concurrency_still_run_one() {
        let a = Admission::new(0, 0);
        let t = a.try_admit().expect("one slot");
        assert_eq!(a.try_admit().unwrap_err(), Refusal::Overloaded);
        drop(t);
    }

    #[test]
    fn shutdown_refuses_new_requests_with_its_own_reason() {
        let a = Admission::new(4, 4);
        let _in_flight = a.try_admit().expect("admitted");
        a.begin_shutdown();
        assert_eq!(a.try_admit().unwrap_err(), Refusal::ShuttingDown);
    }
}
