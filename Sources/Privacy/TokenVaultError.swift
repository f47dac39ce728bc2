/// Why a token could not be sealed or opened.
///
/// Safe to log: the description names the failure and, where known, the key id (an identifier, not key
/// material). It never contains plaintext, key bytes, associated data or ciphertext.
public struct TokenVaultError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The failure class, stable for programmatic checks.
    public enum Code: String, Sendable, Hashable {
        /// The input is shorter than a header, nonce and tag can be.
        case truncated
        /// The first byte is not a format version this code reads.
        case unsupportedVersion
        /// The key id in the header is empty or not a valid key id.
        case malformedHeader
        /// The header names a key id the key ring does not hold (retired too early, or another ring).
        case unknownKeyID
        /// The GCM tag did not verify. AES-GCM cannot tell these apart: the ciphertext, nonce, tag or header
        /// was modified; the associated data differs (the value was moved to another row or column); or the
        /// key under this id is not the one that sealed it.
        case authenticationFailed
        /// Authenticated bytes that are not UTF-8: sealed by something other than ``TokenVault/seal(_:associatedData:)``.
        case invalidPlaintext
        /// OpenSSL reported an internal error.
        case cryptoFailure
        /// The secure random generator failed.
        case randomUnavailable
    }

    /// The failure class.
    public let code: Code
    /// The key id named by the ciphertext or used to seal, when known.
    public let keyID: String?
    /// A human explanation without secrets.
    public let reason: String

    /// Creates an error; used by the vault and crypto helpers.
    public init(code: Code, keyID: String?, reason: String) {
        self.code = code
        self.keyID = keyID
        self.reason = reason
    }

    public var description: String {
        if let keyID {
            return "token vault: \(code.rawValue) (key id '\(keyID)'): \(reason)"
        }
        return "token vault: \(code.rawValue): \(reason)"
    }
}

/// Why a key ring could not be built.
///
/// Safe to log: it names the entry by position and, when the id is well formed, by id; it never contains
/// key material or the raw entry text (a malformed entry might be a bare key).
public struct KeyRingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The failure class, stable for programmatic checks.
    public enum Code: String, Sendable, Hashable {
        /// No keys at all (unset or empty value).
        case empty
        /// An entry is not `id:base64key`.
        case badFormat
        /// A key id is empty, too long or uses characters outside `A-Z a-z 0-9 . _ -`.
        case invalidKeyID
        /// A key is not valid base64.
        case invalidBase64
        /// A key does not decode to 32 bytes.
        case wrongKeyLength
        /// Two entries share a key id.
        case duplicateKeyID
    }

    /// The failure class.
    public let code: Code
    /// A human explanation without key material.
    public let reason: String

    /// Creates an error; used by ``KeyRing``.
    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "key ring: \(reason)" }
}
