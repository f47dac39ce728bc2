import COpenSSL

/// AES-256-GCM through OpenSSL's EVP interface, with a 96-bit nonce and a 128-bit tag.
///
/// The vault is its only caller; it is internal so the known-answer tests can drive it with fixed nonces.
enum AESGCM {
    static let keyLength = 32
    static let nonceLength = 12
    static let tagLength = 16

    enum Failure: Error, Equatable {
        /// The tag did not verify: wrong key, wrong associated data, or modified ciphertext, nonce or tag.
        case authentication
        /// OpenSSL reported an error in step `step`; carries no key or data.
        case library(step: String)
    }

    /// Encrypts `plaintext` and authenticates it together with `aad`.
    static func seal(
        key: [UInt8], nonce: [UInt8], plaintext: [UInt8], aad: [UInt8]
    ) throws(Failure) -> (ciphertext: [UInt8], tag: [UInt8]) {
        // seal and open mirror each other step by step (OpenSSL's EVP encrypt / decrypt calls differ in every
        // line); kept as two readable functions rather than one parameterised by direction.
        precondition(key.count == keyLength && nonce.count == nonceLength, "AES-256-GCM key or nonce size")
        guard plaintext.count < Int32.max, aad.count < Int32.max else { throw .library(step: "input too large") }
        guard let context = EVP_CIPHER_CTX_new() else { throw .library(step: "EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }

        try check(EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil), "EVP_EncryptInit_ex(cipher)")
        try check(
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonceLength), nil), "EVP_CTRL_GCM_SET_IVLEN")
        try check(EVP_EncryptInit_ex(context, nil, nil, key, nonce), "EVP_EncryptInit_ex(key)")
        var produced: Int32 = 0
        if !aad.isEmpty {
            try check(EVP_EncryptUpdate(context, nil, &produced, aad, Int32(aad.count)), "EVP_EncryptUpdate(aad)")
        }
        // GCM is a stream mode: output length equals input length; the spare block is OpenSSL's contract.
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + 16)
        var total = 0
        if !plaintext.isEmpty {
            let status = ciphertext.withUnsafeMutableBufferPointer { out in
                EVP_EncryptUpdate(context, out.baseAddress, &produced, plaintext, Int32(plaintext.count))
            }
            try check(status, "EVP_EncryptUpdate")
            total = Int(produced)
        }
        let final = ciphertext.withUnsafeMutableBufferPointer { out in
            EVP_EncryptFinal_ex(context, out.baseAddress! + total, &produced)
        }
        try check(final, "EVP_EncryptFinal_ex")
        total += Int(produced)
        ciphertext.removeLast(ciphertext.count - total)

        var tag = [UInt8](repeating: 0, count: tagLength)
        let tagStatus = tag.withUnsafeMutableBytes { out in
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagLength), out.baseAddress)
        }
        try check(tagStatus, "EVP_CTRL_GCM_GET_TAG")
        return (ciphertext, tag)
    }

    /// Decrypts `ciphertext` if `tag` verifies over it and `aad`; otherwise throws `.authentication` and
    /// returns nothing (no unauthenticated plaintext escapes).
    static func open(
        key: [UInt8], nonce: [UInt8], ciphertext: [UInt8], tag: [UInt8], aad: [UInt8]
    ) throws(Failure) -> [UInt8] {
        precondition(key.count == keyLength && nonce.count == nonceLength, "AES-256-GCM key or nonce size")
        guard tag.count == tagLength else { throw .authentication }
        guard ciphertext.count < Int32.max, aad.count < Int32.max else { throw .library(step: "input too large") }
        guard let context = EVP_CIPHER_CTX_new() else { throw .library(step: "EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }

        try check(EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil), "EVP_DecryptInit_ex(cipher)")
        try check(
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonceLength), nil), "EVP_CTRL_GCM_SET_IVLEN")
        try check(EVP_DecryptInit_ex(context, nil, nil, key, nonce), "EVP_DecryptInit_ex(key)")
        var produced: Int32 = 0
        if !aad.isEmpty {
            try check(EVP_DecryptUpdate(context, nil, &produced, aad, Int32(aad.count)), "EVP_DecryptUpdate(aad)")
        }
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var total = 0
        if !ciphertext.isEmpty {
            let status = plaintext.withUnsafeMutableBufferPointer { out in
                EVP_DecryptUpdate(context, out.baseAddress, &produced, ciphertext, Int32(ciphertext.count))
            }
            try check(status, "EVP_DecryptUpdate")
            total = Int(produced)
        }
        var expectedTag = tag
        let tagStatus = expectedTag.withUnsafeMutableBytes { bytes in
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagLength), bytes.baseAddress)
        }
        try check(tagStatus, "EVP_CTRL_GCM_SET_TAG")
        let verified = plaintext.withUnsafeMutableBufferPointer { out in
            EVP_DecryptFinal_ex(context, out.baseAddress! + total, &produced)
        }
        guard verified > 0 else {
            // Wipe what was decrypted before the tag check failed; it must not outlive the call.
            for index in plaintext.indices { plaintext[index] = 0 }
            ERR_clear_error()
            throw .authentication
        }
        total += Int(produced)
        plaintext.removeLast(plaintext.count - total)
        return plaintext
    }

    private static func check(_ status: Int32, _ step: String) throws(Failure) {
        guard status == 1 else {
            ERR_clear_error()
            throw .library(step: step)
        }
    }
}
