import Foundation

/// The AES-256 keys of the token vault: the first encrypts, all decrypt.
///
/// Rotation: put a new key first (`new:...,old:...`), deploy, reseal stored tokens
/// (``TokenVault/needsRotation(_:)`` and ``TokenVault/reseal(_:associatedData:)``), then drop the old key.
///
/// `description`, `debugDescription` and reflection (`dump`, `print`) show key ids only, never key bytes.
public struct KeyRing: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The environment variable the process reads its key ring from by default.
    public static let environmentVariable = "NEXJOBS_TOKEN_KEYS"

    /// Key ids in ring order; the first is active.
    public let keyIDs: [String]
    private let keys: [String: KeyMaterial]

    /// The id of the key new seals use.
    public var activeKeyID: String { keyIDs[0] }

    /// Builds a ring from keys in order; the first becomes the active key.
    ///
    /// - Parameter keys: id and 32-byte key pairs. Ids: 1-64 characters from `A-Z a-z 0-9 . _ -`.
    /// - Throws: ``KeyRingError`` for no keys, an invalid id, a key that is not 32 bytes, or a duplicate id.
    public init(keys: [(id: String, key: [UInt8])]) throws {
        guard !keys.isEmpty else {
            throw KeyRingError(code: .empty, reason: "no keys given; at least one 32-byte AES-256 key is required")
        }
        var ids: [String] = []
        var table: [String: KeyMaterial] = [:]
        for (position, entry) in keys.enumerated() {
            guard Self.isValidKeyID(entry.id) else {
                throw KeyRingError(
                    code: .invalidKeyID,
                    reason: "key \(position + 1) has an invalid key id (1-64 characters from A-Z a-z 0-9 . _ -)")
            }
            guard entry.key.count == AESGCM.keyLength else {
                throw KeyRingError(
                    code: .wrongKeyLength,
                    reason: "key '\(entry.id)' is \(entry.key.count) bytes; AES-256 needs exactly 32")
            }
            guard table[entry.id] == nil else {
                throw KeyRingError(code: .duplicateKeyID, reason: "key id '\(entry.id)' appears more than once")
            }
            ids.append(entry.id)
            table[entry.id] = KeyMaterial(bytes: entry.key)
        }
        self.keyIDs = ids
        self.keys = table
    }

    /// Parses the environment format `id:base64key,id2:base64key2`.
    ///
    /// Keys are standard base64 (with `=` padding) of 32 random bytes, e.g. from `openssl rand -base64 32`.
    /// Whitespace around entries, ids and keys is ignored, as are empty entries (a trailing comma).
    ///
    /// - Throws: ``KeyRingError``; messages name entries by position or id and never echo key text.
    public init(parsing value: String) throws {
        var parsed: [(id: String, key: [UInt8])] = []
        let entries = value.split(separator: ",", omittingEmptySubsequences: false)
        for (position, rawEntry) in entries.enumerated() {
            let entry = rawEntry.trimmingCharacters(in: .whitespacesAndNewlines)
            if entry.isEmpty { continue }
            guard let colon = entry.firstIndex(of: ":") else {
                throw KeyRingError(
                    code: .badFormat, reason: "entry \(position + 1) is not in the form id:base64key")
            }
            let id = entry[..<colon].trimmingCharacters(in: .whitespacesAndNewlines)
            let encoded = entry[entry.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            guard Self.isValidKeyID(id) else {
                throw KeyRingError(
                    code: .invalidKeyID,
                    reason: "entry \(position + 1) has an invalid key id (1-64 characters from A-Z a-z 0-9 . _ -)")
            }
            guard !encoded.isEmpty else {
                throw KeyRingError(code: .badFormat, reason: "key '\(id)' has no key after ':'")
            }
            guard let key = Data(base64Encoded: encoded) else {
                throw KeyRingError(
                    code: .invalidBase64, reason: "key '\(id)' is not valid base64 (standard alphabet, padded)")
            }
            parsed.append((id, Array(key)))
        }
        guard !parsed.isEmpty else {
            throw KeyRingError(code: .empty, reason: "no keys given; expected id:base64key[,id2:base64key2...]")
        }
        try self.init(keys: parsed)
    }

    /// Reads and parses the key ring from an environment variable.
    ///
    /// - Parameters:
    ///   - variable: the variable name; defaults to ``environmentVariable`` (`NEXJOBS_TOKEN_KEYS`).
    ///   - environment: the environment to read; defaults to the process environment.
    /// - Throws: ``KeyRingError`` (code `.empty` when the variable is unset), naming the variable.
    public static func fromEnvironment(
        _ variable: String = environmentVariable,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KeyRing {
        guard let value = environment[variable] else {
            throw KeyRingError(
                code: .empty, reason: "\(variable) is not set; expected id:base64key[,id2:base64key2...]")
        }
        do {
            return try KeyRing(parsing: value)
        } catch let error as KeyRingError {
            throw KeyRingError(code: error.code, reason: "\(variable): \(error.reason)")
        }
    }

    /// Whether the ring holds a key with this id.
    public func contains(keyID: String) -> Bool {
        keys[keyID] != nil
    }

    /// The key bytes for an id; internal so key material never leaves the module.
    func key(for keyID: String) -> [UInt8]? {
        keys[keyID]?.bytes
    }

    public var description: String {
        "KeyRing(active: \(activeKeyID), keys: \(keyIDs.joined(separator: ",")))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: ["activeKeyID": activeKeyID, "keyIDs": keyIDs], displayStyle: .struct)
    }

    /// Key ids appear in the sealed header and the environment syntax; this alphabet keeps both unambiguous.
    static func isValidKeyID<S: StringProtocol>(_ id: S) -> Bool {
        guard (1...64).contains(id.utf8.count) else { return false }
        return id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}

/// Key bytes that refuse to print themselves.
private struct KeyMaterial: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let bytes: [UInt8]
    var description: String { "<redacted>" }
    var debugDescription: String { "<redacted>" }
    var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
