import COpenSSL

// Small OpenSSL-backed primitives: digests, MACs, comparison, randomness and hex, for the token vault and
// for webhook signatures. All are safe to call from any thread and from async code: each call is short,
// CPU-bound work with no shared state.

/// SHA-256 of `bytes` (32 bytes).
public func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let status = withNonNullBase(bytes) { data in
        digest.withUnsafeMutableBufferPointer { out in
            EVP_Digest(data, bytes.count, out.baseAddress, &length, EVP_sha256(), nil)
        }
    }
    // Fails only if OpenSSL cannot allocate; there is no sensible way to continue without a digest.
    precondition(status == 1 && length == 32, "OpenSSL SHA-256 failed")
    return digest
}

/// SHA-256 of the UTF-8 bytes of `text` (32 bytes).
public func sha256(_ text: String) -> [UInt8] {
    sha256(Array(text.utf8))
}

/// HMAC-SHA256 of `message` under `key` (32 bytes), as used for webhook signatures.
///
/// Any key length works (RFC 2104: longer keys are hashed, shorter ones padded); an empty key is allowed
/// but useless. Compare MACs with ``constantTimeEquals(_:_:)``, never `==`.
public func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
    var mac = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let result = withNonNullBase(key) { keyPointer in
        withNonNullBase(message) { messagePointer in
            mac.withUnsafeMutableBufferPointer { out in
                HMAC(
                    EVP_sha256(), keyPointer, Int32(clamping: key.count), messagePointer, message.count,
                    out.baseAddress, &length)
            }
        }
    }
    // Fails only if OpenSSL cannot allocate; the key is never part of the message.
    precondition(result != nil && length == 32, "OpenSSL HMAC-SHA256 failed")
    return mac
}

/// HMAC-SHA256 of the UTF-8 bytes of `message` under `key` (32 bytes).
public func hmacSHA256(key: [UInt8], message: String) -> [UInt8] {
    hmacSHA256(key: key, message: Array(message.utf8))
}

/// Compares two byte strings in time that depends only on their lengths, not on where they differ.
///
/// Use it for MACs and signatures so an attacker cannot learn a valid value byte by byte from response
/// times. Lengths are not secret (a MAC's length is public), so different lengths return `false` at once.
public func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard !lhs.isEmpty else { return true }
    return lhs.withUnsafeBytes { left in
        rhs.withUnsafeBytes { right in
            CRYPTO_memcmp(left.baseAddress, right.baseAddress, lhs.count) == 0
        }
    }
}

/// `count` bytes from OpenSSL's cryptographically secure generator (`RAND_bytes`).
///
/// - Throws: ``TokenVaultError`` with code `.randomUnavailable` if the generator cannot be seeded.
public func secureRandomBytes(_ count: Int) throws -> [UInt8] {
    precondition(count >= 0, "secureRandomBytes: negative count")
    var bytes = [UInt8](repeating: 0, count: count)
    guard count > 0 else { return bytes }
    let status = bytes.withUnsafeMutableBufferPointer { buffer in
        RAND_bytes(buffer.baseAddress, Int32(clamping: count))
    }
    guard status == 1 else {
        throw TokenVaultError(code: .randomUnavailable, keyID: nil, reason: "the secure random generator failed")
    }
    return bytes
}

/// Lower-case hexadecimal, two digits per byte.
public func hexEncode(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Bytes of a hexadecimal string (either case), or `nil` if it has an odd length or a non-hex character.
public func hexDecode(_ text: String) -> [UInt8]? {
    let utf8 = Array(text.utf8)
    guard utf8.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
    var bytes = [UInt8]()
    bytes.reserveCapacity(utf8.count / 2)
    var index = 0
    while index < utf8.count {
        guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
        index += 2
    }
    return bytes
}

/// Calls `body` with a pointer to `bytes`, never `nil`: OpenSSL treats a NULL buffer as an error even when the
/// length is 0, and an empty Swift array has no base address.
func withNonNullBase<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>) -> R) -> R {
    if bytes.isEmpty {
        var placeholder: UInt8 = 0
        return withUnsafePointer(to: &placeholder) { body($0) }
    }
    return bytes.withUnsafeBufferPointer { body($0.baseAddress!) }
}
