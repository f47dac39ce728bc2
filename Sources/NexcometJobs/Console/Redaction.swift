import Foundation

/// Hides secret-looking values before the console shows them.
enum Redaction {
    /// Key fragments that mark a value as secret (matched case-insensitively anywhere in the key).
    static let secretFragments = [
        "token", "secret", "password", "passwd", "pwd", "key", "authorization", "auth", "credential", "cookie",
        "session", "signature", "private", "cert",
    ]

    static func isSecret(_ key: String) -> Bool {
        let k = key.lowercased()
        return secretFragments.contains { k.contains($0) }
    }

    /// Replaces the value of every secret-looking key, at any depth (objects inside arrays too).
    static func redact(_ value: Any) -> Any {
        switch value {
        case let o as [String: Any]:
            var out: [String: Any] = [:]
            for (k, v) in o { out[k] = isSecret(k) ? "[redacted]" : redact(v) }
            return out
        case let a as [Any]:
            return a.map(redact)
        default:
            return value
        }
    }

    /// The JSON text pretty-printed with secrets redacted; text that is not JSON is shown as "(not JSON)".
    static func redactedJSON(_ text: String) -> String {
        guard let v = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) else {
            return "(not JSON)"
        }
        let data = try? JSONSerialization.data(
            withJSONObject: redact(v),
            options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed])
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "(not JSON)"
    }

    /// Masks `name=value` / `name: value` pairs with a secret-looking name inside free text (error messages).
    static func scrubText(_ text: String) -> String {
        let pattern =
            #"(?i)\b([A-Za-z_-]*(token|secret|password|authorization|api[_-]?key)[A-Za-z_-]*)(["']?\s*[:=]\s*["']?)(Bearer\s+)?[^\s"'&,;}]+"#
        guard let re = try? NSRegularExpression(pattern: pattern) else { return text }
        return re.stringByReplacingMatches(
            in: text, range: NSRange(text.startIndex..., in: text), withTemplate: "$1$3[redacted]")
    }
}
