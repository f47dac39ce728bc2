import Foundation

/// Percent-encoding and URL assembly for query strings.
enum QueryString {
    private static let unreserved: Set<UInt8> = Set(
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))

    /// Encodes one component per RFC 3986 (space as `%20`, every reserved character escaped).
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// `name=value&...` in the given order.
    static func build(_ items: [(String, String)]) -> String {
        items.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    /// `base` (made to end with `/`) + `path` + `?query`.
    static func url(base: URL, path: String, query: [(String, String)]) -> URL? {
        var text = base.absoluteString
        if !text.hasSuffix("/") { text += "/" }
        text += path.hasPrefix("/") ? String(path.dropFirst()) : path
        if !query.isEmpty { text += "?" + build(query) }
        return URL(string: text)
    }

    /// The percent-encoded path of `url` exactly as sent, trailing `/` kept (TikTok paths end with one, and
    /// `URL.path` would drop it). Never includes the query, which may carry secrets.
    static func path(of url: URL) -> String {
        URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? url.path
    }

    /// A JSON array of strings, as TikTok expects for `fields`, `dimensions`, `metrics` and `advertiser_ids`.
    static func jsonArray(_ items: [String]) -> String {
        JSONValue.array(items.map { .string($0) }).jsonText
    }
}
