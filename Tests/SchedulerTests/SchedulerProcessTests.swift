import Foundation
import PGTestSupport
import Postgres
import XCTest

/// Real `nexjobs scheduler` processes: election, kill -9 handovers, graceful release.
final class SchedulerProcessTests: XCTestCase {
    // Short terms so five handovers fit in about half a minute; same ratios as the defaults.
    static let term = 3.0
    static let standbyRetry = 0.3
    let timing = [
        "--tick", "100ms", "--term", "3s", "--renew", "500ms", "--standby-retry", "300ms",
        "--safety-margin", "1s",
    ]

    struct Leader: Equatable {
        var holder: String
        var electedAt: Date
    }

    func leader(_ db: TestDatabase) async throws -> Leader? {
        guard
            let row = try await db.pool.query(
                """
                SELECT holder, elected_at FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()
                """
            ).first
        else { return nil }
        return Leader(holder: try row.decode(0), electedAt: try row.decode(1))
    }

    func start(_ id: String, _ db: TestDatabase) throws -> NexjobsProcess {
        let p = NexjobsProcess(
            ["scheduler", "--id", id] + timing, databaseURL: db.url,
            environment: ["NEXJOBS_LOG_LEVEL": "info"])
        try p.start()
        return p
    }

    func testKill9HandoversFireEveryScheduledTimeExactlyOnce() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, kind, args) VALUES ('every2s', '@every 2s', 'noop', '{}')
            """)
        var processes: [String: NexjobsProcess] = [:]
        var serial = 0
        func spawn() throws {
            serial += 1
            let id = "s\(serial)"
            processes[id] = try start(id, db)
        }
        try spawn()
        try spawn()
        defer { for p in processes.values { p.signal(SIGKILL) } }

        // Leaderless windows: from the kill to the moment the new leader was seen.
        var windows: [(from: Date, to: Date)] = []
        var takeovers: [Double] = []
        var leaders: [String] = []
        for _ in 0..<5 {
            var current: Leader? = nil
            let led = try await waitUntil(timeout: .seconds(10)) {
                current = try await self.leader(db)
                return current != nil
            }
            XCTAssertTrue(led, "one of the schedulers leads")
            guard let l = current, let process = processes[l.holder] else {
                return XCTFail("leader \(String(describing: current)) is not one of \(processes.keys.sorted())")
            }
            leaders.append(l.holder)
            // Let the leader act: it fires the every-2s schedule at least once.
            let acted = try await waitUntil(timeout: .seconds(5)) {
                let n: Int = try await db.pool.query(
                    """
                    SELECT count(*) FROM nexjobs.schedule_fires WHERE name = 'every2s' AND holder = \(l.holder)
                    """
                ).first!.decode(0)
                return n > 0
            }
            XCTAssertTrue(acted, "leader \(l.holder) fires due schedules")
            let killedAt = Date()
            process.signal(SIGKILL)
            _ = await process.wait(timeout: .seconds(10))
            processes.removeValue(forKey: l.holder)
            try spawn()  // keep two schedulers running, as a supervisor would
            var next: Leader? = nil
            let tookOver = try await waitUntil(timeout: .seconds(15)) {
                next = try await self.leader(db)
                return next != nil && next?.holder != l.holder
            }
            let seenAt = Date()
            XCTAssertTrue(tookOver, "a standby takes over after kill -9")
            takeovers.append(seenAt.timeIntervalSince(killedAt))
            windows.append((killedAt, seenAt))
        }
        XCTAssertEqual(Set(leaders).count, 5, "five different leaders: \(leaders)")
        print("takeover after kill -9 (s): " + takeovers.map { String(format: "%.2f", $0) }.joined(separator: " "))
        // Takeover within the configured time: the dead leader's term, plus one standby retry, plus slack.
        for t in takeovers {
            XCTAssertLessThan(t, Self.term + Self.standbyRetry + 1.5, "takeovers took \(takeovers)")
        }

        // Let the last leader fire once more, then stop everything gracefully.
        try await Task.sleep(for: .milliseconds(2500))
        for (id, p) in processes {
            p.signal(SIGTERM)
            let status = await p.wait(timeout: .seconds(10))
            XCTAssertEqual(status, 0, "scheduler \(id) exits 0 on SIGTERM:\n\(p.text)")
        }
        processes.removeAll()

        let rows = try await db.pool.query(
            """
            SELECT f.fire_at, f.job_id, j.kind FROM nexjobs.schedule_fires f LEFT JOIN nexjobs.jobs j ON j.id = f.job_id
             WHERE f.name = 'every2s' ORDER BY f.fire_at
            """)
        let fires: [Date] = try rows.map { try $0.decode(0) }
        let jobIDs: [Int64?] = try rows.map { try $0.decode(1, as: Int64?.self) }
        // Each of the five leaders fired at least once, and the last one once more during the final pause.
        XCTAssertGreaterThanOrEqual(fires.count, 6)
        // Exactly once: one job per fire, each fire its own job, and no other noop jobs.
        XCTAssertFalse(jobIDs.contains(nil), "every fire enqueued its job")
        XCTAssertEqual(Set(jobIDs.compactMap { $0 }).count, fires.count)
        XCTAssertEqual(
            try rows.map { try $0.decode(2, as: String?.self) }, Array(repeating: "noop", count: fires.count))
        let jobs: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.jobs WHERE kind = 'noop'").first!.decode(
            0)
        XCTAssertEqual(jobs, fires.count, "no fire time enqueued twice")
        // None skipped: the new leader fires every time missed during a handover (they are within the catch-up
        // window), so fire times are consecutive multiples of 2 s from the first to the last.
        for (a, b) in zip(fires, fires.dropFirst()) {
            XCTAssertEqual(
                b.timeIntervalSince(a), 2, accuracy: 0.001,
                "fire times \(PGTimestamp.format(a)) -> \(PGTimestamp.format(b)): one skipped or doubled")
            XCTAssertEqual(b.timeIntervalSince1970.truncatingRemainder(dividingBy: 2), 0, "fire times are @every 2s")
        }
        // Released on SIGTERM: nobody holds a live term now.
        let after = try await leader(db)
        XCTAssertNil(after)
        await db.drop()
    }

    func testSIGTERMReleasesLeadershipSoTheStandbyTakesOverBeforeTheTermEnds() async throws {
        let db = try await TestDatabase.create()
        let a = try start("first", db)
        defer { a.signal(SIGKILL) }
        let aLeads = try await waitUntil(timeout: .seconds(10)) { try await self.leader(db)?.holder == "first" }
        XCTAssertTrue(aLeads)
        let b = try start("second", db)
        defer { b.signal(SIGKILL) }
        // The standby is running and has tried (and failed) at least once.
        try await Task.sleep(for: .milliseconds(800))
        let stillFirst = try await leader(db)?.holder
        XCTAssertEqual(stillFirst, "first")
        let stoppedAt = ContinuousClock.now
        a.signal(SIGTERM)
        let status = await a.wait(timeout: .seconds(10))
        XCTAssertEqual(status, 0, a.text)
        XCTAssertTrue(a.text.contains("released leadership"), a.text)
        let bLeads = try await waitUntil(timeout: .seconds(10)) { try await self.leader(db)?.holder == "second" }
        XCTAssertTrue(bLeads)
        // A released term is taken at the standby's next attempt, well before the 3 s term would have run out.
        XCTAssertLessThan(ContinuousClock.now - stoppedAt, .milliseconds(2000))
        b.signal(SIGTERM)
        let bStatus = await b.wait(timeout: .seconds(10))
        XCTAssertEqual(bStatus, 0, b.text)
        await db.drop()
    }
}
