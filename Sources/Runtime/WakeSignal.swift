import Dispatch
import Synchronization

/// A level-triggered wake-up: `signal()` makes the next (or current) `wait` return at once.
///
/// Many signals before a wait fold into one, which is what debounces NOTIFY bursts. One task waits at a time (a
/// second waiter wakes the first, which callers treat like any early wake-up: they re-check and wait again).
///
/// A wait is one continuation plus one re-armed Dispatch timer, no child tasks (the task-group version cost four
/// task hand-offs per wake-up and a sleep timer per wait; on two cores those sat on the latency path,
/// bench/README.md "Wake path"). A timer firing that was armed for an earlier wait is ignored: the timer only
/// resumes a waiter whose own deadline has come.
final class WakeSignal: @unchecked Sendable {
    // @unchecked: `timer` is a Dispatch source, safe to schedule from any thread; the rest is behind `state`.
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>? = nil
        /// When the current waiter times out.
        var deadline: DispatchTime? = nil
    }
    private let state = Mutex(State())
    private let timer: DispatchSourceTimer

    init() {
        timer = DispatchSource.makeTimerSource(queue: .global())
        timer.setEventHandler { [weak self] in self?.wakeWaiter(onlyIfDue: true) }
        timer.schedule(deadline: .distantFuture)
        timer.activate()
    }

    deinit { timer.cancel() }

    func signal() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        w?.resume()
    }

    /// Returns when signalled, after `timeout`, or when the task is cancelled.
    func wait(timeout: Duration) async {
        if state.withLock({ s in
            let p = s.pending
            s.pending = false
            return p
        }) {
            return
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                let (seconds, attos) = timeout.components
                let ns = max(0, seconds) * 1_000_000_000 + max(0, attos) / 1_000_000_000
                let deadline = DispatchTime.now() + .nanoseconds(Int(min(ns, Int64(Int32.max) * 1_000_000_000)))
                let (now, previous) = state.withLock { s -> (Bool, CheckedContinuation<Void, Never>?) in
                    if s.pending || Task.isCancelled {
                        s.pending = false
                        return (true, nil)
                    }
                    let previous = s.waiter
                    s.waiter = cont
                    s.deadline = deadline
                    return (false, previous)
                }
                previous?.resume()
                if now {
                    cont.resume()
                    return
                }
                timer.schedule(deadline: deadline)
            }
        } onCancel: {
            wakeWaiter(onlyIfDue: false)
        }
    }

    private func wakeWaiter(onlyIfDue: Bool) {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            // 2 ms of slack: a timer may fire a hair before its deadline, and must not then be ignored.
            if onlyIfDue, let d = s.deadline, DispatchTime.now() + .milliseconds(2) < d { return nil }
            let w = s.waiter
            s.waiter = nil
            return w
        }
        w?.resume()
    }
}
