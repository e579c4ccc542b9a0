//! `aiotest._core.RequestAwaitable`: what a user's task awaits while the
//! engine runs its request. It speaks asyncio's public future protocol
//! (the one `asyncio.isfuture` recognises: `_asyncio_future_blocking`,
//! `get_loop`, `add_done_callback`, `result`, `exception`, `cancel`, ...),
//! so asyncio's own C `Task` steps through it natively, as it does for
//! granian's awaitables; no Python `Future` is made per request.
//!
//! The turn of the engine that finishes the request resolves it and calls
//! the waiting task's wake-up at once, in the task's context, with no
//! `loop.call_soon` handle and no extra pass of the loop's ready queue.
//! Cancelling it (`Task.cancel()`, `asyncio.timeout`) wakes the task
//! through `call_soon`, as `asyncio.Future.cancel` does, while the request
//! itself goes on and is still recorded when it ends.

use pyo3::exceptions::asyncio::{CancelledError, InvalidStateError};
use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

enum State {
    Pending,
    Done(Py<PyAny>),
    Failed(PyErr),
    Cancelled(Option<Py<PyAny>>),
}

/// A done-callback and the context it runs in (asyncio's `context=`).
type Callback = (Py<PyAny>, Option<Py<PyAny>>);

/// A request in flight, as an asyncio future. See the module doc.
#[pyclass(name = "RequestAwaitable", module = "aiotest._core")]
pub struct PyRequestAwaitable {
    event_loop: Py<PyAny>,
    state: State,
    callbacks: Vec<Callback>,
    blocking: bool,
    recorded: bool,
}

impl PyRequestAwaitable {
    /// Whether the engine records the request itself.
    pub(crate) fn recorded(&self) -> bool {
        self.recorded
    }

    /// A pending request on `event_loop`; `recorded` says whether the engine
    /// records it itself (False for `catch_response`).
    pub fn new(event_loop: Py<PyAny>, recorded: bool) -> Self {
        Self {
            event_loop,
            state: State::Pending,
            callbacks: Vec::new(),
            // Yielded straight to the task, as asyncio's Future.__await__
            // yields itself: the task waits on it.
            blocking: true,
            recorded,
        }
    }
}

/// Takes the callbacks out of a settled awaitable; the borrow ends before
/// any of them runs (they read the awaitable again).
fn settle(slf: &Bound<'_, PyRequestAwaitable>, state: State) -> Option<Vec<Callback>> {
    let mut this = slf.borrow_mut();
    if !matches!(this.state, State::Pending) {
        return None;
    }
    this.state = state;
    Some(std::mem::take(&mut this.callbacks))
}

/// Schedules `callbacks` with `loop.call_soon(cb, fut, context=ctx)`, as
/// `asyncio.Future` schedules its own.
fn schedule(slf: &Bound<'_, PyRequestAwaitable>, callbacks: Vec<Callback>) -> PyResult<()> {
    let py = slf.py();
    let event_loop = slf.borrow().event_loop.clone_ref(py);
    let call_soon = event_loop.bind(py).getattr(intern!(py, "call_soon"))?;
    for (callback, context) in callbacks {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "context"), context)?;
        call_soon.call((callback, slf), Some(&kwargs))?;
    }
    Ok(())
}

#[pymethods]
impl PyRequestAwaitable {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Yields itself while pending; then returns the result (as
    /// `StopIteration`), or raises the failure or `CancelledError`.
    fn __next__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let done = !matches!(slf.borrow().state, State::Pending);
        if !done {
            slf.borrow_mut().blocking = true;
            return Ok(slf);
        }
        let value = Self::result(&slf.borrow(), slf.py())?;
        Err(PyStopIteration::new_err((value,)))
    }

    #[getter(_asyncio_future_blocking)]
    fn get_blocking(&self) -> bool {
        self.blocking
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&mut self, blocking: bool) {
        self.blocking = blocking;
    }

    /// Whether the engine records the request itself (False for
    /// `catch_response=True`, whose user code decides).
    #[getter(recorded)]
    fn get_recorded(&self) -> bool {
        self.recorded
    }

    /// The event loop it belongs to.
    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    fn done(&self) -> bool {
        !matches!(self.state, State::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(self.state, State::Cancelled(_))
    }

    /// The response (a `RawResponse`). Raises `CancelledError` once
    /// cancelled, `InvalidStateError` while pending, or the failure.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.state {
            State::Pending => Err(InvalidStateError::new_err("the request is still running")),
            State::Done(value) => Ok(value.clone_ref(py)),
            State::Failed(err) => Err(err.clone_ref(py)),
            State::Cancelled(msg) => Err(match msg {
                Some(msg) => CancelledError::new_err((msg.clone_ref(py),)),
                None => CancelledError::new_err(()),
            }),
        }
    }

    /// The failure, or None. Raises as `result()` does when pending or cancelled.
    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.state {
            State::Failed(err) => Ok(Some(err.value(py).clone().into_any().unbind())),
            _ => self.result(py).map(|_| None),
        }
    }

    /// Calls `callback(self)` in `context` once it is done (at once, through
    /// `call_soon`, when it is done already).
    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(
        slf: Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        if slf.borrow().done() {
            return schedule(&slf, vec![(callback, context)]);
        }
        slf.borrow_mut().callbacks.push((callback, context));
        Ok(())
    }

    /// Removes every registration of `callback`; returns how many there were.
    fn remove_done_callback(&mut self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<usize> {
        let before = self.callbacks.len();
        let mut kept = Vec::with_capacity(before);
        for entry in self.callbacks.drain(..) {
            if !entry.0.bind(py).eq(callback.bind(py))? {
                kept.push(entry);
            }
        }
        self.callbacks = kept;
        Ok(before - self.callbacks.len())
    }

    /// Cancels the wait (the request goes on, and is recorded when it
    /// ends); the waiting task wakes with `CancelledError`. False when
    /// already done.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        match settle(&slf, State::Cancelled(msg)) {
            Some(callbacks) => schedule(&slf, callbacks).map(|()| true),
            None => Ok(false),
        }
    }

    /// Completes it with `value` and runs its callbacks now, each in its
    /// context (the engine's turn calls it). False when it was cancelled.
    pub(crate) fn resolve(slf: Bound<'_, Self>, value: Py<PyAny>) -> bool {
        let py = slf.py();
        let Some(callbacks) = settle(&slf, State::Done(value)) else {
            return false;
        };
        for (callback, context) in callbacks {
            let ran = match context {
                Some(ctx) => ctx
                    .bind(py)
                    .call_method1(intern!(py, "run"), (&callback, &slf))
                    .map(drop),
                None => callback.bind(py).call1((&slf,)).map(drop),
            };
            if let Err(err) = ran {
                err.write_unraisable(py, Some(callback.bind(py)));
            }
        }
        true
    }

    /// Fails it with `exc`; its callbacks run through `call_soon`. False
    /// when it was done already.
    pub(crate) fn fail(slf: Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<bool> {
        match settle(&slf, State::Failed(PyErr::from_value(exc))) {
            Some(callbacks) => schedule(&slf, callbacks).map(|()| true),
            None => Ok(false),
        }
    }

    fn __repr__(&self) -> &'static str {
        match self.state {
            State::Pending => "<aiotest request pending>",
            State::Cancelled(_) => "<aiotest request cancelled>",
            _ => "<aiotest request done>",
        }
    }
}
