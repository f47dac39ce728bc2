import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The operator console in a real browser: a real `nexjobs serve`, a real database, headless Chromium driven
/// through W3C WebDriver (chromedriver, JSON over HTTP). Debian's `chromium` and `chromium-driver` are needed
/// (`.ci/run` installs them); without them the test fails.
///
/// With `NEXJOBS_WRITE_SCREENSHOTS=1` the screenshots are written to `docs/console/` (the README shows them).
final class ConsoleBrowserTests: XCTestCase {
    let token = "browser-test-operator-token-0123456789"

    func testConsoleInABrowser() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let pool = db.pool
        func one(_ sql: String) async throws -> Int64 { try await pool.query(PGQuery(unsafeSQL: sql)).first!.decode(0) }

        // Data for every page.
        let failed = try await one(
            """
            INSERT INTO nexjobs.jobs (kind, queue, state, attempt, max_attempts, finished_at, attempted_at, errors)
            VALUES ('sync_ad_account', 'default', 'failed', 2, 2, now(), now() - interval '1 minute',
                    jsonb_build_array(
                      jsonb_build_object('at', now() - interval '2 minutes', 'attempt', 1, 'error', 'HTTP 500 from the platform', 'worker', 'w1'),
                      jsonb_build_object('at', now(), 'attempt', 2, 'error', 'HTTP 502 from the platform', 'worker', 'w2')))
            RETURNING id
            """)
        let xssArgs =
            #"{"name": "<script>window.__xss=1;document.title='pwned'</script>", "note": "\"><img src=x onerror=\"window.__xss=2;document.title='pwned'\">", "access_token": "sekret-value-1"}"#
        let xss = try await pool.query("SELECT nexjobs.enqueue('noop', \(PGJSON(xssArgs))::jsonb)").first!.decode(
            0, as: Int64.self)
        _ = try await one("SELECT nexjobs.enqueue('noop', '{}', 'reports', 0, now() + interval '2 hours')")
        try await pool.execute(
            "INSERT INTO nexjobs.workers (id, host, pid, queues, concurrency, lease_until) VALUES ('host-1:4242', 'host-1', 4242, '{default}', 8, now() + interval '1 hour')"
        )
        try await pool.execute(
            "INSERT INTO nexjobs.leader (name, holder, term_until) VALUES ('scheduler', 'host-1:4243', now() + interval '1 hour')"
        )
        let org = try await one(
            "INSERT INTO nexcomet.organizations (name, plan) VALUES ('Acme Ads', 'pro') RETURNING id")
        try await pool.execute(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform, status, last_synced_at, last_error)
            VALUES (\(org), 'tiktok', 'active', now() - interval '20 minutes', NULL),
                   (\(org), 'snapchat', 'needs_reauth', now() - interval '3 days', 'the grant was revoked (invalid_grant)')
            """)
        try await pool.execute(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, kind, requested_at)
            VALUES (\(org), 'export', now() - interval '25 days'), (\(org), 'erase', now() - interval '35 days'),
                   (\(org), 'export', now() - interval '1 day')
            """)

        let serve = NexjobsProcess(
            ["serve", "--listen", "127.0.0.1:0"], databaseURL: db.url,
            environment: [
                "NEXJOBS_CONSOLE_TOKENS": "other-token-abcdefghijkl," + token, "NEXJOBS_CONSOLE_LOGIN_INTERVAL": "60s",
            ])
        try serve.start()
        addTeardownBlock { serve.signal(SIGKILL) }
        var port = 0
        try await assertEventually(timeout: .seconds(30), "serve prints its address: \(serve.text)") {
            guard let r = serve.text.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else {
                return false
            }
            port = Int(serve.text[r].split(separator: ":").last!) ?? 0
            return port > 0
        }
        let base = "http://127.0.0.1:\(port)"

        let driver = try await WebDriver.start()
        addTeardownBlock { await driver.quit() }

        // Log in: a page without a session sends the browser to /login.
        try await driver.go(base + "/jobs")
        let loginURL = try await driver.currentURL()
        XCTAssertTrue(loginURL.hasSuffix("/login"), loginURL)
        try await driver.screenshot("login")
        try await driver.type("input[name=token]", token)
        try await driver.clickAndWaitForNavigation("button[type=submit]")
        let title = try await driver.title()
        XCTAssertEqual(title, "Overview · NexJobs")

        // Every page.
        let overview = try await driver.text("main")
        for s in ["default", "host-1:4242", "host-1:4243", "sync_ad_account"] {
            XCTAssertTrue(overview.contains(s), "overview lacks \(s): \(overview)")
        }
        try await driver.screenshot("overview")
        try await driver.go(base + "/schedules")
        let schedules = try await driver.text("main")
        XCTAssertTrue(schedules.contains("retention_purge"), schedules)
        XCTAssertTrue(schedules.contains("UTC"), schedules)
        try await driver.screenshot("schedules")
        try await driver.go(base + "/connections")
        let connections = try await driver.text("main")
        XCTAssertTrue(
            connections.contains("Acme Ads") && connections.contains("needs_reauth")
                && connections.contains("invalid_grant"), connections)
        try await driver.screenshot("connections")
        try await driver.go(base + "/privacy")
        let overdueRows = try await driver.count("tr.overdue")
        let soonRows = try await driver.count("tr.soon")
        XCTAssertEqual(overdueRows, 1)
        XCTAssertEqual(soonRows, 1)
        try await driver.screenshot("privacy")

        // Filter the jobs through the form.
        try await driver.go(base + "/jobs")
        try await driver.screenshot("jobs")
        try await driver.click("select[name=state] option[value=failed]")
        try await driver.clickAndWaitForNavigation("form.filters button[type=submit]")
        let filteredURL = try await driver.currentURL()
        XCTAssertTrue(filteredURL.contains("state=failed"), filteredURL)
        let filtered = try await driver.text("table")
        XCTAssertTrue(filtered.contains("sync_ad_account"), filtered)
        XCTAssertFalse(filtered.contains("noop"), filtered)

        // The failed job's page, then retry it (tick the confirmation, submit) and see the database change.
        try await driver.go(base + "/jobs/\(failed)")
        let page = try await driver.text("main")
        XCTAssertTrue(page.contains("HTTP 500 from the platform") && page.contains("HTTP 502 from the platform"), page)
        XCTAssertTrue(
            page.contains("enqueued") && page.contains("attempt 1 failed") && page.contains("attempt 2 failed"), page)
        try await driver.screenshot("job")
        try await driver.click("form[action='/jobs/\(failed)/retry'] input[name=confirm]")
        try await driver.clickAndWaitForNavigation("form[action='/jobs/\(failed)/retry'] button")
        try await assertEventually(timeout: .seconds(10), "the retried job is available again") {
            let s: String = try await pool.query("SELECT state FROM nexjobs.jobs WHERE id = \(failed)").first!.decode(0)
            return s == "available"
        }
        let audited: Int = try await pool.query(
            "SELECT count(*)::int FROM nexjobs.operator_audit WHERE action = 'retry' AND job_ids = ARRAY[\(failed)]::bigint[] AND count = 1"
        ).first!.decode(0)
        XCTAssertEqual(audited, 1)

        // Markup in args is shown as text, and nothing runs.
        try await driver.go(base + "/jobs/\(xss)")
        let xssTitle = try await driver.title()
        XCTAssertEqual(xssTitle, "Job \(xss) · NexJobs")
        let flag = try await driver.execute("return String(window.__xss)")
        XCTAssertEqual(flag, "undefined")
        let scripts = try await driver.count("script")
        let images = try await driver.count("img")
        XCTAssertEqual(scripts, 0, "no script element made it into the page")
        XCTAssertEqual(images, 0, "no img element made it into the page")
        let argsText = try await driver.text("pre")
        XCTAssertTrue(argsText.contains("<script>window.__xss=1"), argsText)
        XCTAssertTrue(argsText.contains(#"\"><img src=x onerror="#), argsText)
        XCTAssertFalse(argsText.contains("sekret-value-1"), "the secret-looking key is redacted")
        try await driver.screenshot("job-xss")

        // Plain HTTP: no session, no or a stale CSRF token, bad input, an expired session.
        let cookie = try await driver.cookie("nexjobs_session")
        let noSession = try await http(base + "/jobs/\(xss)/cancel", form: "confirm=yes", cookie: nil)
        XCTAssertEqual(noSession.status, 401)
        let noCSRF = try await http(base + "/jobs/\(xss)/cancel", form: "confirm=yes", cookie: cookie)
        XCTAssertEqual(noCSRF.status, 403)
        let staleCSRF = try await http(
            base + "/jobs/\(xss)/cancel", form: "confirm=yes&csrf=" + String(repeating: "0", count: 64), cookie: cookie)
        XCTAssertEqual(staleCSRF.status, 403)
        let bulkNoCSRF = try await http(
            base + "/jobs/bulk", form: "action=cancel&state=available&confirm=yes", cookie: cookie)
        XCTAssertEqual(bulkNoCSRF.status, 403)
        let xssState: String = try await pool.query("SELECT state FROM nexjobs.jobs WHERE id = \(xss)").first!.decode(0)
        XCTAssertEqual(xssState, "available", "refused requests changed nothing")
        let badFilter = try await http(base + "/jobs?state=bogus", cookie: cookie)
        XCTAssertEqual(badFilter.status, 400)
        let unknown = try await http(base + "/jobs/987654321", cookie: cookie)
        XCTAssertEqual(unknown.status, 404)
        for (name, value) in [("Content-Security-Policy", "default-src 'none'"), ("X-Content-Type-Options", "nosniff")]
        {
            XCTAssertTrue(unknown.headers[name]?.contains(value) == true, "\(name): \(unknown.headers)")
        }
        try await pool.execute("UPDATE nexjobs.console_sessions SET expires_at = now() - interval '1 second'")
        let expired = try await http(base + "/jobs", cookie: cookie)
        XCTAssertEqual(expired.status, 302)
        XCTAssertEqual(expired.headers["Location"], "/login")
        // The browser's login booked this address's login slot (1 s apart by default); free it rather than wait.
        try await pool.execute("UPDATE nexjobs.rate_limits SET next_slot = now() WHERE key LIKE 'console-login:%'")
        let wrongLogin = try await http(base + "/login", form: "token=wrong-token-000000000000", cookie: nil)
        XCTAssertEqual(wrongLogin.status, 401)
        XCTAssertTrue(wrongLogin.body.contains("Unknown token"), wrongLogin.body)
        // The next attempt, on a new connection (a new source port) within the 60 s interval, is refused unread.
        let again = try await http(base + "/login", form: "token=\(token)", cookie: nil)
        XCTAssertEqual(again.status, 429, "login spacing is per host, not per connection")
        XCTAssertNotNil(again.headers["Retry-After"])
        let health = try await http(base + "/healthz", cookie: nil)
        XCTAssertEqual(health.status, 200)
        XCTAssertFalse(serve.text.contains(token), "the token is never logged")
    }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    /// One request without following redirects; `form` makes it a POST.
    func http(_ url: String, form: String? = nil, cookie: String?) async throws -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        if let form {
            request.httpMethod = "POST"
            request.httpBody = Data(form.utf8)
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        request.httpShouldHandleCookies = false
        if let cookie { request.setValue("nexjobs_session=\(cookie)", forHTTPHeaderField: "Cookie") }
        let session = URLSession(configuration: .ephemeral, delegate: NoRedirect(), delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: request)
        let r = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in r.allHeaderFields { headers["\(k)"] = "\(v)" }
        return Reply(status: r.statusCode, headers: headers, body: String(decoding: data, as: UTF8.self))
    }
}

