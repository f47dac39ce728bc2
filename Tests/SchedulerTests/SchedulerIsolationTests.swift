import Foundation
import Logs
import PGTestSupport
import Postgres
import Runtime
import Synchronization
import XCTest

/// One broken schedule, maintenance argument or source must not stop the others (issue 10): failures are isolated
/// per schedule with a visible last_error and a growing backoff, maintenance is bounded, and a leader that cannot
/// make progress steps down.
final class SchedulerIsolationTests: XCTestCase {
    func cronOnly(_ db: TestDatabase) -> Scheduler {
        var o = SchedulerOptions()
        o.sources = [CronScheduleSource()]
        return Scheduler(pool: db.pool, options: o, holder: "t", logger: quietLogger)
    }

    struct State {
        var lastError: String?
        var failures: Int
        /// Seconds from now to retry_at (nil when there is none).
        var retryIn: Double?
        var nextFireAt: Date?
    }

    func state(_ db: TestDatabase, _ name: String) async throws -> State {
        let r = try await db.pool.query(
            """
            SELECT last_error, failures, extract(epoch FROM retry_at - now())::float8, next_fire_at
              FROM nexjobs.schedules WHERE name = \(name)
            """
        ).first!
        return State(
            lastError: try r.decode(0, as: String?.self), failures: try r.decode(1),
            retryIn: try r.decode(2, as: Double?.self), nextFireAt: try r.decode(3, as: Date?.self))
    }

    func fireCount(_ db: TestDatabase, _ name: String) async throws -> Int {
        try await db.pool.query("SELECT count(*)::int FROM nexjobs.schedule_fires WHERE name = \(name)").first!
            .decode(0)
    }

    /// Makes a schedule's backoff end now, as if its retry time had come.
    func expireBackoff(_ db: TestDatabase, _ name: String) async throws {
        try await db.pool.execute(
            "UPDATE nexjobs.schedules SET retry_at = now() - interval '1 millisecond' WHERE name = \(name)")
    }

    // MARK: - schedules that cannot be computed

