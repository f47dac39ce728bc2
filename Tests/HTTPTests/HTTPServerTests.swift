import Foundation
import XCTest

@testable import HTTP

/// Blocks the calling (non-pool) thread until `body` finishes; tests here run on XCTest's main thread.
func blocking(_ body: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await body()
        done.signal()
    }
    done.wait()
}

final class HTTPServerTests: XCTestCase {
    private var servers: [HTTPServer] = []

    override func tearDown() {
        for server in servers {
            blocking { await server.stop(grace: .seconds(2)) }
        }
        servers = []
    }

    private func serve(
        limits: HTTPServerLimits = .init(readTimeout: .seconds(2), idleTimeout: .seconds(2)),
        _ configure: (Router) -> Void = { _ in }
    ) throws -> Int {
        let router = Router()
        router.add("GET", "/hello") { _ in .text("hello") }
        router.add("POST", "/echo") { req in
            var r = HTTPResponse(status: 200, body: req.body)
            r.headers["Content-Type"] = req.headers["content-type"] ?? "application/octet-stream"
            return r
        }
        configure(router)
        let server = HTTPServer(limits: limits, handler: router.handle)
        servers.append(server)
        return try server.start()
    }

    private func get(_ port: Int, _ target: String) throws -> RawClient.Response? {
        let c = try RawClient(port: port)
        c.send("GET \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return c.readResponse()
    }

    func testRoutingPathParametersAndQuery() throws {
        let port = try serve { router in
            router.add("GET", "/v1/adaccounts/:id/stats") { req in
                let q = req.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")
                return .json("{\"id\":\"\(req.pathParameters["id"] ?? "")\",\"q\":\"\(q)\",\"raw\":\"\(req.rawQuery)\"}")
            }
        }
        let r = try XCTUnwrap(get(port, "/v1/adaccounts/a%20b/stats?x=1&fields=spend%2Cswipes&x=2&s=a+b"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Content-Type"), "application/json")
        XCTAssertEqual(
            r.text, "{\"id\":\"a b\",\"q\":\"fields=spend,swipes;s=a b;x=2\",\"raw\":\"x=1&fields=spend%2Cswipes&x=2&s=a+b\"}")
        XCTAssertNotNil(r.header("Date"))
        XCTAssertEqual(r.header("Content-Length"), String(r.body.count))

        XCTAssertEqual(try get(port, "/v1/adaccounts//stats")?.status, 404, "empty parameter segment")
        XCTAssertEqual(try get(port, "/nope")?.status, 404)
        XCTAssertEqual(try get(port, "/hello/")?.status, 404, "trailing slash is significant")
        let c = try RawClient(port: port)
        c.send("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        let m = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(m.status, 405)
        XCTAssertEqual(m.header("Allow"), "GET")
    }

    func testRouterDirectlyWithoutSockets() async {
        let router = Router()
        router.add("GET", "/a/:x/b/:y") { req in .text("\(req.pathParameters["x"]!)-\(req.pathParameters["y"]!)") }
        let r = await router.handle(HTTPRequest(method: "GET", path: "/a/1/b/2"))
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "1-2")
        let head = await router.handle(HTTPRequest(method: "HEAD", path: "/a/1/b/2"))
        XCTAssertEqual(head.status, 200)
        let post = await router.handle(HTTPRequest(method: "POST", path: "/a/1/b/2"))
        XCTAssertEqual(post.status, 405)
    }

    func testKeepAliveServesSeveralRequestsOnOneSocketIncludingPipelined() throws {
        let port = try serve()
        let c = try RawClient(port: port)
        for i in 0..<3 {
            c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nbody\(i)")
            let r = try XCTUnwrap(c.readResponse())
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.text, "body\(i)")
            XCTAssertNil(r.header("Connection"))
        }
        c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.text, "hello")
        XCTAssertEqual(c.readResponse()?.text, "hello")
        c.send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try XCTUnwrap(c.readResponse(headOnly: true))
        XCTAssertEqual(head.header("Content-Length"), "5")
        c.send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let last = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(last.header("Connection"), "close")
        XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed)
    }

