import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real Prometheus (Debian's `prometheus` binary) scrapes a real `nexjobs serve` with the bearer token, and a
/// NexJobs metric is read back through Prometheus's HTTP query API. A second scrape job without the token must see
/// the target down. Fails (never skips) when `prometheus` is not installed.
final class PrometheusScrapeTests: XCTestCase {
    func testPrometheusScrapesServeWithTheBearerToken() async throws {
        let db = try await TestDatabase.create()
        _ = try await db.pool.query("SELECT nexjobs.enqueue('noop', '{}', 'promq')")
        let token = "prometheus-scrape-token-" + UUID().uuidString
        let serve = NexjobsProcess(
            ["serve", "--listen", "127.0.0.1:0"], databaseURL: db.url, environment: ["NEXJOBS_METRICS_TOKEN": token])
        try serve.start()
        defer { serve.signal(SIGTERM) }
        var servePort = 0
        try await assertEventually(timeout: .seconds(20), "serve prints its address: \(serve.text)") {
            guard let range = serve.text.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else {
                return false
            }
            servePort = Int(serve.text[range].split(separator: ":").last!) ?? 0
            return servePort > 0
        }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-prom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("data"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tokenFile = dir.appendingPathComponent("token")
        try Data(token.utf8).write(to: tokenFile)
        try """
        global:
          scrape_interval: 1s
          scrape_timeout: 1s
        scrape_configs:
          - job_name: nexjobs
            authorization:
              type: Bearer
              credentials_file: \(tokenFile.path)
            static_configs:
              - targets: ['127.0.0.1:\(servePort)']
          - job_name: nexjobs-without-token
            static_configs:
              - targets: ['127.0.0.1:\(servePort)']
        """.write(to: dir.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)

        let promPort = try freeTCPPort()
        let prometheus = Process()
        prometheus.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        prometheus.arguments = [
            "prometheus", "--config.file=\(dir.appendingPathComponent("prometheus.yml").path)",
            "--storage.tsdb.path=\(dir.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(promPort)", "--log.level=warn",
        ]
        let log = dir.appendingPathComponent("prometheus.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        prometheus.standardOutput = logHandle
        prometheus.standardError = logHandle
        try prometheus.run()
        defer {
            if prometheus.isRunning {
                prometheus.terminate()
                prometheus.waitUntilExit()
            }
        }

        func query(_ promQL: String) async -> String? {
            var c = URLComponents(string: "http://127.0.0.1:\(promPort)/api/v1/query")!
            c.queryItems = [URLQueryItem(name: "query", value: promQL)]
            guard let (data, _) = try? await URLSession.shared.data(from: c.url!) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        var answer = ""
        try await assertEventually(timeout: .seconds(60), "Prometheus returns the scraped metric: \(answer)") {
            XCTAssertTrue(prometheus.isRunning, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
            guard prometheus.isRunning else { return true }
            answer = await query(#"nexjobs_jobs{job="nexjobs",queue="promq",state="available"}"#) ?? ""
            return answer.contains(#""status":"success""#) && answer.contains(#","1"]"#)
        }
        XCTAssertTrue(answer.contains(#""queue":"promq""#), answer)
        var down = ""
        try await assertEventually(timeout: .seconds(30), "the scrape without a token fails: \(down)") {
            down = await query(#"up{job="nexjobs-without-token"}"#) ?? ""
            return down.contains(#","0"]"#)
        }
        let up = await query(#"up{job="nexjobs"}"#) ?? ""
        XCTAssertTrue(up.contains(#","1"]"#), up)
        serve.signal(SIGTERM)
        _ = await serve.wait(timeout: .seconds(10))
        await db.drop()
    }
}

/// A TCP port nothing listens on right now (bound to port 0, read back, closed).
func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestEnvironmentError(description: "socket() failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            guard bind(fd, p, len) == 0 else { return -1 }
            return getsockname(fd, p, &len)
        }
    }
    guard bound == 0 else { throw TestEnvironmentError(description: "bind() failed") }
    return Int(UInt16(bigEndian: addr.sin_port))
}
