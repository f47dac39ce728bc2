import Foundation
import Logs
import PGTestSupport
import Postgres
import Queue
import XCTest

@testable import Runtime

/// The worker's roles against a real database: per-queue producers and leader-only maintenance.
extension WorkerTests {
    /// The plan of `JobStore.claim` for one queue, as text.
    func claimPlan(queue: String) async throws -> String {
        let q = JobStore.claim(queue: queue, worker: "planner", deadline: .seconds(60), limit: 100)
        let rows = try await db.pool.query(PGQuery(unsafeSQL: "EXPLAIN " + q.sql, binds: q.binds))
        return try rows.map { try $0.decode(0, as: String.self) }.joined(separator: "\n")
    }

    func testMultiQueueWorkerClaimsEachQueueInIndexOrder() async throws {
        // Enough rows over several queues and states that a sort of the claimable set would be visible.
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.jobs (kind, queue, state, priority, finished_at)
            SELECT 'noop', (ARRAY['alpha', 'beta', 'gamma'])[1 + g % 3],
                   CASE WHEN g % 2 = 0 THEN 'completed' ELSE 'available' END, (g % 7)::smallint,
                   CASE WHEN g % 2 = 0 THEN now() END
              FROM generate_series(1, 30000) g
            """)
        try await db.pool.execute("ANALYZE nexjobs.jobs")
        for queue in ["alpha", "beta"] {
            let plan = try await claimPlan(queue: queue)
            XCTAssertTrue(plan.contains("jobs_claim_idx"), "the claim reads the claim index:\n\(plan)")
            XCTAssertFalse(plan.contains("Sort"), "rows come in index order, no sort:\n\(plan)")
        }
        // Only gamma's backlog stays; the worker drains alpha and beta, each with its own claims.
        try await db.pool.execute("DELETE FROM nexjobs.jobs")
        let alpha = try await client.enqueueMany((0..<300).map { _ in NewJob(kind: "noop", queue: "alpha") })
        let beta = try await client.enqueueMany((0..<300).map { _ in NewJob(kind: "noop", queue: "beta") })
        let gamma = try await client.enqueue(NewJob(kind: "noop", queue: "gamma"))
        let worker = makeWorker {
            $0.queues = ["alpha", "beta"]
            $0.concurrency = 8
        }
        try await withWorker(worker) {
            try await assertEventually(timeout: .seconds(60)) {
                let n: Int = try await self.db.pool.query(
                    "SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed'"
                ).first!.decode(0)
                return n == alpha.count + beta.count
            }
        }
        for (queue, ids) in [("alpha", alpha), ("beta", beta)] {
            let done: Int = try await db.pool.query(
                """
                SELECT count(*)::int FROM nexjobs.jobs
                 WHERE queue = \(queue) AND state = 'completed' AND id = ANY(\(ids)::bigint[]) AND attempt = 1
                """
            ).first!.decode(0)
            XCTAssertEqual(done, 300, "every \(queue) job ran once")
        }
        let untouched = try await state(gamma.id)
        XCTAssertEqual(untouched, .available, "a queue the worker does not serve is not claimed")
    }

    /// Inserts a job that looks claimed by a worker that died a minute ago.
    func insertStaleRunningJob() async throws -> Int64 {
        try await db.pool.query(
            """
            INSERT INTO nexjobs.jobs (kind, state, attempt, locked_by, locked_until, attempted_at)
            VALUES ('noop', 'running', 1, 'dead-worker', now() - interval '1 minute', now()) RETURNING id
            """
        ).first!.decode(0)
    }

    func maintenanceHolder() async throws -> String? {
        try await db.pool.query(
            """
            SELECT holder FROM nexjobs.leader WHERE name = 'maintenance' AND term_until > now()
            """
        ).first?.decode(0, as: String?.self)
    }

    func testMaintenanceRunsOnExactlyOneWorker() async throws {
        func maintaining(_ c: inout WorkerOptions) {
            c.maintenanceInterval = .milliseconds(100)
            c.queues = ["unused"]
        }
        let a = makeWorker(maintaining)
        let b = makeWorker(maintaining)
        let off = makeWorker {
            maintaining(&$0)
            $0.maintenance = false
        }
        XCTAssertNil(off.maintainer, "a worker without maintenance does not campaign")
        let tasks = [a, b, off].map { w in Task { try await w.run() } }
        var stopped = false
        defer { if !stopped { for w in [a, b, off] { w.shutdown() } } }

        // One of the two campaigning workers is elected, and stays the only leader while the other runs.
        try await assertEventually(timeout: .seconds(30)) { try await self.maintenanceHolder() != nil }
        let holder = try await maintenanceHolder()
        XCTAssertTrue([a.id, b.id].contains(holder ?? ""), "a campaigning worker holds the role")
        let (leader, standby) = holder == a.id ? (a, b) : (b, a)

        let first = try await insertStaleRunningJob()
        try await assertEventually(timeout: .seconds(30)) { try await self.state(first) == .retryable }
        let second = try await insertStaleRunningJob()
        try await assertEventually(timeout: .seconds(30)) { try await self.state(second) == .retryable }
        XCTAssertEqual(leader.maintainer?.rescued, 2, "the leader rescued both jobs")
        XCTAssertEqual(standby.maintainer?.rescued, 0, "the standby rescued nothing")
        XCTAssertEqual(standby.maintainer?.leaderPasses, 0, "the standby never ran a maintenance pass")
        XCTAssertFalse(standby.maintainer?.election.isLeader ?? true)
        let stillHolder = try await maintenanceHolder()
        XCTAssertEqual(stillHolder, leader.id)

        // The leader stops (and releases the role): the standby takes over; the worker without maintenance never.
        leader.shutdown()
        try await assertEventually(timeout: .seconds(30)) { try await self.maintenanceHolder() == standby.id }
        let third = try await insertStaleRunningJob()
        try await assertEventually(timeout: .seconds(30)) { try await self.state(third) == .retryable }
        XCTAssertEqual(standby.maintainer?.rescued, 1, "the new leader rescued the third job")
        XCTAssertEqual(leader.maintainer?.rescued, 2, "the old leader did nothing more")
        let offHeld: Int = try await db.pool.query(
            "SELECT count(*)::int FROM nexjobs.leader WHERE holder = \(off.id)"
        ).first!.decode(0)
        XCTAssertEqual(offHeld, 0, "the worker without maintenance never held a role")

        for w in [a, b, off] { w.shutdown() }
        stopped = true
        for t in tasks { try await t.value }
    }
}

extension WorkerTests {
    func testSchedulerHoldingMaintenanceKeepsWorkersFromMaintaining() async throws {
        var so = SchedulerOptions()
        so.tick = .milliseconds(100)
        so.sources = [CronScheduleSource()]
        let scheduler = Scheduler(
            pool: db.pool, options: so, holder: "the-scheduler",
            logger: Logger(label: "test", minimum: .error))
        let schedulerTask = Task { try await scheduler.run() }
        var schedulerStopped = false
        defer { if !schedulerStopped { scheduler.shutdown() } }
        try await assertEventually(timeout: .seconds(30)) { try await self.maintenanceHolder() == "the-scheduler" }

        let worker = makeWorker {
            $0.maintenanceInterval = .milliseconds(100)
            $0.queues = ["unused"]
        }
        try await withWorker(worker) {
            // The scheduler's maintenance.rescue schedule (every 5 s) rescues; the worker only stands by.
            let first = try await insertStaleRunningJob()
            try await assertEventually(timeout: .seconds(30)) { try await self.state(first) == .retryable }
            XCTAssertEqual(
                worker.maintainer?.leaderPasses, 0, "the worker did not maintain while the scheduler held it")
            XCTAssertEqual(worker.maintainer?.rescued, 0)

            // The scheduler stops and releases the role: the worker takes over.
            scheduler.shutdown()
            try await schedulerTask.value
            schedulerStopped = true
            try await assertEventually(timeout: .seconds(30)) { try await self.maintenanceHolder() == worker.id }
            let second = try await insertStaleRunningJob()
            try await assertEventually(timeout: .seconds(30)) { try await self.state(second) == .retryable }
            XCTAssertEqual(worker.maintainer?.rescued, 1, "the worker rescued once it held the role")
        }
    }

    /// A leading scheduler whose rescue schedule is disabled must not take the role: it would hold it and rescue
    /// nothing (seen in the chaos soak, which disables every schedule: running jobs of killed workers stayed
    /// `running` for good).
    func testASchedulerWithoutAnEnabledRescueScheduleLeavesMaintenanceToTheWorkers() async throws {
        try await db.pool.execute("UPDATE nexjobs.schedules SET enabled = false WHERE kind LIKE 'nexjobs.%'")
        var so = SchedulerOptions()
        so.tick = .milliseconds(100)
        so.sources = [CronScheduleSource()]
        let scheduler = Scheduler(
            pool: db.pool, options: so, holder: "the-scheduler",
            logger: Logger(label: "test", minimum: .error))
        let schedulerTask = Task { try await scheduler.run() }
        defer { scheduler.shutdown() }
        try await assertEventually(timeout: .seconds(30)) {
            try await db.pool.query("SELECT holder FROM nexjobs.leader WHERE name = 'scheduler'").first?
                .decode(0, as: String.self) == "the-scheduler"
        }
        let worker = makeWorker {
            $0.maintenanceInterval = .milliseconds(100)
            $0.queues = ["unused"]
        }
        try await withWorker(worker) {
            try await assertEventually(timeout: .seconds(30)) { try await self.maintenanceHolder() == worker.id }
            let stale = try await insertStaleRunningJob()
            try await assertEventually(timeout: .seconds(30)) { try await self.state(stale) == .retryable }
            XCTAssertEqual(worker.maintainer?.rescued, 1, "the worker rescued: the scheduler did not take the role")
        }
        scheduler.shutdown()
        try await schedulerTask.value
    }
}
