import Foundation
import Postgres
import Queue

/// The worker's supervision of its running jobs: one heartbeat per process extends the lease of all its jobs and
/// notices jobs that are no longer its own (cancelled, rescued); one timeout loop cancels attempts past their
/// kind's timeout.
extension Worker {
    /// Cancels attempts that ran past their kind's timeout; sleeps until the earliest deadline (at most 1 s, so a
    /// job started meanwhile with a shorter timeout is caught within a second of its deadline).
    func timeoutLoop() async {
        while !(isDrained && isIdle) {
            let now = ContinuousClock.now
            let (expired, next) = state.withLock { s -> ([Task<Void, Never>?], ContinuousClock.Instant?) in
                var expired: [Task<Void, Never>?] = []
                var next: ContinuousClock.Instant? = nil
                for (jobID, f) in s.inFlight where !f.timedOut {
                    if f.deadline <= now {
                        s.inFlight[jobID]?.timedOut = true
                        expired.append(f.task)
                    } else if next == nil || f.deadline < next! {
                        next = f.deadline
                    }
                }
                return (expired, next)
            }
            for task in expired { task?.cancel() }
            let wait = min(next.map { $0 - now } ?? .seconds(1), .seconds(1))
            await timeoutWake.wait(timeout: max(wait, .milliseconds(5)))
        }
    }

    /// Extends the worker's lease every `heartbeatInterval` (re-registering if its row was removed) and stops
    /// running jobs the database no longer assigns to this worker and attempt.
    func heartbeatLoop() async {
        while !(isDrained && isIdle) {
            await heartbeatWake.wait(timeout: options.heartbeatInterval)
            if isDrained && isIdle { return }
            do {
                let n = try await pool.execute(JobStore.heartbeat(worker: id, lease: options.leaseDuration))
                if n == 0 { try await register() }
                let mine = state.withLock { s in s.inFlight.map { ($0.key, $0.value.attempt) } }
                if !mine.isEmpty {
                    let lost = try await pool.query(
                        JobStore.lostJobs(ids: mine.map(\.0), attempts: mine.map(\.1), worker: id))
                    for row in lost { cancelLocal(try row.decode(0), reason: "no longer running under this worker") }
                }
            } catch {
                logger.warning("heartbeat failed", ("error", "\(error)"))
            }
        }
    }
}