    func testHTTP10ClosesByDefault() throws {
        let port = try serve()
        let c = try RawClient(port: port)
        c.send("GET /hello HTTP/1.0\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed)
    }

    func testExpectContinueGetsInterimResponse() throws {
        let port = try serve()
        let c = try RawClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 100)
        c.send("abc")
        XCTAssertEqual(c.readResponse()?.text, "abc")
    }

    func testMalformedRequestsAreAnswered400AndClosed() throws {
        let port = try serve()
        let cases: [(String, Int)] = [
            ("GARBAGE\r\n\r\n", 400),
            ("GET /hello\r\n\r\n", 400),
            ("GET  /hello HTTP/1.1\r\n\r\n", 400),
            ("GET hello HTTP/1.1\r\n\r\n", 400),
            ("GET /hello HTTP/1.1 extra\r\n\r\n", 400),
            ("G(T /hello HTTP/1.1\r\n\r\n", 400),
            ("GET /hello HTTP/2.0\r\n\r\n", 400),
            ("GET /hello HTTP/1.9\r\n\r\n", 505),
            ("GET /hello FTP/1.1\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\nHost: x\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
            ("GET /he%zzllo HTTP/1.1\r\n\r\n", 400),
            ("GET /he%00llo HTTP/1.1\r\n\r\n", 400),
            ("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
        ]
        for (raw, status) in cases {
            let c = try RawClient(port: port)
            c.send(raw)
            let r = c.readResponse()
            XCTAssertEqual(r?.status, status, raw.debugDescription)
            XCTAssertEqual(r?.header("Connection"), "close", raw.debugDescription)
            XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed, raw.debugDescription)
        }
        XCTAssertEqual(try get(port, "/hello")?.status, 200)
    }

    func testLimitsAnswer431And413() throws {
        let port = try serve(limits: .init(maxHeaderBytes: 1024, maxHeaderCount: 5, maxBodyBytes: 100))
        // Head larger than maxHeaderBytes, without ever finishing the head.
        var c = try RawClient(port: port)
        c.send("GET /hello HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 4000))
        XCTAssertEqual(c.readResponse()?.status, 431)
        XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed)
        // Complete head just over the limit.
        c = try RawClient(port: port)
        c.send("GET /hello HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 1000) + "\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 431)
        // Too many fields.
        c = try RawClient(port: port)
        c.send("GET /hello HTTP/1.1\r\n" + (0..<6).map { "X-\($0): v\r\n" }.joined() + "\r\n")
        XCTAssertEqual(c.readResponse()?.status, 431)
        // Exactly at the field limit is fine.
        c = try RawClient(port: port)
        c.send("GET /hello HTTP/1.1\r\n" + (0..<5).map { "X-\($0): v\r\n" }.joined() + "\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        // Body over the limit is refused from its Content-Length, before it is sent.
        c = try RawClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nContent-Length: 101\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 413)
        XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed)
        c = try RawClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 400)
        c = try RawClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + String(repeating: "b", count: 100))
        XCTAssertEqual(c.readResponse()?.body.count, 100)
    }

    func testSlowlorisGets408WithinReadTimeout() throws {
        let port = try serve(limits: .init(readTimeout: .milliseconds(400), idleTimeout: .seconds(5)))
        let c = try RawClient(port: port)
        let start = Date()
        var gotResponse = false
        // Trickle one byte every 20 ms; a server without a whole-request deadline would wait forever.
        for byte in Array("GET /hello HTTP/1.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200) {
            guard c.send([byte]) else { break }
            var p = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 20) > 0 {
                gotResponse = true
                break
            }
        }
        XCTAssertTrue(gotResponse, "server never answered the slow client")
        XCTAssertEqual(c.readResponse()?.status, 408)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0)
        XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed)
        XCTAssertEqual(try get(port, "/hello")?.status, 200)
    }

    func testSilentConnectionIsClosedAfterReadTimeoutAndIdleKeepAliveAfterIdleTimeout() throws {
        let port = try serve(limits: .init(readTimeout: .milliseconds(300), idleTimeout: .milliseconds(300)))
        let silent = try RawClient(port: port)
        let start = Date()
        XCTAssertEqual(silent.readToEnd(timeout: 3).0, .closed)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0)

        let idle = try RawClient(port: port)
        idle.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(idle.readResponse()?.status, 200)
        let (end, bytes) = idle.readToEnd(timeout: 3)
        XCTAssertEqual(end, .closed)
        XCTAssertTrue(bytes.isEmpty, "idle close sends nothing")
    }

    func testTruncatedBodyThenCloseNeverReachesHandler() throws {
        let calls = Counter()
        let port = try serve { router in
            router.add("POST", "/count") { _ in
                calls.increment()
                return .text("ok")
            }
        }
        let c = try RawClient(port: port)
        c.send("POST /count HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly-part")
        c.shutdownWrite()
        XCTAssertEqual(c.readToEnd(timeout: 3).0, .closed)
        XCTAssertEqual(calls.value, 0)
        XCTAssertEqual(try get(port, "/hello")?.status, 200)
    }

    func testTooManyConnectionsAnswered503() throws {
        let port = try serve(limits: .init(readTimeout: .seconds(5), maxConnections: 2))
        let a = try RawClient(port: port)
        let b = try RawClient(port: port)
        a.send("GET /hello HTTP/1.1\r\n\r\n")
        b.send("GET /hello HTTP/1.1\r\n\r\n")
        XCTAssertEqual(a.readResponse()?.status, 200)
        XCTAssertEqual(b.readResponse()?.status, 200)
        let c = try RawClient(port: port)
        XCTAssertEqual(c.readResponse()?.status, 503)
        XCTAssertEqual(c.readToEnd(timeout: 2).0, .closed)
        // Freeing a slot lets new connections in again.
        a.send("GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(a.readResponse()?.status, 200)
        XCTAssertEqual(a.readToEnd(timeout: 2).0, .closed)
        XCTAssertTrue(eventually { ((try? self.get(port, "/hello"))??.status) == 200 })
    }

    func testTruncatedResponseDeclaresFullLengthThenCloses() throws {
        let port = try serve { router in
            router.add("GET", "/cut") { _ in
                var r = HTTPResponse.json("{\"code\":0,\"data\":{\"list\":[]}}")
                r.truncatedBodyLength = 5
                return r
            }
        }
        let c = try RawClient(port: port)
        c.send("GET /cut HTTP/1.1\r\n\r\n")
        let (end, bytes) = c.readToEnd(timeout: 3)
        XCTAssertEqual(end, .closed)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Content-Length: 29\r\n"), text)
        XCTAssertTrue(text.hasSuffix("\r\n\r\n{\"cod\""[...].dropLast()), text)
    }

    func testHandlerHeaderInjectionIsDropped() throws {
        let port = try serve { router in
            router.add("GET", "/inject") { _ in
                var r = HTTPResponse.text("x")
                r.headers["X-Evil"] = "a\r\nSet-Cookie: b"
                r.headers["X-Good"] = "fine"
                return r
            }
        }
        let r = try XCTUnwrap(get(port, "/inject"))
        XCTAssertNil(r.header("X-Evil"))
        XCTAssertNil(r.header("Set-Cookie"))
        XCTAssertEqual(r.header("X-Good"), "fine")
    }

    func testRandomBytesNeverCrashOrHangTheServer() throws {
        let port = try serve(limits: .init(maxHeaderBytes: 2048, readTimeout: .seconds(2), idleTimeout: .seconds(2)))
        var rng = SplitMix64(state: 0xC0FFEE)
        let seeds = Array("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".utf8)
        for i in 0..<2500 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int.random(in: 0...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                // Mutations of a valid request reach deeper parser states than pure noise.
                bytes = seeds
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1: bytes.remove(at: at)
                    default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                    }
                }
            }
            let c = try RawClient(port: port)
            c.send(bytes)
            c.shutdownWrite()
            let (end, _) = c.readToEnd(timeout: 5)
            XCTAssertEqual(end, .closed, "input \(i) left the connection hanging: \(bytes)")
            if end != .closed { break }
        }
        XCTAssertEqual(try get(port, "/hello")?.text, "hello")
    }

    func testGracefulStopFinishesInFlightRequestAndRefusesNewOnes() throws {
        let entered = Counter()
        let router = Router()
        router.add("GET", "/slow") { _ in
            entered.increment()
            try? await Task.sleep(for: .milliseconds(300))
            return .text("done")
        }
        let server = HTTPServer(handler: router.handle)
        let port = try server.start()
        let c = try RawClient(port: port)
        let idle = try RawClient(port: port)
        c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(eventually { entered.value == 1 })
        let stopped = Counter()
        Task {
            await server.stop(grace: .seconds(5))
            stopped.increment()
        }
        let r = c.readResponse()
        XCTAssertEqual(r?.text, "done")
        XCTAssertEqual(r?.header("Connection"), "close")
        XCTAssertEqual(idle.readToEnd(timeout: 3).0, .closed, "idle keep-alive connection closed on stop")
        XCTAssertTrue(eventually { stopped.value == 1 })
        XCTAssertThrowsError(try RawClient(port: port), "listener closed")
    }

    func testStopForceClosesAfterGrace() throws {
        let router = Router()
        let server = HTTPServer(limits: .init(readTimeout: .seconds(30)), handler: router.handle)
        let port = try server.start()
        let slow = try RawClient(port: port)
        slow.send("GET /never-finished HTTP/1.1\r\nX-Partial: ")
        let start = Date()
        blocking { await server.stop(grace: .milliseconds(200)) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
        XCTAssertEqual(slow.readToEnd(timeout: 2).0, .closed)
    }

    func testRunReturnsOnCancellation() throws {
        let server = HTTPServer(handler: { _ in .text("x") })
        let finished = Counter()
        let task = Task {
            try await server.run()
            finished.increment()
        }
        XCTAssertTrue(eventually { server.port != 0 })
        XCTAssertEqual(try get(server.port, "/")?.status, 200)
        task.cancel()
        XCTAssertTrue(eventually { finished.value == 1 })
    }

    func testBindFailureIsReported() throws {
        let port = try serve()
        let second = HTTPServer(port: port, handler: { _ in .text("x") })
        XCTAssertThrowsError(try second.start()) { error in
            XCTAssertTrue(String(describing: error).contains("bind"), "\(error)")
        }
    }
}

