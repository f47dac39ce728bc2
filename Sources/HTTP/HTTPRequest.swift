/// A parsed HTTP/1.1 request as handed to a handler.
public struct HTTPRequest: Sendable {
    /// The request method as sent, e.g. `GET` (methods are case-sensitive in HTTP).
    public var method: String
    /// The path without the query, each segment percent-decoded.
    public var path: String
    /// The query string exactly as sent, without the leading `?` (empty when absent).
    public var rawQuery: String
    /// The decoded query parameters (`+` is a space); when a name repeats, the last value wins.
    public var query: [String: String]
    /// The request header fields.
    public var headers: HTTPHeaders
    /// The request body (`Content-Length` bytes; empty when absent).
    public var body: [UInt8]
    /// Values captured by `:name` segments of the matched route pattern; filled in by `Router`.
    public var pathParameters: [String: String]
    /// The peer address as `host:port`, or empty when unknown.
    public var remoteAddress: String
    /// The peer's host alone (an IPv4-mapped IPv6 address as IPv4), without the port: what identifies a client across
    /// its connections (the per-client connection cap, the console's login spacing). Defaults to `remoteAddress`.
    public var clientAddress: String
    /// The decoded path segments, kept apart so an encoded `/` (`%2F`) inside a segment does not split it.
    var pathSegments: [String]?

    /// Creates a request; `query` is decoded from `rawQuery`.
    public init(
        method: String = "GET", path: String = "/", rawQuery: String = "", headers: HTTPHeaders = .init(),
        body: [UInt8] = [], remoteAddress: String = "", clientAddress: String? = nil
    ) {
        self.method = method
        self.path = path
        self.rawQuery = rawQuery
        self.query = URLEncoding.decodeForm(rawQuery)
        self.headers = headers
        self.body = body
        self.pathParameters = [:]
        self.remoteAddress = remoteAddress
        self.clientAddress = clientAddress ?? remoteAddress
        self.pathSegments = nil
    }

    /// The body decoded as UTF-8 (invalid sequences repaired).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The body decoded as an `application/x-www-form-urlencoded` form; last value wins.
    public var formBody: [String: String] { URLEncoding.decodeForm(bodyText) }
}

/// Percent-encoding helpers shared by the parser and by users decoding form bodies.
public enum URLEncoding {
    /// Percent-decodes `text`; with `plusIsSpace`, `+` becomes a space (form encoding). Nil on a bad escape
    /// or when the result is not UTF-8.
    public static func percentDecode(_ text: Substring, plusIsSpace: Bool) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var it = text.utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else {
                    return nil
                }
                bytes.append(hv << 4 | lv)
            } else if b == UInt8(ascii: "+") && plusIsSpace {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Decodes `a=1&b=x+y` into a dictionary; pairs that fail to decode are skipped, the last value wins.
    public static func decodeForm(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecode(parts[0], plusIsSpace: true) else { continue }
            let value = parts.count > 1 ? percentDecode(parts[1], plusIsSpace: true) : ""
            guard let value else { continue }
            result[name] = value
        }
        return result
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters (for query values and form bodies).
    public static func percentEncode(_ text: String) -> String {
        var out = ""
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0xF)]))
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
