import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Issue 10 against the real `nexjobs serve` process: /healthz keeps answering while one client hoards or
/// trickles connections and while webhooks wait on a locked row; a PostgreSQL restart costs no 503.
final class ServeHardeningTests: XCTestCase {
    let secret = hardeningSecret

    /// Starts serve against `url` and returns it with its port.
    func startServe(_ url: String) async throws -> (NexjobsProcess, Int) {
        let p = NexjobsProcess(
            ["serve", "--listen", "127.0.0.1:0"], databaseURL: url, environment: ["NEXJOBS_WEBHOOK_SECRET": secret])
        try p.start()
        addTeardownBlock {
            p.signal(SIGTERM)
            _ = await p.wait(timeout: .seconds(20))
        }
        var port = 0
        try await assertEventually(timeout: .seconds(20), "serve prints its address: \(p.text)") {
            guard let range = p.text.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else {
                return false
            }
            port = Int(p.text[range].split(separator: ":").last!) ?? 0
            return port > 0
        }
        return (p, port)
    }

    func connection(_ pool: PGPool) async throws -> Int64 {
        try await pool.query(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (name) VALUES ('o') RETURNING id)
            INSERT INTO nexcomet.ad_connections (organization_id, platform) SELECT id, 'snapchat' FROM o RETURNING id
            """
        ).first!.decode(0)
    }

    func testHealthKeepsAnsweringWhileOneClientHoardsAndTricklesConnections() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let (_, port) = try await startServe(db.url)
        // 140 idle keep-alive connections from 127.0.0.1 (more than the old global cap of 128).
        let hoard: [LineClient] = await onThread {
            (0..<140).compactMap { _ in
                guard let c = LineClient(port: port, source: "127.0.0.1") else { return nil }
                c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                _ = c.status(timeout: 10)
                return c
            }
        }
        XCTAssertEqual(hoard.count, 140)
        let other = await onThread { LineClient(port: port, source: "127.0.0.2")?.get("/healthz") }
        XCTAssertEqual(other, 200, "another client is still answered while one holds 140 idle connections")
        // 400 slowloris connections from 127.0.0.3: all cut off (5 s header deadline), /healthz answered meanwhile.
        let lorises: [LineClient] = await onThread {
            (0..<400).compactMap { _ in
                let c = LineClient(port: port, source: "127.0.0.3")
                c?.send("GET /healthz HTTP/1.1\r\nX-Slow: ")
                return c
            }
        }
        XCTAssertEqual(lorises.count, 400)
        let during = await onThread { LineClient(port: port, source: "127.0.0.2")?.get("/healthz") }
        XCTAssertEqual(during, 200, "answered while 400 slow clients trickle")
        let allClosed = await onThread { () -> Bool in
            let deadline = Date().addingTimeInterval(30)
            var open = lorises
            while !open.isEmpty && Date() < deadline {
                open = open.filter { c in
                    if c.closedOrAnswered() { return false }
                    c.send("a")  // one more header byte: a per-byte timeout would never fire
                    return true
                }
                usleep(200_000)
            }
            return open.isEmpty
        }
        XCTAssertTrue(allClosed, "every slow connection was cut off after the header deadline")
        withExtendedLifetime(hoard) {}
    }

    func testAWebhookBlockedOnARowLockAnswersWithinTheLockTimeoutAndHealthKeepsAnswering() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let id = try await connection(db.pool)
        let (_, port) = try await startServe(db.url)
        // Another transaction holds the connection row for the whole test.
        let locker = try await PGConnection.connect(PGConfig(db.url))
        try await locker.execute("BEGIN")
        try await locker.query("SELECT 1 FROM nexcomet.ad_connections WHERE id = \(id) FOR UPDATE")
        // Six webhooks at once: more than serve's 4 pooled connections, all waiting on the lock.
        let hooks = Task {
            await withTaskGroup(of: (Int?, TimeInterval).self) { g in
                for _ in 0..<6 { g.addTask { await signedWebhook(port, id) } }
                var out: [(Int?, TimeInterval)] = []
                for await r in g { out.append(r) }
                return out
            }
        }
        // While the pool is busy, /healthz answers promptly (it has a connection of its own).
        try await Task.sleep(for: .milliseconds(300))
        let health = await onThread { () -> (Int?, TimeInterval) in
            let start = Date()
            return (LineClient(port: port, source: "127.0.0.2")?.get("/healthz"), Date().timeIntervalSince(start))
        }
        XCTAssertEqual(health.0, 200)
        XCTAssertLessThan(health.1, 5, "health answered while every pooled connection waits on the lock")
        let results = await hooks.value
        for (status, seconds) in results {
            XCTAssertEqual(status, 409, "a webhook on a locked row answers 409 (lock_timeout), not a hang")
            XCTAssertLessThan(seconds, 15, "answered within lock_timeout plus the pool wait")
        }
        try await locker.execute("ROLLBACK")
        await locker.close()
        let after = await signedWebhook(port, id)
        XCTAssertEqual(after.0, 202, "once the lock is gone the webhook goes through")
    }

    func testServeAnswersNo503AfterAPostgreSQLRestart() async throws {
        // A private cluster (restarting the shared one would disturb other tests), ports 26000-31999.
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-serve-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        _ = chmod(tmp.path, 0o755)
        let dir = tmp.appendingPathComponent("data").path
        let script = TestDatabase.repositoryRoot.appendingPathComponent("deploy/pg-cluster.sh").path
        // Output goes to /dev/null and the exit is awaited with waitpid (`runDetached`): the server the script
        // starts would hold a pipe open, and Foundation's Process was seen to miss the script's exit.
        @Sendable func cluster(_ args: String...) async throws {
            let status = try await runDetached(["/bin/bash", script] + args)
            guard status == 0 else {
                throw TestEnvironmentError(description: "pg-cluster.sh \(args) failed with status \(status)")
            }
        }
        var port = 0
        for attempt in 1...4 {
            port = Int.random(in: 26000...31999)
            do {
                try await cluster("start", dir, String(port))
                break
            } catch  where attempt < 4 {
                try? await cluster("stop", dir)
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        addTeardownBlock {
            try? await cluster("stop", dir)
            try? FileManager.default.removeItem(at: tmp)
        }
        let url = "postgres://postgres@127.0.0.1:\(port)/postgres"
        let pool = try PGPool(url: url, maxConnections: 2)
        _ = try await PGMigrator(directory: TestDatabase.sqlDirectory).migrate(pool)
        let id = try await connection(pool)
        let (_, servePort) = try await startServe(url)
        // Warm up: health's own connection and several pooled connections (concurrent webhooks).
        let before = await withTaskGroup(of: Int?.self) { g in
            for _ in 0..<4 { g.addTask { await signedWebhook(servePort, id).0 } }
            var out: [Int?] = []
            for await r in g { out.append(r) }
            return out
        }
        XCTAssertEqual(before, [202, 202, 202, 202])
        let warmHealth = await onThread { LineClient(port: servePort, source: "127.0.0.2")?.get("/healthz") }
        XCTAssertEqual(warmHealth, 200)

        await pool.close()
        try await cluster("restart", dir)

        var statuses: [String: [Int?]] = [:]
        for _ in 0..<3 {
            statuses["healthz", default: []].append(
                await onThread { LineClient(port: servePort, source: "127.0.0.2")?.get("/healthz") })
            let hooks = await withTaskGroup(of: Int?.self) { g in
                for _ in 0..<4 { g.addTask { await signedWebhook(servePort, id).0 } }
                var out: [Int?] = []
                for await r in g { out.append(r) }
                return out
            }
            statuses["webhook", default: []] += hooks
        }
        XCTAssertEqual(statuses["healthz"], [200, 200, 200], "\(statuses)")
        XCTAssertEqual(statuses["webhook"], Array(repeating: 202, count: 12), "no 503 after the restart: \(statuses)")
    }
}

let hardeningSecret = "serve-test-secret-0123456789abcdef"

/// Sends a signed resync webhook with a fresh session (no connection reuse); returns (status, seconds taken).
func signedWebhook(_ port: Int, _ id: Int64, timeout: TimeInterval = 30) async -> (Int?, TimeInterval) {
    let body = Data(#"{"connection_id": \#(id)}"#.utf8)
    let stamp = String(Int(Date().timeIntervalSince1970))
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/webhooks/resync")!)
    request.httpMethod = "POST"
    request.httpBody = body
    request.timeoutInterval = timeout
    request.setValue(stamp, forHTTPHeaderField: "X-Nexjobs-Timestamp")
    request.setValue(
        "sha256=" + hmacSHA256Hex(key: Array(hardeningSecret.utf8), message: Array((stamp + ".").utf8) + Array(body)),
        forHTTPHeaderField: "X-Nexjobs-Signature")
    let session = URLSession(configuration: .ephemeral)
    defer { session.finishTasksAndInvalidate() }
    let start = Date()
    let response = try? await session.data(for: request).1
    return ((response as? HTTPURLResponse)?.statusCode, Date().timeIntervalSince(start))
}

/// A blocking raw-socket HTTP client bound to a chosen loopback source address, so one test acts as many clients.
final class LineClient: @unchecked Sendable {  // used by one thread at a time
    let fd: Int32
    private var buffer: [UInt8] = []

    init?(port: Int, source: String) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok =
            withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            } == 0
            && withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            } == 0
        if !ok {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// `GET path` and the status of the answer (nil when none came within `timeout`).
    func get(_ path: String, timeout: TimeInterval = 10) -> Int? {
        send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
        return status(timeout: timeout)
    }

    /// Reads until a status line arrives; the status code, or nil on close or timeout.
    func status(timeout: TimeInterval) -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = String(decoding: buffer, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let parts = text[..<end.lowerBound].split(separator: " ")
                let length =
                    text.range(of: #"Content-Length: (\d+)"#, options: .regularExpression).flatMap {
                        Int(text[$0].split(separator: " ").last!)
                    } ?? 0
                let headBytes = text[..<end.upperBound].utf8.count
                if buffer.count >= headBytes + length {
                    buffer.removeFirst(headBytes + length)
                    return parts.count >= 2 ? Int(parts[1]) : nil
                }
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000))) > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
        return nil
    }

    /// True when the server answered or closed (without waiting).
    func closedOrAnswered() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }
}

/// Runs blocking socket work on a thread of its own, off the cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in
        Thread { c.resume(returning: body()) }.start()
    }
}
