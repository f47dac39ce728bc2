import Foundation
import Logs
import Postgres
import Queue
import Synchronization

/// Writes attempts' outcomes in batches: whatever accumulated while the previous batch was being written goes in
/// the next one, as one statement for completions and one for everything else (`JobStore.complete` /
/// `JobStore.finish`), each row fenced on (worker, attempt, state running). A failed write is retried with
/// backoff; outcomes are never dropped.
final class Completer: Sendable {
    private let workerID: String
    private let pool: PGPool
    private let retryPolicy: RetryPolicy
    private let logger: Logger
    private let pending = Mutex<[Outcome]>([])
    private let wake = WakeSignal()

    init(workerID: String, pool: PGPool, retryPolicy: RetryPolicy, logger: Logger) {
        self.workerID = workerID
        self.pool = pool
        self.retryPolicy = retryPolicy
        self.logger = logger
    }

    /// Queues an outcome. Callable under the worker's state lock (the completer never takes that lock while
    /// holding its own), so an outcome leaves the in-flight set and enters this queue atomically.
    func add(_ outcome: Outcome) {
        pending.withLock { $0.append(outcome) }
    }

    /// Wakes the loop (after `add`, outside any lock; also on shutdown).
    func signal() { wake.signal() }

    /// Writes batches until `finished()` is true and nothing is pending. `finished` must become true only once no
    /// new outcome can arrive (it is checked before the queue, so an outcome added before it turned true is seen).
    func run(finished: @Sendable () -> Bool) async {
        var backoff = Duration.milliseconds(100)
        while true {
            let batch = pending.withLock { p -> [Outcome] in
                let b = p
                p.removeAll(keepingCapacity: true)
                return b
            }
            if batch.isEmpty {
                if finished() && pending.withLock({ $0.isEmpty }) { return }
                await wake.wait(timeout: .milliseconds(200))
                continue
            }
            do {
                try await write(batch)
                backoff = .milliseconds(100)
            } catch {
                logger.warning(
                    "writing job results failed; retrying", ("count", String(batch.count)),
                    ("error", "\(error)"), ("retry_in", "\(backoff)"))
                pending.withLock { $0.insert(contentsOf: batch, at: 0) }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// The statements for a batch: completions first, then the unfinished attempts (nil where there are none).
    func statements(_ batch: [Outcome]) -> (complete: PGQuery?, finish: PGQuery?) {
        var doneIDs: [Int64] = []
        var doneAttempts: [Int] = []
        var rows: [JobStore.Unfinished] = []
        for o in batch {
            switch o.disposition {
            case .completed:
                doneIDs.append(o.id)
                doneAttempts.append(o.attempt)
            case .alreadyCompleted, .drop:
                continue
            case .retry(let message):
                rows.append(
                    .retry(
                        id: o.id, attempt: o.attempt, maxAttempts: o.maxAttempts, error: message,
                        delay: retryPolicy.delay(afterAttempt: o.attempt)))
            case .discard(let message):
                rows.append(.discard(id: o.id, attempt: o.attempt, error: message))
            case .snooze(let d, _):
                rows.append(.snooze(id: o.id, attempt: o.attempt, delay: d))
            case .handBack:
                rows.append(.handBack(id: o.id, attempt: o.attempt))
            }
        }
        return (
            doneIDs.isEmpty ? nil : JobStore.complete(ids: doneIDs, attempts: doneAttempts, worker: workerID),
            rows.isEmpty ? nil : JobStore.finish(rows, worker: workerID)
        )
    }

    private func write(_ batch: [Outcome]) async throws {
        let (complete, finish) = statements(batch)
        if let complete { try await pool.execute(complete) }
        if let finish { try await pool.execute(finish) }
    }
}