final class NoRedirect: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}

/// A minimal W3C WebDriver client over chromedriver (JSON over HTTP, no dependencies). chromedriver writes header
/// fields without a space after the colon (`Content-Length:251`), which URLSession on Linux refuses ("Failed
/// writing header"), so the client speaks HTTP/1.1 over a plain socket (`RawHTTP`).
final class WebDriver: @unchecked Sendable {
    let process: Spawned
    let base: String
    var port: Int { Int(base.split(separator: ":").last!)! }
    var session = ""

    static func find(_ names: [String]) -> String? {
        names.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func start() async throws -> WebDriver {
        guard let chromium = find(["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
            let chromedriver = find(["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
        else {
            throw TestEnvironmentError(
                description:
                    "chromium and chromedriver are needed: apt-get install chromium chromium-driver (.ci/run does)")
        }
        var lastError = ""
        for _ in 0..<5 {
            let port = Int.random(in: 26000...31999)
            let p = try Spawned(chromedriver, ["--port=\(port)"])
            let driver = WebDriver(process: p, base: "http://127.0.0.1:\(port)")
            let ready = await waitUntil(timeout: .seconds(15)) {
                do {
                    let status = try await driver.request("GET", "/status")
                    return (status["ready"] as? Bool) == true
                } catch {
                    lastError = "chromedriver on port \(port): \(error)"
                    return false
                }
            }
            guard ready else {
                lastError = "chromedriver did not become ready: " + lastError
                p.kill()
                continue
            }
            let caps: [String: Any] = [
                "capabilities": [
                    "alwaysMatch": [
                        "browserName": "chrome",
                        "goog:chromeOptions": [
                            "binary": chromium,
                            "args": [
                                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--window-size=1280,1000",
                            ],
                        ],
                    ]
                ]
            ]
            let created = try await driver.request("POST", "/session", caps)
            guard let id = created["sessionId"] as? String else {
                p.kill()
                throw TestEnvironmentError(description: "WebDriver session not created: \(created)")
            }
            driver.session = id
            return driver
        }
        throw TestEnvironmentError(description: lastError)
    }

    init(process: Spawned, base: String) {
        self.process = process
        self.base = base
    }

    func quit() async {
        if !session.isEmpty { _ = try? await request("DELETE", "/session/\(session)") }
        process.kill()
    }

    /// Sends a command; returns the reply's `value` when it is an object (or {"value": v} otherwise).
    @discardableResult
    func request(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        var payload = Data()
        if let body {
            payload = try JSONSerialization.data(withJSONObject: body)
        } else if method == "POST" {
            payload = Data("{}".utf8)
        }
        let data = try await Task.detached { try RawHTTP.send(method, self.port, path, payload) }.value
        let object = (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        if let value = object["value"] as? [String: Any] {
            if let error = value["error"] as? String {
                throw TestEnvironmentError(
                    description: "WebDriver \(method) \(path): \(error): \(value["message"] ?? "")")
            }
            return value
        }
        return ["value": object["value"] ?? NSNull()]
    }

    func go(_ url: String) async throws { try await request("POST", "/session/\(session)/url", ["url": url]) }
    func currentURL() async throws -> String {
        try await request("GET", "/session/\(session)/url")["value"] as? String ?? ""
    }
    func title() async throws -> String {
        try await request("GET", "/session/\(session)/title")["value"] as? String ?? ""
    }

    /// The web element identifier of W3C WebDriver (§12.1): an element reference is `{elementKey: id}`.
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    func element(_ css: String) async throws -> String {
        let v = try await request("POST", "/session/\(session)/element", ["using": "css selector", "value": css])
        guard let id = v[Self.elementKey] as? String else {
            throw TestEnvironmentError(description: "no element \(css) (reply keys: \(v.keys.sorted()))")
        }
        return id
    }

    func count(_ css: String) async throws -> Int {
        let v = try await request("POST", "/session/\(session)/elements", ["using": "css selector", "value": css])
        return (v["value"] as? [Any])?.count ?? 0
    }

    func click(_ css: String) async throws {
        let e = try await element(css)
        try await request("POST", "/session/\(session)/element/\(e)/click", [:])
    }

    /// Clicks an element that submits a form or follows a link, then waits (with a deadline) until the browser has
    /// left the current document: its `html` element reference goes stale. Without this, the next command can run
    /// against the old page (chromedriver does not always wait for a navigation a click starts).
    func clickAndWaitForNavigation(_ css: String, timeout: Duration = .seconds(10)) async throws {
        let old = try await element("html")
        try await click(css)
        let left = await waitUntil(timeout: timeout) {
            do {
                _ = try await self.request("GET", "/session/\(self.session)/element/\(old)/name")
                return false
            } catch {
                return "\(error)".contains("stale element reference")
            }
        }
        guard left else { throw TestEnvironmentError(description: "the page did not change after clicking \(css)") }
    }

    func type(_ css: String, _ text: String) async throws {
        _ = await waitUntil(timeout: .seconds(10)) { ((try? await self.count(css)) ?? 0) > 0 }
        let e = try await element(css)
        try await request("POST", "/session/\(session)/element/\(e)/clear", [:])
        try await request("POST", "/session/\(session)/element/\(e)/value", ["text": text])
    }

    func text(_ css: String) async throws -> String {
        let e = try await element(css)
        return try await request("GET", "/session/\(session)/element/\(e)/text")["value"] as? String ?? ""
    }

    func execute(_ script: String) async throws -> String {
        let v = try await request("POST", "/session/\(session)/execute/sync", ["script": script, "args": [Any]()])
        return "\(v["value"] ?? "nil")"
    }

    func cookie(_ name: String) async throws -> String {
        try await request("GET", "/session/\(session)/cookie/\(name)")["value"] as? String ?? ""
    }

    /// Takes a PNG screenshot; with NEXJOBS_WRITE_SCREENSHOTS=1 writes it to docs/console/NAME.png.
    func screenshot(_ name: String) async throws {
        let v = try await request("GET", "/session/\(session)/screenshot")
        guard let b64 = v["value"] as? String, let png = Data(base64Encoded: b64) else {
            throw TestEnvironmentError(description: "no screenshot")
        }
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG")
        if ProcessInfo.processInfo.environment["NEXJOBS_WRITE_SCREENSHOTS"] == "1" {
            let dir = TestDatabase.repositoryRoot.appendingPathComponent("docs/console")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try png.write(to: dir.appendingPathComponent(name + ".png"))
        }
    }
}

/// One HTTP/1.1 request to 127.0.0.1 with `Connection: close`; returns the body (read to the end of the stream).
enum RawHTTP {
    static func send(_ method: String, _ port: Int, _ path: String, _ body: Data) throws -> Data {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestEnvironmentError(description: "socket failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw TestEnvironmentError(description: "connect to port \(port) failed") }
        var request = Data(
            "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
                .utf8)
        request.append(body)
        try request.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Foundation.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard n > 0 else { throw TestEnvironmentError(description: "send failed") }
                sent += n
            }
        }
        // chromedriver keeps the connection open despite `Connection: close`: read the head, then Content-Length bytes.
        var reply = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var bodyStart: Int?
        var length: Int?
        while true {
            if bodyStart == nil, let split = reply.range(of: Data("\r\n\r\n".utf8)) {
                bodyStart = split.upperBound
                let head = String(decoding: reply[..<split.lowerBound], as: UTF8.self).lowercased()
                for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                    length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
                }
                guard length != nil else { throw TestEnvironmentError(description: "no Content-Length in \(head)") }
            }
            if let bodyStart, let length, reply.count - bodyStart >= length {
                return reply[bodyStart..<(bodyStart + length)]
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 { throw TestEnvironmentError(description: "recv failed or timed out") }
            if n == 0 { throw TestEnvironmentError(description: "connection closed before the whole reply") }
            reply.append(contentsOf: buffer[0..<n])
        }
    }
}

/// A child process started with an empty signal mask and default signal actions. The test process blocks most
/// signals and `Process` children inherit that mask; Chromium started under it hangs, and SIGTERM would not stop it.
final class Spawned: @unchecked Sendable {
    let pid: pid_t

    init(_ path: String, _ arguments: [String]) throws {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child = pid_t()
        let rc = posix_spawn(&child, path, &actions, &attr, argv, environ)
        guard rc == 0 else { throw TestEnvironmentError(description: "cannot start \(path): error \(rc)") }
        pid = child
    }

    /// SIGKILL and reap (chromedriver's Chromium children exit when it goes).
    func kill() {
        _ = Foundation.kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }
}
