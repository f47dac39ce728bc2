import Synchronization

/// A level-triggered wake-up: `signal()` makes the next (or current) `wait` return at once.
///
/// Many signals before a wait fold into one, which is what debounces NOTIFY bursts.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>? = nil
    }
    private let state = Mutex(State())

    func signal() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter { s.waiter = nil; return w }
            s.pending = true
            return nil
        }
        w?.resume()
    }

    /// Returns when signalled, after `timeout`, or when the task is cancelled.
    func wait(timeout: Duration) async {
        if state.withLock({ s in let p = s.pending; s.pending = false; return p }) { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForSignal() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.pending || Task.isCancelled { s.pending = false; return true }
                    s.waiter = cont
                    return false
                }
                if resumeNow { cont.resume() }
            }
        } onCancel: {
            let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
                let w = s.waiter
                s.waiter = nil
                return w
            }
            w?.resume()
        }
    }
}
