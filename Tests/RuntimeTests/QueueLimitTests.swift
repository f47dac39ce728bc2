import Foundation
import PGTestSupport
import Postgres
import Queue
import XCTest

@testable import Runtime

/// Per-queue caps of one worker (`WorkerOptions.queueLimits`, `--queues a=N`): a queue whose jobs wait inside
/// their slots cannot take every slot, and a capped queue's next job starts as soon as one of its jobs ends.
extension WorkerTests {
    func gateJobs(_ n: Int, queue: String) -> [NewJob] {
        (0..<n).map { _ in NewJob(kind: "probe", args: #"{"mode": "gate"}"#, queue: queue) }
    }

    func completed(_ ids: [Int64]) async throws -> Int {
        try await db.pool.query(
            "SELECT count(*)::int FROM nexjobs.jobs WHERE id = ANY(\(ids)::bigint[]) AND state = 'completed'"
        ).first!.decode(0)
    }

    /// Concurrency 4, `slow` capped at 1: four waiting `slow` jobs hold one slot, and three `fast` jobs run beside
    /// it. Without the cap the `slow` producer claims its share (2) or more and the `fast` jobs get what is left.
    ///
    /// With a 1 h poll every claim follows a wake-up, so both claim paths meet the cap: the first `slow` job,
    /// enqueued before the worker starts, is taken by the claim loop (which then waits at its cap); the other three
    /// come with a NOTIFY while it runs, so the listener's claim must refuse them, and the claim loop it wakes too.
    func testACappedQueueNeverTakesMoreThanItsCapAndLeavesSlotsToOtherQueues() async throws {
        let worker = makeWorker {
            $0.concurrency = 4
            $0.queues = ["slow", "fast"]
            $0.queueLimits = ["slow": 1]
            $0.pollInterval = .seconds(3600)
        }
        let first = try await client.enqueue(gateJobs(1, queue: "slow")[0]).id
        try await withWorker(worker) {
            await assertEventually(timeout: .seconds(10)) { self.probe.starts(first) == 1 }
            let slow = try await client.enqueueMany(gateJobs(3, queue: "slow")) + [first]
            let fast = try await client.enqueueMany(gateJobs(4, queue: "fast"))
            await assertEventually(timeout: .seconds(10), "3 fast jobs beside the slow one") {
                self.probe.running("fast") == 3
            }
            XCTAssertEqual(probe.running("slow"), 1)
            probe.openGate()
            try await assertEventually(timeout: .seconds(30)) { try await completed(slow + fast) == 8 }
        }
        XCTAssertEqual(probe.peak("slow"), 1, "at most one slow job ran at once")
        XCTAssertGreaterThanOrEqual(probe.peak("fast"), 3)
    }

    /// With a 1 h poll, the next job of a queue at its cap starts as soon as the running one ends: the end of a
    /// capped queue's job wakes its producer (nothing else would before the poll: the worker has free slots).
    func testTheNextJobOfAQueueAtItsCapStartsWhenOneEndsNotAtThePoll() async throws {
        let worker = makeWorker {
            $0.concurrency = 4
            $0.queues = ["capped"]
            $0.queueLimits = ["capped": 1]
            $0.pollInterval = .seconds(3600)
        }
        // Enqueued before the worker listens: no NOTIFY; its first claim takes the first, in id order.
        let ids = try await client.enqueueMany(gateJobs(3, queue: "capped"))
        try await withWorker(worker) {
            await assertEventually(timeout: .seconds(10)) { self.probe.starts(ids[0]) == 1 }
            for i in 0..<2 {
                // started() is recorded just before the gate handler enters its queue: wait for the count.
                await assertEventually(timeout: .seconds(10)) { self.probe.running("capped") == 1 }
                probe.release(ids[i])
                await assertEventually(timeout: .seconds(10), "job \(i + 2) started long before the poll") {
                    self.probe.starts(ids[i + 1]) == 1
                }
            }
            probe.release(ids[2])
            try await assertEventually(timeout: .seconds(10)) { try await completed(ids) == 3 }
        }
        XCTAssertEqual(probe.peak("capped"), 1)
    }

    /// A cap at or above `concurrency` is no cap; a queue without one is bounded only by `concurrency`.
    func testACapAtConcurrencyIsNoCap() async throws {
        let worker = makeWorker {
            $0.concurrency = 3
            $0.queues = ["a"]
            $0.queueLimits = ["a": 3, "not-worked": 1]
        }
        XCTAssertNil(worker.producers.first?.cap)
        try await withWorker(worker) {
            let ids = try await client.enqueueMany(gateJobs(4, queue: "a"))
            await assertEventually(timeout: .seconds(10)) { self.probe.running("a") == 3 }
            probe.openGate()
            try await assertEventually(timeout: .seconds(30)) { try await completed(ids) == 4 }
        }
        XCTAssertEqual(probe.peak("a"), 3)
    }

    /// A claim that finds fewer jobs than it reserved gives the slots back; a producer that found them taken in the
    /// meantime is woken then, not at its poll. Concurrency 1, two queues, a 1 h poll: when the empty queue's
    /// producer reserves the one slot first, the other's job (enqueued before the worker listens: no NOTIFY) waits
    /// for that release. The race goes either way, so it is run 20 times; each job must start within 10 s.
    func testSlotsAClaimGivesBackWakeAProducerThatFoundThemTaken() async throws {
        var claims = 0
        for round in 0..<20 {
            let worker = makeWorker {
                $0.concurrency = 1
                $0.queues = ["empty-\(round)", "work-\(round)"]
                $0.pollInterval = .seconds(3600)
            }
            let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "ok"}"#, queue: "work-\(round)"))
                .id
            try await withWorker(worker) {
                try await assertEventually(timeout: .seconds(10), "round \(round): the job started before the poll") {
                    try await self.state(id) == .completed
                }
            }
            claims += worker.loopClaims.load(ordering: .relaxed)
        }
        // And no wake-up loop: a release never wakes the producer that made it, so two producers of empty queues do
        // not keep waking each other with empty claims (a few claims per round; such a loop made hundreds).
        XCTAssertLessThan(claims, 20 * 10, "claim statements in 20 rounds")
    }
}
