import Foundation
import PGTestSupport
import Postgres
import Runtime
import XCTest

/// Firing of `nexjobs.schedules` rows by `CronScheduleSource`, driven one tick at a time.
final class CronScheduleTests: XCTestCase {
    func cronOnly(_ db: TestDatabase, holder: String = "t") -> Scheduler {
        var o = SchedulerOptions()
        o.sources = [CronScheduleSource()]
        return Scheduler(pool: db.pool, options: o, holder: holder, logger: quietLogger)
    }

    func fires(_ db: TestDatabase, _ name: String) async throws -> [Date] {
        try await db.pool.query("SELECT fire_at FROM nexjobs.schedule_fires WHERE name = \(name) ORDER BY fire_at")
            .map { try $0.decode(0) }
    }

    func testMigrationSeedsTheDefaultSchedules() async throws {
        let db = try await TestDatabase.create()
        let names = try await ScheduleStore(pool: db.pool).list().map(\.name)
        XCTAssertEqual(names, ["maintenance.prune", "maintenance.rescue", "retention_purge"])
        let purge = try await ScheduleStore(pool: db.pool).list().first { $0.name == "retention_purge" }
        XCTAssertEqual(purge?.cron, "17 * * * *", "hourly since sql/031 (privacy retention)")
        XCTAssertEqual(purge?.timezone, "UTC")
        await db.drop()
    }

