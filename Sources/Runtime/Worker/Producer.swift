import Foundation
import Logs
import Postgres
import Queue
import Synchronization

/// Claims the jobs of one queue for a worker (one producer per queue).
///
/// Each claim is one statement on this queue alone (`JobStore.claim`), so jobs_claim_idx delivers rows in
/// (priority, run_at, id) order and the claim reads only `limit` index entries. The worker's slots are shared by
/// its producers: a claim first reserves free slots (`Worker.reserveSlots`); on a worker with several queues a
/// producer reserves at most its share (concurrency / queues, at least 1) per statement so no queue starves the
/// others, and claims again at once while its batches come back full. The producer of a capped queue
/// (`WorkerOptions.queueLimits`) never reserves more than its cap less its queue's running jobs and claims in
/// progress; when it finds the cap full it is woken as soon as one of its queue's jobs ends.
///
/// Two paths claim: `directClaim`, on the listener thread right after a NOTIFY for this queue (no thread hop,
/// task switch or pool checkout between the wake-up and the claim: bench/README.md, "Wake path"), and `run`,
/// which keeps claiming while more jobs wait and polls every `pollInterval`.
final class Producer: Sendable {
    let queue: String
    /// This queue's cap in its worker, nil when only `concurrency` bounds it.
    let cap: Worker.QueueCap?
    private unowned let worker: Worker
    private let share: Int
    private let wake = WakeSignal()
    /// Set by the listener for a NOTIFY on this queue; answered after the notifications of one read are handled.
    private let directClaimWanted = Atomic<Bool>(false)

    init(queue: String, cap: Worker.QueueCap?, worker: Worker) {
        self.queue = queue
        self.cap = cap
        self.worker = worker
        let o = worker.options
        share = o.queues.count > 1 ? max(1, o.concurrency / o.queues.count) : o.claimBatch
    }

    /// Wakes the claim loop (a slot was freed, a job of this capped queue ended, the listener reconnected,
    /// shutdown).
    func signal() { wake.signal() }

    /// The listener saw a NOTIFY for this queue.
    func notified() { directClaimWanted.store(true, ordering: .relaxed) }

    private func query(limit: Int) -> PGQuery {
        JobStore.claim(queue: queue, worker: worker.id, deadline: worker.claimDeadline, limit: limit)
    }

    /// Claims on the listener thread if a NOTIFY asked for it.
    ///
    /// When it fills its batch more jobs may wait, and when it cannot run (no free slot, an error) the claim loop
    /// must look: either way it is woken.
    func directClaimIfNotified(on session: borrowing PGListenerSession) {
        guard directClaimWanted.exchange(false, ordering: .relaxed) else { return }
        let want = worker.reserveSlots(atMost: share, cap: cap)
        guard want > 0 else {
            wake.signal()
            return
        }
        let rows: PGRows
        worker.directClaims.add(1, ordering: .relaxed)
        do {
            rows = try session.query(query(limit: want))
        } catch {
            worker.releaseSlots(want, cap: cap, releasing: self)
            worker.logger.warning(
                "claim on the listener connection failed; the claim loop takes over",
                ("queue", queue), ("error", "\(error)"))
            wake.signal()
            return
        }
        do {
            try worker.startClaimed(rows, reserved: want, cap: cap, releasing: self)
        } catch {
            worker.logger.error("claimed jobs could not be started; their lease will expire", ("error", "\(error)"))
        }
        if rows.count == want { wake.signal() }
    }

    /// Claims until the worker stops.
    func run() async {
        var backoff = Duration.milliseconds(100)
        let pollInterval = worker.options.pollInterval
        while !worker.isStopping {
            let want = worker.reserveSlots(atMost: share, cap: cap)
            if want <= 0 {
                if worker.isStopping { break }
                // reserveSlots marked this producer as waiting: a freed slot (or a job of its queue ending, at its
                // cap) wakes it.
                await wake.wait(timeout: pollInterval)
                continue
            }
            do {
                let rows: PGRows
                worker.loopClaims.add(1, ordering: .relaxed)
                do {
                    rows = try await worker.pool.query(query(limit: want))
                } catch {
                    worker.releaseSlots(want, cap: cap, releasing: self)
                    throw error
                }
                backoff = .milliseconds(100)
                try worker.startClaimed(rows, reserved: want, cap: cap, releasing: self)
                if rows.count < want { await wake.wait(timeout: pollInterval) }
            } catch {
                worker.logger.warning(
                    "claim failed; retrying", ("queue", queue), ("error", "\(error)"),
                    ("retry_in", "\(backoff)"))
                await wake.wait(timeout: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }
}
