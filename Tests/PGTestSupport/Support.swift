import Foundation
import Postgres
import XCTest

/// Errors of the test environment itself.
public struct TestEnvironmentError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A fresh, migrated database owned by one test, on the server named by `NEXJOBS_TEST_DATABASE_URL`.
///
/// Without that variable every test that needs PostgreSQL fails (it never skips): run the tests through
/// `deploy/test.sh`, which starts a throwaway cluster and sets it.
public struct TestDatabase: Sendable {
    public let name: String
    /// URL of this test's own database.
    public let url: String
    public let pool: PGPool
    let adminURL: String

    /// Creates `t_<test>_<random>` and applies every migration in `sql/`.
    public static func create(_ label: String = #function, maxConnections: Int = 8, migrate: Bool = true)
        async throws -> TestDatabase
    {
        let admin = try adminURL()
        let slug = label.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }.prefix(30)
        let name = "t_\(String(slug))_\(UInt32.random(in: 0...UInt32.max))"
        let adminPool = try PGPool(url: admin, maxConnections: 1)
        // The name is generated above from [a-z0-9_] only; CREATE DATABASE cannot take a bind parameter.
        try await adminPool.execute(PGQuery(unsafeSQL: "CREATE DATABASE \"\(name)\""))
        await adminPool.close()
        let url = try replaceDatabase(in: admin, with: name)
        let pool = try PGPool(url: url, maxConnections: maxConnections)
        if migrate {
            _ = try await PGMigrator(directory: sqlDirectory).migrate(pool)
        }
        return TestDatabase(name: name, url: url, pool: pool, adminURL: admin)
    }

    /// Closes the pool and drops the database (connections still open are terminated).
    public func drop() async {
        await pool.close()
        guard let admin = try? PGPool(url: adminURL, maxConnections: 1) else { return }
        _ = try? await admin.execute(PGQuery(unsafeSQL: "DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)"))
        await admin.close()
    }

