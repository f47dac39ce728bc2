import Foundation
import HTTP
import XCTest

@testable import Platforms

/// A value behind a lock; `@unchecked Sendable` is sound because every access goes through `lock`.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }

    var current: Value { withLock { $0 } }
}

/// One request as the fixture server saw it.
struct RecordedRequest: Sendable {
    var method: String
    var path: String
    var query: [String: String]
    var headers: [String: String]
    var body: String
}

/// A real HTTP server (the project's HTTPServer) with scripted routes, recording every request it receives.
final class FixtureServer: Sendable {
    let router = Router()
    private let server: HTTPServer
    private let recorded = LockedBox<[RecordedRequest]>([])
    let port: Int

    init() throws {
        let router = self.router
        let recorded = self.recorded
        server = HTTPServer { request in
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.lowercased()] = field.value }
            recorded.withLock {
                $0.append(
                    RecordedRequest(
                        method: request.method, path: request.path, query: request.query, headers: headers,
                        body: request.bodyText))
            }
            return await router.handle(request)
        }
        port = try server.start()
    }

    var base: String { "http://127.0.0.1:\(port)" }
    var tiktokBase: URL { URL(string: "\(base)/open_api/v1.3/")! }
    var snapBase: URL { URL(string: "\(base)/v1/")! }
    var snapTokenURL: URL { URL(string: "\(base)/login/oauth2/access_token")! }

    var requests: [RecordedRequest] { recorded.current }

    func requests(path: String) -> [RecordedRequest] { requests.filter { $0.path == path } }

    func stop() async { await server.stop(grace: .seconds(1)) }
}

/// Paths and queries of TikTok-style envelopes.
enum TikTokFixture {
    static func envelope(_ data: String, code: Int = 0, message: String = "OK") -> HTTPResponse {
        .json(#"{"code":\#(code),"message":"\#(message)","request_id":"r1","data":\#(data)}"#)
    }

    static func error(_ code: Int, _ message: String) -> HTTPResponse {
        .json(#"{"code":\#(code),"message":"\#(message)","request_id":"r1","data":{}}"#)
    }

    /// One page of `items` (JSON texts) according to the request's `page` and `page_size`.
    static func page(_ items: [String], request: HTTPRequest) -> HTTPResponse {
        let page = Int(request.query["page"] ?? "1") ?? 1
        let size = Int(request.query["page_size"] ?? "10") ?? 10
        let totalPages = items.isEmpty ? 0 : (items.count + size - 1) / size
        let start = min((page - 1) * size, items.count)
        let slice = items[start..<min(start + size, items.count)]
        return envelope(
            #"{"list":[\#(slice.joined(separator: ","))],"page_info":{"page":\#(page),"page_size":\#(size),"total_number":\#(items.count),"total_page":\#(totalPages)}}"#
        )
    }
}

func makeTikTokClient(
    _ server: FixtureServer, pageSize: Int = 1000, rateLimiter: any RequestRateLimiter = UnlimitedRateLimiter()
) -> TikTokClient {
    TikTokClient(
        configuration: TikTokConfiguration(
            baseURL: server.tiktokBase, appId: "app-123", secret: "tt-app-secret-XYZ", pageSize: pageSize,
            requestTimeout: .seconds(10), responseRetryDelay: .milliseconds(10)),
        rateLimiter: rateLimiter)
}

func makeSnapClient(
    _ server: FixtureServer, pageSize: Int = 1000, rateLimiter: any RequestRateLimiter = UnlimitedRateLimiter()
) -> SnapchatClient {
    SnapchatClient(
        configuration: SnapchatConfiguration(
            apiBaseURL: server.snapBase, tokenURL: server.snapTokenURL, clientId: "snap-client",
            clientSecret: "snap-client-secret-XYZ", redirectURI: "https://example.com/cb", pageSize: pageSize,
            requestTimeout: .seconds(10), responseRetryDelay: .milliseconds(10)),
        rateLimiter: rateLimiter)
}

/// Runs `body` and returns the `PlatformError` it throws, failing the test if it throws nothing or something else.
func expectPlatformError(
    _ body: () async throws -> Void, file: StaticString = #filePath, line: UInt = #line
) async -> PlatformError? {
    do {
        try await body()
        XCTFail("expected a PlatformError, got success", file: file, line: line)
    } catch let error as PlatformError {
        return error
    } catch {
        XCTFail("expected a PlatformError, got \(error)", file: file, line: line)
    }
    return nil
}

func date(_ text: String) -> LocalDate { LocalDate(parsing: text)! }

/// Snap-style envelopes and cursor pagination.
enum SnapFixture {
    /// One page of `items` (inner JSON objects) wrapped as `{root: [{sub_request_status, item: {...}}]}`, with an
    /// absolute `paging.next_link` while more remain.
    static func page(_ items: [String], root: String, item: String, request: HTTPRequest, base: String) -> HTTPResponse
    {
        let limit = Int(request.query["limit"] ?? "50") ?? 50
        let offset = Int(request.query["cursor"] ?? "0") ?? 0
        let slice = items[min(offset, items.count)..<min(offset + limit, items.count)]
        let wrapped = slice.map { #"{"sub_request_status":"SUCCESS","\#(item)":\#($0)}"# }
        var paging = ""
        if offset + limit < items.count {
            paging = #","paging":{"next_link":"\#(base)\#(request.path)?cursor=\#(offset + limit)&limit=\#(limit)"}"#
        }
        return .json(
            #"{"request_status":"SUCCESS","request_id":"r","\#(root)":[\#(wrapped.joined(separator: ","))]\#(paging)}"#)
    }

    static func error(_ status: Int, code: String, message: String) -> HTTPResponse {
        .json(
            #"{"request_status":"ERROR","request_id":"r","debug_message":"\#(message)","display_message":"x","error_code":"\#(code)"}"#,
            status: status)
    }

    static func token(_ access: String, refresh: String = "snap-refresh-2", expiresIn: Int = 1800) -> HTTPResponse {
        .json(
            #"{"access_token":"\#(access)","token_type":"Bearer","expires_in":\#(expiresIn),"refresh_token":"\#(refresh)","scope":"snapchat-marketing-api"}"#
        )
    }
}
