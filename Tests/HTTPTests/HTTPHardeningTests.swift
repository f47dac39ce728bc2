import Foundation
import XCTest

@testable import HTTP

/// Issue 10: the server keeps answering `/healthz` while one client hoards connections or trickles headers.
final class HTTPHardeningTests: XCTestCase {
    private var servers: [HTTPServer] = []

    override func tearDown() {
        for server in servers {
            blocking { await server.stop(grace: .seconds(2)) }
        }
        servers = []
    }

    private func serve(_ limits: HTTPServerLimits) throws -> Int {
        let router = Router()
        router.add("GET", "/healthz") { _ in .text("ok\n") }
        router.add("GET", "/hello") { _ in .text("hello") }
        let server = HTTPServer(limits: limits, handler: router.handle)
        servers.append(server)
        return try server.start()
    }

    private func get(_ port: Int, _ path: String, from source: String) -> RawClient.Response? {
        guard let c = try? RawClient(port: port, source: source) else { return nil }
        c.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
        return c.readResponse(timeout: 10)
    }

    /// Serve's own limits: 128 connections, 16 per client.
    private var serveLimits: HTTPServerLimits {
        .init(
            readTimeout: .seconds(10), headerTimeout: .seconds(5), idleTimeout: .seconds(30), maxConnections: 128,
            maxConnectionsPerClient: 16, reservedPaths: ["/healthz"])
    }

    func testOneClientHoldingManyIdleKeepAliveConnectionsDoesNotStarveAnother() throws {
        let port = try serve(serveLimits)
        var hoard: [RawClient] = []
        var served = 0
        var refused = 0
        for _ in 0..<140 {
            let c = try RawClient(port: port, source: "127.0.0.1")
            c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            switch c.readResponse(timeout: 10)?.status {
            case 200: served += 1
            case 503: refused += 1
            default: XCTFail("neither served nor refused")
            }
            hoard.append(c)  // kept open: idle keep-alive (or already closed by the server when refused)
        }
        XCTAssertEqual(served, 16, "one client gets at most its per-client share")
        XCTAssertEqual(refused, 124, "beyond its share it is refused at once, not left hanging")
        for source in ["127.0.0.2", "127.0.0.3"] {
            XCTAssertEqual(get(port, "/healthz", from: source)?.status, 200, source)
            XCTAssertEqual(get(port, "/hello", from: source)?.status, 200, source)
        }
        withExtendedLifetime(hoard) {}
    }

    func testHealthIsAnsweredOnAReservedSlotWhenTheWholeBudgetIsTaken() throws {
        var limits = serveLimits
        limits.maxConnections = 4
        let port = try serve(limits)
        // Four clients take the whole regular budget with idle keep-alive connections.
        var idle: [RawClient] = []
        for i in 1...4 {
            let c = try RawClient(port: port, source: "127.0.0.\(10 + i)")
            c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(c.readResponse()?.status, 200)
            idle.append(c)
        }
        let health = try RawClient(port: port, source: "127.0.0.20")
        health.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try XCTUnwrap(health.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Connection"), "close", "a reserved slot serves one request")
        XCTAssertEqual(health.readToEnd(timeout: 3).0, .closed)
        XCTAssertEqual(get(port, "/hello", from: "127.0.0.20")?.status, 503, "only reserved paths on reserved slots")
        // A client may hold 2 reserved slots; a third connection of its own is refused at once.
        let s1 = try RawClient(port: port, source: "127.0.0.21")
        let s2 = try RawClient(port: port, source: "127.0.0.21")
        let s3 = try RawClient(port: port, source: "127.0.0.21")
        XCTAssertEqual(s3.readResponse(timeout: 3)?.status, 503)
        // Silent reserved connections are closed after reservedReadTimeout (1 s); a trickling one gets 408.
        let start = Date()
        s2.send("GET /healthz HTTP/1.1\r\n")
        XCTAssertEqual(s1.readToEnd(timeout: 10).0, .closed)
        XCTAssertEqual(s2.readResponse(timeout: 10)?.status, 408)
        XCTAssertLessThan(Date().timeIntervalSince(start), 8)
        withExtendedLifetime(idle) {}
    }

    func testSlowlorisConnectionsAreCutOffAfterTheHeaderDeadlineAndHealthKeepsAnswering() throws {
        var limits = serveLimits
        limits.headerTimeout = .milliseconds(800)
        limits.readTimeout = .seconds(30)
        let port = try serve(limits)
        // 400 slowloris connections from one client: 16 admitted, the rest refused at once.
        var lorises: [RawClient] = []
        var refused = 0
        for _ in 0..<400 {
            let c = try RawClient(port: port, source: "127.0.0.1")
            c.send("GET /hello HTTP/1.1\r\n")
            lorises.append(c)
        }
        XCTAssertEqual(get(port, "/healthz", from: "127.0.0.2")?.status, 200, "served while 400 lorises wait")
        // Keep trickling one header byte every 50 ms on every connection: a per-byte timeout would never fire.
        let start = Date()
        var open = lorises
        var answered: [Int] = []
        while !open.isEmpty && Date().timeIntervalSince(start) < 20 {
            var still: [RawClient] = []
            for c in open {
                var p = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 0) > 0 {
                    if let r = c.readResponse(timeout: 2) { answered.append(r.status) } else { refused += 1 }
                    continue
                }
                c.send("X")
                still.append(c)
            }
            open = still
            usleep(50_000)
        }
        XCTAssertTrue(open.isEmpty, "\(open.count) slow connections were never cut off")
        XCTAssertLessThan(Date().timeIntervalSince(start), 15, "cut off by the total header deadline")
        // 16 regular slots and the client's 2 reserved slots each got 408 at the header deadline.
        XCTAssertEqual(answered.filter { $0 == 408 }.count, 18, "each admitted slow client got 408: \(answered)")
        XCTAssertEqual(answered.filter { $0 == 503 }.count + refused, 382, "the rest were refused")
        lorises = []
        XCTAssertTrue(
            eventually(timeout: 10) { self.get(port, "/hello", from: "127.0.0.1")?.status == 200 },
            "the client itself is served again once its slow connections are gone")
    }
}

