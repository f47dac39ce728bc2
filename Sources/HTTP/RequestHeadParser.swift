/// The parsed request line and header fields of one request, before its body is read.
struct RequestHead: Sendable, Equatable {
    var method: String
    var rawPath: String
    var rawQuery: String
    var minorVersion: Int
    var headers: [(name: String, value: String)]
    var contentLength: Int
    var wantsClose: Bool
    var expectsContinue: Bool

    static func == (a: RequestHead, b: RequestHead) -> Bool {
        a.method == b.method && a.rawPath == b.rawPath && a.rawQuery == b.rawQuery
            && a.minorVersion == b.minorVersion && a.contentLength == b.contentLength
            && a.wantsClose == b.wantsClose && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }
}

/// Why a request head was refused, with the status to answer.
struct HeadError: Error, Equatable {
    var status: Int
    var reason: String
}

/// Parses request heads strictly (RFC 9112): CRLF line endings, token methods, origin-form targets,
/// HTTP/1.0 or 1.1, no obsolete line folding, at most one `Content-Length`, no `Transfer-Encoding`.
enum RequestHeadParser {
    /// Index just past the `\r\n\r\n` that ends the head, searching from `from`, or nil when not yet complete.
    static func headEnd(in buffer: [UInt8], from: Int) -> Int? {
        var i = max(0, from)
        let n = buffer.count
        while i + 3 < n {
            if buffer[i + 3] != 10 {
                i += buffer[i + 3] == 13 ? 1 : 4
                continue
            }
            if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 {
                return i + 4
            }
            i += 1
        }
        return nil
    }

    /// Parses `bytes` (the head including its final blank line) under `limits`.
    static func parse(_ bytes: ArraySlice<UInt8>, limits: HTTPServerLimits) -> Result<RequestHead, HeadError> {
        guard bytes.count <= limits.maxHeaderBytes else {
            return .failure(HeadError(status: 431, reason: "request head too large"))
        }
        var lines: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == 10 {
                guard i > bytes.startIndex, bytes[i - 1] == 13 else {
                    return .failure(HeadError(status: 400, reason: "bare LF in request head"))
                }
                lines.append(bytes[start..<(i - 1)])
                start = i + 1
            }
            i += 1
        }
        // The head ends with an empty line; drop it.
        guard let last = lines.last, last.isEmpty, lines.count >= 2 else {
            return .failure(HeadError(status: 400, reason: "incomplete request head"))
        }
        lines.removeLast()
        if lines.contains(where: { $0.contains(13) }) {
            return .failure(HeadError(status: 400, reason: "bare CR in request head"))
        }

        // Request line: METHOD SP target SP HTTP/1.x
        let requestLine = lines[0]
        let parts = requestLine.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            return .failure(HeadError(status: 400, reason: "malformed request line"))
        }
        guard !parts[0].isEmpty, parts[0].allSatisfy(isTokenChar) else {
            return .failure(HeadError(status: 400, reason: "malformed method"))
        }
        let target = parts[1]
        guard target.first == UInt8(ascii: "/"), target.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            return .failure(HeadError(status: 400, reason: "malformed request target"))
        }
        let version = Array(parts[2])
        let prefix = Array("HTTP/1.".utf8)
        guard version.count == 8, Array(version[0..<7]) == prefix else {
            return .failure(HeadError(status: 400, reason: "malformed HTTP version"))
        }
        let minor: Int
        switch version[7] {
        case UInt8(ascii: "0"): minor = 0
        case UInt8(ascii: "1"): minor = 1
        default: return .failure(HeadError(status: 505, reason: "unsupported HTTP version"))
        }
        let targetText = String(decoding: target, as: UTF8.self)
        let rawPath: String
        let rawQuery: String
        if let q = targetText.firstIndex(of: "?") {
            rawPath = String(targetText[..<q])
            rawQuery = String(targetText[targetText.index(after: q)...])
        } else {
            rawPath = targetText
            rawQuery = ""
        }

        // Header fields.
        let fieldLines = lines.dropFirst()
        guard fieldLines.count <= limits.maxHeaderCount else {
            return .failure(HeadError(status: 431, reason: "too many header fields"))
        }
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(fieldLines.count)
        var contentLength: Int?
        var connectionTokens: [String] = []
        var expectsContinue = false
        for line in fieldLines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                return .failure(HeadError(status: 400, reason: "header field without colon"))
            }
            let nameBytes = line[line.startIndex..<colon]
            guard !nameBytes.isEmpty, nameBytes.allSatisfy(isTokenChar) else {
                // Also rejects obsolete line folding (a line starting with whitespace).
                return .failure(HeadError(status: 400, reason: "malformed header field name"))
            }
            var valueBytes = line[(colon + 1)...]
            while let f = valueBytes.first, f == 32 || f == 9 { valueBytes = valueBytes.dropFirst() }
            while let l = valueBytes.last, l == 32 || l == 9 { valueBytes = valueBytes.dropLast() }
            guard valueBytes.allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else {
                return .failure(HeadError(status: 400, reason: "control character in header value"))
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            let value = String(decoding: valueBytes, as: UTF8.self)
            switch name.lowercased() {
            case "content-length":
                guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                    let n = Int(value)
                else {
                    return .failure(HeadError(status: 400, reason: "malformed Content-Length"))
                }
                if let existing = contentLength, existing != n {
                    return .failure(HeadError(status: 400, reason: "conflicting Content-Length"))
                }
                contentLength = n
            case "transfer-encoding":
                return .failure(HeadError(status: 501, reason: "Transfer-Encoding request bodies are not supported"))
            case "connection":
                connectionTokens += value.lowercased().split(separator: ",").map {
                    $0.trimmingCharacters(in: " \t")
                }
            case "expect":
                if value.lowercased() == "100-continue" { expectsContinue = true }
            default:
                break
            }
            headers.append((name: name, value: value))
        }
        if let n = contentLength, n > limits.maxBodyBytes {
            return .failure(HeadError(status: 413, reason: "request body too large"))
        }
        let wantsClose =
            connectionTokens.contains("close") || (minor == 0 && !connectionTokens.contains("keep-alive"))
        return .success(
            RequestHead(
                method: String(decoding: parts[0], as: UTF8.self), rawPath: rawPath, rawQuery: rawQuery,
                minorVersion: minor, headers: headers, contentLength: contentLength ?? 0, wantsClose: wantsClose,
                expectsContinue: expectsContinue))
    }

    /// Splits and percent-decodes the path into segments; nil on a bad escape or a NUL byte.
    static func decodePath(_ rawPath: String) -> [String]? {
        var segments: [String] = []
        for raw in rawPath.split(separator: "/", omittingEmptySubsequences: false) {
            guard let s = URLEncoding.percentDecode(raw, plusIsSpace: false), !s.utf8.contains(0) else {
                return nil
            }
            segments.append(s)
        }
        return segments
    }

    private static func isTokenChar(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(c)
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