    public static func adminURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["NEXJOBS_TEST_DATABASE_URL"], !url.isEmpty else {
            throw TestEnvironmentError(
                description: """
                    NEXJOBS_TEST_DATABASE_URL is not set: these tests need a real PostgreSQL. Run them with \
                    `bash deploy/test.sh` (it starts a throwaway cluster), or set it to an admin URL.
                    """)
        }
        return url
    }

    /// The repository's `sql/` folder.
    public static var sqlDirectory: URL { repositoryRoot.appendingPathComponent("sql") }

    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// Swaps the database name of a `postgres://` URI (or appends `dbname=` to a conninfo string).
    static func replaceDatabase(in url: String, with name: String) throws -> String {
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            guard var c = URLComponents(string: url) else {
                throw TestEnvironmentError(description: "NEXJOBS_TEST_DATABASE_URL is not a valid URI")
            }
            c.path = "/" + name
            return c.string!
        }
        return url + " dbname=\(name)"
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
public func waitUntil(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// The built `nexjobs` executable, next to the test bundle.
public var nexjobsExecutable: URL {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("nexjobs")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return repositoryRoot().appendingPathComponent(".build/debug/nexjobs")
}

func repositoryRoot() -> URL { TestDatabase.repositoryRoot }

/// A child process running the `nexjobs` binary, with its output captured.
public final class NexjobsProcess: @unchecked Sendable {
    // `output` is guarded by `lock`; Process itself is only started/signalled from the owning test.
    public let process = Process()
    private let lock = NSLock()
    private var output = Data()

    public init(_ arguments: [String], databaseURL: String?, environment: [String: String] = [:]) {
        process.executableURL = nexjobsExecutable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["DATABASE_URL"] = databaseURL
        if databaseURL == nil { env.removeValue(forKey: "DATABASE_URL") }
        env["NEXJOBS_SQL_DIR"] = TestDatabase.sqlDirectory.path
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock()
            self.output.append(d)
            self.lock.unlock()
        }
    }

    public func start() throws { try process.run() }

    public var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: output, as: UTF8.self)
    }

    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit up to `timeout`; returns the exit status or nil if it is still running.
    public func wait(timeout: Duration = .seconds(60)) async -> Int32? {
        let exited = await waitUntil(timeout: timeout) { !process.isRunning }
        guard exited else { return nil }
        // Let the pipe drain the last bytes.
        try? await Task.sleep(for: .milliseconds(50))
        return process.terminationStatus
    }

    /// Runs to completion and returns (status, output).
    public static func run(
        _ arguments: [String], databaseURL: String?, environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> (Int32, String) {
        let p = NexjobsProcess(arguments, databaseURL: databaseURL, environment: environment)
        try p.start()
        guard let status = await p.wait(timeout: timeout) else {
            p.signal(SIGKILL)
            throw TestEnvironmentError(description: "nexjobs \(arguments.joined(separator: " ")) did not exit")
        }
        return (status, p.text)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Fails the test unless `condition` holds within `timeout` (polled every 20 ms).
public func assertEventually(
    timeout: Duration = .seconds(30), _ message: @autoclosure () -> String = "",
    file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async rethrows {
    if try await waitUntil(timeout: timeout, condition) { return }
    XCTFail("condition not met within \(timeout) \(message())", file: file, line: line)
}

/// Runs a command to completion with its output discarded and returns its exit status.
///
/// Uses posix_spawn and a blocking waitpid on a thread of its own: Foundation's `Process` was seen to miss the exit
/// of `deploy/pg-cluster.sh` (the child stayed a zombie), because the server it starts inherits the session.
public func runDetached(_ argv: [String]) async throws -> Int32 {
    var pid: pid_t = 0
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd in [Int32(0), 1, 2] {
        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
    }
    var cargs = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
    guard rc == 0 else { throw TestEnvironmentError(description: "cannot start \(argv[0]): errno \(rc)") }
    let spawned = pid
    let status: Int32 = await withCheckedContinuation { cont in
        Thread.detachNewThread {
            var st: Int32 = 0
            while waitpid(spawned, &st, 0) < 0 && errno == EINTR {}
            // Exit code when it exited normally, 128 + signal otherwise.
            let code = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
            cont.resume(returning: code)
        }
    }
    return status
}

extension NexjobsProcess {
    /// Runs `nexjobs` with `input` on its stdin and returns (status, stdout + stderr).
    ///
    /// The blocking pipe reads run on a Dispatch thread, off the cooperative pool. `environment` is added to this
    /// process's own environment.
    public static func run(_ arguments: [String], input: String, environment: [String: String]) async throws
        -> (Int32, String)
    {
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                do {
                    let p = Process()
                    p.executableURL = nexjobsExecutable
                    p.arguments = arguments
                    p.environment = merged
                    let stdin = Pipe()
                    let stdout = Pipe()
                    p.standardInput = stdin
                    p.standardOutput = stdout
                    p.standardError = stdout
                    try p.run()
                    stdin.fileHandleForWriting.write(Data(input.utf8))
                    try stdin.fileHandleForWriting.close()
                    let out = stdout.fileHandleForReading.readDataToEndOfFile()
                    p.waitUntilExit()
                    continuation.resume(returning: (p.terminationStatus, String(decoding: out, as: UTF8.self)))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}

extension TestDatabase {
    /// Sessions of this database waiting on a lock (optionally only those of one `application_name`): how a test
    /// knows a statement is blocked before it releases what blocks it.
    public func lockWaiters(applicationName: String? = nil) async throws -> Int {
        try await pool.query(
            """
            SELECT count(*)::int FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND (\(applicationName)::text IS NULL OR application_name = \(applicationName)::text)
            """
        ).first!.decode(0)
    }
}

/// A time still to wait (a backoff, a reserved slot), read some moments after the instant it counts from: it only
/// shrinks with the time the test takes (a stalled machine), never grows, so it is checked one-sided: at most a hair
/// above `expected`, at least `expected - slack` (default 1.5 s; keep it below the gap between the values a test
/// tells apart).
public func assertAhead(
    _ seconds: Double, _ expected: Double, slack: Double = 1.5, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertLessThanOrEqual(seconds, expected + 0.05, message, file: file, line: line)
    XCTAssertGreaterThanOrEqual(seconds, expected - slack, message, file: file, line: line)
}