/// A bounded-time fuzz of the request parser itself (no sockets): random and mutated heads, huge heads, chunked
/// bodies, truncated input and non-UTF-8 bytes. Every input ends in a parsed head or an error status, fast.
final class RequestParserFuzzTests: XCTestCase {
    func testParserNeverCrashesAndAnswersEveryInputQuickly() throws {
        var rng = SplitMix64(state: 0x5EED_0010)
        let limits = HTTPServerLimits(maxHeaderBytes: 16 * 1024, maxHeaderCount: 100, maxBodyBytes: 16 * 1024)
        let valid = [
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /webhooks/resync HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\nX-Nexjobs-Timestamp: 1\r\n\r\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a%2Fb/c?x=%zz&y=1 HTTP/1.0\r\nConnection: keep-alive, close\r\nExpect: 100-continue\r\n\r\n",
        ].map { Array($0.utf8) }
        let chunkedBodies = [
            "5\r\nabc\r\n", "zz\r\n", "0\r\n", "ffffffffffffffffffff\r\n", "-1\r\n\r\n", "3;ext\r\nabc",
        ]
        let tokens = [
            "\r\n", "\n", "\r", ":", " ", "\t", "%", "%00", "%ff", "\u{0}", "HTTP/1.1", "HTTP/1.9", "Content-Length: ",
            "Content-Length: 99999999999999999999", "Content-Length: 5", "Transfer-Encoding: chunked",
            "Connection: close",
        ].map { Array($0.utf8) }
        var parsed = 0
        var refused: [Int: Int] = [:]
        var slowest = 0.0
        let deadline = Date().addingTimeInterval(20)
        for i in 0..<30_000 {
            var bytes: [UInt8]
            switch i % 6 {
            case 0:  // pure noise, non-UTF-8 included
                bytes = (0..<Int.random(in: 0...400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1, 2:  // mutations of valid heads
                bytes = valid[Int.random(in: 0..<valid.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...10, using: &rng) {
                    let at = Int.random(in: 0...bytes.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0 where at < bytes.count: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1 where at < bytes.count: bytes.remove(at: at)
                    case 2: bytes.insert(contentsOf: tokens[Int.random(in: 0..<tokens.count, using: &rng)], at: at)
                    default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                    }
                }
            case 3:  // truncated valid heads
                let v = valid[Int.random(in: 0..<valid.count, using: &rng)]
                bytes = Array(v.prefix(Int.random(in: 0...v.count, using: &rng)))
            case 4:  // chunked requests with bad chunk framing
                bytes =
                    Array(
                        "POST /x HTTP/1.1\r\nTransfer-Encoding: \(["chunked", "gzip, chunked", "identity"].randomElement(using: &rng)!)\r\n\r\n"
                            .utf8) + Array(chunkedBodies.randomElement(using: &rng)!.utf8)
            default:  // huge heads: long values, many fields, long lines without CRLF
                let n = Int.random(in: 1...200_000, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0:
                    bytes =
                        Array("GET / HTTP/1.1\r\nX: ".utf8) + [UInt8](repeating: 0x61, count: n)
                        + Array("\r\n\r\n".utf8)
                case 1:
                    bytes =
                        Array("GET / HTTP/1.1\r\n".utf8) + Array(String(repeating: "A: b\r\n", count: n / 6 + 1).utf8)
                        + [13, 10]
                default: bytes = Array("GET /".utf8) + [UInt8](repeating: 0x2F, count: n)
                }
            }
            let start = Date()
            // What the connection does: find the head's end, parse, then decode the path.
            if let end = RequestHeadParser.headEnd(in: bytes, from: 0) {
                switch RequestHeadParser.parse(bytes[0..<end], limits: limits) {
                case .success(let head):
                    XCTAssertLessThanOrEqual(head.contentLength, limits.maxBodyBytes)
                    XCTAssertTrue(head.rawPath.hasPrefix("/"))
                    if RequestHeadParser.decodePath(head.rawPath) == nil {
                        refused[400, default: 0] += 1
                    } else {
                        parsed += 1
                    }
                case .failure(let e):
                    XCTAssertTrue([400, 413, 431, 501, 505].contains(e.status), "status \(e.status) for input \(i)")
                    refused[e.status, default: 0] += 1
                }
            } else {
                // Incomplete: the connection keeps reading until maxHeaderBytes (431) or its header deadline (408).
                refused[bytes.count > limits.maxHeaderBytes ? 431 : 408, default: 0] += 1
            }
            slowest = max(slowest, Date().timeIntervalSince(start))
            if Date() > deadline { break }
        }
        XCTAssertLessThan(slowest, 1.0, "one input took \(slowest) s")
        XCTAssertLessThan(Date(), deadline, "the fuzz run is bounded")
        XCTAssertGreaterThan(parsed, 100, "mutations still reach successful parses: \(refused)")
        for status in [400, 431, 501] { XCTAssertGreaterThan(refused[status] ?? 0, 0, "no \(status) seen: \(refused)") }
    }
}
