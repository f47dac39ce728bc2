import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The whole fleet behind a real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode: a scheduler, two
/// workers and `serve` use DATABASE_URL = PgBouncer, and NEXJOBS_DIRECT_DATABASE_URL = PostgreSQL for LISTEN and
/// the leader lease. 10,000 recorded no-op jobs drain exactly once. Fails (never skips) without pgbouncer.
final class PgBouncerTests: XCTestCase {
    func testFleetThroughPgBouncerTransactionModeDrainsExactlyOnce() async throws {
        let db = try await TestDatabase.create()
        guard let upstream = URLComponents(string: try TestDatabase.adminURL()), let upstreamPort = upstream.port else {
            throw TestEnvironmentError(description: "NEXJOBS_TEST_DATABASE_URL must be a postgres:// URL with a port")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-pgb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let script = TestDatabase.repositoryRoot.appendingPathComponent("deploy/pgbouncer.sh").path
        let bouncerPort = try freeTCPPort()
        let command = try shell(
            ["bash", script, "config", dir.path, "\(bouncerPort)", upstream.host ?? "127.0.0.1", "\(upstreamPort)"])
        let bouncer = Process()
        bouncer.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        bouncer.arguments = command.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(
            String.init)
        bouncer.standardOutput = FileHandle.nullDevice
        bouncer.standardError = FileHandle.nullDevice
        try bouncer.run()
        defer {
            if bouncer.isRunning {
                bouncer.terminate()
                bouncer.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: dir)
        }
        try await assertEventually(timeout: .seconds(20), "PgBouncer accepts connections") {
            (try? self.shell([
                "psql", "-XAtq", "postgres://\(upstream.user ?? "postgres")@127.0.0.1:\(bouncerPort)/pgbouncer", "-c",
                "SHOW VERSION",
            ])) != nil
        }
        var pooled = upstream
        pooled.port = bouncerPort
        pooled.host = "127.0.0.1"
        pooled.path = "/" + db.name
        let pooledURL = pooled.string!

        let total = 10_000
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.jobs (kind, queue, args)
            SELECT 'noop', 'default', '{"record": true}' FROM generate_series(1, \(total))
            """)
        let token = "pgbouncer-test-metrics-token-0123456789"
        let env = [
            "NEXJOBS_DIRECT_DATABASE_URL": db.url, "NEXJOBS_METRICS_TOKEN": token, "NEXJOBS_LOG_LEVEL": "warning",
        ]
        let scheduler = NexjobsProcess(["scheduler"], databaseURL: pooledURL, environment: env)
        let workers = (0..<2).map { _ in
            NexjobsProcess(
                ["worker", "--concurrency", "50", "--claim-batch", "100"], databaseURL: pooledURL, environment: env)
        }
        let serve = NexjobsProcess(
            ["serve", "--listen", "127.0.0.1:0"], databaseURL: pooledURL,
            environment: env.merging(["NEXJOBS_LOG_LEVEL": "info"]) { $1 })
        let all = [scheduler, serve] + workers
        for p in all { try p.start() }
        defer { for p in all where p.process.isRunning { p.signal(SIGKILL) } }

        try await assertEventually(timeout: .seconds(180), "\(total) jobs complete through PgBouncer") {
            let left: Int = try await db.pool.query(
                "SELECT count(*)::int FROM nexjobs.jobs WHERE state <> 'completed'"
            ).first!.decode(0)
            return left == 0
        }
        let row = try await db.pool.query(
            "SELECT count(*)::int, count(DISTINCT job_id)::int FROM nexjobs.noop_log"
        ).first!
        XCTAssertEqual(try row.decode(0, as: Int.self), total, "each job ran exactly once (no duplicate execution)")
        XCTAssertEqual(try row.decode(1, as: Int.self), total, "no job lost")
        try await assertEventually(timeout: .seconds(30), "the scheduler leads through the direct connection") {
            try await db.pool.query(
                "SELECT count(*)::int FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()"
            ).first!.decode(0, as: Int.self) == 1
        }
        // The processes really went through PgBouncer, in transaction mode: its admin console lists their pool.
        var admin = pooled
        admin.path = "/pgbouncer"
        let pools = try shell(["psql", "-XAtq", admin.string!, "-c", "SHOW POOLS"])
        XCTAssertTrue(
            pools.split(separator: "\n").contains { $0.hasPrefix("\(db.name)|") && $0.hasSuffix("|transaction") }, pools
        )

        var port = 0
        try await assertEventually(timeout: .seconds(20), "serve prints its address: \(serve.text)") {
            guard let range = serve.text.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else {
                return false
            }
            port = Int(serve.text[range].split(separator: ":").last!) ?? 0
            return port > 0
        }
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (body, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 200)
        let text = String(decoding: body, as: UTF8.self)
        XCTAssertTrue(
            text.contains(#"nexjobs_job_outcomes_total{kind="noop",queue="default",outcome="completed"} \#(total)"#),
            text)

        for p in all { p.signal(SIGTERM) }
        for p in all {
            let status = await p.wait(timeout: .seconds(40))
            XCTAssertEqual(status, 0, p.text)
        }
        await db.drop()
    }

    /// Runs a command to its exit and returns its output. The output goes through a file, not a pipe: a daemon it
    /// starts (PgBouncer) may inherit the pipe and keep it open forever.
    @discardableResult
    func shell(_ args: [String]) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-shell-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: file.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: file) }
        let handle = try FileHandle(forWritingTo: file)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        p.waitUntilExit()
        try handle.close()
        let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        guard p.terminationStatus == 0 else {
            throw TestEnvironmentError(description: "\(args.joined(separator: " ")) failed: \(text)")
        }
        return text
    }
}
