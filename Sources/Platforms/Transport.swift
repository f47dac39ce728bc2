import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What came back from the network: status, headers (names as sent) and the whole body.
public struct TransportResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A header value by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first(where: { $0.key.caseInsensitiveCompare(name) == .orderedSame })?.value
    }
}

/// A POST to an OAuth token endpoint: the only non-GET request a platform client can make.
///
/// Its only initializer is the synthesized memberwise one, which is internal: code outside this module cannot build
/// one; inside, only the token exchange and refresh code of the clients do, always aimed at the configured token URL.
public struct OAuthTokenRequest: Sendable {
    public let url: URL
    public let contentType: String
    public let body: [UInt8]
}

/// Why the network exchange itself failed (no HTTP response to classify).
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case timedOut
        /// No connection, or it failed before any response began.
        case connectionFailed
        /// The connection closed while the response was arriving (libcurl's partial transfer surfaces from
        /// FoundationNetworking as `URLError` -1, a lost connection as -1005).
        case connectionLost
        /// The response arrived with fewer body bytes than its `Content-Length` declared.
        case truncatedBody
        case invalidResponse
    }
    public var reason: Reason
    /// Short underlying cause, without URL or headers (URLs may carry secrets in their query).
    public var detail: String

    public init(_ reason: Reason, detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason): \(detail)" }
}

/// The network seam of the platform clients, read-only by construction.
///
/// API calls can only be GETs; the one write-shaped call is `postToken`, which takes an `OAuthTokenRequest` that only
/// this module can create. There is no general `send(method:)`, so no client code path can PUT, POST or DELETE
/// campaigns or anything else on the ad platforms.
public protocol PlatformTransport: Sendable {
    /// Sends `GET url` with `headers`, failing with `TransportError` after `timeout`.
    func get(_ url: URL, headers: [String: String], timeout: Duration) async throws -> TransportResponse
    /// Sends an OAuth token request (`POST` with its form or JSON body).
    func postToken(_ request: OAuthTokenRequest, timeout: Duration) async throws -> TransportResponse
}

/// `PlatformTransport` over `URLSession` (FoundationNetworking on Linux): HTTPS with per-request timeouts,
/// no cookies, no cache, no credential storage.
public final class URLSessionTransport: PlatformTransport {
    private let session: URLSession

    /// Creates a transport with its own ephemeral session.
    public init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.urlCache = nil
        configuration.urlCredentialStorage = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        self.session = URLSession(configuration: configuration)
    }

    deinit { session.finishTasksAndInvalidate() }

    public func get(_ url: URL, headers: [String: String], timeout: Duration) async throws -> TransportResponse {
        var request = URLRequest(url: url)
        request.httpMethod = "GET"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        return try await send(request, timeout: timeout)
    }

    public func postToken(_ tokenRequest: OAuthTokenRequest, timeout: Duration) async throws -> TransportResponse {
        var request = URLRequest(url: tokenRequest.url)
        request.httpMethod = "POST"
        request.setValue(tokenRequest.contentType, forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(tokenRequest.body)
        return try await send(request, timeout: timeout)
    }

    private func send(_ request: URLRequest, timeout: Duration) async throws -> TransportResponse {
        var request = request
        let (seconds, attoseconds) = timeout.components
        request.timeoutInterval = Double(seconds) + Double(attoseconds) / 1e18
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch let error as URLError {
            throw TransportError.from(error)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw TransportError(.connectionFailed, detail: "\(type(of: error))")
        }
        guard let http = response as? HTTPURLResponse else {
            throw TransportError(.invalidResponse, detail: "not an HTTP response")
        }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            if let key = key as? String, let value = value as? String { headers[key] = value }
        }
        // A compressed body is decoded by URLSession, so its length only matches Content-Length when uncompressed.
        let encoded = headers.contains {
            $0.key.lowercased() == "content-encoding" && $0.value.lowercased() != "identity"
        }
        if !encoded,
            let expected = headers.first(where: { $0.key.lowercased() == "content-length" }).flatMap({ Int($0.value) }),
            expected != data.count
        {
            throw TransportError(
                .truncatedBody, detail: "body cut short: \(data.count) of \(expected) bytes (HTTP \(http.statusCode))")
        }
        return TransportResponse(status: http.statusCode, headers: headers, body: Array(data))
    }
}

extension TransportError {
    static func from(_ error: URLError) -> TransportError {
        switch error.code {
        case .timedOut: return TransportError(.timedOut, detail: "request timed out")
        case .cancelled: return TransportError(.connectionFailed, detail: "request cancelled")
        case .unknown, .networkConnectionLost, .badServerResponse, .cannotParseResponse, .zeroByteResource,
            .cannotDecodeRawData, .cannotDecodeContentData:
            // A short body (fewer bytes than Content-Length, then close) surfaces here on Linux: libcurl reports a
            // partial transfer, which FoundationNetworking turns into URLError -1 before any data is returned.
            return TransportError(
                .connectionLost,
                detail: "connection lost or response unreadable mid-transfer (URLError \(error.code.rawValue))")
        default:
            // URLError's description embeds the URL, whose query may hold the TikTok secret: keep only the code.
            return TransportError(.connectionFailed, detail: "URLError \(error.code.rawValue)")
        }
    }
}
