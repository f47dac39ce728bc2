import Foundation
import PGTestSupport
import Postgres
import XCTest

/// Real `nexjobs worker` processes: draining, crashes, signals, database restarts.
final class WorkerProcessTests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func count(_ sql: String, pool: PGPool? = nil) async throws -> Int {
        try await (pool ?? db.pool).query(PGQuery(unsafeSQL: sql)).first!.decode(0)
    }

    func worker(_ extra: [String] = [], url: String? = nil, logLevel: String = "warning") throws -> NexjobsProcess {
        let p = NexjobsProcess(
            ["worker", "--retry-base", "50ms"] + extra, databaseURL: url ?? db.url,
            environment: ["NEXJOBS_LOG_LEVEL": logLevel])
        try p.start()
        return p
    }

    func testTenThousandJobsDrainedByThreeWorkersExactlyOnce() async throws {
        try await db.pool.execute(
            """
            SELECT nexjobs.enqueue('noop', '{"record": true}') FROM generate_series(1, 10000)
            """)
        let workers = try (0..<3).map { _ in try worker(["--concurrency", "20"]) }
        try await assertEventually(timeout: .seconds(180)) {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed'") == 10_000
        }
        for w in workers { w.signal(SIGTERM) }
        for w in workers {
            let status = await w.wait(timeout: .seconds(30))
            XCTAssertEqual(status, 0, w.text)
        }
        let executions = try await count("SELECT count(*)::int FROM nexjobs.noop_log")
        let distinct = try await count("SELECT count(DISTINCT job_id)::int FROM nexjobs.noop_log")
        let leftover = try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state <> 'completed'")
        let byWorkers = try await count("SELECT count(DISTINCT worker)::int FROM nexjobs.noop_log")
        XCTAssertEqual(executions, 10_000)
        XCTAssertEqual(distinct, 10_000)
        XCTAssertEqual(leftover, 0)
        XCTAssertEqual(byWorkers, 3, "all three workers took part")
    }

    func testKilledWorkersJobsAreRescuedAndFinishedByAnother() async throws {
        try await db.pool.execute(
            """
            SELECT nexjobs.enqueue('noop', '{"record": true, "sleep_ms": 3000}') FROM generate_series(1, 4)
            """)
        let a = try worker(["--concurrency", "4", "--lease", "2s", "--heartbeat", "500ms", "--no-maintenance"])
        try await assertEventually(timeout: .seconds(30)) {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'running'") == 4
        }
        a.signal(SIGKILL)
        _ = await a.wait(timeout: .seconds(10))
        let b = try worker([
            "--concurrency", "4", "--lease", "2s", "--heartbeat", "500ms",
            "--maintenance-interval", "300ms",
        ])
        try await assertEventually(timeout: .seconds(60)) {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed'") == 4
        }
        b.signal(SIGTERM)
        let status = await b.wait(timeout: .seconds(30))
        XCTAssertEqual(status, 0, b.text)
        let rescued = try await count(
            """
            SELECT count(*)::int FROM nexjobs.jobs
             WHERE attempt = 2 AND errors->0->>'error' LIKE 'rescued: worker % lost its lease'
            """)
        XCTAssertEqual(rescued, 4, "every job shows the rescue in its history")
        // At-least-once: attempt 1 started on the killed worker, attempt 2 finished on the other.
        let secondAttempts = try await count("SELECT count(*)::int FROM nexjobs.noop_log WHERE attempt = 2")
        XCTAssertEqual(secondAttempts, 4)
    }

    /// `--queues default,capped=1` reaches the worker: the four `capped` jobs run one after another (their
    /// attempts do not overlap) although the worker has four slots, and the caps are logged at start. The jobs
    /// complete in their own transaction (`record_tx`), so `finished_at` is written before the slot is freed; a
    /// completion written by the worker's batched completer could carry a later time than the next job's claim.
    func testQueueCapFromTheCommandLineRunsTheCappedQueueOneAtATime() async throws {
        try await db.pool.execute(
            """
            SELECT nexjobs.enqueue('noop', '{"sleep_ms": 300, "record_tx": true}', 'capped') FROM generate_series(1, 4)
            """)
        let w = try worker(["--queues", "default,capped=1", "--concurrency", "4"], logLevel: "info")
        try await assertEventually {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed'") == 4
        }
        w.signal(SIGTERM)
        let status = await w.wait(timeout: .seconds(30))
        XCTAssertEqual(status, 0, w.text)
        let overlapping = try await count(
            """
            SELECT count(*)::int FROM nexjobs.jobs a JOIN nexjobs.jobs b ON a.id < b.id
             WHERE a.attempted_at < b.finished_at AND b.attempted_at < a.finished_at
            """)
        XCTAssertEqual(overlapping, 0, "capped jobs ran side by side")
        XCTAssertTrue(w.text.contains(#"queue_limits="capped=1""#), w.text)
    }

    func testSIGTERMLetsRunningJobsFinishWithinGrace() async throws {
        try await db.pool.execute(
            """
            SELECT nexjobs.enqueue('noop', '{"sleep_ms": 1500}') FROM generate_series(1, 3)
            """)
        let w = try worker(["--concurrency", "3", "--grace", "20s"], logLevel: "debug")
        try await assertEventually {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'running'") == 3
        }
        w.signal(SIGTERM)
        let status = await w.wait(timeout: .seconds(30))
        XCTAssertEqual(status, 0, w.text)
        let done = try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed' AND attempt = 1")
        let states =
            try await db.pool.query(
                "SELECT string_agg(id || ':' || state || '/' || attempt, ' ' ORDER BY id) FROM nexjobs.jobs"
            ).first?.text(0) ?? ""
        XCTAssertEqual(done, 3, "jobs \(states); worker output:\n\(w.text)")
    }

    func testSIGTERMHandsBackJobsThatOutliveTheGraceWithoutChargingAnAttempt() async throws {
        try await db.pool.execute(
            """
            SELECT nexjobs.enqueue('noop', '{"sleep_ms": 600000}') FROM generate_series(1, 2)
            """)
        let w = try worker(["--concurrency", "2", "--grace", "500ms"])
        try await assertEventually {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'running'") == 2
        }
        let clock = ContinuousClock()
        let began = clock.now
        w.signal(SIGTERM)
        let status = await w.wait(timeout: .seconds(30))
        XCTAssertEqual(status, 0, w.text)
        XCTAssertLessThan(clock.now - began, .seconds(10))
        let handedBack = try await count(
            """
            SELECT count(*)::int FROM nexjobs.jobs
             WHERE state = 'available' AND attempt = 0 AND errors = '[]' AND locked_by IS NULL
            """)
        XCTAssertEqual(handedBack, 2)
    }

    func testWorkerSurvivesAPostgreSQLRestartWithoutLosingJobs() async throws {
        // A private cluster: restarting the shared one would disturb other tests.
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-restart-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        _ = chmod(tmp.path, 0o755)
        let dataDir = tmp.appendingPathComponent("data").path
        let script = TestDatabase.repositoryRoot.appendingPathComponent("deploy/pg-cluster.sh").path
        // Output goes to /dev/null: the server started by the script would hold a pipe open forever.
        func cluster(_ args: String...) async throws {
            let status = try await runDetached(["/bin/bash", script] + args)
            guard status == 0 else {
                throw TestEnvironmentError(description: "pg-cluster.sh \(args) failed with status \(status)")
            }
        }
        // Ports below the ephemeral range (32768+), where outgoing sockets of parallel tests cannot hold them;
        // a few attempts in case another test's server took one.
        var port = ""
        for attempt in 1...4 {
            port = String(Int.random(in: 10000...32000))
            do {
                try await cluster("start", dataDir, port)
                break
            } catch  where attempt < 4 {
                try? await cluster("stop", dataDir)
            } catch {
                let log = (try? String(contentsOfFile: dataDir + "/server.log", encoding: .utf8)) ?? "(no server.log)"
                throw TestEnvironmentError(description: "\(error); server.log:\n\(log.suffix(2000))")
            }
        }
        let user = getuid() == 0 ? "postgres" : String(cString: getpwuid(getuid())!.pointee.pw_name)
        let adminURL = "postgres://\(user)@127.0.0.1:\(port)/postgres"
        defer {
            // Stop synchronously: the cluster must not outlive the test.
            _ = system("/bin/bash '\(script)' stop '\(dataDir)' >/dev/null 2>&1")
            try? FileManager.default.removeItem(at: tmp)
        }
        let (code, out) = try await NexjobsProcess.run(["migrate"], databaseURL: adminURL)
        XCTAssertEqual(code, 0, out)
        let pool = try PGPool(url: adminURL, maxConnections: 2)
        try await pool.execute(
            """
            SELECT nexjobs.enqueue('noop', '{"record": true, "sleep_ms": 20}') FROM generate_series(1, 300)
            """)
        let w = try worker(["--concurrency", "5", "--lease", "30s"], url: adminURL)
        try await assertEventually {
            try await count("SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed'", pool: pool) >= 20
        }
        try await cluster("restart", dataDir)
        let afterRestart = try PGPool(url: adminURL, maxConnections: 2)
        try await assertEventually(timeout: .seconds(90), "worker output: \(w.text)") {
            (try? await count(
                "SELECT count(*)::int FROM nexjobs.jobs WHERE state = 'completed'",
                pool: afterRestart)) == 300
        }
        w.signal(SIGTERM)
        let status = await w.wait(timeout: .seconds(30))
        XCTAssertEqual(status, 0, w.text)
        XCTAssertTrue(w.text.contains("failed"), "the outage was noticed and logged")
        let distinct = try await count("SELECT count(DISTINCT job_id)::int FROM nexjobs.noop_log", pool: afterRestart)
        XCTAssertEqual(distinct, 300)
        await pool.close()
        await afterRestart.close()
    }
}
