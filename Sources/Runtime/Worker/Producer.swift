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
/// others, and claims again at once while its batches come back full.
///
/// Two paths claim: `directClaim`, on the listener thread right after a NOTIFY for this queue (no thread hop,
/// task switch or pool checkout between the wake-up and the claim: bench/README.md, "Wake path"), and `run`,
/// which keeps claiming while more jobs wait and polls every `pollInterval`.
final class Producer: Sendable {
    let queue: String
    private unowned let worker: Worker
    private let share: Int
    private let wake = WakeSignal()
    /// Set by the listener for a NOTIFY on this queue; answered after the notifications of one read are handled.
    private let directClaimWanted = Atomic<Bool>(false)

    init(queue: String, worker: Worker) {
        self.queue = queue
        self.worker = worker
        let o = worker.options
        share = o.queues.count > 1 ? max(1, o.concurrency / o.queues.count) : o.claimBatch
    }

    /// Wakes the claim loop (a slot was freed, the listener reconnected, shutdown).
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
        let want = worker.reserveSlots(atMost: share)
        guard want > 0 else {
            wake.signal()
            return
        }
        let rows: PGRows
        worker.directClaims.add(1, ordering: .relaxed)
        do {
            rows = try session.query(query(limit: want))
        } catch {
            worker.releaseSlots(want)
            worker.logger.warning(
                "claim on the listener connection failed; the claim loop takes over",
                ("queue", queue), ("error", "\(error)"))
            wake.signal()
            return
        }
        do {
            try worker.startClaimed(rows, reserved: want)
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
            let want = worker.reserveSlots(atMost: share)
            if want <= 0 {
                if worker.isStopping { break }
                worker.waitForSlot()
                await wake.wait(timeout: pollInterval)
                continue
            }
            do {
                let rows: PGRows
                do {
                    rows = try await worker.pool.query(query(limit: want))
                } catch {
                    worker.releaseSlots(want)
                    throw error
                }
                backoff = .milliseconds(100)
                try worker.startClaimed(rows, reserved: want)
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
