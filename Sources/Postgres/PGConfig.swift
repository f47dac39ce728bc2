import CLibPQ
import Foundation

/// Connection settings: a libpq connection string (URI `postgres://...` or `key=value` conninfo).
///
/// Everything libpq understands passes through unchanged (TLS: `sslmode`, `sslrootcert`, ...). The password is kept
/// only inside the string handed to libpq; `redacted` and every error message hide it.
public struct PGConfig: Sendable, CustomStringConvertible {
    public let connectionString: String
    /// The password inside `connectionString`, if any: used only to scrub messages.
    let secret: String?

    /// Validates the string with libpq's own parser so a typo fails early with a clear message.
    public init(_ connectionString: String) throws {
        let trimmed = connectionString.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else {
            throw PGError(.connectionFailed, "DATABASE_URL is empty")
        }
        var errmsg: UnsafeMutablePointer<CChar>? = nil
        guard let options = PQconninfoParse(trimmed, &errmsg) else {
            var message = "invalid connection string"
            if let errmsg {
                message += ": " + String(cString: errmsg).trimmingCharacters(in: .whitespacesAndNewlines)
                PQfreemem(errmsg)
            }
            let guess = PGConfig.guessPassword(in: trimmed)
            throw PGError(.connectionFailed, PGConfig.scrub(message, secret: guess))
        }
        defer { PQconninfoFree(options) }
        var password: String? = nil
        var p = options
        while let keyword = p.pointee.keyword {
            if String(cString: keyword) == "password", let value = p.pointee.val {
                password = String(cString: value)
            }
            p += 1
        }
        self.connectionString = trimmed
        self.secret = (password?.isEmpty ?? true) ? PGConfig.guessPassword(in: trimmed) : password
    }

    /// The connection string with the password replaced by `***`.
    public var redacted: String { PGConfig.scrub(connectionString, secret: secret) }
    public var description: String { redacted }

    func scrub(_ text: String) -> String { PGConfig.scrub(text, secret: secret) }

    static func scrub(_ text: String, secret: String?) -> String {
        guard let secret, !secret.isEmpty else { return text }
        var out = text.replacingOccurrences(of: secret, with: "***")
        if let encoded = secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics), encoded != secret {
            out = out.replacingOccurrences(of: encoded, with: "***")
        }
        return out
    }

    /// Best effort for strings libpq cannot parse: the part between `user:` and `@` of a URI, or `password=...`.
    static func guessPassword(in text: String) -> String? {
        if let schemeEnd = text.range(of: "://") {
            let rest = text[schemeEnd.upperBound...]
            if let at = rest.lastIndex(of: "@") {
                let userinfo = rest[..<at]
                if let colon = userinfo.firstIndex(of: ":") {
                    let pw = String(userinfo[userinfo.index(after: colon)...])
                    return pw.isEmpty ? nil : pw
                }
            }
        }
        if let r = text.range(of: "password=") {
            let pw = text[r.upperBound...].prefix { $0 != " " }
            return pw.isEmpty ? nil : String(pw.trimmingCharacters(in: CharacterSet(charactersIn: "'")))
        }
        return nil
    }
}
