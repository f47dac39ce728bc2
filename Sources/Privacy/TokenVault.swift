/// Encrypts OAuth tokens for storage with AES-256-GCM under a ``KeyRing``, bound to the row they belong to.
///
/// Sealed values follow the byte format in `Sources/Privacy/CIPHERTEXT.md`:
/// `version(1) | keyIdLength(1) | keyId | nonce(12) | ciphertext | tag(16)`, where the GCM associated data
/// is the header (`version | keyIdLength | keyId`) followed by the UTF-8 bytes of `associatedData`.
/// Binding the header stops a key id from being swapped; binding `associatedData` (use
/// ``associatedData(table:rowID:column:)``) stops a ciphertext from being copied to another row or column.
///
/// Nonces are 96 random bits per seal. NIST SP 800-38D limits random nonces to 2^32 seals per key, far
/// beyond a token store's needs; rotate keys long before that.
///
/// A value type with no mutable state: share it freely across tasks.
public struct TokenVault: Sendable, CustomStringConvertible {
    /// The format version this code writes and reads.
    public static let formatVersion: UInt8 = 1

    /// The keys in use.
    public let keyRing: KeyRing

    /// Creates a vault that seals with the ring's active key and opens with any of its keys.
    public init(keyRing: KeyRing) {
        self.keyRing = keyRing
    }

    /// The conventional associated data for a token column: `"<table>:<rowID>:<column>"`,
    /// e.g. `"ad_connections:42:access_token"`.
    public static func associatedData(table: String, rowID: String, column: String) -> String {
        "\(table):\(rowID):\(column)"
    }

    /// Encrypts `plaintext` with the active key.
    ///
    /// - Parameters:
    ///   - plaintext: the secret; may be empty.
    ///   - associatedData: the identity the value is bound to; the same string is needed to open it.
    /// - Returns: the sealed bytes (store them in a `bytea` column); a fresh nonce makes each call differ.
    /// - Throws: ``TokenVaultError`` (`.randomUnavailable`, `.cryptoFailure`); never with the plaintext.
    public func seal(_ plaintext: String, associatedData: String) throws -> [UInt8] {
        let keyID = keyRing.activeKeyID
        guard let key = keyRing.key(for: keyID) else {
            throw TokenVaultError(code: .unknownKeyID, keyID: keyID, reason: "the active key is missing from the ring")
        }
        let header = Self.header(keyID: keyID)
        let nonce = try secureRandomBytes(AESGCM.nonceLength)
        let sealed: (ciphertext: [UInt8], tag: [UInt8])
        do {
            sealed = try AESGCM.seal(
                key: key, nonce: nonce, plaintext: Array(plaintext.utf8),
                aad: header + Array(associatedData.utf8))
        } catch {
            throw Self.vaultError(error, keyID: keyID)
        }
        return header + nonce + sealed.ciphertext + sealed.tag
    }

    /// Decrypts a value sealed by ``seal(_:associatedData:)`` (by any key in the ring).
    ///
    /// - Parameters:
    ///   - sealed: the stored bytes.
    ///   - associatedData: the same string given when sealing.
    /// - Throws: ``TokenVaultError``: `.truncated`, `.unsupportedVersion`, `.malformedHeader`, `.unknownKeyID`,
    ///   `.authenticationFailed` (modified bytes, other associated data, or a different key under that id),
    ///   `.invalidPlaintext`. No error carries plaintext, key bytes or associated data.
    public func open(_ sealed: [UInt8], associatedData: String) throws -> String {
        let parts = try Self.parse(sealed)
        guard let key = keyRing.key(for: parts.keyID) else {
            throw TokenVaultError(
                code: .unknownKeyID, keyID: parts.keyID,
                reason: "the key ring has no key with this id (keys: \(keyRing.keyIDs.joined(separator: ",")))")
        }
        let plaintext: [UInt8]
        do {
            plaintext = try AESGCM.open(
                key: key, nonce: parts.nonce, ciphertext: parts.ciphertext, tag: parts.tag,
                aad: parts.header + Array(associatedData.utf8))
        } catch {
            throw Self.vaultError(error, keyID: parts.keyID)
        }
        guard let text = String(validating: plaintext, as: UTF8.self) else {
            throw TokenVaultError(
                code: .invalidPlaintext, keyID: parts.keyID, reason: "the decrypted value is not UTF-8 text")
        }
        return text
    }