final class HTTPParsingTests: XCTestCase {
    func testHeadEndSearch() {
        XCTAssertNil(RequestHeadParser.headEnd(in: Array("GET / HTTP/1.1\r\n".utf8), from: 0))
        XCTAssertEqual(RequestHeadParser.headEnd(in: Array("a\r\n\r\nrest".utf8), from: 0), 5)
        XCTAssertEqual(RequestHeadParser.headEnd(in: Array("\r\r\n\r\n".utf8), from: 0), 5)
    }

    func testParseHead() throws {
        let raw = Array("GET /a%2Fb/c?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n".utf8)
        let head = try RequestHeadParser.parse(raw[...], limits: .init()).get()
        XCTAssertEqual(head.method, "GET")
        XCTAssertEqual(head.rawPath, "/a%2Fb/c")
        XCTAssertEqual(head.rawQuery, "x=1")
        XCTAssertTrue(head.wantsClose)
        XCTAssertEqual(RequestHeadParser.decodePath(head.rawPath), ["", "a/b", "c"])
    }

    func testHeadersAreCaseInsensitiveAndKeepOrder() {
        var h = HTTPHeaders()
        h.add("Set-Cookie", "a")
        h.add(name: "set-cookie", value: "b")
        h["Content-Type"] = "x"
        XCTAssertEqual(h["SET-COOKIE"], "a")
        XCTAssertEqual(h.values(for: "Set-Cookie"), ["a", "b"])
        h["content-type"] = "y"
        XCTAssertEqual(h.values(for: "Content-Type"), ["y"])
        h["Set-Cookie"] = nil
        XCTAssertFalse(h.contains("set-cookie"))
        XCTAssertEqual(h.count, 1)
    }

    func testFormDecodingAndEncoding() {
        XCTAssertEqual(URLEncoding.decodeForm("a=1&b=x+y%21&a=2&bad=%zz&c"), ["a": "2", "b": "x y!", "c": ""])
        XCTAssertEqual(URLEncoding.percentEncode("a b/[\"x\"]"), "a%20b%2F%5B%22x%22%5D")
    }

    func testHTTPDate() {
        XCTAssertEqual(HTTPDate.format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
    }
}