    func testANewScheduleFiresFromItsNextFireTimeNotForThePast() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        _ = try await ScheduleStore(pool: db.pool).add(Schedule(name: "hourly", cron: "0 * * * *", kind: "report"))
        let s = cronOnly(db)
        let counts = try await s.tickOnce()
        XCTAssertEqual(counts["cron"], 0)
        let v1 = try await fires(db, "hourly")
        XCTAssertEqual(v1, [])
        let next: Date = try await db.pool.query("SELECT next_fire_at FROM nexjobs.schedules WHERE name = 'hourly'")
            .first!.decode(0)
        XCTAssertGreaterThan(next, Date())
        XCTAssertEqual(Int(next.timeIntervalSince1970) % 3600, 0)
        await db.drop()
    }

    func testAShortGapLikeAHandoverFiresEveryMissedTime() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        _ = try await ScheduleStore(pool: db.pool).add(Schedule(name: "often", cron: "@every 2s", kind: "noop"))
        // The previous leader computed the next fire 8 seconds ago and died.
        try await db.pool.execute(
            """
            UPDATE nexjobs.schedules
               SET next_fire_at = to_timestamp(floor(extract(epoch FROM now()) / 2) * 2) - interval '8 seconds'
             WHERE name = 'often'
            """)
        _ = try await cronOnly(db).tickOnce()
        let fired = try await fires(db, "often")
        XCTAssertGreaterThanOrEqual(fired.count, 5, "each missed 2 s fire time of the gap fires once")
        for (a, b) in zip(fired, fired.dropFirst()) { XCTAssertEqual(b.timeIntervalSince(a), 2, accuracy: 0.001) }
        let jobs: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs WHERE kind = 'noop'").first!
            .decode(0)
        XCTAssertEqual(jobs, fired.count)
        await db.drop()
    }

    func testAfterDowntimeAScheduleFiresOnceForTheMissedWindowAtTheLatestFireTime() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        _ = try await ScheduleStore(pool: db.pool).add(
            Schedule(name: "minutely", cron: "* * * * *", kind: "report", args: #"{"id": "123456789012345678"}"#))
        // As if the last leader computed the next fire 10 minutes ago and then everything was down.
        try await db.pool.execute(
            """
            UPDATE nexjobs.schedules SET next_fire_at = date_trunc('minute', now()) - interval '10 minutes'
             WHERE name = 'minutely'
            """)
        let s = cronOnly(db)
        let first = try await s.tickOnce()
        XCTAssertEqual(first["cron"], 1)
        let dbNow: Date = try await db.pool.query("SELECT date_trunc('minute', now())").first!.decode(0)
        let fired = try await fires(db, "minutely")
        XCTAssertEqual(fired.count, 1, "one fire for the whole missed window")
        // The latest fire time at or before now (the minute may have turned between the two statements).
        XCTAssertLessThanOrEqual(abs(fired[0].timeIntervalSince(dbNow)), 60)
        XCTAssertGreaterThan(fired[0], dbNow.addingTimeInterval(-61))
        // The job carries the schedule's kind and args verbatim (the big id is not rounded).
        let job = try await db.pool.query(
            """
            SELECT j.kind, j.args->>'id' FROM nexjobs.schedule_fires f JOIN nexjobs.jobs j ON j.id = f.job_id
             WHERE f.name = 'minutely'
            """)
        XCTAssertEqual(job.count, 1)
        XCTAssertEqual(try job.first?.decode(0, as: String.self), "report")
        XCTAssertEqual(try job.first?.decode(1, as: String.self), "123456789012345678")
        // A second tick in the same minute fires nothing more.
        let second = try await s.tickOnce()
        let afterSecond = try await fires(db, "minutely")
        XCTAssertTrue(second["cron"] == 0 || afterSecond.count == 2, "only a new minute may fire again")
        await db.drop()
    }

    func testTwoLeadersRacingOverOneFireTimeFireItOnce() async throws {
        let db = try await TestDatabase.create(maxConnections: 12)
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        _ = try await ScheduleStore(pool: db.pool).add(Schedule(name: "race", cron: "0 0 1 1 *", kind: "report"))
        try await db.pool.execute(
            """
            UPDATE nexjobs.schedules SET next_fire_at = date_trunc('year', now()) WHERE name = 'race'
            """)
        // Eight schedulers that all believe they lead tick at once over the same due schedule.
        let schedulers = (0..<8).map { cronOnly(db, holder: "h\($0)") }
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for s in schedulers {
                group.addTask { try await s.tickOnce()["cron"] ?? 0 }
            }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(counts, 1)
        let v2 = try await fires(db, "race").count
        XCTAssertEqual(v2, 1)
        let jobs: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.jobs WHERE kind = 'report'")
            .first!.decode(0)
        XCTAssertEqual(jobs, 1, "exactly one job per fire time")
        await db.drop()
    }

    func testDisabledSchedulesDoNotFireAndReEnablingDoesNotCatchUp() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        let store = ScheduleStore(pool: db.pool)
        _ = try await store.add(Schedule(name: "d", cron: "* * * * *", kind: "report"))
        try await db.pool.execute("UPDATE nexjobs.schedules SET next_fire_at = now() - interval '5 minutes'")
        let v3 = try await store.setEnabled("d", false)
        XCTAssertTrue(v3)
        let s = cronOnly(db)
        let v4 = try await s.tickOnce()["cron"]
        XCTAssertEqual(v4, 0)
        let v5 = try await store.setEnabled("d", true)
        XCTAssertTrue(v5)
        let v6 = try await s.tickOnce()["cron"]
        XCTAssertEqual(v6, 0, "re-enabled: fires from the next fire time on")
        let v7 = try await fires(db, "d")
        XCTAssertEqual(v7, [])
        let v8 = try await store.setEnabled("missing", true)
        XCTAssertFalse(v8)
        await db.drop()
    }

    func testABadDefinitionWrittenBySQLIsReportedAndDoesNotBlockOthers() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("DELETE FROM nexjobs.schedules")
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, kind, next_fire_at) VALUES
              ('bad', '99 * * * *', 'report', now() - interval '1 hour'),
              ('good', '* * * * *', 'report', now() - interval '1 hour')
            """)
        let s = cronOnly(db)
        let v9 = try await s.tickOnce()["cron"]
        XCTAssertEqual(v9, 1)
        let list = try await ScheduleStore(pool: db.pool).list()
        let bad = list.first { $0.name == "bad" }
        XCTAssertNotNil(bad?.lastError)
        XCTAssertNil(bad?.nextFireAt)
        XCTAssertNil(list.first { $0.name == "good" }?.lastError)
        // Fixing the expression clears the error and schedules it again.
        try await db.pool.execute("UPDATE nexjobs.schedules SET cron = '59 * * * *' WHERE name = 'bad'")
        _ = try await s.tickOnce()
        let fixed = try await ScheduleStore(pool: db.pool).list().first { $0.name == "bad" }
        XCTAssertNil(fixed?.lastError)
        XCTAssertNotNil(fixed?.nextFireAt)
        await db.drop()
    }

    func testMaintenanceSchedulesRescueExpiredLeasesInTheLeader() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.jobs (kind, state, attempt, locked_by, locked_until, attempted_at)
            VALUES ('report', 'running', 1, 'gone-worker', now() - interval '1 minute', now())
            """)
        try await db.pool.execute(
            """
            UPDATE nexjobs.schedules SET next_fire_at = to_timestamp(floor(extract(epoch FROM now()) / 5) * 5)
             WHERE name = 'maintenance.rescue'
            """)
        let s = cronOnly(db)
        _ = try await s.tickOnce()
        let state: String = try await db.pool.query("SELECT state FROM nexjobs.jobs WHERE kind = 'report'")
            .first!.decode(0)
        XCTAssertEqual(state, "retryable")
        let record = try await db.pool.query(
            """
            SELECT job_id FROM nexjobs.schedule_fires WHERE name = 'maintenance.rescue'
            """)
        XCTAssertEqual(record.count, 1)
        XCTAssertNil(record.first?.text(0), "maintenance runs in the leader; no job is enqueued")
        await db.drop()
    }
}