    func testAnUncomputableEveryIntervalIsSkippedWithLastErrorAndBackoffWhileLaterSchedulesFire() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        // Written through SQL, past any CLI validation. The broken one has no next fire time yet, so it sorts
        // first (NULLS FIRST); the good one is due one second ago.
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, kind, next_fire_at) VALUES
              ('broken', '@every 1000000000000000', 'noop', NULL),
              ('good', '@every 1s', 'noop', to_timestamp(floor(extract(epoch FROM now())) - 1))
            """)
        let s = cronOnly(db)
        let first = try await s.tickOnce()
        XCTAssertEqual(first["cron"], 1, "the good schedule fires despite the broken one before it")
        let good1 = try await fireCount(db, "good")
        XCTAssertGreaterThanOrEqual(good1, 1, "it fired (every missed second of a short gap fires)")
        var broken = try await state(db, "broken")
        XCTAssertTrue(broken.lastError?.contains("@every") ?? false, "\(broken)")
        XCTAssertEqual(broken.failures, 1)
        XCTAssertNil(broken.nextFireAt)
        assertAhead(broken.retryIn ?? 0, 10, slack: 5, "first backoff is 10 s")

        // Visible in `nexjobs schedules list`, text and JSON.
        let (status, text) = try await NexjobsProcess.run(["schedules", "list"], databaseURL: db.url)
        XCTAssertEqual(status, 0, text)
        let brokenLine = text.split(separator: "\n").first { $0.hasPrefix("broken") } ?? ""
        XCTAssertTrue(brokenLine.contains("error (1 failure, retry at"), text)
        XCTAssertTrue(brokenLine.contains("@every needs a whole number of seconds"), text)
        let (jsonStatus, json) = try await NexjobsProcess.run(["schedules", "list", "--json"], databaseURL: db.url)
        XCTAssertEqual(jsonStatus, 0, json)
        let rows = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]
        let entry = rows?.first { $0["name"] as? String == "broken" }
        XCTAssertTrue((entry?["last_error"] as? String)?.contains("@every") ?? false, json)
        XCTAssertEqual(entry?["failures"] as? Int, 1, json)
        XCTAssertNotNil(entry?["retry_at"] as? String, json)
        XCTAssertTrue(rows?.first { $0["name"] as? String == "good" }?["last_error"] is NSNull, json)

        // During the backoff it is not looked at again; when it ends, the next failure doubles the delay.
        _ = try await s.tickOnce()
        broken = try await state(db, "broken")
        XCTAssertEqual(broken.failures, 1, "not retried before retry_at")
        try await expireBackoff(db, "broken")
        _ = try await s.tickOnce()
        broken = try await state(db, "broken")
        XCTAssertEqual(broken.failures, 2)
        assertAhead(broken.retryIn ?? 0, 20, slack: 5, "second backoff is 20 s")

        // Fixed: it is computed at once and fires; the error clears.
        try await db.pool.execute("UPDATE nexjobs.schedules SET cron = '@every 1s' WHERE name = 'broken'")
        let fired = try await waitUntil(timeout: .seconds(10)) {
            _ = try await s.tickOnce()
            return try await self.fireCount(db, "broken") > 0
        }
        XCTAssertTrue(fired)
        broken = try await state(db, "broken")
        XCTAssertNil(broken.lastError)
        XCTAssertEqual(broken.failures, 0)
        XCTAssertNil(broken.retryIn)
        await db.drop()
    }

    // MARK: - schedules that fail at fire time

    func testSchedulesFailingAtFireTimeAreSkippedWithLastErrorRetriedAndClearedOnceTheyFire() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        // A real database refusal at enqueue time for one kind (as a broken constraint or trigger would).
        try await db.pool.execute(
            """
            CREATE FUNCTION public.refuse_explode() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.kind = 'explode' THEN RAISE EXCEPTION 'explode jobs are refused'; END IF;
                RETURN NEW;
            END $$
            """)
        try await db.pool.execute(
            """
            CREATE TRIGGER refuse_explode BEFORE INSERT ON nexjobs.jobs
                FOR EACH ROW EXECUTE FUNCTION public.refuse_explode()
            """)
        // The three bad ones are due before the good one, so they come first in the tick.
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, kind, args, next_fire_at) VALUES
              ('a_rescue', '@every 1s', 'nexjobs.rescue', '{"batch_size": "abc"}',
               to_timestamp(floor(extract(epoch FROM now())) - 3)),
              ('b_unknown', '@every 1s', 'nexjobs.bogus', '{}', to_timestamp(floor(extract(epoch FROM now())) - 3)),
              ('c_explode', '@every 1s', 'explode', '{}', to_timestamp(floor(extract(epoch FROM now())) - 3)),
              ('z_good', '@every 1s', 'noop', '{}', to_timestamp(floor(extract(epoch FROM now())) - 1))
            """)
        let s = cronOnly(db)
        let first = try await s.tickOnce()
        XCTAssertEqual(first["cron"], 1)
        let good = try await fireCount(db, "z_good")
        XCTAssertGreaterThanOrEqual(good, 1, "the good schedule fired")
        let expected = ["a_rescue": "batch_size", "b_unknown": "unknown maintenance kind", "c_explode": "refused"]
        for (name, fragment) in expected {
            let st = try await state(db, name)
            XCTAssertTrue(st.lastError?.contains(fragment) ?? false, "\(name): \(st)")
            XCTAssertEqual(st.failures, 1, name)
            assertAhead(st.retryIn ?? 0, 10, slack: 5, name)
            XCTAssertNotNil(st.nextFireAt, "\(name): a fire-time failure keeps its fire time for the retry")
            let fires = try await fireCount(db, name)
            XCTAssertEqual(fires, 0, "\(name): nothing recorded for a failed fire")
        }

        // The retry after the backoff fails again: the delay doubles.
        try await expireBackoff(db, "c_explode")
        _ = try await s.tickOnce()
        let again = try await state(db, "c_explode")
        XCTAssertEqual(again.failures, 2)
        assertAhead(again.retryIn ?? 0, 20, slack: 5)

        // The cause goes away: the next retry fires the missed time, and the error clears.
        try await db.pool.execute("DROP TRIGGER refuse_explode ON nexjobs.jobs")
        try await expireBackoff(db, "c_explode")
        // Fixing args through SQL ends the backoff at once (trigger of sql/027).
        try await db.pool.execute(
            "UPDATE nexjobs.schedules SET args = '{\"batch_size\": 10}' WHERE name = 'a_rescue'")
        _ = try await s.tickOnce()
        for name in ["a_rescue", "c_explode"] {
            let st = try await state(db, name)
            XCTAssertNil(st.lastError, "\(name): \(st)")
            XCTAssertEqual(st.failures, 0, name)
            XCTAssertNil(st.retryIn, name)
            let fires = try await fireCount(db, name)
            XCTAssertGreaterThan(fires, 0, name)
        }
        let exploded: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs WHERE kind = 'explode'")
            .first!.decode(0)
        XCTAssertGreaterThan(exploded, 0)
        let stillBroken = try await state(db, "b_unknown")
        XCTAssertEqual(stillBroken.failures, 1, "untouched: still in its backoff")
        await db.drop()
    }

    // MARK: - bounded maintenance

    final class Calls: Sendable {
        let count = Mutex(0)
        let limit: Int
        init(limit: Int) { self.limit = limit }
        /// Counts a call; true until `limit` calls were made (so even an endless loop ends).
        func next() -> Bool {
            count.withLock {
                $0 += 1
                return $0 <= limit
            }
        }
        var made: Int { count.withLock { $0 } }
    }

    func testMaintenanceRefusesBadBatchSizesAndBoundsItsLoops() async throws {
        let db = try await TestDatabase.create()
        for args in [
            #"{"batch_size": 0}"#, #"{"batch_size": -5}"#, #"{"batch_size": "x"}"#,
            #"{"batch_size": 1e30}"#, #"{"batch_size": true}"#, #"{"batch_size": 100001}"#,
        ] {
            let calls = Calls(limit: 1000)
            let context = DueWorkContext(pool: db.pool, logger: quietLogger, holder: "t", isLeader: { calls.next() })
            do {
                let n = try await MaintenanceAction.run(kind: "nexjobs.rescue", args: args, context)
                XCTFail("\(args): ran (\(n) rows, \(calls.made) iterations) instead of being refused")
            } catch let e as ScheduleSpecError {
                XCTAssertTrue(e.message.contains("batch_size"), e.message)
            }
            XCTAssertLessThan(calls.made, 5, "\(args): no loop")
        }
        for args in [
            #"{"completed_retention": "soon"}"#, #"{"failed_retention": "-1 day"}"#,
            #"{"batch_size": 0}"#,
        ] {
            let context = DueWorkContext(pool: db.pool, logger: quietLogger, holder: "t", isLeader: { true })
            do {
                _ = try await MaintenanceAction.run(kind: "nexjobs.prune", args: args, context)
                XCTFail("\(args): prune ran")
            } catch let e as ScheduleSpecError {
                XCTAssertTrue(e.message.contains("nexjobs.prune"), e.message)
            }
        }
        // A loop that keeps finding work stops after 100 batches per fire; the rest waits for the next fire.
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.jobs (kind, state, attempt, locked_by, locked_until, attempted_at)
            SELECT 'report', 'running', 1, 'gone-worker', now() - interval '1 minute', now()
              FROM generate_series(1, 250)
            """)
        let calls = Calls(limit: 100_000)
        let context = DueWorkContext(pool: db.pool, logger: quietLogger, holder: "t", isLeader: { calls.next() })
        let rescued = try await MaintenanceAction.run(kind: "nexjobs.rescue", args: #"{"batch_size": 1}"#, context)
        XCTAssertEqual(rescued, 100)
        XCTAssertLessThanOrEqual(calls.made, 101)
        // It also stops as soon as isLeader() turns false (leadership lost, shutdown, tick budget spent).
        let stopAfter3 = Calls(limit: 3)
        let stopping = DueWorkContext(pool: db.pool, logger: quietLogger, holder: "t", isLeader: { stopAfter3.next() })
        let partial = try await MaintenanceAction.run(kind: "nexjobs.rescue", args: #"{"batch_size": 1}"#, stopping)
        XCTAssertEqual(partial, 3)
        await db.drop()
    }

    // MARK: - fire-time arithmetic

    func testEveryIntervalsOutOfRangeAreRefusedWithoutTrapping() throws {
        for bad in [
            "@every 1000000000000000", "@every 99999999999999999999", "@every 1e300", "@every inf", "@every 3651d",
            "@every 9999999999999999999d", "@every 1.5e3", "@every 106751991167301d", "@every -5s",
        ] {
            XCTAssertThrowsError(try ScheduleSpec(bad, timeZone: "UTC"), bad) { error in
                XCTAssertTrue(error is ScheduleSpecError, "\(bad): \(error)")
                XCTAssertTrue("\(error)".contains("3650d"), "\(bad): the message names the range: \(error)")
            }
        }
        XCTAssertEqual(try ScheduleSpec("@every 3650d", timeZone: "UTC"), .every(seconds: 3650 * 86_400))
        // Whatever a spec holds, computing fire times never traps: out of range is nil.
        let huge = ScheduleSpec.every(seconds: .max)
        XCTAssertNil(huge.next(after: Date()))
        XCTAssertNil(ScheduleSpec.every(seconds: 60).latestFire(atOrBefore: Date(timeIntervalSince1970: 1e300)))
        XCTAssertNil(ScheduleSpec.every(seconds: 60).latestFire(atOrBefore: Date(timeIntervalSince1970: .nan)))
        XCTAssertNil(ScheduleSpec.every(seconds: 60).next(after: ScheduleSpec.latestFireTime))
        XCTAssertEqual(
            ScheduleSpec.every(seconds: 7).latestFire(atOrBefore: Date(timeIntervalSince1970: -10)),
            Date(timeIntervalSince1970: -14))
    }

    // MARK: - a wedged maintenance schedule, as a real process

    func testRescueWithBatchSizeZeroDoesNotWedgeTheSchedulerAndSIGTERMEndsIt() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute(
            """
            UPDATE nexjobs.schedules SET args = '{"batch_size": 0}', next_fire_at = NULL
             WHERE name = 'maintenance.rescue'
            """)
        try await db.pool.execute(
            "INSERT INTO nexjobs.schedules (name, cron, kind) VALUES ('every1s', '@every 1s', 'noop')")
        let p = NexjobsProcess(
            [
                "scheduler", "--id", "wedge", "--tick", "100ms", "--term", "3s", "--renew", "500ms",
                "--standby-retry", "300ms", "--safety-margin", "1s",
            ], databaseURL: db.url, environment: ["NEXJOBS_LOG_LEVEL": "info"])
        try p.start()
        defer { p.signal(SIGKILL) }
        func rescueError() async throws -> String? {
            try await db.pool.query("SELECT last_error FROM nexjobs.schedules WHERE name = 'maintenance.rescue'")
                .first!.decode(0, as: String?.self)
        }
        let reported = try await waitUntil(timeout: .seconds(20)) { try await rescueError() != nil }
        XCTAssertTrue(reported, "the bad rescue schedule gets a last_error:\n\(p.text)")
        let rescue = try await rescueError()
        XCTAssertTrue(rescue?.contains("batch_size 0 is out of range") ?? false, rescue ?? "-")

        // Other schedules keep firing, at a bounded transaction rate (the wedge ran about 2000/s).
        func commits() async throws -> Int {
            try await db.pool.query(
                "SELECT xact_commit::int FROM pg_stat_database WHERE datname = current_database()"
            ).first!.decode(0)
        }
        let c0 = try await fireCount(db, "every1s")
        let x0 = try await commits()
        let t0 = ContinuousClock.now
        let firing = try await waitUntil(timeout: .seconds(10)) { try await self.fireCount(db, "every1s") >= c0 + 3 }
        XCTAssertTrue(firing, "every1s keeps firing:\n\(p.text)")
        // Statistics reach pg_stat_database within about a second; wait for one more fire before reading them.
        _ = try await waitUntil(timeout: .seconds(5)) { try await self.fireCount(db, "every1s") >= c0 + 4 }
        let x1 = try await commits()
        let window = (ContinuousClock.now - t0).components
        let seconds = Double(window.seconds) + Double(window.attoseconds) / 1e18
        let rate = Double(x1 - x0) / seconds
        print(String(format: "transactions/s with the bad rescue schedule in place: %.0f", rate))
        XCTAssertLessThan(rate, 400, "transactions per second while the bad schedule is in place")
        let rescueFires = try await fireCount(db, "maintenance.rescue")
        XCTAssertEqual(rescueFires, 0, "a refused maintenance fire records nothing")

        let stoppedAt = ContinuousClock.now
        p.signal(SIGTERM)
        let status = await p.wait(timeout: .seconds(15))
        XCTAssertEqual(status, 0, p.text)
        XCTAssertLessThan(ContinuousClock.now - stoppedAt, .seconds(10), "SIGTERM honoured within the grace")
        XCTAssertTrue(p.text.contains("released leadership"), p.text)
        await db.drop()
    }

    // MARK: - a leader that cannot make progress steps down

    final class Counter: Sendable {
        let value = Mutex(0)
        func add() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    final class Gate: Sendable {
        let isOpen = Mutex(false)
        func open() { isOpen.withLock { $0 = true } }
        var opened: Bool { isOpen.withLock { $0 } }
    }

    struct FailingSource: DueWorkSource {
        struct Failure: Error {}
        var name: String { "failing" }
        var interval: Duration = .zero
        func run(_ context: DueWorkContext) async throws -> Int { throw Failure() }
    }

    struct CountingSource: DueWorkSource {
        let counter: Counter
        var name: String { "counting" }
        var interval: Duration = .zero
        func run(_ context: DueWorkContext) async throws -> Int {
            counter.add()
            return 0
        }
    }

    /// Hangs until the gate opens, ignoring leadership and cancellation, as a statement that never returns would.
    struct HangingSource: DueWorkSource {
        let gate: Gate
        var name: String { "hanging" }
        var interval: Duration = .zero
        func run(_ context: DueWorkContext) async throws -> Int {
            while !gate.opened { try? await Task.sleep(for: .milliseconds(20)) }
            return 0
        }
    }

    func scheduler(
        _ db: TestDatabase, _ holder: String, _ sources: [any DueWorkSource],
        configure: (inout SchedulerOptions) -> Void = { _ in }
    ) throws -> (Scheduler, PGPool) {
        var o = SchedulerOptions()
        o.election = fastElection()
        o.tick = .milliseconds(50)
        o.sources = sources
        configure(&o)
        let pool = try PGPool(url: db.url, maxConnections: 3)
        return (Scheduler(pool: pool, options: o, holder: holder, logger: quietLogger), pool)
    }

    func testALeaderWhoseTicksKeepFailingStepsDownAndAStandbyTakesOver() async throws {
        let db = try await TestDatabase.create()
        let (a, poolA) = try scheduler(db, "failing-a", [FailingSource()])
        let runA = Task { try await a.run() }
        let aLeads = await waitUntil(timeout: .seconds(5)) { a.election.isLeader }
        XCTAssertTrue(aLeads)
        let progress = Counter()
        let (b, poolB) = try scheduler(db, "standby-b", [CountingSource(counter: progress)])
        let runB = Task { try await b.run() }
        let tookOver = await waitUntil(timeout: .seconds(10)) { b.election.isLeader && progress.count > 0 }
        XCTAssertTrue(tookOver, "the standby takes over from a leader that makes no progress")
        XCTAssertGreaterThanOrEqual(a.timesSteppedDown, 1)
        XCTAssertFalse(a.election.isLeader)
        a.shutdown()
        b.shutdown()
        try await runA.value
        try await runB.value
        await poolA.close()
        await poolB.close()
        await db.drop()
    }

    func testALeaderWithAStuckTickStepsDownAndSIGTERMStillEndsItWithinTheGrace() async throws {
        let db = try await TestDatabase.create()
        let gate = Gate()
        defer { gate.open() }
        let (a, poolA) = try scheduler(db, "stuck-a", [HangingSource(gate: gate)]) { o in
            o.stuckTick = .seconds(1)
            o.shutdownGrace = .seconds(1)
        }
        let finishedA = Gate()
        let runA = Task {
            try await a.run()
            finishedA.open()
        }
        let aLeads = await waitUntil(timeout: .seconds(5)) { a.election.isLeader }
        XCTAssertTrue(aLeads)
        let progress = Counter()
        let (b, poolB) = try scheduler(db, "standby-b", [CountingSource(counter: progress)])
        let runB = Task { try await b.run() }
        let tookOver = await waitUntil(timeout: .seconds(10)) { b.election.isLeader && progress.count > 0 }
        XCTAssertTrue(tookOver, "the standby takes over from a leader whose tick is stuck")
        XCTAssertGreaterThanOrEqual(a.timesSteppedDown, 1)
        // Shutdown while the tick is still stuck: run() returns after the grace, not when the tick ends.
        XCTAssertFalse(gate.opened)
        a.shutdown()
        let ended = await waitUntil(timeout: .seconds(5)) { finishedA.opened }
        XCTAssertTrue(ended, "run() returns within the shutdown grace while a tick hangs")
        gate.open()
        try await runA.value
        b.shutdown()
        try await runB.value
        await poolA.close()
        await poolB.close()
        await db.drop()
    }
}