    /// The key id named in a sealed value's header.
    ///
    /// - Throws: ``TokenVaultError`` if the header cannot be read.
    public func keyID(of sealed: [UInt8]) throws -> String {
        try Self.parse(sealed).keyID
    }

    /// Whether a sealed value should be resealed: its key id is not the active one.
    ///
    /// An unreadable header also returns `true`, so a rotation sweep calls ``reseal(_:associatedData:)`` on
    /// it and surfaces the damage as that call's error instead of skipping it silently.
    public func needsRotation(_ sealed: [UInt8]) -> Bool {
        guard let keyID = try? keyID(of: sealed) else { return true }
        return keyID != keyRing.activeKeyID
    }

    /// Opens `sealed` and seals the plaintext again with the active key and a fresh nonce.
    ///
    /// - Throws: any error of ``open(_:associatedData:)`` or ``seal(_:associatedData:)``.
    public func reseal(_ sealed: [UInt8], associatedData: String) throws -> [UInt8] {
        try seal(open(sealed, associatedData: associatedData), associatedData: associatedData)
    }

    public var description: String {
        "TokenVault(\(keyRing))"
    }

    // MARK: Format

    /// The authenticated header: version, key id length, key id.
    static func header(keyID: String) -> [UInt8] {
        let id = Array(keyID.utf8)
        return [formatVersion, UInt8(id.count)] + id
    }

    struct Parts {
        var header: [UInt8]
        var keyID: String
        var nonce: [UInt8]
        var ciphertext: [UInt8]
        var tag: [UInt8]
    }

    static func parse(_ sealed: [UInt8]) throws -> Parts {
        guard sealed.count >= 2 else {
            throw TokenVaultError(
                code: .truncated, keyID: nil, reason: "\(sealed.count) bytes is too short to be sealed")
        }
        guard sealed[0] == formatVersion else {
            throw TokenVaultError(
                code: .unsupportedVersion, keyID: nil,
                reason: "format version \(sealed[0]) is not supported (this code reads version \(formatVersion))")
        }
        let idLength = Int(sealed[1])
        let headerLength = 2 + idLength
        let minimum = headerLength + AESGCM.nonceLength + AESGCM.tagLength
        guard sealed.count >= minimum else {
            throw TokenVaultError(
                code: .truncated, keyID: nil,
                reason: "\(sealed.count) bytes is shorter than the \(minimum) its header requires")
        }
        let idBytes = sealed[2..<headerLength]
        guard KeyRing.isValidKeyID(String(decoding: idBytes, as: UTF8.self)),
            idBytes.allSatisfy({ $0 < 0x80 })
        else {
            throw TokenVaultError(code: .malformedHeader, keyID: nil, reason: "the header's key id is not valid")
        }
        let keyID = String(decoding: idBytes, as: UTF8.self)
        let nonceEnd = headerLength + AESGCM.nonceLength
        let tagStart = sealed.count - AESGCM.tagLength
        return Parts(
            header: Array(sealed[..<headerLength]),
            keyID: keyID,
            nonce: Array(sealed[headerLength..<nonceEnd]),
            ciphertext: Array(sealed[nonceEnd..<tagStart]),
            tag: Array(sealed[tagStart...]))
    }

    private static func vaultError(_ failure: AESGCM.Failure, keyID: String) -> TokenVaultError {
        switch failure {
        case .authentication:
            return TokenVaultError(
                code: .authenticationFailed, keyID: keyID,
                reason: "the value does not authenticate: it was modified, it belongs to another row or column "
                    + "(different associated data), or the key under this id is not the one that sealed it")
        case .library(let step):
            return TokenVaultError(code: .cryptoFailure, keyID: keyID, reason: "OpenSSL failed in \(step)")
        }
    }
}
