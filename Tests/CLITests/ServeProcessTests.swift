import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `nexjobs serve` as a real process over real HTTP: health, a signed webhook, bad flags, SIGTERM.
final class ServeProcessTests: XCTestCase {
    func testServeAnswersHealthAndASignedWebhookAndStopsOnSIGTERM() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let id: Int64 = try await db.pool.query(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (name) VALUES ('o') RETURNING id)
            INSERT INTO nexcomet.ad_connections (organization_id, platform) SELECT id, 'snapchat' FROM o RETURNING id
            """
        ).first!.decode(0)
        let secret = "serve-test-secret-0123456789abcdef"
        let p = NexjobsProcess(
            ["serve", "--listen", "127.0.0.1:0"], databaseURL: db.url, environment: ["NEXJOBS_WEBHOOK_SECRET": secret])
        try p.start()
        var port = 0
        try await assertEventually(timeout: .seconds(20), "serve prints its address: \(p.text)") {
            guard let range = p.text.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else {
                return false
            }
            port = Int(p.text[range].split(separator: ":").last!) ?? 0
            return port > 0
        }
        let base = "http://127.0.0.1:\(port)"
        let (_, health) = try await URLSession.shared.data(from: URL(string: base + "/healthz")!)
        XCTAssertEqual((health as? HTTPURLResponse)?.statusCode, 200)

        let body = Data(#"{"connection_id": \#(id)}"#.utf8)
        let stamp = String(Int(Date().timeIntervalSince1970))
        var request = URLRequest(url: URL(string: base + "/webhooks/resync")!)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue(stamp, forHTTPHeaderField: "X-Nexjobs-Timestamp")
        let mac = hmacSHA256Hex(key: Array(secret.utf8), message: Array((stamp + ".").utf8) + Array(body))
        request.setValue("sha256=" + mac, forHTTPHeaderField: "X-Nexjobs-Signature")
        let (reply, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 202, String(decoding: reply, as: UTF8.self))
        let jobs: Int = try await db.pool.query(
            "SELECT count(*)::int FROM nexjobs.jobs WHERE kind = 'sync_connection'"
        ).first!.decode(0)
        XCTAssertEqual(jobs, 1)
        // A refused request is logged, without the secret or the signature it carried.
        var forged = request
        forged.setValue("sha256=" + String(repeating: "ab", count: 32), forHTTPHeaderField: "X-Nexjobs-Signature")
        let (_, refused) = try await URLSession.shared.data(for: forged)
        XCTAssertEqual((refused as? HTTPURLResponse)?.statusCode, 401)
        try await assertEventually(timeout: .seconds(10), "the refusal is logged") {
            p.text.contains("webhook refused")
        }
        XCTAssertFalse(p.text.contains(secret), "the secret is never logged")
        XCTAssertFalse(p.text.contains(mac), "the signature is never logged")

        p.signal(SIGTERM)
        let status = await p.wait(timeout: .seconds(20))
        XCTAssertEqual(status, 0, p.text)
    }

    func testBadListenAddressAndShortSecretAreUsageErrors() async throws {
        let (code, out) = try await NexjobsProcess.run(
            ["serve", "--listen", "nonsense"], databaseURL: "postgres://127.0.0.1:1/none")
        XCTAssertEqual(code, 2, out)
        let (code2, out2) = try await NexjobsProcess.run(
            ["serve"], databaseURL: "postgres://127.0.0.1:1/none", environment: ["NEXJOBS_WEBHOOK_SECRET": "short"])
        XCTAssertEqual(code2, 2, out2)
        XCTAssertTrue(out2.contains("at least 32"), out2)
    }
}

/// HMAC-SHA256 in hex, computed with the `openssl` command line so the test does not reuse the code under test.
func hmacSHA256Hex(key: [UInt8], message: [UInt8]) -> String {
    let keyHex = key.map { String(format: "%02x", $0) }.joined()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:" + keyHex]
    let input = Pipe()
    let output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    do { try p.run() } catch { XCTFail("the openssl command line is needed (.ci/run installs it): \(error)") }
    input.fileHandleForWriting.write(Data(message))
    try? input.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    let mac = String(text.split(separator: " ").last ?? "")
    XCTAssertEqual(mac.count, 64, "openssl printed an HMAC-SHA256: \(text)")
    return mac
}
