import Foundation
import PGTestSupport
import Postgres
import XCTest

/// The built binary, run as an operator would, with its output and exit code checked.
final class CLITests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func nexjobs(_ args: String..., url: String? = nil) async throws -> (Int32, String) {
        try await NexjobsProcess.run(args, databaseURL: url ?? db.url)
    }

    func jobCount() async throws -> Int {
        try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs").first!.decode(0)
    }

    func testEveryCommandHasHelp() async throws {
        for cmd in [
            ["--help"], ["migrate", "--help"], ["worker", "--help"], ["enqueue", "--help"], ["jobs", "--help"],
            ["stats", "--help"], ["serve", "--help"], ["scheduler", "--help"], ["schedules", "--help"],
        ] {
            let (code, out) = try await NexjobsProcess.run(cmd, databaseURL: nil)
            XCTAssertEqual(code, 0, "\(cmd): \(out)")
            XCTAssertTrue(out.contains("Usage"), "\(cmd): \(out)")
        }
        let (code, out) = try await NexjobsProcess.run(["frobnicate"], databaseURL: nil)
        XCTAssertEqual(code, 2)
        XCTAssertTrue(out.contains("unknown command 'frobnicate'"), out)
    }

    func testEnqueueShowRetryCancelRoundTrip() async throws {
        var (code, out) = try await nexjobs(
            "enqueue", "noop", "--args", #"{"sleep_ms": 5}"#, "--queue", "q1",
            "--priority", "3", "--in", "1h", "--unique-key", "u1")
        XCTAssertEqual(code, 0, out)
        let id = out.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(Int64(id), out)
        (code, out) = try await nexjobs("enqueue", "noop", "--unique-key", "u1", "--json")
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("\"id\":\(id)") && out.contains("\"duplicate\":true"), out)
        (code, out) = try await nexjobs("jobs", "show", id, "--json")
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("\"queue\":\"q1\"") && out.contains("\"priority\":3"), out)
        (code, out) = try await nexjobs("jobs", "list", "--state", "available", "--queue", "q1")
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains(id), out)
        (code, out) = try await nexjobs("jobs", "cancel", id)
        XCTAssertEqual(code, 0, out)
        (code, out) = try await nexjobs("jobs", "cancel", id)
        XCTAssertEqual(code, 3, out)
        XCTAssertTrue(out.contains("already cancelled"), out)
        (code, out) = try await nexjobs("jobs", "retry", id)
        XCTAssertEqual(code, 0, out)
        (code, out) = try await nexjobs("stats", "--json")
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("\"queue\":\"q1\""), out)
    }

    func testBadInputGetsAClearErrorAndChangesNothing() async throws {
        let cases: [([String], Int32, String)] = [
            (["enqueue", "noop", "--args", "{not json"], 2, "args are not valid JSON"),
            (["enqueue", "noop", "--args", "[1]"], 2, "args must be a JSON object"),
            (["enqueue", "noop", "--in", "soon"], 2, "--in must be a duration"),
            (["enqueue", "noop", "--run-at", "tomorrow"], 2, "--run-at must be an ISO 8601 timestamp"),
            (["enqueue", "noop", "--priority", "high"], 2, "--priority must be an integer"),
            (["enqueue"], 2, "exactly one KIND"),
            (["enqueue", "noop", "--bogus"], 2, "unknown option --bogus"),
            (["jobs", "list", "--state", "sleeping"], 2, "unknown state 'sleeping'"),
            (["jobs", "show", "abc"], 2, "job ID must be an integer in 1...9223372036854775807"),
            (["jobs", "show", "424242"], 3, "job 424242 not found"),
            (["jobs", "retry", "-5"], 2, "job ID must be an integer in 1...9223372036854775807"),
            (["jobs", "cancel", "424242"], 3, "not found"),
            (["worker", "--concurrency", "0"], 2, "--concurrency must be an integer in 1...10000"),
        ]
        for (args, want, message) in cases {
            let (code, out) = try await NexjobsProcess.run(args, databaseURL: db.url)
            XCTAssertEqual(code, want, "\(args): \(out)")
            XCTAssertTrue(out.contains(message), "\(args): \(out)")
        }
        let n = try await jobCount()
        XCTAssertEqual(n, 0)
    }

    /// `--queues` with per-queue caps (`QUEUE=N`): every malformed or out-of-range cap, a cap above
    /// `--concurrency` and a queue named twice exit 2 with a message naming `--queues`, before anything starts.
    func testWorkerQueueCapsOutOfRangeExitTwoAndStartNothing() async throws {
        let cases: [([String], String)] = [
            (["--queues", "a=0"], "--queues a=N must be an integer in 1...10000, got '0'"),
            (["--queues", "a=-1"], "--queues a=N must be an integer in 1...10000, got '-1'"),
            (["--queues", "a=1e3"], "--queues a=N must be an integer in 1...10000, got '1e3'"),
            (["--queues", "a=10001"], "--queues a=N must be an integer in 1...10000, got '10001'"),
            (["--queues", "a=99999999999999999999"], "--queues a=N must be an integer in 1...10000"),
            (["--queues", "a="], "--queues a=N must be an integer in 1...10000, got ''"),
            (["--queues", "=3"], "--queues: each queue must be 1-128 of A-Z a-z 0-9 _ . : -, got ''"),
            (["--queues", "a=3=4"], "--queues: give QUEUE or QUEUE=N (one '='), got 'a=3=4'"),
            (["--queues", "a,b,a"], "--queues names queue 'a' twice"),
            (["--queues", "a=2,a"], "--queues names queue 'a' twice"),
            (
                ["--queues=default,b=3", "--concurrency", "2"],
                "--queues: the cap of b (3) must be <= --concurrency (2)"
            ),
            (["--queues", "b=11"], "--queues: the cap of b (11) must be <= --concurrency (10)"),
            (["--queues", ","], "--queues needs 1...100 queue names"),
        ]
        for (args, message) in cases {
            let (code, out) = try await NexjobsProcess.run(["worker"] + args, databaseURL: db.url)
            XCTAssertEqual(code, 2, "\(args): \(out)")
            XCTAssertTrue(out.contains(message), "\(args): \(out)")
        }
        let workers: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.workers").first!.decode(0)
        XCTAssertEqual(workers, 0, "no worker started")
        let (code, out) = try await NexjobsProcess.run(["worker", "--help"], databaseURL: nil)
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("QUEUE=N caps the jobs of QUEUE"), out)
    }

    func testBadDatabaseURLNamesTheProblemAndHidesThePassword() async throws {
        var (code, out) = try await NexjobsProcess.run(["stats"], databaseURL: nil)
        XCTAssertEqual(code, 2)
        XCTAssertTrue(out.contains("DATABASE_URL is not set"), out)
        (code, out) = try await NexjobsProcess.run(["stats"], databaseURL: "postgres://app:s3cr3t-pw@127.0.0.1:1/x")
        XCTAssertEqual(code, 1, out)
        XCTAssertFalse(out.contains("s3cr3t-pw"), out)
        XCTAssertTrue(out.contains("127.0.0.1") && out.contains("1"), out)
        (code, out) = try await NexjobsProcess.run(["stats"], databaseURL: "host=x password=s3cr3t-pw port")
        XCTAssertEqual(code, 2, out)
        XCTAssertFalse(out.contains("s3cr3t-pw"), out)
        XCTAssertTrue(out.contains("DATABASE_URL is invalid"), out)
    }

    func testMigrateTwiceAndConcurrentlyIsSafe() async throws {
        let fresh = try await TestDatabase.create(name + "_fresh", migrate: false)
        addTeardownBlock { await fresh.drop() }
        let results = try await withThrowingTaskGroup(of: (Int32, String).self) { group in
            for _ in 0..<3 { group.addTask { try await NexjobsProcess.run(["migrate"], databaseURL: fresh.url) } }
            return try await group.reduce(into: [(Int32, String)]()) { $0.append($1) }
        }
        XCTAssertTrue(results.allSatisfy { $0.0 == 0 }, "\(results)")
        XCTAssertEqual(results.filter { $0.1.contains("applied 001_queue.sql") }.count, 1, "\(results)")
        let (code, out) = try await NexjobsProcess.run(["migrate"], databaseURL: fresh.url)
        XCTAssertEqual(code, 0)
        XCTAssertTrue(out.contains("0 applied"), out)
    }
}
